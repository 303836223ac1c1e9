#!/usr/bin/env python3
"""Lists NeuralCore's CPU kernels whose innermost multiply-add loops move vectors to or from the stack.

Runs `neuralcore bench` on the inference and training cells of the pruned and the big CP-ResNet with the JIT's
disassembly on (DOTNET_JitDisasm), then reads each method's final code (Tier1 or full opts): every innermost loop that
holds 4 or more vector multiply-adds and also stores 256- or 512-bit vectors to the stack frame, or loads them from it, is
listed with its counts. In a kernel that holds its accumulators in registers such traffic is a spill: the JIT keeps a
value in memory that the loop updates, usually because the value is still live at a call after the loop (no vector
register survives a call on x64 Linux). See docs/benchmarks.md, step 121.

usage: benchmarks/tools/jit_spills.py [NEURALCORE_BIN] [--avx2] [--keep DIR]
  NEURALCORE_BIN  the neuralcore executable (default: out/publish/neuralcore)
  --avx2          run the cells a second time with AVX-512 off (DOTNET_EnableAVX512=0): the 256-bit kernels
  --keep DIR      keep the disassembly files in DIR (default: a temporary folder, removed after)
Exit status: 0 when no loop spills, 1 when some do, 2 on a usage or run error.
"""
import os
import re
import subprocess
import sys
import tempfile

CELLS = [
    ("1,28,28", 256, "infer"), ("1,28,28", 1, "infer"), ("1,128,100", 64, "infer"), ("1,128,100", 1, "infer"),
    ("1,28,28", 256, "train"), ("1,128,100", 64, "train"),
]
MAX_LOOP_LINES = 200
LABEL = re.compile(r"^\s*(G_M\d+_IG\d+):\s*;;\s*offset=0x([0-9A-Fa-f]+)")
JUMP = re.compile(r"\bj\w+\s+(?:SHORT\s+)?(G_M\d+_IG\d+)")
STACK_STORE = re.compile(r"vmovup[sd]\s+[yz]mmword ptr \[(?:rbp|rsp)")
STACK_LOAD = re.compile(r"(?:vmovup[sd]\s+[yz]mm\d+, [yz]mmword ptr \[(?:rbp|rsp)|vfmadd\w+\s+[yz]mm\d+, [yz]mm\d+, [yz]mmword ptr \[(?:rbp|rsp))")


def spilling_loops(text, garbled=None):
    """(method, multiply-adds, stack stores, stack loads) for each final-tier method's worst innermost loop.

    The JIT compiles on several threads at once and their listings can interleave line by line; a listing whose block
    offsets do not rise is skipped and, when `garbled` is a list, its method appended to it.
    """
    found = {}
    for listing in text.split("; Assembly listing for method ")[1:]:
        head = listing.split("\n", 1)[0]
        if not head.startswith("NeuralCore.") or any(tier in head for tier in ("Tier0", "Instrumented", "OSR")):
            continue
        lines = listing.split("\n")
        offsets = [(i, m.group(1), int(m.group(2), 16)) for i, line in enumerate(lines) if (m := LABEL.match(line))]
        if any(b[2] < a[2] for a, b in zip(offsets, offsets[1:])):
            if garbled is not None:
                garbled.append(head)
            continue
        labels = {name: i for i, name, _ in offsets}
        loops = [(labels[m.group(1)], i) for i, line in enumerate(lines)
                 if (m := JUMP.search(line)) and m.group(1) in labels and labels[m.group(1)] < i]
        for start, end in loops:
            # Innermost loops of a kernel's size: a backward jump from a cold block placed after the method's body
            # spans much of it and is no loop.
            if end - start > MAX_LOOP_LINES or any(start <= s and e <= end and (s, e) != (start, end) for s, e in loops):
                continue
            body = lines[start:end + 1]
            fmas = sum("vfmadd" in line for line in body)
            stores = sum(bool(STACK_STORE.search(line)) for line in body)
            loads = sum(bool(STACK_LOAD.search(line)) for line in body)
            if fmas >= 4 and stores + loads > 0 and fmas > found.get(head, (0,))[0]:
                found[head] = (fmas, stores, loads)
    return found


def main(argv):
    args = list(argv)
    keep = None
    if "--keep" in args:
        i = args.index("--keep")
        if i + 1 >= len(args):
            print("--keep needs a folder", file=sys.stderr)
            return 2
        keep = args[i + 1]
        del args[i:i + 2]
    avx2 = "--avx2" in args
    if avx2:
        args.remove("--avx2")
    binary = args[0] if args else os.path.join("out", "publish", "neuralcore")
    if not os.access(binary, os.X_OK):
        print(f"error: {binary} is missing or not executable (build it with 'pwsh build.ps1 publish')", file=sys.stderr)
        return 2
    folder = keep or tempfile.mkdtemp(prefix="jit_spills_")
    os.makedirs(folder, exist_ok=True)
    found = {}
    garbled = []
    for (shape, batch, mode), isa in [(cell, isa) for isa in (["avx512", "avx2"] if avx2 else ["avx512"]) for cell in CELLS]:
        out = os.path.join(folder, f"{mode}_{shape.replace(',', 'x')}_b{batch}_{isa}.txt")
        env = dict(os.environ, DOTNET_JitDisasm="*", DOTNET_JitStdOutFile=out)
        if isa == "avx2":
            env["DOTNET_EnableAVX512"] = "0"
        iterations = "300" if batch == 1 else "10"
        print(f"{mode} {shape} batch {batch} ({isa}) ...", flush=True)
        run = subprocess.run([binary, "bench", "--channel-width", "19 38 76", "--baseline", "32 64 128", "--input-shape", shape,
                              "--batch-size", str(batch), "--mode", mode, "--iterations", iterations],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if run.returncode != 0 or not os.path.exists(out):
            print(f"error: bench failed ({run.returncode}): {run.stderr.strip()[-500:]}", file=sys.stderr)
            return 2
        with open(out, errors="replace") as f:
            for method, counts in spilling_loops(f.read(), garbled).items():
                if counts[0] > found.get(method, (0,))[0]:
                    found[method] = counts
        if keep is None:
            os.remove(out)
    if keep is None:
        os.rmdir(folder)
    if garbled:
        print(f"{len(garbled)} listings skipped, interleaved with others by the JIT's threads (run again to see them)")
    if not found:
        print("no innermost multiply-add loop stores or loads vectors on the stack")
        return 0
    print("innermost loops with multiply-adds and stack traffic (multiply-adds, stores, loads):")
    for method, (fmas, stores, loads) in sorted(found.items(), key=lambda kv: -kv[1][0]):
        print(f"  {fmas:3d} {stores:3d} {loads:3d}  {method}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
