"""Speed of our R50-FPN RetinaNet against torchvision's retinanet_resnet50_fpn, measured in one run.

Both models hold the same weights (torchvision's model seeded and randomised as
``retinadet.benchmark.torchvision_reference.BUSY_RETINANET``, converted into ours with
``convert_torchvision_retinanet``), see the same input and run on the same number of threads
(``--threads``, default 2). Cases:

- train: batch 2 at 512 x 512 with random boxes and labels (seeded); forward, backward and an SGD
  step. torchvision's model is in train mode with min_size = max_size = 512, so it does not resize;
  ours uses configs/torchvision/retinanet_R_50_FPN.yaml (per-image loss normalisation, L1 box
  loss), so both do the same work. The first warm-up step checks that they give the same losses.
- infer: batch 1 at 512 x 512 and at 800 x 1216, eval mode, no grad; torchvision's min/max size are
  the image's sides, so again nothing is resized. The first warm-up call checks that both return
  the same detections (count and scores).

The class-output biases are spread so that about 0.4% of the (anchor, class) scores pass the score
threshold, a busy image for a trained detector (P3 and P4 fill their top-1000); the "same work"
line prints the count, so the post-processing workload is visible. Each case starts from the
same initial weights.

Method. The first warm-up call of each model is the check above, then ``--warmup`` - 1 more of
each run below. Every repetition then times, in turn, torchvision's step, ours, and ours again
split into segments; the order of the first two alternates between repetitions, so a drift in
background load hits both alike. Times are medians over ``--repeats`` repetitions; the ratio is
of the medians, and its spread is the range (25th to 75th percentile) of the per-repetition ratios.

Our time outside the dense network is timed directly, not found by subtraction. The split run
calls the parts of ``RetinaNet.forward`` one by one, with a clock reading between them:

  input    input checks, normalisation and padding (preprocess_image, check_targets)
  dense    backbone + FPN + head forward, and in training their backward
  anchors  anchor_generator
  loss     matching, box encoding, focal and L1 losses (RetinaNet.losses) and their backward
  post     per-level top-k, decoding, NMS (RetinaNet.inference)
  sgd      optimizer.step() and zero_grad()

In training the backward is cut at the head outputs: ``torch.autograd.grad(loss, head_outputs)``
runs the backward of the loss part only, then ``torch.autograd.backward(head_outputs, grads)``
runs the dense network's; together they do the work of one ``loss.backward()``. "outside" is
input + anchors + loss + post: the median over repetitions of their per-repetition sum, in ms
and as a share of our median full step. The split run's total is printed too: it should match
the full step, showing that cutting the step changes nothing.

Peak RSS is the process's (both models, all cases so far), from ``resource``; the load average
before and after is printed because another busy process on the machine skews every number.

Usage::

    python benchmarks/model.py            # full run, about 8 minutes on 2 idle cores
    python benchmarks/model.py --quick    # smoke test, seconds: small images, 2 repetitions
"""
import argparse
import copy
import os
import sys
from typing import Callable, Dict, List, Sequence, Tuple

import torch
import torchvision
from torch import Tensor, nn

from retinadet.benchmark.memory import peak_rss_mib
from retinadet.benchmark.steps import train_step
from retinadet.benchmark.timing import SplitTimer, median, quantile, time_in_turns
from retinadet.benchmark.torchvision_reference import (
    BUSY_RETINANET,
    TORCHVISION_NUM_CLASSES,
    ours_with_weights_of,
    randomised_reference,
)
from retinadet.modeling.meta_arch.input_checks import check_targets

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs", "torchvision", "retinanet_R_50_FPN.yaml")
BOXES_PER_IMAGE = 8
SEGMENTS = ("input", "dense", "anchors", "loss", "post", "sgd")
OUTSIDE = ("input", "anchors", "loss", "post")


