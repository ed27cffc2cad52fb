"""The loop every converter shares: rename each key, drop some, and refuse unknown ones together."""
from typing import Callable, Dict, List, Optional

from torch import Tensor

__all__ = ["rename_state_dict"]


def rename_state_dict(
    state_dict: Dict[str, Tensor], rename: Callable[[str], Optional[str]], what: str, layouts: str
) -> Dict[str, Tensor]:
    """Apply ``rename`` to every key of ``state_dict``.

    Args:
        state_dict: name -> tensor.
        rename: returns the new name, "" to drop the key, or None for a key it does not know.
        what: the kind of checkpoint, for the error ("torchvision RetinaNet").
        layouts: the key names that were expected, for the error.

    Returns:
        A new dict holding the same tensors (not copied) under the new names.

    Raises:
        ValueError: listing the unknown keys (the first ten and how many more).
    """
    converted: Dict[str, Tensor] = {}
    unknown: List[str] = []
    for key, value in state_dict.items():
        renamed = rename(key)
        if renamed is None:
            unknown.append(key)
        elif renamed:
            converted[renamed] = value
    if unknown:
        shown = ", ".join(repr(k) for k in unknown[:10])
        more = f" (and {len(unknown) - 10} more)" if len(unknown) > 10 else ""
        raise ValueError(
            f"{len(unknown)} key(s) of the {what} state dict are not recognised: {shown}{more}. "
            f"Expected the key names of {layouts}."
        )
    return converted
