"""A fork server for the certify command's child processes (docs/architecture.md §9).

A certification on 2 cores starts four Python processes: the pytest controller (the command
itself), two xdist workers and the evidence process. Each imports the same things — a torch
backend alone takes ~3.5 s of CPU to import torch and its dynamo, which torch's optimizers load
— so that on 2 cores the workers were ready ~6 s after the controller. The fork server is a
fork of the controller made once it has loaded the backends: the children it forks for the
workers and the evidence process find all of that imported already, as a forked
``multiprocessing`` worker does.

A child is asked for by running :func:`python` (a small launcher script) where ``python`` would
run: the launcher hands the server its stdin, stdout and stderr, its arguments (``-c CODE`` or
``-m MODULE``, as xdist and the evidence process run them), working directory and environment,
then waits for the child and exits as it exited (a signal that killed the child kills the
launcher). A launcher killed (xdist ends a stuck worker that way) takes its child with it.

Forking is only safe while no other thread runs: :func:`serving` forks the server only when
the controller runs no Python thread besides its main one and has as many native threads as it
had before it loaded the backends (OpenBLAS's pool, which handles fork itself, is there from
NumPy's import). A backend that starts threads when loaded (JAX's runtime) leaves the children
started as before, as does the environment variable ``RMSPROP_CONFORMANCE_FORKSERVER=0``.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import io
import json
import os
import select
import signal
import socket
import stat
import sys
import tempfile
import threading
import traceback
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

_ENV = "RMSPROP_CONFORMANCE_FORKSERVER"
_active: list[_Server] = []  # the one serving, while one does

# What every child imports beyond what the controller has when it forks: pytest and the
# harness's own modules (the xdist workers), Hypothesis (the tests; the two modules its engine
# imports on a test's first run), ml_dtypes (bfloat16, whose extension takes ~0.6 s to load).
# pytest plugins themselves are left to the workers' pytest, which wants to import them itself.
_PRELOAD = ("pytest", "_pytest.main", "_pytest.python", "_pytest.junitxml", "execnet",
            "hypothesis.extra.numpy", "hypothesis.internal.conjecture.optimiser",
            "hypothesis.strategies._internal.flatmapped", "ml_dtypes",
            "conformance.properties", "conformance.strategies", "conformance.runner",
            "conformance.evidence", "conformance.report")

_LAUNCHER = '''#!{python} -IS
# rmsprop-conformance: runs Python by forking the certify command's fork server.
import json, os, signal, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect({path!r})
request = {{"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}}
socket.send_fds(s, [json.dumps(request).encode()], [0, 1, 2])
pid = int(s.recv(32))
null = os.open(os.devnull, os.O_RDWR)
for fd in (0, 1, 2):
    os.dup2(null, fd)
signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal's Ctrl-C reaches the child itself
signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGTERM))
code = int(s.recv(32) or -9)
if code < 0:
    if -code != signal.SIGKILL:
        signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)
os._exit(code)
'''


def python() -> str:
    """What to run in place of ``sys.executable`` for a child process: the launcher of the
    fork server while one serves, the interpreter otherwise."""
    return _active[0].launcher if _active else sys.executable


def serves() -> bool:
    """Whether a fork server serves this process's children."""
    return bool(_active)


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return -1  # not Linux: never fork


def threads_before_loading() -> int:
    """The controller's thread count before it loads the backends (see :func:`serving`):
    with NumPy imported, whose OpenBLAS pool is there from its import and handles fork."""
    import numpy  # noqa: F401

    return _threads()


def usable(threads_before: int) -> bool:
    """Whether this process may fork a server: Linux, not turned off, no Python thread besides
    this one (a thread holding a lock at the fork would leave it held in every child), and no
    native thread started since ``threads_before`` was counted."""
    return (os.environ.get(_ENV, "1") != "0" and hasattr(socket, "send_fds")
            and hasattr(os, "fork") and threading.active_count() == 1
            and threads_before > 0 and _threads() == threads_before)


@contextlib.contextmanager
def serving(threads_before: int) -> Iterator[bool]:
    """A fork server for the duration, when :func:`usable`; yields whether one serves."""
    if _active or not usable(threads_before):
        yield False
        return
    _active.append(_Server())
    try:
        yield True
    finally:
        _active.pop().close()


