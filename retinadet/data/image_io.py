"""Reading images from any iopath location as uint8 arrays, upright and in a chosen channel order."""
from typing import Optional

import numpy as np
from iopath.common.file_io import g_pathmgr
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["IMAGE_FORMATS", "check_uint8_image", "read_image"]

# Channel orders the model accepts (INPUT.FORMAT).
IMAGE_FORMATS = ("RGB", "BGR")


def _where(file_name: str, dataset_name: Optional[str]) -> str:
    return f"'{file_name}'" + (f" (data set '{dataset_name}')" if dataset_name else "")


# PIL modes of one-channel images deeper than 8 bits: 16-bit PNG/TIFF ("I;16*") and 32-bit integers ("I",
# which is how older Pillow opens 16-bit PNGs). PIL's convert("RGB") clips them to 255 (a white image).
_WIDE_INTEGER_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _rgb8(image: Image.Image, where: str) -> np.ndarray:
    """``image`` as a uint8 (H, W, 3) RGB array. One-channel 16-bit images (values 0-65535) are scaled
    to 0-255 (v * 255 / 65535, rounded); ValueError naming ``where`` for a float image or integers
    outside 0-65535, whose range is not known."""
    if image.mode in _WIDE_INTEGER_MODES:
        values = np.asarray(image).astype(np.int64)
        low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
        if low < 0 or high > 65535:
            raise ValueError(f"Image file {where} has {image.mode!r} pixels from {low} to {high}, outside the 16-bit "
                             "range 0-65535 that can be scaled to 8 bits; convert it to an 8-bit image.")
        gray = ((values * 255 + 32767) // 65535).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode == "F":
        raise ValueError(f"Image file {where} holds 32-bit float pixels (PIL mode 'F') whose range is not known; "
                         "convert it to an 8-bit image.")
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def read_image(file_name: str, format: str = "RGB", dataset_name: Optional[str] = None) -> np.ndarray:
    """Read an image file, apply its EXIF orientation and return it in ``format`` channel order.

    Args:
        file_name: local path or iopath URI.
        format: "RGB" or "BGR".
        dataset_name: only used to make error messages point at the data set.

    Returns:
        uint8 ndarray (H, W, 3), H x W being the size after the EXIF orientation is applied
        (the size a viewer shows, and the size COCO annotations refer to). 16-bit grayscale images
        are scaled to 8 bits (65535 -> 255).

    Raises:
        ValueError: unknown ``format``, a file that is not a readable image, or a float image (or
            one of integers outside 0-65535), whose scale to 8 bits is unknown.
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
    array = _rgb8(image, _where(file_name, dataset_name))
    if format == "BGR":
        array = array[:, :, ::-1]
    # A fresh contiguous array: writable, and convertible to a tensor without negative strides.
    return np.ascontiguousarray(array)


def check_uint8_image(image, channels_first: bool, where: str, accepted: str, layout_hint: str) -> np.ndarray:
    """``image`` as a contiguous uint8 array of 3 channels, (3, H, W) when ``channels_first`` else
    (H, W, 3), with H, W >= 1; otherwise a ValueError that starts with ``where`` and names the type,
    shape, dtype or emptiness. ``accepted`` says what may be given instead of a wrong type, and
    ``layout_hint`` follows the expected layout in the shape message."""
    layout = "(3, H, W)" if channels_first else "(H, W, 3)"
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{where} is a {type(image).__name__}; give {accepted}.")
    channel_axis = 0 if channels_first else 2
    if image.ndim != 3 or image.shape[channel_axis] != 3:
        raise ValueError(f"{where} has shape {tuple(image.shape)}; expected {layout} {layout_hint}.")
    if image.dtype != np.uint8:
        raise ValueError(f"{where} has dtype {image.dtype}; expected uint8 pixels 0-255 (a float image in 0-1: "
                         "multiply by 255 and convert with .astype(np.uint8)).")
    height, width = image.shape[1:] if channels_first else image.shape[:2]
    if height == 0 or width == 0:
        raise ValueError(f"{where} is empty ({height} x {width} pixels).")
    return np.ascontiguousarray(image)
