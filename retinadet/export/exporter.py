"""Export a config's detector to TorchScript or ONNX, and check the file against the eager model.

``export_model(cfg, fmt, output_dir)`` builds the model (``MODEL.WEIGHTS`` loaded), wraps it in a
:class:`DetectionGraph` (test-time resize, normalisation, padding, network, anchors, decoding, NMS,
boxes back in the input's frame), traces it, writes ``model.ts`` or ``model.onnx`` with
``model.json`` (class names, channel order, test size, the comparison), then runs the file on sample
images of two sizes and compares it with the eager graph (count, labels, boxes within 1e-3 px,
scores within 1e-4). A file that disagrees is never written (an earlier file stays) and an
:class:`ExportError` names the values the trace fixed, with their modules.
"""
import json
import logging
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..config import CfgNode
from ..ops.traced_nms import traced_nms_format
from .errors import ExportError, first_line, require
from .graph import DetectionGraph
from .runtime import check_exported_input, load_exported
from .tracing import FixedValue, trace_graph

__all__ = ["EXPORT_FORMATS", "ONNX_OPSET", "BOX_TOLERANCE", "SCORE_TOLERANCE", "Comparison", "ExportResult",
           "build_detection_graph", "compare_detections", "export_graph", "export_model", "sample_images",
           "synthetic_scene"]

logger = logging.getLogger(__name__)

EXPORT_FORMATS = ("torchscript", "onnx")
ONNX_OPSET = 17
BOX_TOLERANCE = 1e-3  # px: largest box coordinate difference an exported file may have from the eager model
SCORE_TOLERANCE = 1e-4
FILE_NAMES = {"torchscript": "model.ts", "onnx": "model.onnx"}
METADATA_FILE = "model.json"
OUTPUT_NAMES = ("boxes", "scores", "labels")


@dataclass
class Comparison:
    """Exported file against the eager graph on one image: detection counts, largest differences."""

    image_size: List[int]
    eager_count: int
    exported_count: int
    labels_equal: bool
    max_box_diff: float
    max_score_diff: float

    @property
    def equal(self) -> bool:
        """Same count and labels, boxes and scores within the tolerances."""
        return (self.eager_count == self.exported_count and self.labels_equal
                and self.max_box_diff <= BOX_TOLERANCE and self.max_score_diff <= SCORE_TOLERANCE)


@dataclass
class ExportResult:
    """What :func:`export_model` wrote and how the file compared with the eager model."""

    path: str
    format: str
    metadata_path: str
    comparisons: List[Comparison] = field(default_factory=list)
    fixed_values: List[str] = field(default_factory=list)


def build_detection_graph(cfg: CfgNode, model: Optional[nn.Module] = None, resize: bool = True) -> DetectionGraph:
    """The eval-mode :class:`DetectionGraph` of ``cfg``'s model (built with ``MODEL.WEIGHTS`` unless
    ``model`` is given), resizing to INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST when ``resize``."""
    if model is None:
        from ..modeling import build_model

        model = build_model(cfg)
    model.eval()
    if not callable(getattr(model, "detect", None)):
        raise ExportError(f"{type(model).__name__} (MODEL.META_ARCHITECTURE) has no detect(images) method; "
                          "an exported graph runs detect() on the padded batch (see DetectorBase.detect).")
    min_size = int(cfg.INPUT.MIN_SIZE_TEST) if resize else 0
    return DetectionGraph(model, min_size, int(cfg.INPUT.MAX_SIZE_TEST)).eval()


