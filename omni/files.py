"""How omni writes files: never half a file, never over one it was not asked to replace.

    atomic_write(path)     write to a temporary name in the same directory, fsync, then rename over `path`: a
                           reader (or a crash) sees the old file or the new one, never a mix
    commit_interrupts()    defer Ctrl-C (SIGINT) across a short sequence of renames that must not stop halfway
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8"):
    """Open a temporary file beside `path` for writing; on success it replaces `path` in one rename, on any
    failure (exception, Ctrl-C) it is removed and `path` is left as it was."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".omni-tmp", dir=folder)
    try:
        os.chmod(tmp, _mode_for(path))  # mkstemp makes it private; the file keeps the mode a plain write would give
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _mode_for(path: str) -> int:
    """The existing file's permissions, or those a new file gets under the process umask."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextlib.contextmanager
def commit_interrupts():
    """Hold back SIGINT while the block runs (a few renames that must all happen), then deliver it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            raise KeyboardInterrupt
