"""Speed and peak memory of our compiled box ops (retinadet.ops) against torchvision's, in one run.

Inputs (seeded by ``--seed``): boxes with their top-left corner uniform in a 1333 x 800 image and
width and height uniform in 10-300 px, scores uniform in [0, 1), category ids uniform in [0, 80).
Cases (``--cases`` picks groups):

- nms: N = 1000, 5000, 20000 boxes, IoU threshold 0.5; torchvision.ops.nms against ops.nms.
- batched_nms: 10,000 boxes in 80 categories, threshold 0.5; torchvision.ops.batched_nms (its
  per-category path at this N) against ops.batched_nms.
- box_iou: 1000 x 1000, 120,000 x 20 and 120,000 x 500; torchvision.ops.box_iou against ops.box_iou.
- match_max_iou: the anchors of our DefaultAnchorGenerator (default config: P3-P7, 9 per cell) for
  a 1333 x 800 image padded to 1344 x 800 (201,600 anchors), against 3,000 random gt boxes.
  ops.match_max_iou is compared with the naive way, ``iou = box_iou(gt, anchors)``,
  ``iou.max(0)``, ``iou.max(1)``. torchvision's box_iou would need about 20 GB of temporaries at
  3,000 x 201,600, so the full-size baseline runs the naive way with our compiled box_iou (no
  temporaries, a 2.4 GB matrix), and a second row runs it with torchvision's box_iou on every
  10th anchor (20,160 anchors); ops.match_max_iou runs on the same anchors in each row.

Before timing, each case checks that both sides give the same result (the same kept indices for
NMS; IoUs within 1e-6) and says so in the "same work" line.

Method. The check above is the first of ``--warmup`` untimed calls of each side; then
``--repeat`` repetitions each time torchvision's call and ours, alternating which goes first so
that a drift in background load hits both alike. Times are medians, the speed-up is torchvision's
median / ours, and its spread is the 25th-75th percentile range of the per-repetition ratios. On
CUDA every call is synchronised.

Peak extra memory. CPU: each (case, side) runs once more in a fresh child process (spawn), which
builds the inputs, calls the op on their first 8 rows (thread pool and other one-time set-up),
starts a new peak (``retinadet.benchmark.memory.PeakMemory``: glibc's malloc_trim hands freed heap
memory back, then the kernel's peak-RSS mark is reset through Linux /proc/self/clear_refs), reads
it, calls the op and reads it again; the rise, in MiB, includes the op's output (shown in its own
column). The mark read is VmHWM from /proc/self/status, not ru_maxrss: in a spawned child ru_maxrss
never drops below the parent's peak (measured: it read the parent's 1.5 GB in a child using
0.5 GB). With ``--quick`` a single child measures every case (ours first), a smoke test of the
method: memory freed by one call can hide the next one's. CUDA: torch.cuda.max_memory_allocated
during the call minus the memory allocated before it.

Usage::

    python benchmarks/ops.py                  # full sizes, about 6 minutes on 2 idle cores
    python benchmarks/ops.py --quick          # smoke test: small sizes, seconds
    python benchmarks/ops.py --cases nms,box_iou --repeat 20 --threads 4
    python benchmarks/ops.py --device cuda
"""
import argparse
import gc
import math
import multiprocessing
import os
import sys
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence, Tuple

import torch
import torchvision
from torch import Tensor

from retinadet import ops
from retinadet.benchmark.memory import MIB, PeakMemory
from retinadet.benchmark.timing import quantile, time_in_turns
from retinadet.config import get_cfg
from retinadet.modeling.anchor_generators.default import DefaultAnchorGenerator
from retinadet.modeling.shape_spec import ShapeSpec

IMAGE_WIDTH, IMAGE_HEIGHT = 1333, 800
SIZE_DIVISIBILITY = 32  # the backbone's: images are padded to a multiple of it before the anchors
NUM_CLASSES = 80
IOU_THRESHOLD = 0.5
GROUPS = ("nms", "batched_nms", "box_iou", "match_max_iou")
GOALS = (
    "Goals (CPU): nms >= 2x faster than torchvision at N >= 5000; batched_nms >= 2x; box_iou >= 3x "
    "with no memory beyond its output; match_max_iou >= 10x with O(N + M) memory. "
    "On a GPU: at least torchvision's speed."
)


