import functools
import os
import signal
import time

import pytest

from synthaug.study.executors import (
    LocalProcessExecutor,
    SerialExecutor,
    Task,
    TasksFailed,
    default_workers,
    make_executor,
    run_all,
)


def _square(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def test_serial_and_process_executors_agree_and_keep_order() -> None:
    tasks = [Task(f"square {i}", functools.partial(_square, i)) for i in range(6)]
    serial = run_all(SerialExecutor(), tasks)
    pooled = run_all(LocalProcessExecutor(2), tasks)
    assert [r[0] for r in serial] == [r[0] for r in pooled] == [i * i for i in range(6)]
    assert {r[1] for r in serial} == {os.getpid()}
    assert os.getpid() not in {r[1] for r in pooled}


def test_worker_defaults_respect_memory_and_gpu() -> None:
    assert default_workers(1e9, cuda=False) == 1  # a petabyte per worker fits once at most
    assert default_workers(0.001, cuda=True) == 1
    assert 1 <= default_workers(0.001, cuda=False) <= (os.cpu_count() or 1)
    assert isinstance(make_executor(1), SerialExecutor)
    with pytest.raises(ValueError, match="workers"):
        LocalProcessExecutor(0)


def test_tasks_failed_names_every_failed_task() -> None:
    exc = TasksFailed("classifier", [("cnn__none__f1__s0", "WorkerCrashedError: died")], 4)
    assert "1 of 4 classifier tasks failed" in str(exc) and "cnn__none__f1__s0 (WorkerCrashedError" in str(exc)
    assert "run the same command again" in str(exc)


def _sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def _fail() -> None:
    raise ValueError("boom")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # what the CLI installs for SIGTERM


def test_an_interrupted_pool_stops_its_workers_at_once() -> None:
    """With the CLI's SIGTERM handler inherited, terminating a worker only ended its task and it took the
    next one: a failed or interrupted stage waited a whole task per worker before it could stop."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        tasks = [Task("fail", _fail)] + [Task(f"sleep {i}", functools.partial(_sleep, 60)) for i in range(5)]
        started = time.monotonic()
        with pytest.raises(ValueError, match="boom"):
            list(LocalProcessExecutor(2).run(tasks))
        assert time.monotonic() - started < 30  # not the 60 s of a queued task
    finally:
        signal.signal(signal.SIGTERM, previous)
