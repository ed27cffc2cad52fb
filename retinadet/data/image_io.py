"""Reading images from any iopath location as uint8 arrays, upright and in a chosen channel order."""
from typing import Optional

import numpy as np
from iopath.common.file_io import g_pathmgr
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["IMAGE_FORMATS", "read_image"]

# Channel orders the model accepts (INPUT.FORMAT).
IMAGE_FORMATS = ("RGB", "BGR")


def _where(file_name: str, dataset_name: Optional[str]) -> str:
    return f"'{file_name}'" + (f" (data set '{dataset_name}')" if dataset_name else "")


def read_image(file_name: str, format: str = "RGB", dataset_name: Optional[str] = None) -> np.ndarray:
    """Read an image file, apply its EXIF orientation and return it in ``format`` channel order.

    Args:
        file_name: local path or iopath URI.
        format: "RGB" or "BGR".
        dataset_name: only used to make error messages point at the data set.

    Returns:
        uint8 ndarray (H, W, 3), H x W being the size after the EXIF orientation is applied
        (the size a viewer shows, and the size COCO annotations refer to).

    Raises:
        ValueError: unknown ``format``, or a file that is not a readable image.
        FileNotFoundError: the file does not exist.
    """
    if format not in IMAGE_FORMATS:
        raise ValueError(
            f"Unknown image format {format!r} for {_where(file_name, dataset_name)}; "
            f"valid formats: {list(IMAGE_FORMATS)}."
        )
    try:
        # iopath's shared manager, so handlers a user registers (s3://, http://) apply here too.
        with g_pathmgr.open(file_name, "rb") as f:
            image = Image.open(f)
            # Decode while the file is still open; PIL reads lazily.
            image.load()
    except FileNotFoundError as e:
        raise FileNotFoundError(f"Image file {_where(file_name, dataset_name)} does not exist.") from e
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        # PIL reports truncated or corrupt data as OSError/SyntaxError, unknown formats as
        # UnidentifiedImageError (an OSError too).
        raise ValueError(f"Cannot read image file {_where(file_name, dataset_name)}: {e}") from e
    # Cameras store pixels unrotated and record the rotation in EXIF; annotations use the
    # displayed (rotated) frame, so the rotation has to be applied before anything else.
    image = ImageOps.exif_transpose(image)
    array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    if format == "BGR":
        array = array[:, :, ::-1]
    # A fresh contiguous array: writable, and convertible to a tensor without negative strides.
    return np.ascontiguousarray(array)