@dataclass
class Case:
    """One comparison: both sides take the same tensors, ``make_inputs(device)`` (seeded)."""

    name: str
    group: str
    make_inputs: Callable[[torch.device], Tuple[Tensor, ...]]
    reference: Callable[..., object]
    ours: Callable[..., object]
    compare: Callable[[object, object], str]  # raises when the results differ; else a short note


def random_boxes(n: int, generator: torch.Generator) -> Tensor:
    """``(n, 4)`` xyxy: top-left uniform in the image, width and height uniform in 10-300 px."""
    corner = torch.rand(n, 2, generator=generator) * torch.tensor([float(IMAGE_WIDTH), float(IMAGE_HEIGHT)])
    size = torch.rand(n, 2, generator=generator) * 290.0 + 10.0
    return torch.cat([corner, corner + size], dim=1)


def retinanet_anchors(height: int, width: int) -> Tensor:
    """``(R, 4)`` anchors of the default DefaultAnchorGenerator (P3-P7) for one padded image."""
    strides = [8, 16, 32, 64, 128]
    generator = DefaultAnchorGenerator(
        **DefaultAnchorGenerator.from_config(get_cfg(), [ShapeSpec(channels=256, stride=s) for s in strides])
    )
    padded = [int(math.ceil(side / SIZE_DIVISIBILITY) * SIZE_DIVISIBILITY) for side in (height, width)]
    # Only the sizes of the feature maps matter; zero channels keep them empty.
    features = [torch.empty(1, 0, math.ceil(padded[0] / s), math.ceil(padded[1] / s)) for s in strides]
    return torch.cat(generator(features, tuple(padded)))


def _same_indices(expected: Tensor, actual: Tensor) -> str:
    if not torch.equal(expected.cpu(), actual.cpu()):
        raise RuntimeError(f"Kept indices differ: torchvision keeps {len(expected)}, ours {len(actual)}.")
    return f"same {len(actual)} kept"


def _close_iou(expected: Tensor, actual: Tensor) -> str:
    diff = (expected - actual).abs().max().item() if expected.numel() else 0.0
    if expected.shape != actual.shape or diff > 1e-6:
        shapes = f"{tuple(expected.shape)}, {tuple(actual.shape)}"
        raise RuntimeError(f"IoUs differ: shapes {shapes}; max diff {diff}.")
    return f"max |diff| {diff:.0e}"


def _close_match(expected, actual) -> str:
    (max_e, arg_e, best_e), (max_a, arg_a, best_a) = expected, actual
    diff = max((max_e - max_a).abs().max().item(), (best_e - best_a).abs().max().item())
    if diff > 1e-6:
        raise RuntimeError(f"match_max_iou differs from box_iou + max by {diff}.")
    # Float rounding can reorder near-ties between gt boxes: counted, not an error.
    moved = int(((arg_e != arg_a) & (max_a > 0)).sum())
    return f"max |diff| {diff:.0e}, argmax differs at {moved} anchors"


def naive_match(box_iou: Callable[[Tensor, Tensor], Tensor]) -> Callable[[Tensor, Tensor], tuple]:
    """match_max_iou the naive way with ``box_iou``: the whole (M, N) IoU matrix, then two max."""

    def match(anchors: Tensor, gt_boxes: Tensor) -> tuple:
        iou = box_iou(gt_boxes, anchors)
        max_iou, argmax = iou.max(dim=0)
        return max_iou, argmax, iou.max(dim=1).values

    return match


def _seeded(seed: int, build: Callable[[torch.Generator], Tuple[Tensor, ...]]):
    """``make_inputs``: ``build`` on the CPU with a fresh generator, then moved to the device."""

    def make_inputs(device: torch.device) -> Tuple[Tensor, ...]:
        return tuple(t.to(device) for t in build(torch.Generator().manual_seed(seed)))

    return make_inputs


