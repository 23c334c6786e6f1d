#!/usr/bin/env bash
# GPU check of the engine backends (run on a machine with an NVIDIA GPU, from any directory):
# CUDA eager (dense, sparse) vs compiled vs aoti, plus tensorrt when torch_tensorrt imports,
# at 640x480 and 1280x1024, fp32 and fp16. Prints the table and the JSON report; the JSON also
# goes to $OUT/gpu_check.json when OUT is set (the device tool), else /tmp/gpu_check.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
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
report="${OUT:-/tmp}/gpu_check.json"
"$PY" -m rtfuse.cli bench --device cuda --size 640x480 --size 1280x1024 \
    --backend compiled --backend aoti --backend tensorrt --precision fp32 --precision fp16 \
    --repeat "${REPEAT:-30}" --workdir /tmp/rtfuse-gpu-engines --json "$report"
cat "$report"
