"""Files written whole or not at all, and content hashes: the one implementation every floor uses.

Standard library only. A reader sees the old file (or folder) or the new one, never half of one:
files go through a temp file and os.replace, folders through a sibling staging folder and renames.
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import shutil
import tempfile
from pathlib import Path


def sha256_path(path: str | Path) -> str:
    """sha256 of a file, or of a directory (e.g. an .mlpackage) as its sorted relative paths and contents."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_dir():
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(child.relative_to(path).as_posix().encode() + b"\0")
            digest.update(bytes.fromhex(sha256_path(child)))
        return digest.hexdigest()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_identity(source: str | Path) -> str:
    """A model source as a cache key: a local folder or file by its content, a hub id (or keyword) by its name."""
    return sha256_path(source) if Path(source).exists() else str(source)


def current_umask() -> int:
    """The process umask (os.umask can only be read by setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, text: str | bytes) -> Path:
    """Write a file whole or not at all: a temp file beside it, then os.replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8") if isinstance(text, str) else text)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# Sibling folders of a target while it is replaced: `.NAME.staging-PID-XXXX` (being built) and `.NAME.old-PID-XXXX`
# (the folder being replaced). The writer's pid in the name tells a killed writer's leftovers from a running one's.
_WORK_KINDS = ("staging", "old")


def _work_dir(target: Path, kind: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.{kind}-{os.getpid()}-", dir=target.parent))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_leftovers(target: str | Path) -> list[Path]:
    """Delete the work folders that writers of `target` killed before they finished left behind; returns them."""
    target = Path(target)
    removed = []
    for kind in _WORK_KINDS:
        prefix = f".{target.name}.{kind}-"
        for path in target.parent.glob(glob.escape(prefix) + "*"):
            pid = path.name[len(prefix):].split("-")[0]
            if path.is_dir() and pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def make_stage(target: str | Path) -> Path:
    """An empty staging folder beside `target` (same file system, so the swap is a rename); the leftovers of killed
    writers of `target` are removed first."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(target)
    stage = _work_dir(target, "staging")
    os.chmod(stage, 0o777 & ~current_umask())  # mkdtemp makes 0700; the result should be readable like any folder
    return stage


def swap_in(stage: Path, target: Path) -> None:
    """Replace `target` with `stage` using renames only, so readers see the old or the new folder."""
    old = None
    if target.exists():
        old = _work_dir(target, "old")
        os.rmdir(old)
        os.replace(target, old)
    os.replace(stage, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def replace_dir(target: str | Path):
    """Yield an empty staging folder; on success it replaces `target` whole, on failure it is removed."""
    target = Path(target)
    stage = make_stage(target)
    try:
        yield stage
        swap_in(stage, target)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