def _scored(n: int):
    return lambda g: (random_boxes(n, g), torch.rand(n, generator=g))


def _categorised(n: int):
    return lambda g: (
        random_boxes(n, g), torch.rand(n, generator=g), torch.randint(0, NUM_CLASSES, (n,), generator=g)
    )


def _two_sets(n: int, m: int):
    return lambda g: (random_boxes(n, g), random_boxes(m, g))


def _anchors_and_gt(image: Tuple[int, int], step: int, num_gt: int):
    return lambda g: (retinanet_anchors(*image)[::step].contiguous(), random_boxes(num_gt, g))


def build_cases(quick: bool, seed: int) -> List[Case]:
    """Every case, in table order; ``quick`` shrinks the sizes for a smoke test."""
    nms_sizes = (1000, 3000) if quick else (1000, 5000, 20000)
    batched_size = 2000 if quick else 10000  # > 1000: torchvision's per-category path on the CPU too
    iou_sizes = ((1000, 1000), (120000, 20), (120000, 500))
    if quick:
        iou_sizes = ((1000, 1000), (20000, 20), (5000, 100))
    image, num_gt = ((200, 320), 100) if quick else ((IMAGE_HEIGHT, IMAGE_WIDTH), 3000)

    def nms_pair(threshold):
        return (lambda b, s: torchvision.ops.nms(b, s, threshold), lambda b, s: ops.nms(b, s, threshold))

    def batched_pair(threshold):
        return (lambda b, s, i: torchvision.ops.batched_nms(b, s, i, threshold),
                lambda b, s, i: ops.batched_nms(b, s, i, threshold))

    cases = [Case(f"nms N={n}", "nms", _seeded(seed, _scored(n)), *nms_pair(IOU_THRESHOLD), _same_indices)
             for n in nms_sizes]
    cases.append(Case(f"batched_nms N={batched_size}, {NUM_CLASSES} classes", "batched_nms",
                      _seeded(seed, _categorised(batched_size)), *batched_pair(IOU_THRESHOLD), _same_indices))
    cases += [Case(f"box_iou {n} x {m}", "box_iou", _seeded(seed, _two_sets(n, m)),
                   torchvision.ops.box_iou, ops.box_iou, _close_iou) for n, m in iou_sizes]
    num_anchors = len(retinanet_anchors(*image))
    num_sliced = len(range(0, num_anchors, 10))
    # The full-size naive baseline runs on our box_iou: torchvision's needs ~20 GB of temporaries there.
    cases += [
        Case(f"match_max_iou {num_anchors} anchors x {num_gt} gt; reference: OUR box_iou + max",
             "match_max_iou", _seeded(seed, _anchors_and_gt(image, 1, num_gt)), naive_match(ops.box_iou),
             ops.match_max_iou, _close_match),
        Case(f"match_max_iou {num_sliced} anchors (every 10th) x {num_gt} gt; reference: torchvision "
             "box_iou + max", "match_max_iou", _seeded(seed, _anchors_and_gt(image, 10, num_gt)),
             naive_match(torchvision.ops.box_iou), ops.match_max_iou, _close_match),
    ]
    return cases


def _nbytes(result) -> int:
    if isinstance(result, Tensor):
        return result.numel() * result.element_size()
    return sum(_nbytes(r) for r in result)


def _cpu_memory_task(task: Tuple[Tuple[str, ...], Tuple[str, ...], bool, int, int]) -> Dict:
    """In a child process: {(case name, side): (peak extra MiB of one call, peak mark reset)}."""
    names, sides, quick, seed, threads = task
    torch.set_num_threads(threads)
    memory = PeakMemory(torch.device("cpu"))
    results = {}
    for case in build_cases(quick, seed):
        if case.name not in names:
            continue
        inputs = case.make_inputs(torch.device("cpu"))
        for side in sides:
            fn = case.reference if side == "reference" else case.ours
            fn(*(t[:8] for t in inputs))  # one-time set-up (thread pool, dispatch) kept out of the figure
            gc.collect()
            memory.reset()
            before = memory.read()
            result = fn(*inputs)
            # RSS is counted in pages per CPU and read approximately: tenths of a MiB are noise.
            results[(case.name, side)] = (max(0.0, memory.read() - before), memory.resettable)
            del result
    return results


