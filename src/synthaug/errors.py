"""What the command line says when the file system or the user stops a command.

Unexpected file-system failures (a full disk, a read-only folder, a path through a file) become
one line that names the path and what to do; ``-v`` adds the traceback. Work already written is
kept: every artifact is written atomically and the run resumes with the same command.
"""

from __future__ import annotations

import errno
import shlex
import shutil
import sys
from pathlib import Path

# torch.save (zip writer) reports a full disk as a RuntimeError with one of these.
_TORCH_WRITE_FAILURES = ("unexpected pos", "file write failed", "PytorchStreamWriter failed")


def _existing_parent(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def resume_hint() -> str:
    return "synthaug " + shlex.join(sys.argv[1:])


def describe_os_error(exc: BaseException, where: Path | None = None) -> str | None:
    """A one-line explanation of a file-system failure, or None when ``exc`` is not one."""
    if isinstance(exc, RuntimeError) and any(s in str(exc) for s in _TORCH_WRITE_FAILURES):
        exc = OSError(errno.ENOSPC, "No space left on device")
    if not isinstance(exc, OSError):
        return None
    path = Path(exc.filename) if exc.filename else where
    at = f" at {path}" if path else ""
    if exc.errno == errno.ENOSPC:
        free = shutil.disk_usage(_existing_parent(path)).free / 2**20 if path else float("nan")
        return (
            f"no space left on device{at}; {free:.0f} MB free. Nothing finished is lost: free space and run "
            f"the same command again to resume ({resume_hint()})"
        )
    if exc.errno == errno.EROFS:
        return f"cannot write{at}: the file system is read-only; choose a writable --out folder"
    if isinstance(exc, PermissionError):
        return f"permission denied{at}; choose a folder you can write to, or fix its permissions"
    if isinstance(exc, NotADirectoryError):
        return f"cannot use{at}: part of that path is a file, not a folder; choose another path"
    if isinstance(exc, FileExistsError):
        return f"cannot create{at}: a file of that name exists; choose another path"
    return f"{exc.strerror or exc}{at}"
