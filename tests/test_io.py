"""Atomic writes: whole files or none, with ordinary permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from synthaug.io import atomic_path, read_json, write_json


def test_atomic_write_leaves_no_temp_and_readable_permissions(tmp_path: Path) -> None:
    path = write_json(tmp_path / "a" / "x.json", {"k": 1})
    assert read_json(path) == {"k": 1}
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_failed_write_keeps_old_file(tmp_path: Path) -> None:
    path = write_json(tmp_path / "x.json", {"old": True})
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert read_json(path) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
