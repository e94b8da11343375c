"""Atomic artifact writing: every file a stage produces appears whole or not at all."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the same folder as ``path``; rename it onto ``path`` on success.

    The temporary file keeps the target's suffix so libraries that infer the format from the
    name (PIL, pandas, torch) behave the same. On error the temporary file is removed and the
    old ``path`` (if any) is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            # mkstemp makes the file 0600; give it the permissions a plain open() would (umask).
            os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def save_torch(path: str | Path, obj: Any) -> Path:
    """``torch.save`` atomically, byte-identical for identical ``obj``.

    Saving to a file name records that name in the archive (the random temporary name would make
    two saves of the same weights differ); saving to a buffer records a fixed one.
    """
    import io

    import torch  # only callers that save tensors pay for the import

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write(path, lambda p: p.write_bytes(buf.getvalue()))


def remove_orphans(root: str | Path) -> list[Path]:
    """Delete temporary files that :func:`atomic_path` left behind when a process was killed mid-write.

    Only safe while no other process writes below ``root`` (the run directory's lock ensures it).
    """
    orphans = [p for p in Path(root).rglob(".*.tmp*") if p.is_file()]
    for p in orphans:
        p.unlink(missing_ok=True)
    return orphans


def atomic_write(path: str | Path, writer: Callable[[Path], Any]) -> Path:
    """Call ``writer(tmp_path)`` and atomically move the result to ``path``."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays, Paths and sets appear in metrics; make them plain JSON.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (Path, set, frozenset, tuple)):
        return str(obj) if isinstance(obj, Path) else list(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")
