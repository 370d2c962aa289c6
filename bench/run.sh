#!/usr/bin/env bash
# asv benchmarks of turbtl (docs/benchmarks.md). Run from anywhere; `make bench` calls `run.sh quick`.
#
#   bash bench/run.sh [quick]          the suite in the project's own .venv for HEAD, then publish
#   bash bench/run.sh history [RANGE]  asv-built virtualenvs over RANGE (default HEAD~5..HEAD: the last 5 commits), publish
#   bash bench/run.sh merge DIR...     add results from other machines (asv results folders: a
#                                      cluster's .asv/results or bench/results), then publish
#   bash bench/run.sh publish          merge bench/results into .asv/results and write the HTML
#
# Environment: BENCH_MACHINE (asv machine name; default: hostname), BENCH (asv --bench regex,
# default: every benchmark), ASV_ARGS (extra `asv run` arguments, e.g. "--quick"), ASV (the asv
# command; default .venv/bin/asv). Results of this machine are copied to bench/results/<machine>/
# so that they can be committed: history survives fresh machines.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ASV=${ASV:-$ROOT/.venv/bin/asv}
MACHINE=${BENCH_MACHINE:-$(hostname)}
RESULTS=.asv/results
KEEP=bench/results
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export MPLBACKEND=Agg
bench_args=()
[[ -n "${BENCH:-}" ]] && bench_args=(--bench "$BENCH")
read -r -a extra <<< "${ASV_ARGS:-}"

machine() {  # register this machine under a stable name (non-interactive)
  "$ASV" machine --yes --machine "$MACHINE" >/dev/null
}

keep() {  # copy this machine's results (and the benchmark list) into the committed folder
  mkdir -p "$KEEP/$MACHINE"
  cp "$RESULTS/$MACHINE"/*.json "$KEEP/$MACHINE/"
  [[ -f $RESULTS/benchmarks.json ]] && cp "$RESULTS/benchmarks.json" "$KEEP/benchmarks.json"
  echo "results kept in $KEEP/$MACHINE/ (commit them to keep the history)"
}

merge() {  # union of result folders into .asv/results and bench/results; existing files win
  local src m
  mkdir -p "$RESULTS" "$KEEP"
  for src in "$@"; do
    [[ -d $src ]] || { echo "error: $src is not a folder of asv results" >&2; exit 2; }
    for m in "$src"/*/; do
      m=${m%/}
      [[ -f $m/machine.json ]] || continue
      mkdir -p "$RESULTS/$(basename "$m")" "$KEEP/$(basename "$m")"
      cp -n "$m"/*.json "$RESULTS/$(basename "$m")/"
      [[ $(realpath "$src") == $(realpath "$KEEP") ]] || cp -n "$m"/*.json "$KEEP/$(basename "$m")/"
      echo "merged $(basename "$m") from $src"
    done
    [[ -f $RESULTS/benchmarks.json || ! -f $src/benchmarks.json ]] || cp "$src/benchmarks.json" "$RESULTS/"
  done
}

offline() {  # serve the pages' CDN scripts from bench/vendor (no internet needed to see graphs)
  mkdir -p .asv/html/vendor
  cp bench/vendor/*.js bench/vendor/*.css .asv/html/vendor/
  sed -i -E \
    -e 's#https://code\.jquery\.com/jquery-[0-9.]+\.min\.js#vendor/jquery.min.js#' \
    -e 's#https://cdnjs\.cloudflare\.com/ajax/libs/flot/[0-9.]+/(jquery\.flot[a-z.]*)\.min\.js#vendor/\1.js#' \
    -e 's#https://cdn\.jsdelivr\.net/npm/flot-orderbars@[0-9.]+/js/#vendor/#' \
    -e 's#https://cdnjs\.cloudflare\.com/ajax/libs/stupidtable/[0-9.]+/#vendor/#' \
    -e 's#https://cdnjs\.cloudflare\.com/ajax/libs/blueimp-md5/[0-9.]+/js/#vendor/#' \
    -e 's#https://cdn\.jsdelivr\.net/npm/bootstrap@[0-9.]+/dist/(js|css)/#vendor/#' \
    -e 's# integrity="[^"]*"##' \
    .asv/html/*.html
  if grep -l -E 'src="https://|stylesheet" href="https://' .asv/html/*.html >/dev/null; then
    echo "warning: the asv pages still load something from the internet:" >&2
    grep -o -h -E 'src="https://[^"]*"' .asv/html/*.html >&2
  fi
}

publish() {
  merge "$KEEP"
  "$ASV" publish >/dev/null
  offline
  echo "asv HTML: $ROOT/.asv/html/index.html  (view it with: $ASV preview  ->  http://127.0.0.1:8080)"
}

cmd=${1:-quick}
shift || true
case $cmd in
  quick)
    machine
    t0=$SECONDS
    "$ASV" run --python=same --set-commit-hash="$(git rev-parse HEAD)" --machine "$MACHINE" \
      --show-stderr "${bench_args[@]}" "${extra[@]}"
    echo "benchmarks ran in $((SECONDS - t0)) s"
    keep
    publish ;;
  history)
    machine
    range=${1:-HEAD~5..HEAD}
    t0=$SECONDS
    "$ASV" run "$range" --machine "$MACHINE" --show-stderr "${bench_args[@]}" "${extra[@]}"
    echo "history $range ran in $((SECONDS - t0)) s"
    keep
    publish ;;
  merge)
    [[ $# -ge 1 ]] || { echo "usage: bash bench/run.sh merge DIR..." >&2; exit 2; }
    merge "$@"
    publish ;;
  publish)
    publish ;;
  *)
    echo "usage: bash bench/run.sh [quick | history [RANGE] | merge DIR... | publish]" >&2
    exit 2 ;;
esac
