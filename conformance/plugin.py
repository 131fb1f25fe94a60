"""pytest plugin (entry point ``pytest11``).

``pytest --conformance-backend NAME`` (repeatable; a built-in short name, an entry-point name or
``module:attr``) collects the conformance suite (conformance/suite) for those backends. Test IDs
read ``test_oracle_match[torch.foreach-float32-cpu]``. Every option starts with
``--conformance-`` and is listed under "rmsprop-conformance" in ``pytest --help``:
``--conformance-effort`` picks how hard Hypothesis searches (quick, ci, thorough: the Hypothesis
settings profiles rmsprop-quick, rmsprop-ci, rmsprop-thorough; default ci, as for the command);
``--conformance-report-dir`` writes the JSON/Markdown/HTML reports at the end;
``--conformance-known-deviations FILE`` turns matching failures into expected failures (xfail).

Hypothesis's own options apply: ``--hypothesis-profile rmsprop-EFFORT`` is the same as
``--conformance-effort EFFORT`` (another profile name is a usage error: the search runs with one
of the effort profiles); ``--hypothesis-seed N`` seeds every search (also under the derandomised
ci effort); ``--hypothesis-show-statistics`` prints each target's search statistics.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from conformance import deviations as dev
from conformance import forkserver, registry, scheduling
from conformance.properties import BY_NAME, targets
from conformance.result import BAD, Result, Status, new_result

SUITE_DIR = Path(__file__).parent / "suite"
EFFORTS = ("quick", "ci", "thorough")
DEFAULT_EFFORT = "ci"
_EFFORT_PROFILE = "rmsprop-"  # the Hypothesis settings profile of effort E is rmsprop-E


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rmsprop-conformance")
    group.addoption("--conformance-backend", action="append", default=[], metavar="NAME",
                    help="backend to certify: a built-in short name, an entry-point name or "
                         "module:attr (repeatable)")
    group.addoption("--conformance-effort", default=None, metavar="EFFORT",
                    help="how hard to search: quick (seconds), ci (derandomised, a minute or "
                         f"two), thorough (default {DEFAULT_EFFORT})")
    group.addoption("--conformance-report-dir", default=None, metavar="DIR",
                    help="write JSON/Markdown/HTML conformance reports to DIR")
    group.addoption("--conformance-known-deviations", default=None, metavar="FILE",
                    help="TOML file of accepted deviations: matching failures become xfail")
    group.addoption("--conformance-example-timeout", default=300.0, type=float,
                    metavar="SECONDS",
                    help="error when one backend call takes longer than this (default 300)")
    group.addoption("--conformance-memory-limit", default=4096, type=int, metavar="MIB",
                    help="error when resident memory grows by more than this during one test "
                         "(default 4096)")
    group.addoption("--conformance-shard", default=None, metavar="I/N",
                    help="run only the I-th of N deterministic shares of the suite (1-based)")
    group.addoption("--conformance-progress", default=0.0, type=float, metavar="SECONDS",
                    help="print a progress line (targets done of all, elapsed, an estimate of "
                         "what is left) at most every SECONDS (default 0: off)")


def _effort(config: pytest.Config) -> str:
    """The effort from --conformance-effort or --hypothesis-profile rmsprop-EFFORT."""
    effort = config.getoption("conformance_effort")
    if effort is not None and effort not in EFFORTS:
        raise pytest.UsageError(f"--conformance-effort: {unknown_effort(effort)}")
    hypothesis_profile = config.getoption("hypothesis_profile", None)
    if hypothesis_profile is None:
        return effort or DEFAULT_EFFORT
    named = hypothesis_profile.removeprefix(_EFFORT_PROFILE)
    if not hypothesis_profile.startswith(_EFFORT_PROFILE) or named not in EFFORTS:
        raise pytest.UsageError(
            f"--hypothesis-profile {hypothesis_profile!r}: the conformance search runs with "
            f"one of the effort profiles {', '.join(_EFFORT_PROFILE + e for e in EFFORTS)} "
            "(or give --conformance-effort)")
    if effort is not None and effort != named:
        raise pytest.UsageError(f"--hypothesis-profile {hypothesis_profile} and "
                                f"--conformance-effort {effort} disagree: give one")
    return named


def unknown_effort(effort: str) -> str:
    return f"unknown effort {effort!r}; allowed: {', '.join(EFFORTS)}"


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"I/N"`` → (I, N) with 1 <= I <= N; raises ValueError naming the bad value."""
    if text is None:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"shard {text!r}: expected I/N, e.g. 1/2") from None
    if not 1 <= i <= n:
        raise ValueError(f"shard {text!r}: I must be between 1 and N")
    return i, n


