"""The experiments' presets, as data: config pairs for compare (``retinadet.experiments.compare``) and
ablation tables for ablate (the focal-loss paper's Table 1, Lin et al. 2017). Configs are model-zoo
names (``retinadet.model_zoo``), found in a checkout and in an installed package alike."""
import dataclasses
import difflib
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .configs import ExperimentInputError

__all__ = [
    "ABLATION_PRESETS",
    "AblationPreset",
    "AblationRow",
    "AblationTable",
    "COMPARE_PRESETS",
    "get_preset",
    "row_overrides",
    "run_name",
    "select_tables",
]

# compare --preset NAME: the configs compared, model-zoo names (retinadet.model_zoo.get_config_file).
COMPARE_PRESETS: Dict[str, Tuple[str, ...]] = {
    # One-stage vs two-stage on the embedded shapes data set.
    "two-stage": ("shapes/retinanet_R_18_FPN.yaml", "shapes/faster_rcnn_R_18_FPN.yaml"),
}


@dataclasses.dataclass(frozen=True)
class AblationRow:
    """One row (or grid cell) of an ablation table: ``labels`` (column name -> value shown, in
    order) and the config ``overrides`` (key -> Python value) that make it, on top of the preset's
    reference setting."""

    labels: Dict[str, Any]
    overrides: Dict[str, Any]


@dataclasses.dataclass(frozen=True)
class AblationTable:
    """An ablation table: ``key`` (its letter), ``title``, ``rows``; ``grid`` = (row label, column
    label) lays it out as a matrix of AP (e.g. rows gamma, columns alpha), else one line per row."""

    key: str
    title: str
    rows: Tuple[AblationRow, ...]
    grid: Optional[Tuple[str, str]] = None


@dataclasses.dataclass(frozen=True)
class AblationPreset:
    """A set of ablation tables trained from ``base_config`` (a model-zoo name).
    ``reference``: the overrides of the reference setting every row starts from, so that one
    setting appearing in several tables is one run. ``plots``: the pictures ablate draws
    ("ap_vs_gamma" from table "a", "focal_loss_curve"). ``pretrain_config``: a run made before the
    rows, whose trained ResNet every row loads (MODEL.BACKBONE.WEIGHTS), as the paper's rows all
    start from one ImageNet ResNet (a model-zoo name)."""

    name: str
    description: str
    base_config: str
    reference: Dict[str, Any]
    tables: Tuple[AblationTable, ...]
    # Pictures ablate draws: "ap_vs_gamma" (needs table "a") and "focal_loss_curve".
    plots: Tuple[str, ...] = ()
    # Config of one run made first, whose trained backbone every row starts from (None: from scratch).
    pretrain_config: Optional[str] = None


def row_overrides(preset: AblationPreset, row: AblationRow) -> Dict[str, Any]:
    """The reference setting with ``row``'s overrides on top (key -> Python value)."""
    return {**preset.reference, **row.overrides}


def run_name(table: AblationTable, row: AblationRow) -> str:
    """A short run name from the table key and the row labels ("-" labels left out), e.g.
    "a_gamma2.0_alpha0.25"."""
    parts = [f"{name}{value}" for name, value in row.labels.items() if value != "-"]
    return "_".join([table.key] + parts).replace(" ", "").replace("#", "n").replace(":", "to")


# ------------------------------------------------------------------------------------ focal loss
_LOSS = "MODEL.CLS_LOSS."
_SAMPLER = "MODEL.RETINANET.SAMPLER."
_PRIOR = "MODEL.HEAD.PRIOR_PROB"
# The paper's reference: FL with gamma 2, alpha .25, every anchor (no sampler), the pi = .01 prior on
# the class bias, 9 anchors (3 scales x 3 aspect ratios) per location.
_FOCAL_REFERENCE = {
    _LOSS + "NAME": "SigmoidFocalLoss",
    _LOSS + "GAMMA": 2.0,
    _LOSS + "ALPHA": 0.25,
    _SAMPLER + "NAME": "",
    _PRIOR: 0.01,
    "MODEL.ANCHOR_GENERATOR.SCALES": [1.0, 2 ** (1.0 / 3), 2 ** (2.0 / 3)],
    "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS": [0.5, 1.0, 2.0],
}
# Plain cross entropy: the focal loss with gamma 0 and no alpha weighting.
_PLAIN_CE = {_LOSS + "GAMMA": 0.0, _LOSS + "ALPHA": -1.0}
_GAMMAS = (0.0, 0.5, 1.0, 2.0, 5.0)
_ALPHAS = (0.25, 0.5, 0.75)

