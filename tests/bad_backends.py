"""Deliberately bad backends: the harness must report each misbehaviour as an error or failure
of the properties it affects, and go on with the rest (tests/test_misbehaving.py).

Each is the seed's loop (implementations/seed.py), in float64 only (to keep certification short),
with one misbehaviour. Most misbehave only on cases with a learning-rate schedule, which only P3
generates: one run then shows both the affected property reported as an error or failure and the
others run to a verdict of their own.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import time
from pathlib import Path

import numpy as np

from conformance.backend import Capabilities
from conformance.case import Case, Trajectory
from implementations.seed import SeedBackend
from spec.rmsprop import ParamState


def _scheduled(case: Case) -> bool:
    return case.lrs is not None


class _Bad(SeedBackend):
    def capabilities(self) -> Capabilities:
        return Capabilities(profile="seed", dtypes=frozenset({"float64"}),
                            features=frozenset({"lr_schedule", "state_readout"}))


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or None)


class Raises(_Bad):
    """run() raises on learning-rate schedules."""

    name = "bad.raises"

    def run(self, case: Case) -> Trajectory:
        if _scheduled(case):
            raise RuntimeError("this backend cannot take more than one step")
        return super().run(case)


class WrongShapes(_Bad):
    """On learning-rate schedules every returned parameter has one element too many."""

    name = "bad.wrong_shapes"

    def run(self, case: Case) -> Trajectory:
        traj = super().run(case)
        if not _scheduled(case):
            return traj
        return Trajectory([tuple(np.append(p, p.dtype.type(0)) for p in ps)
                           for ps in traj.params], traj.states)


class WrongDtypes(_Bad):
    """On learning-rate schedules the parameters come back in float32."""

    name = "bad.wrong_dtypes"

    def run(self, case: Case) -> Trajectory:
        traj = super().run(case)
        if not _scheduled(case):
            return traj
        return Trajectory([tuple(p.astype(np.float32) for p in ps) for ps in traj.params],
                          traj.states)


class NaNs(_Bad):
    """Every parameter and state value is NaN. Deterministically, and the inputs stay untouched:
    P6 (no mutation) and P12 (determinism) hold, every property judged against the oracle fails."""

    name = "bad.nans"

    def run(self, case: Case) -> Trajectory:
        traj = super().run(case)
        nan = lambda a: np.full_like(a, np.nan)  # noqa: E731
        return Trajectory([tuple(nan(p) for p in ps) for ps in traj.params],
                          [tuple(ParamState(s.step, nan(s.square_avg)) for s in ss)
                           for ss in traj.states])


class Sleeps(_Bad):
    """Learning-rate schedules sleep for an hour (in Python: SIGALRM interrupts it). When
    $BAD_BACKENDS_SLEEPING names a file, it is created first: a test knows the run is stuck."""

    name = "bad.sleeps"

    def run(self, case: Case) -> Trajectory:
        if _scheduled(case):
            if os.environ.get("BAD_BACKENDS_SLEEPING"):
                Path(os.environ["BAD_BACKENDS_SLEEPING"]).touch()
            time.sleep(3600)
        return super().run(case)


class BusyLoops(_Bad):
    """Learning-rate schedules spin forever in the interpreter."""

    name = "bad.busy_loops"

    def run(self, case: Case) -> Trajectory:
        if _scheduled(case):
            while True:
                pass
        return super().run(case)


class StuckInNative(_Bad):
    """Learning-rate schedules (P3 only) block in libc's sleep() with SIGALRM blocked, as native
    code that never returns to the interpreter would: only the watchdog can end it."""

    name = "bad.stuck_in_native"

    def run(self, case: Case) -> Trajectory:
        if _scheduled(case):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
            _libc().sleep(3600)
        return super().run(case)


_hoard: list[np.ndarray] = []


class Leaks(_Bad):
    """On learning-rate schedules every call keeps 32 MiB (touched, so resident) in a
    module-level list."""

    name = "bad.leaks"
    leak_mib = 32

    def run(self, case: Case) -> Trajectory:
        if _scheduled(case):
            _hoard.append(np.ones(self.leak_mib << 17))  # float64: 8 bytes each
        return super().run(case)


class Flaky(_Bad):
    """Shared state between calls: every other call moves the finite results one ulp up.
    Within the error bound (P1 holds) but not bit-identical (P12 fails)."""

    name = "bad.flaky"
    calls = 0

    def run(self, case: Case) -> Trajectory:
        type(self).calls += 1
        traj = super().run(case)
        if type(self).calls % 2:
            return traj
        return Trajectory([tuple(_ulp_up(p) for p in ps) for ps in traj.params], traj.states)


def _ulp_up(a: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(a), np.nextafter(a, np.inf), a).astype(a.dtype)


class Exits(_Bad):
    """On learning-rate schedules run() ends the process, as a library calling exit() would."""

    name = "bad.exits"

    def run(self, case: Case) -> Trajectory:
        if _scheduled(case):
            os._exit(1)
        return super().run(case)


class AlwaysExits(_Bad):
    """Every call ends the process: more crashes than pytest-xdist restarts workers by default."""

    name = "bad.always_exits"

    def run(self, case: Case) -> Trajectory:
        os._exit(1)


class Segfaults(_Bad):
    """Learning-rate schedules (P3 only) read address 0: a real segmentation fault."""

    name = "bad.segfaults"

    def run(self, case: Case) -> Trajectory:
        if _scheduled(case):
            ctypes.string_at(0)
        return super().run(case)


class CapabilitiesRaise(_Bad):
    name = "bad.capabilities_raise"

    def capabilities(self) -> Capabilities:
        raise RuntimeError("cannot query the device")


class FailsInsidePytest(_Bad):
    """capabilities() raises in the pytest run only (certify's own check passes): the run ends
    without a report, as a broken pytest installation or plugin would."""

    name = "bad.fails_inside_pytest"

    def capabilities(self) -> Capabilities:
        if "PYTEST_VERSION" in os.environ:  # set by pytest for its session
            raise RuntimeError("not in pytest")
        return super().capabilities()


class CapabilitiesWrongType(_Bad):
    name = "bad.capabilities_wrong_type"

    def capabilities(self) -> dict:  # type: ignore[override]
        return {"profile": "seed"}


def not_a_backend(case: Case) -> Trajectory:
    """A function: ``module:attr`` must name a backend class, instance or zero-argument factory."""
    raise AssertionError("never called")


def makes_nothing() -> None:
    """A zero-argument factory that returns something that is not a backend."""


NOT_A_BACKEND_INT = 42


_LOADED_IN = os.getpid()  # the process that imported this module


class RecordsItsProcess(_Bad):
    """Well behaved; each run appends to the file in $RECORD_PROCESS the pid of the process that
    imported this module and the pid running it: different in a forked process that found the
    module imported already (conformance.forkserver), the same in a freshly started one."""

    name = "bad.records_its_process"

    def run(self, case: Case) -> Trajectory:
        with open(os.environ["RECORD_PROCESS"], "a", encoding="utf-8") as f:
            f.write(f"{_LOADED_IN} {os.getpid()}\n")
        return super().run(case)


class RecordsItsWorker(SeedBackend):
    """The seed (float32 and float64); each run appends to the file in $RECORD_WORKER the case's
    dtype and the xdist worker running it ("-" outside one: the evidence process)."""

    name = "bad.records_its_worker"

    def run(self, case: Case) -> Trajectory:
        with open(os.environ["RECORD_WORKER"], "a", encoding="utf-8") as f:
            f.write(f"{case.params[0].dtype} {os.environ.get('PYTEST_XDIST_WORKER', '-')}\n")
        return super().run(case)
