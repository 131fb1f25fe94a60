"""Running a backend safely (docs/architecture.md §1): the one place the harness calls
``backend.run``.

:func:`call_backend` hands the backend fresh copies of the case's arrays (so that whatever it
writes into them, P6's finding, cannot change what the judge works from), runs it under the
limits in force, turns its exceptions into :class:`BackendError`, and checks the trajectory
against the contract (``Backend`` in conformance/backend.py). The limits are passed in by
whoever runs a test (:func:`limited`, a context manager: the runner, from ``--example-timeout``
and ``--memory-limit``); outside one, there are none. Nothing here judges.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np

from conformance.backend import Backend, Capabilities
from conformance.case import Case, Trajectory


class BackendError(Exception):
    """The backend raised or returned something that is not a trajectory."""


class BackendTimeout(BackendError):
    """The backend exceeded a resource limit (time per example, memory growth per test); the
    search stops at once instead of shrinking (each further example would pay the limit again)."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one test allows a backend: seconds per call (None: unlimited), and growth of this
    process's resident memory (bytes) over ``memory_baseline`` before it is judged to leak."""

    time: float | None = None
    memory_growth: int | None = None
    memory_baseline: int = 0


_UNLIMITED = Limits()
_LIMITS: contextvars.ContextVar[Limits] = contextvars.ContextVar("limits")


@contextlib.contextmanager
def limited(time_limit: float | None, memory_growth: int | None) -> Iterator[Limits]:
    """Run the enclosed backend calls under these limits (memory measured from now)."""
    limits = Limits(time_limit, memory_growth, resident_bytes() if memory_growth else 0)
    token = _LIMITS.set(limits)
    try:
        yield limits
    finally:
        _LIMITS.reset(token)


@dataclasses.dataclass
class Usage:
    """Seconds spent inside ``backend.run`` in this process (the harness overhead is the rest)."""

    backend_seconds: float = 0.0


usage = Usage()


def resident_bytes() -> int:
    """This process's resident set size (Linux /proc; 0 where unavailable). Read on every
    backend call under a memory limit, so without Python's file objects."""
    try:
        fd = os.open("/proc/self/statm", os.O_RDONLY)
    except OSError:
        return 0
    try:
        return int(os.read(fd, 128).split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
    finally:
        os.close(fd)


class _Job(NamedTuple):
    """A run the watchdog watches: whose, its allowance (seconds) and when that ends."""

    name: str
    seconds: float
    deadline: float  # time.monotonic()


class _Watchdog:
    """One thread per process that ends it when a run() it was told about outlives its
    deadline: a run stuck in native code never returns to the interpreter for SIGALRM to
    interrupt. Started on first use (a thread per call cost more than some runs)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._job: _Job | None = None
        self._pid = -1  # the process whose thread this is (a fork has none)

    @contextlib.contextmanager
    def watching(self, name: str, seconds: float) -> Iterator[None]:
        with self._cond:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(target=self._watch, daemon=True).start()
            self._job = _Job(name, seconds, time.monotonic() + seconds)
            self._cond.notify()
        try:
            yield
        finally:
            with self._cond:
                self._job = None

    def _watch(self) -> None:
        with self._cond:
            while True:
                job = self._job
                if job is None:
                    self._cond.wait()
                    continue
                left = job.deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                sys.stderr.write(f"rmsprop-conformance: {job.name}.run is stuck in native code "
                                 f"after {job.seconds:g} s; ending this process\n")
                sys.stderr.flush()
                os._exit(70)


_watchdog = _Watchdog()


@contextlib.contextmanager
def _deadline(name: str, limit: float | None) -> Iterator[None]:
    """Interrupt a run() that outlives ``limit`` seconds.

    SIGALRM interrupts Python code; a run stuck in native code never returns to the interpreter,
    so the watchdog thread ends the whole process a little later (under pytest-xdist the worker
    is replaced and the test reported as crashed).
    """
    if not limit or threading.current_thread() is not threading.main_thread() \
            or not hasattr(signal, "setitimer"):
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise BackendTimeout(f"{name}.run did not finish within {limit:g} s "
                             "(--example-timeout)")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        with _watchdog.watching(name, 2 * limit + 10):
            yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def exposed_copy(case: Case) -> Case:
    """The case with fresh copies of every array: what a backend is handed, so that whatever it
    writes into its inputs (R24, P6's finding) cannot change the values the judge works from."""
    return case.map_arrays(lambda a: np.array(a, copy=True))


def call_backend(backend: Backend, caps: Capabilities, case: Case,
                 exposed: Case | None = None) -> Trajectory:
    """``backend.run`` on a copy of ``case`` (``exposed``, when given: P6 watches it), guarded by
    the time and memory limits; the trajectory checked against the contract."""
    limits = _LIMITS.get(_UNLIMITED)
    handed = exposed_copy(case) if exposed is None else exposed
    start = time.perf_counter()
    try:
        with _deadline(backend.name, limits.time):
            traj = backend.run(handed)
    except BackendTimeout:
        raise
    except Exception as exc:
        raise BackendError(f"{backend.name}.run raised {type(exc).__name__}: {exc}") from exc
    finally:
        usage.backend_seconds += time.perf_counter() - start
    if limits.memory_growth is not None and limits.memory_baseline:
        grown = resident_bytes() - limits.memory_baseline
        if grown > limits.memory_growth:
            raise BackendTimeout(f"{backend.name}: resident memory grew by {grown >> 20} MiB "
                                 f"during this test (limit {limits.memory_growth >> 20} MiB): "
                                 "a leak?")
    if not isinstance(traj, Trajectory):
        raise BackendError(f"{backend.name}.run returned {type(traj).__name__}, not Trajectory")
    if caps.supports("state_readout") and traj.states is None:
        raise BackendError(f"{backend.name} declares state_readout but returned no states")
    if not caps.supports("state_readout"):
        traj = Trajectory(traj.params, None)
    return traj
