"""What a report shows beyond its verdicts, computed once at certification time
(docs/architecture.md §7).

The seed's toy-problem trajectory of the backend, the package that defines the implementation
under test, and for every failing target with a counterexample: the counterexample's inputs and
the per-step series of the violating element (the implementation's value, the exact value —
the oracle re-aligned on the implementation's own values, as the judge does — and the bound).
The numbers go into the backend's JSON, so rendering and merging never run a backend.

They are computed in a child process (``python -m conformance.evidence DIR``, asked one item at
a time; under pytest in the background while the tests run, :class:`Background`) that loads
each backend once, by the words the user named it with: a backend that crashes, exits or hangs
there costs that item of the evidence (its reason recorded), never the report; a new child
serves the next item.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from conformance import forkserver

TIMEOUT = 120.0  # seconds for one answer of the child process (loading a backend included)
CALL_TIMEOUT = 60  # seconds for one item inside it (SIGALRM: Python code only)
_MAX_SHOWN = 8  # gradients of the violating element shown per counterexample
_FIELDS = ("params", "square_avg", "grad_avg", "momentum_buffer")


def jsonable(x: Any) -> float | str | None:
    """A float for JSON: non-finite values as their repr ("nan", "inf", "-inf")."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else repr(x)


def number(x: float | str | None) -> float:
    """The inverse of :func:`jsonable` (None reads as NaN)."""
    return math.nan if x is None else float(x)


def version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def implementation_package(backend: Any) -> dict[str, Any]:
    """The package that defines the implementation under test: the backend's ``package``
    attribute ``(name, version)`` when it declares one (a driver knows the optimizer it
    drives), else the installed distribution of the backend class's top-level module."""
    declared = getattr(backend, "package", None)
    if declared:
        name, declared_version = declared
        return {"name": str(name),
                "version": None if declared_version is None else str(declared_version),
                "source": "declared by the backend"}
    module = type(backend).__module__.split(".")[0]
    dists = importlib.metadata.packages_distributions().get(module, [])
    if not dists:
        return {"name": module, "version": None,
                "source": f"module {module} (no installed distribution)"}
    return {"name": dists[0], "version": version(dists[0]),
            "source": f"the distribution of the backend's module {module}"}


def _element(a: Any, index: tuple[int, ...]) -> float:
    """Element ``index`` of ``a`` in the judge's real-pair representation."""
    from conformance.tolerance import _pairs

    return float(_pairs(a)[index])


def element_json(a: Any, index: tuple[int, ...]) -> float | str | list[float | str] | None:
    """An input's element for the reader: ``index`` is the violation's, into the judged field
    (one more axis, real and imaginary part, when that field is complex; none when it is a real
    state of a complex parameter, complex_mode "modulus"), so a complex element of the input is
    ``[re, im]``."""
    x = np.asarray(a)[index[:np.ndim(a)]]
    if np.iscomplexobj(x) and len(index) == np.ndim(a):
        return [jsonable(x.real), jsonable(x.imag)]
    return jsonable(_element(a, index))


def _bound_element(bound: Any, exact: np.ndarray, index: tuple[int, ...]) -> float:
    """Element ``index`` of a bound array, broadcast as the judge broadcasts it."""
    b = np.asarray(bound, dtype=np.float64)
    if b.ndim == exact.ndim + 1:
        b = b[..., 0]  # modulus: one real square_avg per complex element
    return float(np.broadcast_to(b, exact.shape)[index])


def failure_series(backend: Any, caps: Any, case: Any,
                   violation: dict[str, Any]) -> dict[str, Any] | None:
    """impl, exact and bound of the violating element at every step up to the violating one,
    from the judge's own step (:func:`conformance.tolerance._one_step`) and re-alignment.

    None when the violation names no element (a structural or hyperparameter failure).
    ``matches`` says whether the last step reproduces the certified violation (a property that
    judges against something other than the oracle's trajectory, e.g. P9, may not)."""
    from conformance.guard import call_backend
    from conformance.tolerance import _one_step, _pairs
    from spec.rmsprop import init_state

    i, field, step, index = (violation.get(k) for k in ("param", "field", "step", "index"))
    if None in (i, field, step, index) or field not in _FIELDS:
        return None
    index = tuple(index)
    traj = call_backend(backend, caps, case)
    if field != "params" and traj.states is None:
        return None
    params = tuple(case.params)
    state = case.initial_state if case.initial_state is not None else init_state(params, case.hp)
    err = None
    rows = []
    for k in range(min(step + 1, len(traj.params))):
        exact_p, exact_s, bounds, err_next = _one_step(case, params, state, err, k)
        exact_raw = exact_p[i] if field == "params" else getattr(exact_s[i], field)
        exact = _pairs(exact_raw)
        observed = traj.params[k][i] if field == "params" else getattr(traj.states[k][i], field)
        if np.iscomplexobj(observed) and not np.iscomplexobj(exact_raw):
            observed = np.asarray(observed).real  # judged on the real part, as the judge does
        rows.append({"step": k, "observed": jsonable(_element(observed, index)),
                     "exact": jsonable(float(exact[index])),
                     "bound": jsonable(_bound_element(getattr(bounds, field)[i], exact, index))})
        params = tuple(np.asarray(x) for x in traj.params[k])
        state, err = (traj.states[k], None) if traj.states is not None else (exact_s, err_next)
    if not rows:
        return None
    matches = _matches(rows[-1], violation, step)
    return {"field": field, "param": i, "index": list(index), "steps": rows, "matches": matches}


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-300)


