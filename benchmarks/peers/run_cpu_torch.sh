#!/usr/bin/env bash
# NeuralCore's CPU backend against PyTorch on the CPU (libtorch with oneDNN, the engine TorchSharp wraps), both on
# the same two physical cores, in alternating rounds: PyTorch's six cells, then NeuralCore's, ROUNDS times. Writes
# each program's outputs and a side-by-side table of medians. Needs the single-file build (`dotnet pwsh build.ps1 publish`
# -> out/publish/neuralcore) and Python with PyTorch; no GPU and no .NET.
#
# usage: benchmarks/peers/run_cpu_torch.sh [OUT_DIR]       (default: benchmarks/peers/results-cpu)
#   NEURALCORE_BIN   the neuralcore executable (default: out/publish/neuralcore)
#   PYTHON           the Python with PyTorch (default: python3)
#   ITERATIONS       timed iterations per cell in both (default: 20; warm-up 5)
#   ROUNDS           rounds of both programs (default: 3)
#   CPUS             the two CPUs to run on (default: the first two with different core ids)
#   PROFILE          1: also profile each training step on both sides and line them up per convolution
#                    (compare_ops.py -> ops-<widths>-<input>.txt)
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-$here/results-cpu}"
bin="${NEURALCORE_BIN:-$root/out/publish/neuralcore}"
python="${PYTHON:-python3}"
iterations="${ITERATIONS:-20}"
rounds="${ROUNDS:-3}"
cpus="${CPUS:-$(lscpu -p=CPU,CORE | grep -v '^#' | sort -t, -k2,2n -u | head -n 2 | cut -d, -f1 | paste -sd,)}"
mkdir -p "$out"

if [[ ! -x "$bin" ]]; then
  echo "error: $bin is missing or not executable; build it with 'dotnet tool restore && dotnet pwsh build.ps1 publish' (or set NEURALCORE_BIN)." >&2
  exit 1
fi
lscpu > "$out/lscpu.txt"
echo "CPUs $cpus ($(grep -m1 'Model name' "$out/lscpu.txt" | sed 's/.*: *//')), $iterations iterations, $rounds rounds"

failed=0
for round in $(seq 1 "$rounds"); do
  echo "round $round: PyTorch"
  OMP_NUM_THREADS=2 taskset -c "$cpus" "$python" "$here/cpresnet_torch.py" --device cpu --iterations "$iterations" \
    > "$out/torch-$round.json" 2> "$out/torch-$round.log" || failed=1
  echo "round $round: NeuralCore"
  for widths in "32 64 128" "24 48 72" "19 38 76"; do
    for input in "1,28,28 256" "1,128,100 64"; do
      read -r shape batch <<< "$input"
      for mode in train infer; do
        taskset -c "$cpus" "$bin" bench --model cpresnet --channel-width "$widths" --input-shape "$shape" \
          --batch-size "$batch" --mode "$mode" --threads 2 --iterations "$iterations" --warmup 5 --json \
          > "$out/neuralcore-$round-${widths// /_}-${shape//,/x}-$mode.json" 2>> "$out/neuralcore-$round.log" || failed=1
      done
    done
  done
done

"$python" - "$out" "$rounds" <<'PY' | tee "$out/comparison.txt"
import json, os, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
inputs = {"MNIST": "1x28x28", "mel": "1x128x100"}
def ours(round_, w, shape, mode):
    with open(os.path.join(out, f"neuralcore-{round_}-{w.replace(' ', '_')}-{shape}-{mode}.json")) as f:
        return json.load(f)["median_ms"]
torch = [json.load(open(os.path.join(out, f"torch-{r}.json"))) for r in range(1, rounds + 1)]
print(f"PyTorch {torch[0]['torch']} on the CPU; medians over {rounds} rounds of each round's median (ms)")
print(f"{'model':<40} {'input':<16} {'batch':>5} {'train':>8} {'torch':>8} {'speed-up':>11} {'infer':>8} {'torch':>8} {'speed-up':>11}")
for i, t in enumerate(torch[0]["timings"]):
    w = t["model"].split()[1].replace("/", " ")  # "CP-ResNet 32/64/128 (big)" -> "32 64 128"
    shape = next(v for k, v in inputs.items() if t["input"].startswith(k))
    row = []
    for mode, key in (("train", "train_step_ms"), ("infer", "inference_ms")):
        mine = [ours(r, w, shape, mode) for r in range(1, rounds + 1)]
        theirs = [torch[r]["timings"][i][key] for r in range(rounds)]
        ratios = [b / a for a, b in zip(mine, theirs)]
        row += [statistics.median(mine), statistics.median(theirs), f"{min(ratios):.2f}-{max(ratios):.2f}x"]
    print(f"{t['model']:<40} {t['input']:<16} {t['batch_size']:>5} {row[0]:>8.2f} {row[1]:>8.2f} {row[2]:>11} {row[3]:>8.2f} {row[4]:>8.2f} {row[5]:>11}")
print("speed-up = PyTorch's time / NeuralCore's, per round (min-max); inference: NeuralCore's compiled plan, PyTorch eager under no_grad")
PY
[[ ${PIPESTATUS[0]} -eq 0 ]] || failed=1

if [[ "${PROFILE:-0}" == 1 ]]; then
  # Per-op profiles of the training steps: PyTorch's (torch.profiler) and NeuralCore's (`bench --profile`), lined
  # up convolution by convolution in ops-<widths>-<input>.txt.
  echo "profiles: PyTorch"
  OMP_NUM_THREADS=2 taskset -c "$cpus" "$python" "$here/cpresnet_torch.py" --device cpu --iterations 5 --profile 5 \
    > "$out/torch-profile.json" 2> "$out/torch-profile.log" || failed=1
  echo "profiles: NeuralCore"
  for widths in "32 64 128" "24 48 72" "19 38 76"; do
    for input in "1,28,28 256" "1,128,100 64"; do
      read -r shape batch <<< "$input"
      cell="${widths// /_}-${shape//,/x}"
      taskset -c "$cpus" "$bin" bench --model cpresnet --channel-width "$widths" --input-shape "$shape" --batch-size "$batch" \
        --mode train --threads 2 --iterations "$iterations" --warmup 5 --profile --json \
        > "$out/neuralcore-profile-$cell.json" 2>> "$out/neuralcore-profile.log" || failed=1
      "$python" "$here/compare_ops.py" "$out/torch-profile.json" "$out/neuralcore-profile-$cell.json" > "$out/ops-$cell.txt" || failed=1
    done
  done
fi
echo "outputs in $out"
exit $failed
