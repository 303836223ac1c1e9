#!/usr/bin/env python3
"""CP-ResNet (rho = 4, 2 blocks per stage) in PyTorch: the peer benchmark of `neuralcore selftest`.

Times a training step (zero grad, forward, cross-entropy, backward, Adam) and an inference pass (eval mode,
no autograd) with the same protocol as NeuralCore's self-test: random inputs, the GPU synchronised before each
clock reading, the median of --iterations runs after --warmup untimed ones. Prints one JSON object on stdout.

The architecture follows docs/models.md (the CP-ResNet NeuralCore builds); the script checks its parameter
counts against the known ones (131,316 / 59,804 / 47,349) before timing anything.
"""
import argparse
import json
import platform
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# (name, widths, parameters with 10 classes)
MODELS = {
    "big": ("32 64 128", 131_316),
    "small": ("24 48 72", 59_804),
    "pruned": ("19 38 76", 47_349),
}
NAMES = {"big": "CP-ResNet 32/64/128 (big)", "small": "CP-ResNet 24/48/72 (small)", "pruned": "CP-ResNet 19/38/76 (big pruned at 0.40)"}
# (name as NeuralCore prints it, sample shape, batch size)
INPUTS = {"mnist": ("MNIST 1x28x28", (1, 28, 28), 256), "mel": ("mel 1x128x100", (1, 128, 100), 64)}


def conv_bn(cin, cout, k):
    # Padding k // 3: 3 -> 1, 1 -> 0 (the seed's rule); every conv is bias-free.
    return nn.Conv2d(cin, cout, k, padding=k // 3, bias=False), nn.BatchNorm2d(cout)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, k1, k2):
        super().__init__()
        self.conv1, self.bn1 = conv_bn(cin, cout, k1)
        self.conv2, self.bn2 = conv_bn(cout, cout, k2)
        self.shortcut = nn.Sequential()
        if cin != cout:
            self.shortcut.add_module("conv", nn.Conv2d(cin, cout, 1, bias=False))
            self.shortcut.add_module("bn", nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x))


class CpResNet(nn.Module):
    """Stem, three stages of two blocks, 1x1 classifier head; state_dict keys match the seed (in_c.0.weight, ...)."""

    def __init__(self, widths, classes=10):
        super().__init__()
        c0, c1, c2 = widths
        self.in_c = nn.Sequential(nn.Conv2d(1, c0, 5, stride=2, padding=1, bias=False), nn.BatchNorm2d(c0), nn.Hardswish())
        self.stage1 = nn.Sequential()
        self.stage1.add_module("pool0", nn.MaxPool2d(2, 2))
        self.stage1.add_module("block1", BasicBlock(c0, c0, 3, 1))
        self.stage1.add_module("pool1", nn.MaxPool2d((2, 1), (2, 1)))
        self.stage1.add_module("block2", BasicBlock(c0, c0, 3, 3))
        self.stage1.add_module("pool2", nn.MaxPool2d((2, 1), (2, 1)))
        self.stage2 = nn.Sequential()
        self.stage2.add_module("block1", BasicBlock(c0, c1, 3, 1))
        self.stage2.add_module("block2", BasicBlock(c1, c1, 1, 1))
        self.stage3 = nn.Sequential()
        self.stage3.add_module("block1", BasicBlock(c1, c2, 1, 1))
        self.stage3.add_module("block2", BasicBlock(c2, c2, 1, 1))
        self.feed_forward = nn.Sequential(nn.Conv2d(c2, classes, 1, bias=False), nn.BatchNorm2d(classes), nn.AdaptiveAvgPool2d((1, 1)))
        self._init()

    def _init(self):
        # The seed's scheme: Kaiming-normal convs, zeroed head conv, per block a scaled conv1 and a zeroed conv2.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(self.feed_forward[0].weight)
        blocks = [m for m in self.modules() if isinstance(m, BasicBlock)]
        for b in blocks:
            n = b.conv1.kernel_size[0] * b.conv1.kernel_size[1] * b.conv1.out_channels
            nn.init.normal_(b.conv1.weight, 0, len(blocks) ** -0.5 * (2.0 / n) ** 0.5)
            nn.init.zeros_(b.conv2.weight)
            if len(b.shortcut) > 0:
                s = b.shortcut.conv
                nn.init.normal_(s.weight, 0, (2.0 / (s.kernel_size[0] * s.kernel_size[1] * s.out_channels)) ** 0.5)

    def forward(self, x):
        x = self.feed_forward(self.stage3(self.stage2(self.stage1(self.in_c(x)))))
        return x.squeeze(2).squeeze(2)