@dataclasses.dataclass
class _State:
    backends: list[tuple[str, Any, Any]]  # (spec as given, backend, capabilities)
    effort: str
    report_dir: Path | None
    deviations: list[dev.Deviation]
    seed: Any  # --hypothesis-seed: an int, or any text Hypothesis accepts
    example_timeout: float | None
    memory_limit: int | None
    shard: tuple[int, int] | None
    known_deviations: str | None = None  # the file, as named
    started: float = dataclasses.field(default_factory=time.time)
    progress: _Progress | None = None
    background: Any = None  # evidence.Background, started with the session writing reports


@dataclasses.dataclass
class _Progress:
    """Targets done of all, printed at most every ``every`` seconds (and when all are done)."""

    write: Any  # writes one line to the terminal
    label: str
    every: float
    total: int = 0
    done: int = 0
    last: float = dataclasses.field(default_factory=time.monotonic)
    start: float = dataclasses.field(default_factory=time.monotonic)

    def finished_one(self) -> None:
        self.done += 1
        now = time.monotonic()
        if self.total and (self.done == self.total or now - self.last >= self.every):
            self.last = now
            elapsed = now - self.start
            left = elapsed / self.done * (self.total - self.done)
            if self.done == self.total:
                estimate = ", done"
            elif self.done >= max(3, self.total // 10):  # before that, start-up dominates
                estimate = f", about {_duration(left)} left"
            else:
                estimate = ""
            self.write(f"rmsprop-conformance: {self.label}: {self.done}/{self.total} targets, "
                       f"{_duration(elapsed)}{estimate}")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


_KEY = pytest.StashKey[_State]()
# Records reach this process (the controller under xdist) through pytest_runtest_logreport,
# which has no access to the config.
_pending: list[dict[str, Any]] = []
_live: list[_State] = []  # this process's state, for hooks that get no config


def _state(config: pytest.Config) -> _State | None:
    return config.stash.get(_KEY, None)


def pytest_configure(config: pytest.Config) -> None:
    names = config.getoption("conformance_backend")
    if not names:
        return
    effort = _effort(config)
    loaded = []
    for name in names:
        try:
            backend, caps = registry.load_declared(name)
        except registry.BackendLoadError as exc:
            raise pytest.UsageError(str(exc)) from None
        loaded.append((name, backend, caps))
    deviations: list[dev.Deviation] = []
    if config.getoption("conformance_known_deviations"):
        try:
            deviations = dev.load(
                config.getoption("conformance_known_deviations"),
                backends=[n for name, backend, _ in loaded for n in (name, backend.name)],
                devices=[d for *_, caps in loaded for d in (*caps.devices, *caps.unavailable)])
        except dev.DeviationsError as exc:
            raise pytest.UsageError(str(exc)) from None
    report_dir = config.getoption("conformance_report_dir")
    try:
        shard = parse_shard(config.getoption("conformance_shard"))
    except ValueError as exc:
        raise pytest.UsageError(f"--conformance-{exc}") from None
    state = _State(loaded, effort, Path(report_dir) if report_dir else None, deviations,
                   config.getoption("hypothesis_seed", None),
                   config.getoption("conformance_example_timeout"),
                   config.getoption("conformance_memory_limit") << 20, shard,
                   config.getoption("conformance_known_deviations") or None)
    config.stash[_KEY] = state
    _live[:] = [state]

    # Collect the suite: alone when the user named no paths, beside them otherwise.
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        config.args[:] = [str(SUITE_DIR)]
    elif not any(str(Path(a.split("::")[0]).resolve()).startswith(str(SUITE_DIR))
                 for a in config.args):
        config.args.append(str(SUITE_DIR))


def _param_id(backend: str, dtype: str | None, device: str) -> str:
    return f"{backend}-{dtype}-{device}" if dtype else backend


def _crash_record(state: _State, report: pytest.TestReport) -> Result | None:
    """The record of a suite test whose process died (xdist reports it without ours)."""
    name, _, param = report.nodeid.rpartition("::")[2].partition("[")
    prop = BY_NAME.get(name.removeprefix("test_"))
    if prop is None:
        return None
    for _spec, backend, caps in state.backends:
        for dtype, device in targets(prop, caps):
            if param.rstrip("]") == _param_id(backend.name, dtype, device):
                record = new_result(prop, backend.name, dtype, device)
                tail = str(report.longrepr).strip().splitlines()[-3:]
                record.update(status=Status.ERROR.value,
                              message="the test process died while testing: "
                              + " / ".join(tail))
                return record
    return None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "conformance_target" not in metafunc.fixturenames:
        return
    state = _state(metafunc.config)
    prop = BY_NAME[metafunc.function.__name__.removeprefix("test_")]
    params, ids = [], []
    for spec, backend, caps in state.backends if state else []:
        for dtype, device in targets(prop, caps):
            params.append((spec, backend, caps, dtype, device))
            ids.append(_param_id(backend.name, dtype, device))
    metafunc.parametrize("conformance_target", params, ids=ids, indirect=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    state = _state(config)
    if state is None or state.shard is None:
        return
    i, n = state.shard
    suite = sorted(it.nodeid for it in items if "conformance_target" in
                   getattr(it, "fixturenames", ()))
    keep = {nodeid for k, nodeid in enumerate(suite) if k % n == i - 1}
    deselected = [it for it in items if it.nodeid in set(suite) - keep]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [it for it in items if it.nodeid not in set(suite) - keep]


@pytest.fixture
def conformance_target(request: pytest.FixtureRequest):
    from conformance.runner import RECORD_KEY, Target

    state = _state(request.config)
    spec, backend, caps, dtype, device = request.param
    prop = BY_NAME[request.function.__name__.removeprefix("test_")]
    record = new_result(prop, backend.name, dtype, device)
    request.node.user_properties.append((RECORD_KEY, record))
    out = state.report_dir if state.report_dir else Path(".rmsprop-conformance")
    return Target(spec, backend, caps, dtype, device, state.effort,
                  out / "counterexamples", record, request.node.nodeid, state.seed,
                  state.example_timeout, state.memory_limit,
                  excused=lambda v: _deviation_index(state, record, v.rule, v.cause) is not None)


def _deviation_index(state: _State, record: Result, rule: str | None,
                     cause: str | None) -> int | None:
    """The index of the first known deviation excusing ``rule`` (and ``cause``) on the record's
    target, or None."""
    for n, d in enumerate(state.deviations):
        if d.matches(backend=record["backend"], prop_id=record["property"],
                     prop_name=record["name"], dtype=record["dtype"], device=record["device"],
                     rule=rule, cause=cause):
            return n
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """Hypothesis's statistics of the search a suite test runs inside it (Hypothesis's plugin
    collects them only for tests that are themselves @given); printed by
    --hypothesis-show-statistics, as for any Hypothesis test."""
    if "conformance_target" not in getattr(item, "fixturenames", ()):
        yield
        return
    from hypothesis.statistics import collector, describe_statistics

    def note(stats: dict[str, Any]) -> None:
        stats["nodeid"] = item.nodeid
        item.hypothesis_statistics = describe_statistics(stats)  # type: ignore[attr-defined]

    with collector.with_value(note):
        yield


def _record_of(report: pytest.TestReport) -> Result | None:
    from conformance.runner import RECORD_KEY

    for key, value in report.user_properties:
        if key == RECORD_KEY:
            return value
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    state = _state(item.config)
    record = _record_of(report)
    if state is None or record is None or report.when != "call" or not report.failed:
        return
    if record.get("status") not in BAD:
        # An exception the runner did not classify (e.g. a Hypothesis error) is an error.
        record.update(status=Status.ERROR.value,
                      message=str(call.excinfo.value) if call.excinfo else "")
    n = _deviation_index(state, record, record.get("rule"), record.get("cause"))
    if n is None and record.get("message") and item.config.option.tbstyle != "long":
        # What the user needs is the counterexample and how to replay it, not the harness's
        # own traceback (--tb=long shows that).
        replay = f"\nreplay: {record['replay']}" if record.get("replay") else ""
        report.longrepr = f"{record['message']}{replay}"
    if n is not None:
        d = state.deviations[n]
        record.update(status=Status.KNOWN.value, known_reason=d.reason, known_link=d.link)
        report.outcome = "skipped"
        report.wasxfail = f"known deviation: {d.reason}"
        # xdist workers send their reports to the controller; mark which entry matched.
        record["deviation_index"] = n


def pytest_sessionstart(session: pytest.Session) -> None:
    state = _state(session.config)
    if state is not None and state.report_dir is not None \
            and not hasattr(session.config, "workerinput"):
        from conformance import evidence

        state.background = evidence.Background([spec for spec, *_ in state.backends])
    terminal = session.config.pluginmanager.get_plugin("terminalreporter")
    every = session.config.getoption("conformance_progress", 0.0)
    if state is not None and every > 0 and terminal is not None \
            and not hasattr(session.config, "workerinput"):
        def write(line: str) -> None:
            # On a line of its own, after the progress characters (dots) of -q.
            if getattr(getattr(terminal, "_tw", None), "width_of_current_line", 0):
                terminal.write("\n")
            terminal.write_line(line)

        names = [name for name, *_ in state.backends]
        label = names[0] if len(names) == 1 else f"{len(names)} backends"
        state.progress = _Progress(write, label, every)


def _suite_tests(nodeids: list[str]) -> int:
    return sum(map(scheduling.is_suite_test, nodeids))


def pytest_collection_finish(session: pytest.Session) -> None:
    state = _state(session.config)
    if state is not None and state.progress is not None:
        state.progress.total = _suite_tests([it.nodeid for it in session.items])


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_setupnodes(config: pytest.Config, specs: list[Any]) -> None:
    """Workers forked by the certify command's fork server, when one serves (forkserver)."""
    if forkserver.serves():
        for spec in specs:
            if spec.popen and not spec.python:
                spec.python = forkserver.python()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under xdist's default distribution, one worker per backend and dtype (scheduling)."""
    if _state(config) is None or config.getoption("dist") != "load":
        return None
    return scheduling.TargetScheduling(config, log)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    """Under pytest-xdist the controller collects nothing: every worker collects the suite."""
    state = _state(node.config)
    if state is not None and state.progress is not None:
        state.progress.total = _suite_tests(ids)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if (report.when == "teardown" and _live and _live[0].progress is not None
            and _suite_tests([report.nodeid])):
        _live[0].progress.finished_one()
    record = _record_of(report)
    if record is None and report.failed and _live:
        # xdist reports a crashed worker's test with when="???" and no record of ours.
        record = _crash_record(_live[0], report)
        if record is not None:
            _pending.append(record)
        return
    if record is None:
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if report.when == "setup" and report.failed:
            record = {**record, "status": Status.ERROR.value,
                      "message": str(report.longrepr)[-2000:]}
        _pending.append(record)
        _evidence_now(record)


def _evidence_now(record: Result) -> None:
    """A failure's counterexample, to the evidence computed in the background."""
    from conformance.report import counterexample_of, target_key

    state = _live[0] if _live else None
    path = counterexample_of(record)
    if state is None or state.background is None or path is None:
        return
    for spec, backend, _ in state.backends:
        if backend.name == record["backend"]:
            state.background.add(spec, target_key(record), path)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = _state(session.config)
    if state is None or hasattr(session.config, "workerinput"):
        return
    records = list(_pending)
    _pending.clear()
    used = {r["deviation_index"] for r in records if "deviation_index" in r}
    # Unused: the entries for this session's backends that excused nothing (an entry for
    # another backend of the file is not this session's to report).
    names = [n for spec, backend, _ in state.backends for n in (spec, backend.name)]
    unused = [d for n, d in enumerate(state.deviations) if n not in used and d.applies_to(*names)]
    for d in unused:
        warnings.warn(f"known deviation matched no failure: {d.label()} ({d.reason})",
                      stacklevel=1)
    if state.report_dir is not None:
        from conformance import report

        shard = None if state.shard is None else f"{state.shard[0]}/{state.shard[1]}"
        report.write_session(state.report_dir, state.backends, records, effort=state.effort,
                             unused_deviations=unused, started=state.started,
                             interrupted=exitstatus == pytest.ExitCode.INTERRUPTED,
                             shard=shard, known_deviations=state.known_deviations,
                             background=state.background)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config
                            ) -> None:
    state = _state(config)
    if state is None or state.report_dir is None:
        return
    terminalreporter.write_line(f"rmsprop-conformance reports written to {state.report_dir}")
