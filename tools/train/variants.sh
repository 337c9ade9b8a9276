#!/usr/bin/env bash
# Trains several variants of the bundled model at once on one GPU (train.py --device "${DEVICE:-cuda}"), to
# choose settings before the reproducible CPU run. Each line of VARIANTS_FILE is
# "NAME ARGS...", appended to BASE_ARGS. Logs go to OUT_DIR/NAME.log; the "eval" lines hold the
# per-question-type accuracy. Usage: tools/train/variants.sh VARIANTS_FILE OUT_DIR [BASE_ARGS...]
set -uo pipefail
variants=$1 out=$2
shift 2
mkdir -p "$out"
pids=()
while read -r name args; do
  [[ -z "$name" || "$name" == \#* ]] && continue
  # shellcheck disable=SC2086
  PYTHONUNBUFFERED=1 python3 "$(dirname "$0")/train.py" --device "${DEVICE:-cuda}" --out "/tmp/variants/$name" "$@" $args \
    >"$out/$name.log" 2>&1 &
  pids+=($!)
done <"$variants"
for p in "${pids[@]}"; do wait "$p"; done
for f in "$out"/*.log; do
  echo "== $(basename "$f" .log): $(grep -c '^.*eval ' "$f") evals"
  grep 'eval ' "$f" | tail -2
  grep -E 'Error|error' "$f" | tail -3
done
