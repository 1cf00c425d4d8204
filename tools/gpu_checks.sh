#!/usr/bin/env bash
# One prepared run on a lent GPU machine (issue 15 "GPU", issue 10 section 6).
#
#   OUT=/some/dir bash tools/gpu_checks.sh        # from the repository root
#
# The machine is bare: python3 with torch, triton, numpy and pytest, no internet, the working
# tree copied, no `pip install -e .`, so modules are found through PYTHONPATH=. Every step is
# guarded (set +e, a timeout each; about 5 minutes in all at worst, about 2.5 expected) and its exit code logged,
# so one failure does not stop the rest. Everything lands in $OUT (at most 6 files):
#   gpu_checks.log      environment, each step's command, exit code and duration
#   triton_tests.log    tests/test_triton_dropout.py with the COMPILED kernels on the GPU
#                       (DROPOUTLIB_TRITON_DEVICE=cuda): masks word for word against the NumPy
#                       Philox4x32 reference, forced ties, backward regeneration, bf16 rounding
#   bench_fast.log      python -m benchmarks.bench_fast --gpu (checks, tables, targets)
#   fast_gpu.json       its results: commit it as benchmarks/results/fast_gpu.json
#   cuda_facts.log      python -m benchmarks.cuda_facts (only if that module exists)
#   cuda_facts.json     its results (chapter 6's CUDA statements)
#   <name>.json/.log    each script tools/gpu/<name>.py (issue 14's CUDA statements of chapters 19
#                       and 20), run as `python tools/gpu/<name>.py` with OUT set; commit each JSON
#                       as dropoutlib/results/<name>.json
#
# STEPS (default "triton bench facts scripts") picks the steps, e.g. STEPS=scripts runs only the
# tools/gpu/ scripts (device time is scarce: rerun only what changed).
set +e
OUT="${OUT:-gpu_out}"
mkdir -p "$OUT"
export OUT
LOG="$OUT/gpu_checks.log"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
PY="${PYTHON:-python3}"
unset TRITON_INTERPRET # the compiled kernels, not the interpreter

step() { # step NAME TIMEOUT_S LOGFILE COMMAND...
    local name="$1" limit="$2" logfile="$3"
    shift 3
    local start=$SECONDS
    echo "== $name: $*" >>"$LOG"
    timeout --kill-after=10 "$limit" "$@" >"$logfile" 2>&1
    local rc=$?
    echo "== $name: exit $rc after $((SECONDS - start)) s (limit $limit s)" >>"$LOG"
    return $rc
}

{
    echo "gpu_checks.sh, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "git: $(git rev-parse HEAD 2>/dev/null || echo 'no git metadata')"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem \
        --format=csv 2>&1
    "$PY" -c 'import sys, numpy, torch, triton, pytest
print("python", sys.version.split()[0], "numpy", numpy.__version__, "torch", torch.__version__,
      "triton", triton.__version__, "pytest", pytest.__version__, "cuda", torch.version.cuda,
      "available", torch.cuda.is_available())' 2>&1
} >"$LOG"

STEPS="${STEPS:-triton bench facts scripts}"
want() { [[ " $STEPS " == *" $1 "* ]]; }
rc_tests=skipped rc_bench=skipped rc_facts=skipped rc_scripts=skipped

if want triton; then
DROPOUTLIB_TRITON_DEVICE=cuda step triton_tests 140 "$OUT/triton_tests.log" \
    "$PY" -m pytest -q -rs -p no:cacheprovider -o addopts= tests/test_triton_dropout.py
rc_tests=$?
fi

if want bench; then
step bench_fast 130 "$OUT/bench_fast.log" "$PY" -m benchmarks.bench_fast --gpu --out "$OUT"
rc_bench=$?
fi

if want facts && [ -f benchmarks/cuda_facts.py ]; then
    step cuda_facts 45 "$OUT/cuda_facts.log" \
        "$PY" -m benchmarks.cuda_facts --out "$OUT/cuda_facts.json"
    rc_facts=$?
fi

if want scripts; then
    rc_scripts=0
    for script in tools/gpu/*.py; do
        [ -f "$script" ] || continue
        name=$(basename "$script" .py)
        step "$name" 150 "$OUT/$name.log" "$PY" "$script"
        rc=$?
        echo "$name: exit $rc"
        [ "$rc" = 0 ] || rc_scripts=$rc
    done
fi

echo "SUMMARY triton_tests=$rc_tests bench_fast=$rc_bench cuda_facts=$rc_facts scripts=$rc_scripts" \
    | tee -a "$LOG"
tail -n 3 "$OUT/triton_tests.log" 2>/dev/null
ok() { [ "$1" = 0 ] || [ "$1" = skipped ]; }
ok "$rc_tests" && ok "$rc_bench" && ok "$rc_facts" && ok "$rc_scripts"