def median_ms(step, device, iterations, warmup):
    times = []
    for i in range(warmup + iterations):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def bench(model_key, input_key, device, iterations, warmup, profile_steps=0):
    widths, _ = MODELS[model_key]
    input_name, shape, batch = INPUTS[input_key]
    torch.manual_seed(1)
    model = CpResNet([int(w) for w in widths.split()]).to(device)
    x = torch.rand((batch, *shape), device=device)
    y = (torch.arange(batch, device=device) * 7) % 10
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=3e-3)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    peak = 0

    def train_step():
        nonlocal peak
        optimizer.zero_grad(set_to_none=False)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            # The most memory live at once in a step (the activations are freed during backward, so a reading after
            # it would miss them); NeuralCore's self-test reports the same peak.
            peak = max(peak, torch.cuda.max_memory_allocated(device))

    def infer():
        with torch.no_grad():
            model(x)

    model.train()
    train = median_ms(train_step, device, iterations, warmup)
    profile = train_profile(train_step, profile_steps) if profile_steps > 0 else None
    model.eval()
    inference = median_ms(infer, device, iterations, warmup)
    result = {
        "model": NAMES[model_key], "input": input_name, "batch_size": batch,
        "train_step_ms": train, "inference_ms": inference,
        "train_samples_per_s": batch / (train / 1000), "inference_samples_per_s": batch / (inference / 1000),
        "peak_memory_bytes": peak,
    }
    if profile is not None:
        result["train_profile"] = profile
    return result


def train_profile(train_step, steps):
    """Per op and input shapes, calls and milliseconds per training step (CPU time with and without the ops it calls),
    from torch.profiler over `steps` steps after the timed ones; compare_ops.py lines it up with NeuralCore's."""
    from torch.profiler import ProfilerActivity, profile

    # The first profiled steps of a process run slower (in one run 40 ms a step more for mel b64), so one step is
    # profiled and thrown away first.
    for count in (1, steps):
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            for _ in range(count):
                train_step()
    return [
        {"op": e.key, "shapes": e.input_shapes, "calls": e.count / steps,
         "total_ms": e.cpu_time_total / 1000 / steps, "self_ms": e.self_cpu_time_total / 1000 / steps}
        for e in prof.key_averages(group_by_input_shape=True)
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    parser.add_argument("--models", default="big,small,pruned", help="comma-separated: big, small, pruned")
    parser.add_argument("--inputs", default="mnist,mel", help="comma-separated: mnist (batch 256), mel (batch 64)")
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--tf32", action="store_true", help="allow TF32 in cuBLAS and cuDNN (default off: exact FP32, as NeuralCore)")
    parser.add_argument("--cudnn-benchmark", action="store_true", help="let cuDNN time its algorithms (torch.backends.cudnn.benchmark)")
    parser.add_argument("--profile", type=int, default=0, metavar="STEPS",
                        help="also profile STEPS training steps per cell (torch.profiler, CPU time per op and input shapes) into the JSON's train_profile")
    args = parser.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("error: PyTorch sees no CUDA GPU (torch.cuda.is_available() is False); check nvidia-smi, or pass --device cpu.")
    # NOTE: PyTorch allows TF32 in cuDNN convolutions by default; NeuralCore's default is exact FP32, so match it.
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    torch.backends.cudnn.benchmark = args.cudnn_benchmark

    for key, (widths, expected) in MODELS.items():
        count = sum(p.numel() for p in CpResNet([int(w) for w in widths.split()]).parameters())
        if count != expected:
            sys.exit(f"error: CP-ResNet {widths} has {count:,} parameters here, expected {expected:,}: the architecture drifted.")

    timings = []
    for model_key in args.models.split(","):
        for input_key in args.inputs.split(","):
            timings.append(bench(model_key.strip(), input_key.strip(), device, args.iterations, args.warmup, args.profile))
            t = timings[-1]
            print(f"{t['model']:<40} {t['input']:<14} b{t['batch_size']:<4} train {t['train_step_ms']:8.2f} ms  infer {t['inference_ms']:8.2f} ms",
                  file=sys.stderr)

    print(json.dumps({
        "framework": "pytorch",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "tf32": args.tf32,
        "cudnn_benchmark": args.cudnn_benchmark,
        "iterations": args.iterations,
        "warmup": args.warmup,
        "python": platform.python_version(),
        "timings": timings,
    }, indent=2))


if __name__ == "__main__":
    main()