def cpu_memory(cases: Sequence[Case], args) -> Tuple[Dict[Tuple[str, str], float], bool]:
    """{(case name, side): peak extra MiB} from child processes, and whether each reset its peak mark.

    A fresh process per case and side. With ``--quick``, one process for everything, ours first:
    our ops free little, so torchvision's temporaries cannot hide in memory ours left free.
    """
    names, sides = tuple(c.name for c in cases), ("reference", "ours")
    if args.quick:
        tasks = [(names, sides[::-1], True, args.seed, args.threads)]
    else:
        tasks = [((name,), (side,), False, args.seed, args.threads) for name in names for side in sides]
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes=min(2, len(tasks)), maxtasksperchild=1) as pool:  # a fresh process per task
        answers = pool.map(_cpu_memory_task, tasks, chunksize=1)
    measured = {key: value for answer in answers for key, value in answer.items()}
    return {key: mib for key, (mib, _) in measured.items()}, all(reset for _, reset in measured.values())


def cuda_extra_mib(fn: Callable[..., object], inputs: Tuple[Tensor, ...]) -> float:
    """Peak CUDA memory allocated during one call of ``fn`` beyond what was allocated before, MiB."""
    gc.collect()
    torch.cuda.synchronize()
    memory = PeakMemory(inputs[0].device)
    memory.reset()
    result = fn(*inputs)
    torch.cuda.synchronize()
    extra = memory.read() - memory.base
    del result
    return extra


def time_case(case: Case, device: torch.device, args) -> Dict:
    """Check that both sides agree, warm up, then time them in turn ``args.repeat`` times."""
    inputs = case.make_inputs(device)
    expected, actual = case.reference(*inputs), case.ours(*inputs)
    note, output_mib = case.compare(expected, actual), _nbytes(actual) / MIB
    del expected, actual
    cuda = device.type == "cuda"
    memory = {}
    if cuda:
        memory = {"reference": cuda_extra_mib(case.reference, inputs), "ours": cuda_extra_mib(case.ours, inputs)}
    calls = {"reference": lambda _: case.reference(*inputs), "ours": lambda _: case.ours(*inputs)}
    # The check above was the first warm-up call.
    runs = time_in_turns(calls, args.warmup - 1, args.repeat, device=device)
    ratios = [r / o for r, o in zip(runs["reference"].times, runs["ours"].times)]
    return {
        "case": case.name,
        "reference": runs["reference"].median * 1000.0,
        "ours": runs["ours"].median * 1000.0,
        "spread": (quantile(ratios, 0.25), quantile(ratios, 0.75)),
        "output_mib": output_mib,
        "note": note,
        "memory": memory,
    }


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            models = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        return f"{models[0]}, {os.cpu_count()} logical cores" if models else "CPU"
    except OSError:
        return "CPU"


def compiled_devices() -> List[str]:
    """Device types ("cpu", "cuda") with compiled kernels in use; empty when retinadet._C is not."""
    if not ops.extension_loaded():
        return []
    has = torch._C._dispatch_has_kernel_for_dispatch_key
    return [key.lower() for key in ("CPU", "CUDA") if has("retinadet::nms", key)]