def _matches(last: dict[str, Any], violation: dict[str, Any], step: int) -> bool:
    """The last row is the certified violation: same step, exact and observed values."""
    return (last["step"] == step
            and _same(number(last["exact"]), number(violation.get("expected")))
            and _same(number(last["observed"]), number(violation.get("observed"))))


def case_inputs(case: Any, violation: dict[str, Any]) -> dict[str, Any]:
    """What a reader needs of a counterexample's inputs: hyperparameters, shapes, and the
    violating element's starting value and gradients."""
    hp = case.hp.to_dict()
    out: dict[str, Any] = {
        "hparams": {k: (jsonable(v) if isinstance(v, float) else v) for k, v in hp.items()},
        "params": [f"{p.dtype}{list(np.shape(p))}" for p in case.params],
        "steps": case.n_steps, "device": case.device,
        "lrs": None if case.lrs is None else [jsonable(x) for x in case.lrs[:_MAX_SHOWN]],
        "layouts": None if case.layouts is None else list(case.layouts),
        "initial_state": case.initial_state is not None,
    }
    i, index = violation.get("param"), violation.get("index")
    if i is not None and index is not None and i < len(case.params):
        index = tuple(index)
        last = min(_MAX_SHOWN, (violation.get("step") or 0) + 1)
        try:
            out["element"] = {
                "param": i, "index": list(index),
                "start": element_json(case.params[i], index),
                "grads": [element_json(gs[i], index) for gs in case.grads[:last]],
            }
        except (IndexError, ValueError):  # an index into a state of another shape
            pass
    return out


