#!/usr/bin/env bash
# System packages that some tests need and that PyPI cannot provide:
#   SLURM (slurmctld slurmd slurm-client munge) for the real single-node cluster tests,
#   Chromium for the headless rendering checks of the report and the asv HTML.
# Idempotent; does nothing (exit 0 with a note) when not root or without apt-get.
set -uo pipefail
want=(slurmctld slurmd slurm-client munge chromium)
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "sysdeps: not root or no apt-get; missing: ${missing[*]} (their tests will skip)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
echo "sysdeps: installing ${missing[*]}"
apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
  || { echo "sysdeps: apt-get failed; dependent tests will skip" >&2; exit 0; }