def print_header(args, device: torch.device) -> None:
    command = " ".join(["python", "benchmarks/" + os.path.basename(__file__)] + sys.argv[1:])
    loaded = ops.extension_loaded()
    reason = "" if loaded else f" ({ops.extension_load_error()})"
    kernels = ", ".join(compiled_devices()) or "none"
    threads = torch.get_num_threads()
    print(
        f"`{command}`: torch {torch.__version__}, torchvision {torchvision.__version__}; device "
        f"{device.type} ({_device_name(device)}); {threads} thread{'s' if threads != 1 else ''}; retinadet._C loaded: "
        f"{loaded}{reason}, compiled kernels for: {kernels}; median of {args.repeat} repetitions after "
        f"{args.warmup} warm-up; seed {args.seed}\n",
        flush=True,
    )


def print_table(results: Sequence[Dict], memory: Dict[Tuple[str, str], float], method: str) -> None:
    print("| case | torchvision ms | ours ms | speed-up torchvision / ours (IQR) | torchvision peak extra MiB "
          "| ours peak extra MiB | output MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        low, high = r["spread"]
        mem = [memory.get((r["case"], side), float("nan")) for side in ("reference", "ours")]
        print(f"| {r['case']} | {r['reference']:.2f} | {r['ours']:.2f} | {r['reference'] / r['ours']:.2f}x "
              f"({low:.2f}-{high:.2f}) | {mem[0]:.1f} | {mem[1]:.1f} | {r['output_mib']:.1f} |")
    print("\n" + GOALS)
    print("\nSame work: " + "; ".join(f"{r['case']}: {r['note']}" for r in results) + ".")
    print(method)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where ops run (default cpu)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--repeat", "--repeats", type=int, help="timed repetitions (default 10; 3 with --quick)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls of each side first (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the boxes, scores and categories")
    parser.add_argument("--cases", default=",".join(GROUPS), help=f"comma-separated subset of {', '.join(GROUPS)}")
    parser.add_argument("--quick", action="store_true", help="small sizes, 3 repetitions: a smoke test")
    parser.add_argument("--allow-fallback", action="store_true",
                        help="run even without the compiled ops ('ours' is then the pure-PyTorch fallback)")
    args = parser.parse_args(argv)
    args.repeat = args.repeat if args.repeat is not None else (3 if args.quick else 10)
    if args.repeat < 1 or args.warmup < 1 or args.threads < 1:
        parser.error(f"--repeat, --warmup and --threads must be >= 1; got {args.repeat}, {args.warmup}, "
                     f"{args.threads}.")
    groups = args.cases.split(",")
    if not set(groups) <= set(GROUPS):
        parser.error(f"--cases takes a comma-separated subset of {','.join(GROUPS)}; got {args.cases!r}.")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device.")
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    print_header(args, device)
    if device.type not in compiled_devices() and not args.allow_fallback:
        sys.exit(f"retinadet._C has no {device.type} kernels in use (load error: {ops.extension_load_error()}), "
                 "so 'ours' would be the pure-PyTorch fallback. This benchmark compares the compiled ops: "
                 "build the extension (pip install -e .), or pass --allow-fallback to time the fallback anyway.")
    load_before = os.getloadavg()[0]
    cases = [c for c in build_cases(args.quick, args.seed) if c.group in groups]
    results = []
    for case in cases:
        print(f"timing {case.name} ...", file=sys.stderr, flush=True)
        results.append(time_case(case, device, args))
    load_after = os.getloadavg()[0]
    if device.type == "cuda":
        memory = {(r["case"], side): mib for r in results for side, mib in r["memory"].items()}
        method = "Peak extra memory: torch.cuda.max_memory_allocated during one call minus the memory before it."
    else:
        print("peak memory, in fresh child processes ...", file=sys.stderr, flush=True)
        memory, reset = cpu_memory(cases, args)
        where = "one child process for all (--quick)" if args.quick else "a fresh process per case and side"
        method = f"Peak extra memory: rise of the peak RSS (VmHWM) during one call, in {where}."
        if not reset:
            method += " The peak mark could not be reset on this system: the figures may be too low."
    method += (" It includes the op's output (last column). 1-min load average during the timings: "
               f"{load_before:.2f} before, {load_after:.2f} after; above the thread count, another process was "
               "competing for the cores.")
    print_table(results, memory, method)

if __name__ == "__main__":
    main()
