#!/usr/bin/env python3
"""Lines up a NeuralCore training step's per-op profile with PyTorch's, convolution by convolution.

usage: compare_ops.py TORCH_JSON NEURALCORE_JSON

TORCH_JSON is the output of `cpresnet_torch.py --device cpu --profile STEPS` (one or more cells); NEURALCORE_JSON the
output of `neuralcore bench --mode train --profile --json` for one cell (its widths, input shape and batch size pick
the matching PyTorch cell). Prints, per convolution (by input and output channels, kernel and input size), the
milliseconds per step of its forward and of its backward (input and weight gradients together) on both sides, then
the sums of the convolutions and of everything else. NeuralCore's lines are its training plan's steps, whose
fusions move work between ops: a stem whose batch norm's input gradient it makes itself counts that work in its
backward, and its batch norms hold their activations, additions and pools. PyTorch's are the CPU time of
aten::convolution and aten::convolution_backward with what they call; "everything else" leaves out the optimizer
(Optimizer.zero_grad and Optimizer.step), which NeuralCore's profile does not time.
"""
import json
import re
import sys
from collections import defaultdict

LABEL = re.compile(r"conv (\d+)->(\d+) (\d+)x(\d+)/\d+ on (\d+)x(\d+)(, backward)?$")


def neuralcore_convs(profile):
    """{(C, K, R, S, H, W): [forward ms, backward ms, calls]} per step, and the ms of the other steps."""
    convs, other = defaultdict(lambda: [0.0, 0.0, 0]), 0.0
    for entry in profile:
        m = LABEL.match(entry["step"])
        if m is None:
            other += entry["mean_ms"]
            continue
        key = tuple(int(g) for g in m.groups()[:6])
        if m.group(7):
            convs[key][1] += entry["mean_ms"]
        else:
            convs[key][0] += entry["mean_ms"]
            convs[key][2] += 1
    return convs, other


def torch_convs(profile):
    """The same for PyTorch's train_profile: aten::convolution(_backward) by their tensors' shapes."""
    convs, all_self, excluded = defaultdict(lambda: [0.0, 0.0, 0]), 0.0, 0.0
    for e in profile:
        all_self += e["self_ms"]
        shapes = e["shapes"]
        if e["op"] == "aten::convolution" and len(shapes) >= 2 and len(shapes[0]) == 4 and len(shapes[1]) == 4:
            (_, c, h, w), (k, _, r, s) = shapes[0], shapes[1]
            convs[(c, k, r, s, h, w)][0] += e["total_ms"]
            convs[(c, k, r, s, h, w)][2] += round(e["calls"])
            excluded += e["total_ms"]
        elif e["op"] == "aten::convolution_backward" and len(shapes) >= 3 and len(shapes[1]) == 4 and len(shapes[2]) == 4:
            (_, c, h, w), (k, _, r, s) = shapes[1], shapes[2]
            convs[(c, k, r, s, h, w)][1] += e["total_ms"]
            excluded += e["total_ms"]
        elif e["op"].startswith("Optimizer.zero_grad") or e["op"].startswith("Optimizer.step"):
            excluded += e["total_ms"]
    return convs, all_self - excluded


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as e:
        sys.exit(f"error: cannot read {path}: {e.strerror}")
    except json.JSONDecodeError as e:
        sys.exit(f"error: {path} is not JSON ({e}); give the JSON that cpresnet_torch.py or `neuralcore bench --json` printed.")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[2])
    torch, ours = (read_json(path) for path in sys.argv[1:3])
    if ours.get("mode") != "train" or not ours.get("profile"):
        sys.exit(f"error: {sys.argv[2]} holds no training profile; run `neuralcore bench --mode train --profile --json`.")
    widths = "/".join(str(w) for w in ours["channel_widths"])
    shape = "x".join(str(d) for d in ours["input_shape"])
    cell = next((t for t in torch["timings"] if t["model"].split()[1] == widths and t["input"].endswith(shape)
                 and t["batch_size"] == ours["batch_size"]), None)
    if cell is None or "train_profile" not in cell:
        sys.exit(f"error: {sys.argv[1]} has no profiled cell for CP-ResNet {widths} on {shape} at batch {ours['batch_size']};"
                 " run cpresnet_torch.py with --profile STEPS and that model and input.")
    mine, mine_other = neuralcore_convs(ours["profile"])
    theirs, theirs_other = torch_convs(cell["train_profile"])

    print(f"CP-ResNet {widths}, {shape} at batch {ours['batch_size']}, training step: ms per step "
          f"(NeuralCore {ours['threads']} threads; PyTorch {torch['torch']})")
    print(f"{'convolution':<28} {'calls':>5} {'forward':>8} {'torch':>8} {'speed-up':>8} {'backward':>9} {'torch':>8} {'speed-up':>8}")
    sums = [0.0, 0.0, 0.0, 0.0]
    for key in mine:
        c, k, r, s, h, w = key
        a, b = mine[key], theirs.get(key, [float("nan"), float("nan"), 0])
        sums = [sums[0] + a[0], sums[1] + b[0], sums[2] + a[1], sums[3] + b[1]]
        print(f"{f'{c}->{k} {r}x{s} on {h}x{w}':<28} {a[2]:>5} {a[0]:>8.3f} {b[0]:>8.3f} {b[0] / a[0]:>7.2f}x {a[1]:>9.3f} {b[1]:>8.3f} {b[1] / a[1]:>7.2f}x")
    missing = sorted(set(theirs) - set(mine))
    if missing:
        print(f"PyTorch convolutions with no NeuralCore line: {missing}")
    print(f"{'all convolutions':<28} {'':>5} {sums[0]:>8.2f} {sums[1]:>8.2f} {sums[1] / sums[0]:>7.2f}x {sums[2]:>9.2f} {sums[3]:>8.2f} {sums[3] / sums[2]:>7.2f}x")
    print(f"{'everything else':<28} {'':>5} {mine_other:>8.2f} {theirs_other:>8.2f} {theirs_other / mine_other:>7.2f}x"
          "   (batch norms, activations, pools, additions, loss; forward and backward)")


if __name__ == "__main__":
    main()
