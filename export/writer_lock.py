"""One writer per bundle: exports, verify and the pipeline hold an exclusive lock while they write into a bundle.

Two exports into one --out used to both report success while the bundle kept only the last one's files. The lock is
an OS file lock (`fcntl.flock`) on a hidden file beside the bundle (`.NAME.lock`, not inside it: the bundle folder is
swapped whole). The kernel drops it when its process dies, so a lock left by a killed writer is simply free again;
the file keeps the holder's pid only to name it in the refusal. The holder removes the file when it is done; a writer
that locked a file removed meanwhile (its inode no longer at the path) starts over, so two writers never hold two
different files. Re-entrant within a process (the pipeline holds the lock while its export and verify steps take it
again).
"""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from mobile_app.runtime.errors import UserError

_HELD: dict[Path, int] = {}  # lock path -> depth, for this process


def lock_path(bundle_dir: Path) -> Path:
    bundle_dir = Path(bundle_dir).resolve()
    return bundle_dir.parent / f".{bundle_dir.name}.lock"


@contextlib.contextmanager
def bundle_writer(bundle_dir: str | Path, action: str = "writing"):
    """Hold the bundle's writer lock for the block, or refuse in one line naming the holder's pid."""
    path = lock_path(Path(bundle_dir))
    if path in _HELD:
        _HELD[path] += 1
        try:
            yield
        finally:
            _HELD[path] -= 1
        return
    fd = _acquire(path, bundle_dir, action)
    _HELD[path] = 1
    try:
        yield
    finally:
        del _HELD[path]
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(fd)  # closing drops the flock


def _acquire(path: Path, bundle_dir, action: str) -> int:
    """An fd holding the flock of the file now at `path` (retried if the file was replaced while we waited)."""
    import fcntl

    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise UserError(f"cannot write beside {bundle_dir} ({error.strerror}); choose a writable --out") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise UserError(f"{bundle_dir} is being written by {holder}; wait for it to finish (or stop it), then run again; "
                            "nothing was written") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the previous holder removed this file after we opened it: lock the new one
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} ({action}, since {time.strftime('%H:%M:%S')})\n".encode(), 0)
        return fd