_FOCAL_TABLES = (
    AblationTable(
        key="a",
        title="(a) Varying gamma and alpha of FL (gamma 0 is alpha-balanced CE): AP",
        rows=tuple(
            AblationRow({"gamma": g, "alpha": a}, {_LOSS + "GAMMA": g, _LOSS + "ALPHA": a})
            for g in _GAMMAS for a in _ALPHAS
        ),
        grid=("gamma", "alpha"),
    ),
    AblationTable(
        key="b",
        title="(b) FL vs. OHEM and 1:3 sampling with plain CE",
        rows=(
            AblationRow({"method": "OHEM", "batch size": 128, "nms": 0.5},
                        {**_PLAIN_CE, _SAMPLER + "NAME": "OHEMSampler", _SAMPLER + "BATCH_SIZE_PER_IMAGE": 128,
                         _SAMPLER + "POSITIVE_FRACTION": -1.0, _SAMPLER + "NMS_THRESH": 0.5}),
            AblationRow({"method": "1:3 CE", "batch size": 256, "nms": "-"},
                        {**_PLAIN_CE, _SAMPLER + "NAME": "BalancedRandomSampler",
                         _SAMPLER + "BATCH_SIZE_PER_IMAGE": 256, _SAMPLER + "POSITIVE_FRACTION": 0.25}),
            AblationRow({"method": "FL", "batch size": "-", "nms": "-"}, {}),
        ),
    ),
    AblationTable(
        key="c",
        title="(c) Anchors per location: scales x aspect ratios",
        rows=(
            AblationRow({"#sc": 1, "#ar": 1},
                        {"MODEL.ANCHOR_GENERATOR.SCALES": [1.0], "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS": [1.0]}),
            AblationRow({"#sc": 3, "#ar": 3}, {}),
        ),
    ),
    AblationTable(
        key="d",
        title="(d) Prior initialisation of the class bias (pi = 0.01) vs. none (pi = 0.5, bias 0)",
        rows=(
            AblationRow({"loss": "FL", "prior pi": 0.01}, {}),
            AblationRow({"loss": "FL", "prior pi": 0.5}, {_PRIOR: 0.5}),
            AblationRow({"loss": "CE", "prior pi": 0.01}, dict(_PLAIN_CE)),
            AblationRow({"loss": "CE", "prior pi": 0.5}, {**_PLAIN_CE, _PRIOR: 0.5}),
        ),
    ),
)

ABLATION_PRESETS: Dict[str, AblationPreset] = {
    "focal": AblationPreset(
        name="focal",
        description="Focal loss ablations of Lin et al. 2017, Table 1, with RetinaNet on the embedded shapes set.",
        base_config="shapes/retinanet_R_18_ablation.yaml",
        reference=_FOCAL_REFERENCE,
        tables=_FOCAL_TABLES,
        plots=("ap_vs_gamma", "focal_loss_curve"),
        pretrain_config="shapes/retinanet_R_18_FPN.yaml",
    ),
}


def get_preset(name: str, presets: Dict[str, Any], what: str = "preset") -> Any:
    """``presets[name]``; ExperimentInputError listing the presets and the closest when unknown."""
    if name in presets:
        return presets[name]
    close = difflib.get_close_matches(name, list(presets), n=1, cutoff=0.0)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ExperimentInputError(f"Unknown {what} {name!r}; presets: {', '.join(sorted(presets))}.{hint}")


def select_tables(preset: AblationPreset, keys: Optional[Sequence[str]]) -> List[AblationTable]:
    """The tables of ``preset`` named in ``keys`` (all when None), in the preset's order;
    ExperimentInputError for a key the preset lacks."""
    known = [t.key for t in preset.tables]
    if keys is None:
        return list(preset.tables)
    unknown = [k for k in keys if k not in known]
    if unknown:
        raise ExperimentInputError(f"Preset {preset.name!r} has no table {unknown[0]!r}; its tables: {', '.join(known)}.")
    return [t for t in preset.tables if t.key in keys]
