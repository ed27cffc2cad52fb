"""One run per OUTPUT_DIR: an exclusive lock held for the life of the process.

The lock is a POSIX record lock (``lockf``) on ``OUTPUT_DIR/.run.lock``, so the operating system
releases it when the process ends in any way (kill -9 included) and no stale lock is ever left behind.
Unlike an ``flock``, it belongs to the process alone: data-loader workers forked from it do not share
it, so a worker that outlives a killed run does not keep the folder locked. The file records the
holder's pid and command line, for the message a second run gets.
"""
import errno
import os
import sys
from typing import Dict

try:
    import fcntl
except ImportError:  # not on POSIX: no lock, as before
    fcntl = None

__all__ = ["LOCK_FILE", "OutputDirInUseError", "lock_output_dir"]

LOCK_FILE = ".run.lock"
# Real path of each locked folder -> the open lock file (kept open: closing it would release the lock).
_HELD: Dict[str, object] = {}


class OutputDirInUseError(RuntimeError):
    """Another live process holds the OUTPUT_DIR lock; ``holder`` is what it wrote (pid, command)."""

    def __init__(self, output_dir: str, holder: str) -> None:
        self.output_dir, self.holder = output_dir, holder
        super().__init__(
            f"OUTPUT_DIR {output_dir} is in use by another run ({holder or 'holder unknown'}); its metrics.json, "
            "log.txt and checkpoints would interleave with this one's. Wait for it to end, stop it, or set another "
            "OUTPUT_DIR."
        )


def lock_output_dir(output_dir: str) -> None:
    """Take the exclusive lock of ``output_dir`` (which must exist) for the rest of this process.

    Calling it again for a folder this process already holds does nothing. Raises
    OutputDirInUseError naming the holder's pid and command when another process holds it."""
    if fcntl is None:
        return
    key = os.path.realpath(output_dir)
    if key in _HELD:
        return
    path = os.path.join(output_dir, LOCK_FILE)
    handle = open(path, "a+")
    try:
        handle.seek(0)
        fcntl.lockf(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in (errno.EACCES, errno.EAGAIN):
            handle.close()
            raise
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        raise OutputDirInUseError(output_dir, holder) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}: {' '.join(sys.argv)}\n")
    handle.flush()
    _HELD[key] = handle
