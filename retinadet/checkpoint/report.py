"""WeightLoadReport: what loading weights into a model (or a backbone) did, key by key."""
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, List

__all__ = ["WeightLoadReport", "BN_COUNTER", "group_keys"]

# BatchNorm bookkeeping that checkpoints carry but frozen norms and group norms do not hold.
BN_COUNTER = "num_batches_tracked"


def group_keys(keys: List[str]) -> List[str]:
    """Group keys by module: ["a.b.weight", "a.b.bias"] -> ["a.b.{weight, bias}"]."""
    groups: Dict[str, List[str]] = defaultdict(list)
    for key in keys:
        module, _, name = key.rpartition(".")
        groups[module].append(name)
    grouped = []
    for module, names in groups.items():
        prefix = f"{module}." if module else ""
        grouped.append(prefix + (f"{{{', '.join(names)}}}" if len(names) > 1 else names[0]))
    return grouped


@dataclass
class WeightLoadReport:
    """The one report of every weight load (MODEL.WEIGHTS, MODEL.BACKBONE.WEIGHTS, resume).

    Attributes:
        source: where the weights came from ("path (layout)").
        loaded: keys copied into the model.
        skipped_shape: checkpoint keys not loaded because their shape differs from the model's.
        missing: model keys the checkpoint did not fill (shape-skipped keys excluded).
        unexpected: checkpoint keys the model does not have.
        skipped: checkpoint keys left out on purpose, with the reason (e.g. a classifier's).

    ``report["loaded"]`` reads a field like the dict this report replaced.
    """

    source: str = ""
    loaded: List[str] = field(default_factory=list)
    skipped_shape: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    skipped: Dict[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str):
        if name not in self.__dataclass_fields__:
            raise KeyError(f"WeightLoadReport has no field {name!r}; fields: {list(self.__dataclass_fields__)}.")
        return getattr(self, name)

    def __str__(self) -> str:
        reasons: Dict[str, int] = {}
        for reason in self.skipped.values():
            reasons[reason] = reasons.get(reason, 0) + 1
        parts = [f"{n} {r}" for r, n in sorted(reasons.items())]
        for what, keys in (("of another shape", self.skipped_shape), ("missing", self.missing),
                           ("unexpected", self.unexpected)):
            if keys:
                parts.append(f"{len(keys)} {what}")
        where = f" from {self.source}" if self.source else ""
        return f"Loaded {len(self.loaded)} tensors{where}; skipped: {', '.join(parts) or 'none'}."