def _build_models(seed: int) -> Tuple[nn.Module, nn.Module]:
    """(torchvision's model, ours) with the same weights; torchvision's sizes are set per case."""
    reference = randomised_reference(BUSY_RETINANET, 512, 512, seed=seed)
    ours, report = ours_with_weights_of(reference, CONFIG)
    if report["missing"] or report["unexpected"] or report["skipped_shape"]:
        raise RuntimeError(f"Converted torchvision weights do not fit our model: {report}")
    trainable = [sum(p.numel() for p in m.parameters() if p.requires_grad) for m in (reference, ours)]
    if trainable[0] != trainable[1]:
        raise RuntimeError(f"Trainable parameters differ: torchvision {trainable[0]}, ours {trainable[1]}.")
    return reference, ours


class _InitialWeights:
    """Weights every case starts from, so that one case's SGD steps do not leak into the next."""

    def __init__(self, *models: nn.Module):
        self.models = models
        self.states = [copy.deepcopy(m.state_dict()) for m in models]

    def restore(self) -> None:
        for model, state in zip(self.models, self.states):
            model.load_state_dict(state)


def _set_torchvision_size(model: nn.Module, height: int, width: int) -> None:
    """Make torchvision's transform keep (height, width) images as they are (resize scale exactly 1)."""
    model.transform.min_size = (min(height, width),)
    model.transform.max_size = max(height, width)


def _images(n: int, height: int, width: int, generator: torch.Generator) -> List[Tensor]:
    """``n`` random (3, height, width) float images with values 0-255."""
    return [torch.randint(0, 256, (3, height, width), generator=generator).float() for _ in range(n)]


def _random_targets(n: int, height: int, width: int, generator: torch.Generator) -> List[Dict[str, Tensor]]:
    """Per image BOXES_PER_IMAGE xyxy boxes (sides 16 px to half the image) and labels in [1, 91)."""
    image_wh = torch.tensor([float(width), float(height)])
    targets = []
    for _ in range(n):
        size = torch.rand(BOXES_PER_IMAGE, 2, generator=generator) * (image_wh / 2 - 16) + 16
        corner = torch.rand(BOXES_PER_IMAGE, 2, generator=generator) * (image_wh - size)
        labels = torch.randint(1, TORCHVISION_NUM_CLASSES, (BOXES_PER_IMAGE,), generator=generator)
        targets.append({"boxes": torch.cat([corner, corner + size], dim=1), "labels": labels})
    return targets


def _dense_forward(model: nn.Module, images) -> Tuple[List[Tensor], List[Tensor], List[Tensor]]:
    """Backbone + FPN + head of ``model``, the dense network; returns (features, logits, deltas)."""
    pyramid = model.neck(model.backbone(images.tensor))
    features = [pyramid[f] for f in model.head_in_features]
    logits, deltas = model.head(features)
    return features, logits, deltas


def _ours_train_split(model, inputs, optimizer, timer: SplitTimer) -> Dict[str, Tensor]:
    """One training step of our model cut into the segments of the module docstring."""
    with timer("input"):
        images = model.preprocess_image(inputs)
        targets = check_targets(inputs, model.num_classes)
    with timer("dense"):
        features, logits, deltas = _dense_forward(model, images)
    with timer("anchors"):
        anchors = model.anchor_generator(features, images.padded_size)
    with timer("loss"):
        losses = model.losses(logits, deltas, anchors, targets)
        head_outputs = logits + deltas
        grads = torch.autograd.grad(sum(losses.values()), head_outputs)
    with timer("dense"):
        torch.autograd.backward(head_outputs, grads)
    with timer("sgd"):
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return losses


@torch.no_grad()
def _ours_infer_split(model, inputs, timer: SplitTimer) -> List[Dict[str, Tensor]]:
    """One inference call of our model cut into the segments of the module docstring."""
    with timer("input"):
        images = model.preprocess_image(inputs)
    with timer("dense"):
        features, logits, deltas = _dense_forward(model, images)
    with timer("anchors"):
        anchors = model.anchor_generator(features, images.padded_size)
    with timer("post"):
        return model.inference(logits, deltas, anchors, images.image_sizes, inputs)


def _train_step(model: nn.Module, optimizer: torch.optim.Optimizer, *args) -> Dict[str, float]:
    """train_step (forward, backward of the summed losses, SGD step), then the gradients dropped, so the
    split run's backward starts from none, like the full step's; returns the losses."""
    losses = train_step(model, optimizer, *args)
    optimizer.zero_grad(set_to_none=True)
    return losses


