"""One study process per run directory: ``RUN_DIR/.lock`` names its holder and proves it is alive.

The lock file is created atomically (``O_CREAT | O_EXCL``, which shared filesystems such as NFS
v3+ honour) and holds the holder's host, pid, start time and a random token. A thread refreshes
its modification time every ``heartbeat`` seconds, so a holder on another machine is known to be
alive without asking that machine. A lock is stale, and is taken over, when its holder ran on
this host and its pid is gone, or when its heartbeat is older than ``stale_after`` seconds.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

LOCK = ".lock"


class RunDirLocked(RuntimeError):
    """Another live process holds the run directory."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """``with RunLock(run_dir):`` holds the run directory for this process (see the module doc)."""

    def __init__(self, root: str | Path, heartbeat: float = 10.0, stale_after: float = 60.0) -> None:
        self.path = Path(root) / LOCK
        self.heartbeat, self.stale_after = heartbeat, stale_after
        self.token = uuid.uuid4().hex
        self.taken_over: dict[str, Any] | None = None  # the stale holder this lock replaced, if any
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def holder(self) -> dict[str, Any] | None:
        """The lock file's content and heartbeat age, or None when there is no lock."""
        try:
            text, mtime = self.path.read_text(encoding="utf-8"), self.path.stat().st_mtime
        except FileNotFoundError:
            return None
        try:
            info = json.loads(text)
        except json.JSONDecodeError:  # a holder killed between create and write
            info = {}
        return {**info, "heartbeat_age_s": max(0.0, time.time() - mtime), "last_heartbeat": mtime}

    def _stale(self, info: dict[str, Any]) -> bool:
        if info.get("host") == socket.gethostname() and isinstance(info.get("pid"), int) and not _alive(info["pid"]):
            return True
        return float(info["heartbeat_age_s"]) > self.stale_after

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                info = self.holder()
                if info is None:
                    continue  # released meanwhile
                if not self._stale(info):
                    raise RunDirLocked(self._busy_message(info)) from None
                self._take_over(info)
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self._record(), f)
            self._thread = threading.Thread(target=self._beat, name="run-lock-heartbeat", daemon=True)
            self._thread.start()
            return self
        raise RunDirLocked(f"could not take the lock {self.path}: other processes keep taking it; try again")

    def _record(self) -> dict[str, Any]:
        started = dt.datetime.now().astimezone().isoformat(timespec="seconds")
        return {"host": socket.gethostname(), "pid": os.getpid(), "started": started, "token": self.token}

    def _take_over(self, info: dict[str, Any]) -> None:
        """Move the stale lock aside (atomic rename: of two processes taking over, one wins)."""
        aside = self.path.with_name(f"{LOCK}.stale-{self.token}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return  # another process moved it first
        aside.unlink(missing_ok=True)
        self.taken_over = info

    def _busy_message(self, info: dict[str, Any]) -> str:
        who = f"pid {info.get('pid', '?')} on host {info.get('host', '?')}, started {info.get('started', '?')}"
        return (
            f"run directory '{self.path.parent}' is in use by another synthaug process ({who}; last heartbeat "
            f"{info['heartbeat_age_s']:.0f} s ago). Wait for it to finish or stop it; a lock whose holder is gone "
            f"is taken over automatically (after {self.stale_after:.0f} s without a heartbeat from another host)"
        )

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            with contextlib.suppress(OSError):  # the next beat tries again
                os.utime(self.path)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        info = self.holder()
        if info is not None and info.get("token") == self.token:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
