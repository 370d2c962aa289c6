# ---- turbtl job prologue (jobs/templates/prologue.sh): environment, exit file, logging ----
set -euo pipefail
export TURBTL_STAGE=@@{stage}
export TURBTL_RUN_DIR=@@{run_dir}
TURBTL_STATUS_DIR="$TURBTL_RUN_DIR/jobs/status"
mkdir -p "$TURBTL_STATUS_DIR"
if [ -n "${SLURM_ARRAY_TASK_ID:-}" ]; then
    TURBTL_JOB_KEY="${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"
else
    TURBTL_JOB_KEY="${SLURM_JOB_ID:-nojob}"
fi
TURBTL_T0=$(date +%s)
# The exit file is how `turbtl jobs status` knows how a job ended when sacct is unavailable.
_turbtl_exit_file() {
    local ec=$? f="$TURBTL_STATUS_DIR/$TURBTL_STAGE.$TURBTL_JOB_KEY.exit"
    printf '{"stage": "%s", "job": "%s", "exit_code": %d, "host": "%s", "started": %d, "finished": %d}\n' \
        "$TURBTL_STAGE" "$TURBTL_JOB_KEY" "$ec" "$(hostname)" "$TURBTL_T0" "$(date +%s)" > "$f.tmp" \
        && mv -f "$f.tmp" "$f"
    echo "[turbtl-job] stage=$TURBTL_STAGE job=$TURBTL_JOB_KEY exit=$ec elapsed=$(( $(date +%s) - TURBTL_T0 ))s"
}
trap _turbtl_exit_file EXIT
trap 'exit 143' TERM INT
echo "[turbtl-job] stage=$TURBTL_STAGE job=$TURBTL_JOB_KEY host=$(hostname) start=$(date -Is)"
export TURBTL_VENV=@@{venv}
export TURBTL_WORKDIR=@@{workdir}
@@{environment}
cd "$TURBTL_WORKDIR"
export OMP_NUM_THREADS=@@{threads}
export PYTHONUNBUFFERED=1
# Refuse a bad configuration here, in one process, before any rank starts: the job then ends with the
# configuration error's own exit code 2. (Under `srun --kill-on-bad-exit` the first rank to exit 2
# gets its siblings killed, and the step could report their 143 instead.)
turbtl config @@{config_args} > /dev/null
# ---- end of prologue ----