def _counterexample(backend: Any, caps: Any, path: str) -> dict[str, Any]:
    from conformance import serialize

    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    violation = doc.get("violation") or {}
    out: dict[str, Any] = {"violation": violation, "label": doc.get("label")}
    if doc.get("case") is None:
        return out
    case = serialize.case_from_json(doc["case"])
    out["inputs"] = case_inputs(case, violation)
    try:
        out["series"] = _guarded(failure_series, backend, caps, case, violation)
    except Exception as exc:  # the replay failing otherwise says nothing new
        out["series_not_recorded"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    return out


def _guarded(fn: Any, *args: Any) -> Any:
    def alarm(signum: int, frame: Any) -> None:
        raise TimeoutError(f"no answer within {CALL_TIMEOUT} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(CALL_TIMEOUT)
    try:
        return fn(*args)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _seed(backend: Any) -> dict[str, Any]:
    from conformance import toyproblem

    for dtype in ("float64", "float32"):  # the first of these the backend supports
        points = _guarded(toyproblem.backend_trajectory, backend, 10, dtype)
        if points is not None:
            return {"dtype": dtype, "points": [[jsonable(x), jsonable(y)] for x, y in points]}
    return {"not_recorded": "the backend has neither float64 nor float32"}


def _why(exc: BaseException) -> dict[str, str]:
    return {"not_recorded": f"{type(exc).__name__}: {str(exc)[:200]}"}


def _write(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc), encoding="utf-8")
    os.replace(tmp, path)


def serve(directory: str) -> None:
    """The child process: one request per line on stdin (``{"spec", "key", "path"}``; key
    None: the seed's trajectory and the implementation's package), each answer written to
    ``directory/<n>.json`` for the n-th request (what a backend prints cannot mix in).
    Backends are loaded once, by spec."""
    from conformance import registry

    loaded: dict[str, tuple[Any, Any]] = {}
    for n, line in enumerate(sys.stdin, 1):
        request = json.loads(line)
        try:
            if request["spec"] not in loaded:
                backend = registry.load(request["spec"])
                loaded[request["spec"]] = (backend, registry.capabilities_of(backend))
            backend, caps = loaded[request["spec"]]
            if request["key"] is None:
                answer = {"package": implementation_package(backend), "seed": _seed_or_why(backend)}
            else:
                answer = _counterexample(backend, caps, request["path"])
        except Exception as exc:  # the evidence is not what is certified
            answer = _why(exc)
        _write(Path(directory) / f"{n}.json", answer)


def _seed_or_why(backend: Any) -> dict[str, Any]:
    try:
        return _seed(backend)
    except Exception as exc:  # the toy problem is not what is certified
        return _why(exc)


class _Child:
    """A ``serve`` process, asked one item at a time."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="rmsprop-evidence-")
        self._dir = Path(self._tmp.name)
        self._asked = 0
        self._err = (self._dir / "stderr.txt").open("w", encoding="utf-8")
        # The child imports backends (module:attr) from where this process found them.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p or os.getcwd() for p in sys.path)}
        self._proc = subprocess.Popen(
            [forkserver.python(), "-m", "conformance.evidence", str(self._dir)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._err, env=env,
            text=True)

    def _ended(self) -> str:
        self._err.flush()
        tail = (self._dir / "stderr.txt").read_text(encoding="utf-8").strip().splitlines()[-1:]
        return (f"the evidence process ended with code {self._proc.returncode}: "
                f"{(tail or [''])[0][:200]}")

    def ask(self, spec: str, key: str | None, path: str) -> dict[str, Any] | None:
        """The answer, or None when the process ended or hung (then :attr:`why` says so)."""
        self._asked += 1
        answer = self._dir / f"{self._asked}.json"
        try:
            self._proc.stdin.write(json.dumps({"spec": spec, "key": key, "path": path}) + "\n")
            self._proc.stdin.flush()
        except OSError:
            self._proc.wait()
            self.why = self._ended()
            return None
        deadline = time.monotonic() + TIMEOUT
        while not answer.exists():
            if self._proc.poll() is not None:
                self.why = self._ended()
                return None
            if time.monotonic() > deadline:
                self._proc.kill()
                self._proc.wait()
                self.why = f"the evidence process did not answer within {TIMEOUT:g} s"
                return None
            time.sleep(0.02)
        return json.loads(answer.read_text(encoding="utf-8"))

    def close(self) -> None:
        try:
            self._proc.stdin.close()
            self._proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self._proc.kill()
            self._proc.wait()
        self._err.close()
        self._tmp.cleanup()


class Background:
    """The evidence of backends, computed while a session's tests run.

    A thread asks one child process (``serve``) for one item at a time: first every seed, then
    each counterexample given by :meth:`add` as failures come in; the child loads each backend
    once. A backend that ends or hangs the child costs that item (its reason recorded) and a
    new child serves the next. :meth:`finish` adds what was not given, waits for the rest and
    returns every backend's evidence, so a session waits at its end only for the failures found
    last."""

    def __init__(self, specs: list[str]) -> None:
        self._found = {spec: {"seed": None, "counterexamples": {}} for spec in specs}
        self._given: set[tuple[str, str]] = set()  # (spec, key) queued
        self._queue: queue.Queue[tuple[str, str | None, str] | None] = queue.Queue()
        for spec in specs:
            self._queue.put((spec, None, ""))  # None: the seed
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def add(self, spec: str, key: str, path: str) -> None:
        """Compute the series of the counterexample in ``path`` (target ``key``) of ``spec``."""
        if spec in self._found and (spec, key) not in self._given:
            self._given.add((spec, key))
            self._queue.put((spec, key, path))

    def _run(self) -> None:
        child = None
        while (item := self._queue.get()) is not None:
            spec, key, path = item
            child = child or _Child()
            answer = child.ask(spec, key, path)
            if answer is None:
                answer = {"not_recorded": child.why}
                child.close()
                child = None
            if key is None:  # {"seed", "package"}, or why neither was computed
                self._found[spec]["seed"] = answer.get("seed", answer)
                self._found[spec]["package"] = answer.get("package")
            else:
                self._found[spec]["counterexamples"][key] = answer
        if child is not None:
            child.close()

    def finish(self, counterexamples: dict[str, dict[str, str]]) -> dict[str, dict[str, Any]]:
        """Every backend's evidence (spec → document), ``counterexamples`` (spec → target key
        → file) included: the ones not given yet are computed now."""
        for spec, files in counterexamples.items():
            for key, path in files.items():
                self.add(spec, key, path)
        self._queue.put(None)
        self._thread.join()
        return {spec: {"seed": doc["seed"], "package": doc.get("package"),
                       "counterexamples": {k: doc["counterexamples"][k]
                                           for k in counterexamples.get(spec, {})}}
                for spec, doc in self._found.items()}


def collect(spec: str, counterexamples: dict[str, str]) -> dict[str, Any]:
    """The evidence of backend ``spec`` (as the user named it) and its counterexample files
    (target key → path), from a child process; what it could not compute says why."""
    return Background([spec]).finish({spec: counterexamples})[spec]


if __name__ == "__main__":
    serve(sys.argv[1])
