#!/usr/bin/env bash
# Runs the published neuralcore self-test and the PyTorch CP-ResNet benchmark on the same GPU, one after the
# other, and writes both outputs plus a side-by-side table. Needs no .NET: only the single-file build
# (`dotnet pwsh build.ps1 publish` -> out/publish/neuralcore), an NVIDIA driver, and Python with PyTorch (whose
# nvidia-* wheels also give neuralcore its NVRTC, cuBLAS and cuDNN).
#
# usage: benchmarks/peers/run_gpu_bench.sh [OUT_DIR]       (default: benchmarks/peers/results)
#   NEURALCORE_BIN   the neuralcore executable (default: out/publish/neuralcore)
#   PYTHON           the Python with PyTorch (default: python3)
#   ITERATIONS       timed iterations per benchmark in both (default: 30)
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-$here/results}"
bin="${NEURALCORE_BIN:-$root/out/publish/neuralcore}"
python="${PYTHON:-python3}"
iterations="${ITERATIONS:-30}"
mkdir -p "$out"

if [[ ! -x "$bin" ]]; then
  echo "error: $bin is missing or not executable; build it with 'dotnet tool restore && dotnet pwsh build.ps1 publish' (or set NEURALCORE_BIN)." >&2
  exit 1
fi

{ nvidia-smi || echo "nvidia-smi failed"; } > "$out/nvidia-smi.txt" 2>&1
"$bin" doctor > "$out/doctor.txt" 2>&1
echo "neuralcore doctor:"; tail -n 2 "$out/doctor.txt"

echo "neuralcore selftest (log: $out/neuralcore-selftest.log) ..."
"$bin" selftest --device cuda --iterations "$iterations" --json > "$out/neuralcore-selftest.json" 2> "$out/neuralcore-selftest.log"
nc_rc=$?
tail -n 1 "$out/neuralcore-selftest.log"

echo "PyTorch CP-ResNet (log: $out/pytorch.log) ..."
"$python" "$here/cpresnet_torch.py" --device cuda --iterations "$iterations" > "$out/pytorch.json" 2> "$out/pytorch.log"
pt_rc=$?

"$python" - "$out" <<'PY' | tee "$out/comparison.txt"
import json, os, sys
out = sys.argv[1]
def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        print(f"{name}: unreadable ({e})")
        return None
nc, pt = load("neuralcore-selftest.json"), load("pytorch.json")
if nc:
    env = nc["environment"]
    print(f"GPU {env['gpu']}; driver {env['driver']} (CUDA {env['driver_cuda']}); NVRTC {env['nvrtc']}; cuBLAS {env['cublas']}; cuDNN {env['cudnn']}")
    print(f"neuralcore self-test: {'PASSED' if nc['passed'] else 'FAILED'} ({nc['failed']} failed of {len(nc['checks'])} checks)")
if pt:
    print(f"PyTorch {pt['torch']} (CUDA {pt['cuda']}, cuDNN {pt['cudnn']}), TF32 {'on' if pt['tf32'] else 'off'}")
if nc and pt:
    # NeuralCore's own kernels (the default) and, when cuDNN is installed, its cuDNN path.
    ours = {(t["model"], t["input"], t["batch_size"], t["cudnn"]): t for t in nc["timings"]}
    print(f"{'model':<40} {'input':<14} {'batch':>5} {'train ms':>9} {'cuDNN':>7} {'torch':>7} {'ratio':>6} {'infer ms':>9} {'cuDNN':>7} {'torch':>7} {'ratio':>6}")
    for t in pt["timings"]:
        key = (t["model"], t["input"], t["batch_size"])
        o, c = ours.get(key + (False,)), ours.get(key + (True,))
        if o is None:
            continue
        cell = lambda r, k: f"{r[k]:>7.2f}" if r else f"{'-':>7}"
        print(f"{t['model']:<40} {t['input']:<14} {t['batch_size']:>5} {o['train_step_ms']:>9.2f} {cell(c, 'train_step_ms')} {t['train_step_ms']:>7.2f} "
              f"{o['train_step_ms'] / t['train_step_ms']:>6.2f} {o['inference_ms']:>9.2f} {cell(c, 'inference_ms')} {t['inference_ms']:>7.2f} {o['inference_ms'] / t['inference_ms']:>6.2f}")
    print("train/infer ms: NeuralCore's own kernels (default); cuDNN: NeuralCore with NEURALCORE_CUDNN=1; torch: PyTorch eager + cuDNN")
    print("ratio = NeuralCore (own kernels) / PyTorch median time (below 1: NeuralCore faster)")
PY

echo "outputs in $out"
if [[ $nc_rc -ne 0 || $pt_rc -ne 0 ]]; then
  echo "neuralcore selftest exited $nc_rc, PyTorch benchmark exited $pt_rc" >&2
  exit 1
fi