def _sgd(model: nn.Module) -> torch.optim.Optimizer:
    # A small learning rate: a dozen steps leave the weights, and so the work, essentially unchanged.
    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)


def _measure(
    name: str,
    run_reference: Callable[[], object],
    run_ours: Callable[[], object],
    run_split: Callable[[SplitTimer], object],
    repeats: int,
    warmup: int,
) -> Dict:
    """Warm up, then time torchvision's and our step in alternating turns ``repeats`` times, every round
    followed by our split run; medians in ms."""
    splits: List[Dict[str, float]] = []

    def split_run(_: int) -> None:
        timer = SplitTimer()
        run_split(timer)
        splits.append(timer.seconds)

    runs = time_in_turns({"reference": lambda _: run_reference(), "ours": lambda _: run_ours()}, warmup, repeats,
                         after_round=split_run)
    splits = splits[warmup:]
    reference, ours = runs["reference"], runs["ours"]
    ratios = [o / r for o, r in zip(ours.times, reference.times)]
    ms = 1000.0
    return {
        "case": name,
        "reference": reference.median * ms,
        "ours": ours.median * ms,
        "ratio_spread": (quantile(ratios, 0.25), quantile(ratios, 0.75)),
        "outside": median([sum(t.get(s, 0.0) for s in OUTSIDE) for t in splits]) * ms,
        "split_total": median([sum(t.values()) for t in splits]) * ms,
        "segments": {s: median([t.get(s, 0.0) for t in splits]) * ms for s in SEGMENTS},
        "peak_rss": peak_rss_mib(),
    }


def _check_losses(reference_losses: Dict[str, float], our_losses: Dict[str, float]) -> str:
    """Raise unless both models' losses agree to 1e-3 (relative); say how closely they do."""
    pairs = (("loss_cls", "classification"), ("loss_box_reg", "bbox_regression"))
    diff = max(abs(our_losses[o] / reference_losses[r] - 1.0) for o, r in pairs)
    if diff > 1e-3:
        raise RuntimeError(f"The models compute different losses: {our_losses} vs {reference_losses}.")
    return f"losses agree to {diff:.1e} (relative)"


def _train_case(reference, ours, size: int, batch: int, args) -> Tuple[Dict, str]:
    g = torch.Generator().manual_seed(args.seed)
    images = _images(batch, size, size, g)
    targets = _random_targets(batch, size, size, g)
    reference_images = [im / 255.0 for im in images]  # torchvision takes 0-1 images, ours 0-255
    inputs = [{"image": im, **t} for im, t in zip(images, targets)]
    _set_torchvision_size(reference, size, size)
    reference.train()
    ours.train()
    ref_opt, our_opt = _sgd(reference), _sgd(ours)
    check = _check_losses(
        _train_step(reference, ref_opt, reference_images, targets), _train_step(ours, our_opt, inputs)
    )
    result = _measure(
        f"train, batch {batch}, {size}x{size}",
        lambda: _train_step(reference, ref_opt, reference_images, targets),
        lambda: _train_step(ours, our_opt, inputs),
        lambda timer: _ours_train_split(ours, inputs, our_opt, timer),
        args.repeats,
        args.warmup - 1,
    )
    return result, check


def _infer_case(reference, ours, height: int, width: int, args) -> Tuple[Dict, str]:
    image = _images(1, height, width, torch.Generator().manual_seed(args.seed))[0]
    reference_images, inputs = [image / 255.0], [{"image": image}]
    _set_torchvision_size(reference, height, width)
    reference.eval()
    ours.eval()
    with torch.no_grad():
        expected, actual = reference(reference_images)[0], ours(inputs)[0]
        logits = ours.forward_features(ours.preprocess_image(inputs))[0]
        candidates = sum(int((x.sigmoid() > ours.score_thresh).sum()) for x in logits)
    same = len(expected["scores"]) == len(actual["scores"]) and bool(
        (expected["scores"] - actual["scores"]).abs().le(1e-3).all()
    )
    if not same:
        raise RuntimeError(f"Detections differ: torchvision {expected['scores']}, ours {actual['scores']}.")
    check = f"{candidates} scores above the threshold, both return {len(actual['scores'])} detections"
    result = _measure(
        f"infer, batch 1, {height}x{width}",
        torch.no_grad()(lambda: reference(reference_images)),
        torch.no_grad()(lambda: ours(inputs)),
        lambda timer: _ours_infer_split(ours, inputs, timer),
        args.repeats,
        args.warmup - 1,
    )
    return result, check


