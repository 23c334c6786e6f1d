#!/usr/bin/env bash
# GPU check (run on a machine with an NVIDIA GPU, from any directory): the CUDA engine tests,
# then CUDA eager (dense, sparse) vs compiled vs aoti, plus tensorrt when torch_tensorrt imports,
# at 640x480 and 1280x1024, fp32 and fp16. Prints the tables; the JSON reports and logs go to
# $OUT when set (the device tool), else /tmp. RTFUSE_SHARED_DATA must hold msrs/{vi,ir}/00004N.png
# for the tests (a two-image subset is enough).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT_DIR=${OUT:-/tmp}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi unavailable"
"$PY" - <<'PY'
import torch
print(f"torch {torch.__version__}, cuda {torch.version.cuda}, device {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'NONE'}")
try:
    import torch_tensorrt
    print(f"torch_tensorrt {torch_tensorrt.__version__}")
except ImportError:
    print("torch_tensorrt not installed: tensorrt rows are skipped")
PY
timeout "${TEST_TIMEOUT:-240}" "$PY" -m pytest -q -p no:cacheprovider -rs tests/test_engine_cuda.py 2>&1 | tee "$OUT_DIR/gpu_tests.log"
status=$?
for size in 640x480 1280x1024; do
    report="$OUT_DIR/gpu_bench_$size.json"
    timeout "${BENCH_TIMEOUT:-200}" "$PY" -m rtfuse.cli bench --device cuda --size "$size" \
        --backend compiled --backend aoti --backend tensorrt --precision fp32 --precision fp16 \
        --repeat "${REPEAT:-50}" --workdir /tmp/rtfuse-gpu-engines --json "$report" || status=1
done
exit $status
