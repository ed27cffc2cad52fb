"""Atomic file writes: every result, checkpoint, config and picture the framework saves goes through
``atomic_write``, so a reader (or the next run) sees either the old file or the whole new one.

Local paths: a temporary file beside the target (same folder, so the rename stays on one file
system), written, flushed and fsync'ed, then ``os.replace``'d over the target; on any error the
temporary file is removed and the target is untouched. Other iopath URIs (``manifold://``,
``s3://``, ...): the same temporary file is written locally, then copied with
``PathManager.copy_from_local`` (iopath's handlers replace the object whole).
"""
import contextlib
import json
import os
import tempfile
from typing import IO, Any, Callable, Iterator, Optional

from iopath.common.file_io import PathManager as _IopathPathManager

__all__ = [
    "PathManager", "atomic_write", "atomic_save", "atomic_write_json", "atomic_write_text", "save_figure",
]

PathManager = _IopathPathManager()


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files readable by the owner only; finished files get the usual open() permissions.
_FILE_MODE = 0o666 & ~_read_umask()


class _RecordingFile:
    """A file whose first write error (OSError: disk full, quota) is kept: libraries that write
    through their own layers (torch.save, matplotlib) report it as an unrelated error."""

    def __init__(self, f: IO) -> None:
        self._f = f
        self.error: Optional[OSError] = None

    def write(self, data) -> int:
        try:
            return self._f.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def _local_path(path: str) -> str:
    return path[len("file://"):] if path.startswith("file://") else path


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "w", unchanged: str = "") -> Iterator[IO]:
    """Open a temporary file for ``path`` in ``mode`` ("w" text or "wb" binary) and yield it; when the
    block ends without error, make it ``path`` in one rename. On error the temporary file is removed,
    ``path`` keeps its old content, and a write refused by the disk (ENOSPC, EDQUOT, ...) raises
    ``OSError(errno, "<reason>: could not write <path>; <unchanged>")`` whatever layer reported it.

    ``unchanged`` names what the caller promises is still intact (e.g. "the previous checkpoint is
    unchanged"); by default, ``path``'s old content.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write writes whole files: mode must be 'w' or 'wb', got {mode!r}.")
    local = _is_local(path)
    target = _local_path(path) if local else path
    directory = os.path.dirname(os.path.abspath(target)) if local else None
    if directory:
        os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=directory)
    recording = None
    try:
        os.chmod(tmp, _FILE_MODE)
        with os.fdopen(fd, mode) as f:
            recording = _RecordingFile(f)
            yield recording
            f.flush()
            os.fsync(f.fileno())
        if local:
            os.replace(tmp, target)
        else:
            PathManager.copy_from_local(tmp, target, overwrite=True)
    except BaseException as e:
        cause = recording.error if recording is not None and recording.error is not None else e
        if isinstance(cause, OSError) and cause.errno is not None and not isinstance(e, KeyboardInterrupt):
            what = unchanged or f"{path} keeps its previous content"
            raise OSError(cause.errno, f"{os.strerror(cause.errno)}: could not write {path}; {what}") from e
        raise
    finally:
        with contextlib.suppress(OSError):
            os.remove(tmp)


def atomic_save(path: str, write: Callable[[IO], Any], binary: bool = True, unchanged: str = "") -> None:
    """Call ``write(f)`` on the temporary file of ``atomic_write(path)`` (binary unless ``binary`` is False):
    for writers that take a file object, e.g. ``lambda f: torch.save(obj, f)`` or ``fig.savefig``."""
    with atomic_write(path, "wb" if binary else "w", unchanged=unchanged) as f:
        write(f)


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_write(path, "w") as f:
        f.write(text)


def atomic_write_json(path: str, obj: Any, **dump_kwargs: Any) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (``dump_kwargs`` go to ``json.dumps``).

    The text is made by ``json.dumps`` in one piece: its C encoder is about 5x faster than
    ``json.dump``'s chunked pure-Python one (a COCO results file of 500k detections).
    """
    text = json.dumps(obj, **dump_kwargs)
    with atomic_write(path, "w") as f:
        f.write(text)


def save_figure(fig: Any, path: str, dpi: int = 100) -> str:
    """Lay out the matplotlib figure ``fig``, write it to ``path`` as a PNG of ``dpi`` dots per inch
    atomically (a reader sees the old picture or the whole new one) and close it. Returns ``path``."""
    import matplotlib.pyplot as plt

    try:
        fig.tight_layout()
        atomic_save(path, lambda f: fig.savefig(f, format="png", dpi=dpi))
    finally:
        plt.close(fig)
    return path