def _print_tables(results: Sequence[Dict], checks: Sequence[str], args, loads: Tuple[float, float]) -> None:
    command = " ".join(["python", "benchmarks/" + os.path.basename(__file__)] + sys.argv[1:])
    print(
        f"\n`{command}`: torch {torch.__version__}, "
        f"torchvision {torchvision.__version__}, {torch.get_num_threads()} threads, median of "
        f"{args.repeats} repetitions after {args.warmup} warm-up; 1-min load average "
        f"{loads[0]:.2f} before, {loads[1]:.2f} after\n"
    )
    print("| case | torchvision ms | ours ms | ours / torchvision (IQR) | outside dense ms | outside % "
          "| peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        low, high = r["ratio_spread"]
        print(
            f"| {r['case']} | {r['reference']:.1f} | {r['ours']:.1f} | {r['ours'] / r['reference']:.3f} "
            f"({low:.2f}-{high:.2f}) | {r['outside']:.1f} | {100.0 * r['outside'] / r['ours']:.1f} "
            f"| {r['peak_rss']:.0f} |"
        )
    print("\nOur step timed in segments, median ms (outside dense = input + anchors + loss + post):\n")
    print("| case | " + " | ".join(SEGMENTS) + " | segments total |")
    print("|---|" + "---:|" * (len(SEGMENTS) + 1))
    for r in results:
        cells = " | ".join(f"{r['segments'][s]:.1f}" for s in SEGMENTS)
        print(f"| {r['case']} | {cells} | {r['split_total']:.1f} |")
    print("\nSame work: " + "; ".join(f"{r['case']}: {c}" for r, c in zip(results, checks)) + ".")
    print("Peak RSS: the whole process's so far (both models). Method: see the module docstring.")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--repeats", type=int, help="timed repetitions (default 10; 2 with --quick)")
    parser.add_argument("--warmup", type=int, help="untimed calls first (default 2; 1 with --quick)")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights, images and boxes")
    parser.add_argument("--cases", default="train,infer", help="comma-separated subset of train,infer")
    parser.add_argument("--quick", action="store_true", help="small images, few repetitions: a smoke test")
    args = parser.parse_args(argv)
    args.repeats = args.repeats if args.repeats is not None else (2 if args.quick else 10)
    args.warmup = args.warmup if args.warmup is not None else 1 if args.quick else 2
    if args.repeats < 1 or args.warmup < 1 or args.threads < 1:
        parser.error(f"--repeats, --warmup and --threads must be >= 1; got {args.repeats}, {args.warmup}, "
                     f"{args.threads}.")
    cases = set(args.cases.split(","))
    if not cases <= {"train", "infer"}:
        parser.error(f"--cases takes train and/or infer; got {args.cases!r}.")
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]

    train_size, infer_sizes = (512, [(512, 512), (800, 1216)])
    if args.quick:
        train_size, infer_sizes = 64, [(128, 128), (128, 192)]
    reference, ours = _build_models(args.seed)
    initial = _InitialWeights(reference, ours)
    results, checks = [], []
    if "train" in cases:
        result, check = _train_case(reference, ours, train_size, 2, args)
        results.append(result)
        checks.append(check)
    for height, width in infer_sizes if "infer" in cases else []:
        initial.restore()
        result, check = _infer_case(reference, ours, height, width, args)
        results.append(result)
        checks.append(check)
    _print_tables(results, checks, args, (load_before, os.getloadavg()[0]))


if __name__ == "__main__":
    main()
