"""One error type for bad user input: the CLI turns it into one clear line and exit status 2."""


class UsageError(Exception):
    """Bad input from the user (config, CLI option, foreign or corrupt store).

    The message names the field, the value given and what is accepted. Raised *before* anything is
    written; `turbtl` prints ``error: <message>`` and exits with status 2.
    """

    exit_code = 2

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


class ConfigError(UsageError):
    """A configuration value out of range, of the wrong type, or unknown."""


class DataError(UsageError):
    """A store or checkpoint that is missing, foreign, of another schema, incomplete or corrupt."""


class SimulationBlowUp(RuntimeError):
    """A simulation produced NaN/inf or a CFL number far above 1."""