class _Server:
    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="rmsprop-forkserver-")
        path = str(Path(self._tmp.name) / "socket")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        listener.bind(path)
        listener.listen(64)
        self.launcher = str(Path(self._tmp.name) / "python")
        Path(self.launcher).write_text(_LAUNCHER.format(python=sys.executable, path=path),
                                       encoding="utf-8")
        os.chmod(self.launcher, stat.S_IRWXU)
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        self._pid = os.fork()
        if self._pid == 0:
            code = 0
            try:
                _serve(listener, parent)
            except BaseException:  # noqa: BLE001 - the server must never return into the CLI
                traceback.print_exc()
                code = 1
            os._exit(code)
        listener.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.kill(self._pid, signal.SIGTERM)
            os.waitpid(self._pid, 0)
        self._tmp.cleanup()


def _serve(listener: socket.socket, parent: int) -> None:
    """Fork a child for each launcher that connects; tell it the child's pid, then its exit
    code; kill the child of a launcher that goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the controller and children
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for name in _PRELOAD:
        with contextlib.suppress(ImportError):
            __import__(name)
    # Everything imported so far lives as long as the children: out of the collector's sight,
    # a child's full collection (Hypothesis and pytest run some) no longer walks torch's
    # objects, ~0.1-0.2 s each, and its pages stay shared with the server's.
    gc.collect()
    gc.freeze()
    by_conn: dict[socket.socket, int] = {}
    while os.getppid() == parent:
        ready, _, _ = select.select([listener, *by_conn], [], [], 0.2)
        for s in ready:
            if s is listener:
                conn, _ = listener.accept()
                message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
                pid = os.fork()
                if pid == 0:
                    listener.close()
                    for other in by_conn:
                        other.close()
                    _become(json.loads(message), fds, conn)
                for fd in fds:
                    os.close(fd)
                conn.send(str(pid).encode())
                by_conn[conn] = pid
            elif not s.recv(32):  # the launcher is gone: so goes its child
                with contextlib.suppress(OSError):
                    os.kill(by_conn[s], signal.SIGKILL)
        for conn, pid in list(by_conn.items()):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                with contextlib.suppress(OSError):
                    conn.send(str(os.waitstatus_to_exitcode(status)).encode())
                conn.close()
                del by_conn[conn]


def _become(request: dict, fds: list[int], conn: socket.socket) -> None:
    """In the forked child: take the launcher's place and run what it was asked to; never
    returns."""
    conn.close()
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # The controller's exit handlers and finalizers (its temporary directories) are its own.
    atexit._clear()
    for info in weakref.finalize._registry.values():  # type: ignore[attr-defined]
        info.atexit = False
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
             if p and p not in sys.path]
    sys.path[1:1] = extra
    _reseed()
    argv = list(request["argv"])
    unbuffered = False
    while argv and argv[0] in ("-u", "-B"):
        flag = argv.pop(0)
        unbuffered |= flag == "-u"
        sys.dont_write_bytecode |= flag == "-B"
    _streams(unbuffered)
    exit_without_teardown(_run(argv))


def exit_without_teardown(code: int) -> NoReturn:
    """Exit with ``code`` once the exit handlers have run (temporary directories, logging) and
    the standard streams are flushed, skipping the interpreter's teardown: with torch loaded
    (and the Triton that its dynamo imports) that teardown took ~1.5 s of every command's wall
    time on 2 cores, and it does nothing a finished command needs."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _reseed() -> None:
    """A fresh process's randomness (the server's state would be every child's)."""
    import random

    random.seed()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()


def _streams(unbuffered: bool) -> None:
    encoding = sys.stdin.encoding if sys.stdin is not None else "utf-8"
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(
        io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding=encoding)
    for fd, name in ((1, "stdout"), (2, "stderr")):
        raw = io.FileIO(fd, "w", closefd=False)
        stream = io.TextIOWrapper(raw if unbuffered else io.BufferedWriter(raw),
                                  encoding=encoding, write_through=unbuffered,
                                  errors="backslashreplace" if fd == 2 else "strict",
                                  line_buffering=fd == 2 and not unbuffered)
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def _run(argv: list[str]) -> int:
    """``-c CODE ARGS`` or ``-m MODULE ARGS``, as the interpreter runs them; the exit code."""
    import runpy
    import types

    try:
        if len(argv) >= 2 and argv[0] == "-c":
            sys.argv = ["-c", *argv[2:]]
            main = types.ModuleType("__main__")
            sys.modules["__main__"] = main
            exec(compile(argv[1], "<string>", "exec"), main.__dict__)
        elif len(argv) >= 2 and argv[0] == "-m":
            sys.argv = ["-m", *argv[2:]]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            print(f"fork server: cannot run {argv!r} (only -c and -m)", file=sys.stderr)
            return 2
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except BaseException:  # noqa: BLE001 - as the interpreter reports an uncaught exception
        traceback.print_exc()
        return 1
    return 0