def synthetic_scene(height: int, width: int, seed: int = 0, objects: int = 6) -> np.ndarray:
    """A (3, height, width) uint8 image: ``objects`` solid rectangles and discs of random colours on a
    noisy gray background, the kind of object a trained detector fires on."""
    rng = np.random.default_rng(seed)
    image = rng.integers(90, 140, (3, height, width)).astype(np.uint8)
    ys, xs = np.mgrid[0:height, 0:width]
    short = min(height, width)
    for k in range(objects):
        side = int(rng.integers(max(4, short // 10), max(5, short // 3)))
        y0, x0 = int(rng.integers(0, max(1, height - side))), int(rng.integers(0, max(1, width - side)))
        if k % 2:
            inside = (ys - y0 - side / 2) ** 2 + (xs - x0 - side / 2) ** 2 <= (side / 2) ** 2
        else:
            inside = (ys >= y0) & (ys < y0 + side) & (xs >= x0) & (xs < x0 + int(side * 0.7))
        image[:, inside] = rng.integers(0, 256, (3, 1), dtype=np.uint8)
    return image


def sample_images(cfg: CfgNode, seed: int = 0) -> List[np.ndarray]:
    """Three (3, H, W) uint8 images to check an export with: two :func:`synthetic_scene` of different
    sizes and aspect ratios around the test size, and one flat gray image (usually no detection)."""
    short = int(cfg.INPUT.MIN_SIZE_TEST) or 320
    sizes = [(short, int(short * 1.25)), (int(short * 1.4), short - short // 8)]
    images = [synthetic_scene(h, w, seed + i) for i, (h, w) in enumerate(sizes)]
    images.append(np.full((3, sizes[0][1], sizes[0][0]), 114, dtype=np.uint8))
    return images


def compare_detections(eager: Dict[str, torch.Tensor], exported: Dict[str, torch.Tensor],
                       image_size: Sequence[int]) -> Comparison:
    """:class:`Comparison` of two detection dicts ({"boxes", "scores", "labels"}) of one image.

    Detections are paired one to one: each eager detection, in order, with the unpaired exported one of
    the same label whose box is closest (largest coordinate difference). Two detections whose scores
    differ by float noise may be listed in either order; pairing by position would call that a change."""
    n_eager, n_exported = len(eager["scores"]), len(exported["scores"])
    box_diff = score_diff = 0.0
    labels_equal = n_eager == n_exported
    if labels_equal and n_eager:
        boxes_a, boxes_b = eager["boxes"].double(), exported["boxes"].double()
        cost = (boxes_a[:, None, :] - boxes_b[None, :, :]).abs().amax(dim=2)
        cost[eager["labels"].to(torch.int64)[:, None] != exported["labels"].to(torch.int64)[None, :]] = float("inf")
        taken = torch.zeros(n_exported, dtype=torch.bool)
        for i in range(n_eager):
            row = cost[i].masked_fill(taken, float("inf"))
            j = int(row.argmin())
            if not torch.isfinite(row[j]):
                labels_equal = False
                break
            taken[j] = True
            box_diff = max(box_diff, float(row[j]))
            score_diff = max(score_diff, abs(float(eager["scores"][i]) - float(exported["scores"][j])))
    return Comparison([int(s) for s in image_size], n_eager, n_exported, bool(labels_equal), box_diff, score_diff)


def _eager_detections(graph: DetectionGraph, image: np.ndarray) -> Dict[str, torch.Tensor]:
    with torch.no_grad():
        boxes, scores, labels = graph(torch.from_numpy(image))
    return {"boxes": boxes, "scores": scores, "labels": labels}


def export_graph(graph: DetectionGraph, fmt: str, path: str, example: np.ndarray,
                 metadata: Optional[Dict[str, Any]] = None) -> List[FixedValue]:
    """Trace ``graph`` on ``example`` and write it to ``path`` as ``fmt`` ("torchscript" or "onnx", the
    latter checked with ``onnx.checker``), written to a temporary name and renamed. ``metadata`` (JSON)
    is embedded: a TorchScript extra file ``retinadet.json``, an ONNX metadata entry "retinadet".
    Returns the values the trace fixed (TracerWarnings with their modules)."""
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"Unknown export format {fmt!r}; valid: {list(EXPORT_FORMATS)}.")
    if fmt == "onnx":
        require("onnx", "Exporting to ONNX")
    example_tensor = torch.from_numpy(check_exported_input(example, "export example"))
    with traced_nms_format(fmt):
        traced, fixed = trace_graph(graph, example_tensor)
    text = json.dumps(metadata or {})
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".export-", suffix=os.path.splitext(path)[1])
    os.close(fd)
    try:
        if fmt == "torchscript":
            torch.jit.save(traced, tmp, _extra_files={"retinadet.json": text})
        else:
            with traced_nms_format(fmt):
                _write_onnx(traced, example_tensor, tmp, text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return fixed


def _write_onnx(traced: torch.jit.ScriptModule, example: torch.Tensor, path: str, metadata: str) -> None:
    """ONNX (opset ONNX_OPSET) of a traced graph with a dynamic image size and detection count."""
    onnx = require("onnx", "Exporting to ONNX")
    axes = {"image": {1: "height", 2: "width"}, **{name: {0: "detections"} for name in OUTPUT_NAMES}}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notices
            torch.onnx.export(traced, (example,), path, dynamo=False, opset_version=ONNX_OPSET,
                              input_names=["image"], output_names=list(OUTPUT_NAMES), dynamic_axes=axes)
    except Exception as e:
        raise ExportError(_onnx_failure(traced, e)) from e
    proto = onnx.load(path)
    entry = proto.metadata_props.add()
    entry.key, entry.value = "retinadet", metadata
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, path)


def _onnx_failure(traced: torch.jit.ScriptModule, error: Exception) -> str:
    """The ONNX exporter's failure with the operation and the source line (module and file) using it."""
    message = first_line(error)
    for node in traced.inlined_graph.nodes():
        if node.kind() in message:
            scope = node.scopeName() or "<graph>"
            source = str(node.sourceRange()).strip().splitlines()
            where = source[0] if source else "(source unknown)"
            module = _module_of_scope(scope)
            return (f"The operation {node.kind()} in module {module} ({where}) cannot be exported to ONNX "
                    f"opset {ONNX_OPSET}: {message}")
    return f"ONNX export failed: {type(error).__name__}: {message}"


def _module_of_scope(scope: str) -> str:
    """"head (RetinaNetHead)" from a traced scope name such as
    "retinadet.export.graph.DetectionGraph::/retinadet...RetinaNetHead::model.head"."""
    last = scope.split("/")[-1]
    class_path, _, name = last.rpartition("::")
    name = name.replace("__module.", "")
    if name.startswith("model."):
        name = name[len("model."):]
    return f"{name or '<graph>'} ({class_path.rsplit('.', 1)[-1] or 'DetectionGraph'})"


def _metadata(cfg: CfgNode, graph: DetectionGraph, fmt: str, class_names: Optional[List[str]]) -> Dict[str, Any]:
    return {
        "format": fmt,
        "meta_architecture": type(graph.model).__name__,
        "input": {"layout": "(3, H, W) uint8", "channel_order": cfg.INPUT.FORMAT},
        "outputs": {"boxes": "(D, 4) float32 xyxy pixels of the input image", "scores": "(D,) float32",
                    "labels": "(D,) int64 in [0, num_classes)"},
        "test_resize": {"min_size": graph.min_size, "max_size": graph.max_size},
        "class_names": class_names,
        "onnx_opset": ONNX_OPSET if fmt == "onnx" else None,
        "torch_version": torch.__version__,
    }


def export_model(cfg: CfgNode, fmt: str, output_dir: str, images: Optional[Sequence[np.ndarray]] = None,
                 model: Optional[nn.Module] = None, class_names: Optional[List[str]] = None,
                 num_threads: Optional[int] = None, resize: bool = True) -> ExportResult:
    """Export ``cfg``'s model (see the module docstring) to ``output_dir``.

    Args:
        fmt: "torchscript" or "onnx".
        images: (3, H, W) uint8 images in INPUT.FORMAT to check with (default :func:`sample_images`);
            the first is the tracing example, and at least two sizes should be among them.
        model: an already-built model (default: ``build_model(cfg)``, which loads MODEL.WEIGHTS).
        class_names: written to ``model.json`` (default: the checkpoint's or data set's names).
        resize: put the test-time resize in the graph (False: the caller gives images at their test size).
    Returns:
        an :class:`ExportResult`; raises :class:`ExportError` when the file disagrees with the model.
    """
    graph = build_detection_graph(cfg, model, resize)
    images = list(images) if images is not None else sample_images(cfg)
    if not images:
        raise ExportError("export_model needs at least one image to trace and check with.")
    images = [check_exported_input(image, f"export sample image {i}") for i, image in enumerate(images)]
    if class_names is None:
        class_names = _default_class_names(cfg)
    path = os.path.join(output_dir, FILE_NAMES[fmt])
    # Written and checked under another name first: a file that fails the check never replaces a good one.
    checking = os.path.join(output_dir, ".unchecked-" + FILE_NAMES[fmt])
    metadata = _metadata(cfg, graph, fmt, class_names)
    try:
        fixed = export_graph(graph, fmt, checking, images[0], metadata)
        comparisons, failures = _check_against_eager(graph, checking, fmt, images, num_threads)
        bad = [c for c in comparisons if not c.equal]
        if bad or failures:
            raise ExportError(_disagreement(fmt, bad, fixed, failures))
        os.replace(checking, path)
    finally:
        if os.path.exists(checking):
            os.remove(checking)
    metadata["checked_against_eager"] = [asdict(c) for c in comparisons]
    metadata_path = os.path.join(output_dir, METADATA_FILE)
    from ..utils.file_io import atomic_write_json

    atomic_write_json(metadata_path, metadata)
    for c in comparisons:
        logger.info("%s export vs eager on a %dx%d image: %d detections, boxes within %.2g px, scores within %.2g",
                    fmt, *c.image_size, c.exported_count, c.max_box_diff, c.max_score_diff)
    return ExportResult(path, fmt, metadata_path, comparisons, [str(f) for f in fixed])


def _check_against_eager(graph: DetectionGraph, path: str, fmt: str, images: List[np.ndarray],
                         num_threads: Optional[int]):
    """(comparisons, failure lines) of the file at ``path`` against the eager ``graph`` on ``images``."""
    backend = "torchscript" if fmt == "torchscript" else "onnxruntime"
    detector = load_exported(path, backend, num_threads)
    comparisons, failures = [], []
    for image in images:
        try:
            comparisons.append(compare_detections(_eager_detections(graph, image), detector(image), image.shape[1:]))
        except Exception as e:  # a graph frozen to the example's size can fail outright at another size
            failures.append(f"  {image.shape[1]}x{image.shape[2]} image: the exported model failed: "
                            f"{type(e).__name__}: {first_line(e)}")
    return comparisons, failures


def _disagreement(fmt: str, bad: List[Comparison], fixed: List[FixedValue], failures: List[str]) -> str:
    lines = [f"The exported {fmt} model disagrees with the eager model (tolerances: boxes {BOX_TOLERANCE} px, "
             f"scores {SCORE_TOLERANCE}); it was not written (a file already there is unchanged)."]
    for c in bad:
        lines.append(f"  {c.image_size[0]}x{c.image_size[1]} image: {c.exported_count} detections vs {c.eager_count}, "
                     f"labels equal {c.labels_equal}, boxes differ by up to {c.max_box_diff:.3g} px, scores by "
                     f"{c.max_score_diff:.3g}")
    lines += failures
    if fixed:
        lines.append("While tracing, these values were fixed to the example image's (a traced graph keeps tensor "
                     "operations only; use tensor arithmetic on sizes, see retinadet.utils.tracing):")
        lines += [f"  {f}" for f in fixed]
    return "\n".join(lines)


def _default_class_names(cfg: CfgNode) -> Optional[List[str]]:
    from ..engine.predictor import class_names_of

    return class_names_of(cfg)
