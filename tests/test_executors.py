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


def _stubborn(seconds: float) -> float:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a task that shields itself from SIGTERM
    time.sleep(seconds)
    return seconds


def _fail_soon() -> None:
    time.sleep(1)  # the stubborn task has started by then
    raise ValueError("boom")


@pytest.mark.parametrize("shield", ["a task ignores it", "the parent blocks it"])
def test_workers_that_survive_sigterm_are_stopped(shield: str) -> None:
    """SIGTERM alone can miss a worker: a task may ignore it, and a mask that blocks it is inherited
    through fork. The pool then ran every queued task before a failed stage could stop (180 s in CI)."""
    blocked = {signal.SIGTERM} if shield == "the parent blocks it" else set()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        first = _stubborn if shield == "a task ignores it" else _sleep
        tasks = [Task("first", functools.partial(first, 60)), Task("fail", _fail_soon)]
        tasks += [Task(f"sleep {i}", functools.partial(_sleep, 60)) for i in range(4)]
        started = time.monotonic()
        with pytest.raises(ValueError, match="boom"):
            list(LocalProcessExecutor(2).run(tasks))
        assert time.monotonic() - started < 30  # not the 60 s of a task
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _torch_threads(n: int | None) -> int:
    import torch

    if n is not None:
        torch.set_num_threads(n)  # as train.threads does inside a task
    return torch.get_num_threads()


def test_every_engine_logs_the_threads_a_task_ran_with() -> None:
    """The stage benchmark counts core-minutes as seconds x threads; serial tasks logged none."""
    import torch

    before = torch.get_num_threads()
    try:
        [(_, serial)] = SerialExecutor().run([Task("serial", functools.partial(_torch_threads, 1))])
        assert serial.info["threads"] == serial.value == 1
        [(_, pooled)] = LocalProcessExecutor(2).run([Task("pooled", functools.partial(_torch_threads, None))])
        assert pooled.info["threads"] == pooled.value == max(1, (os.cpu_count() or 1) // 2)
    finally:
        torch.set_num_threads(before)
