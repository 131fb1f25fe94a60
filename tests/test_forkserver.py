"""The fork server (conformance/forkserver.py): a child asked for through its launcher runs
what ``python`` would have run, with the launcher's streams, arguments, working directory,
environment and exit status, in a process forked from the server; certify's xdist workers and
evidence process are such children; nothing is forked from a process running other threads.

The server forks, so each check runs in a fresh single-threaded interpreter of its own (this
test process runs xdist's threads: no server would start in it, which is checked too)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.test_cli import REPO, run_cli


def _in_fresh_python(body: str, tmp_path: Path, after: str = "") -> dict:
    """Run ``body`` (which sets ``out``) under a fork server in a new interpreter, then
    ``after`` (once the server is gone); ``out``."""
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent('''
        import json, os, signal, subprocess, sys, time, types
        from conformance import forkserver
        sys.modules["marker_of_the_server"] = types.ModuleType("marker_of_the_server")
        out = {}
        with forkserver.serving(forkserver.threads_before_loading()) as serves:
            out["serves"] = serves
            py = forkserver.python()
            out["launcher"] = py != sys.executable
        ''') + textwrap.indent(textwrap.dedent(body), " " * 4)
        + textwrap.dedent(after)
        + "\nprint(json.dumps(out))\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def test_a_child_runs_as_python_would_with_the_launchers_streams_env_and_status(tmp_path):
    out = _in_fresh_python(f'''
        code = (
            "import os, sys\\n"
            "print(sys.stdin.read().upper(), sys.argv[1:], os.getcwd(), os.environ['WORD'])\\n"
            "print('to stderr', file=sys.stderr)\\n"
            "print('marker_of_the_server' in sys.modules)\\n"
            "sys.exit(3)\\n")
        p = subprocess.run([py, "-u", "-c", code, "a", "b"], input="hello", text=True,
                           capture_output=True, cwd={str(tmp_path)!r},
                           env={{**os.environ, "WORD": "forty-two"}})
        out.update(code=p.returncode, stdout=p.stdout, stderr=p.stderr)
        m = subprocess.run([py, "-m", "json.tool", "--compact"], input='{{"x": [1, 2]}}',
                           text=True, capture_output=True)
        out.update(m_code=m.returncode, m_stdout=m.stdout)
        r = [subprocess.run([py, "-c", "import random; print(random.random())"],
                            capture_output=True, text=True).stdout for _ in range(2)]
        out["randoms"] = r
        ''', tmp_path)
    assert out["serves"] and out["launcher"]
    assert out["code"] == 3
    assert out["stdout"].splitlines() == [f"HELLO ['a', 'b'] {tmp_path} forty-two", "True"]
    assert out["stderr"] == "to stderr\n"
    assert (out["m_code"], out["m_stdout"]) == (0, '{"x":[1,2]}\n')
    assert out["randoms"][0] != out["randoms"][1]  # each child reseeded, not the server's state


def test_an_uncaught_exception_and_a_signal_end_the_launcher_as_they_end_the_child(tmp_path):
    out = _in_fresh_python('''
        e = subprocess.run([py, "-c", "raise ValueError('no such thing')"], capture_output=True,
                           text=True)
        out.update(e_code=e.returncode, e_err=e.stderr.strip().splitlines()[-1])
        k = subprocess.run([py, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"])
        out["k_code"] = k.returncode
        ''', tmp_path)
    assert (out["e_code"], out["e_err"]) == (1, "ValueError: no such thing")
    assert out["k_code"] == -9


def test_killing_the_launcher_kills_its_child(tmp_path):
    out = _in_fresh_python('''
        p = subprocess.Popen([py, "-u", "-c", "import os, time; print(os.getpid()); "
                              "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
        child = int(p.stdout.readline())
        p.kill()
        p.wait()
        for _ in range(100):
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                out["gone"] = True
                break
            time.sleep(0.05)
        ''', tmp_path)
    assert out.get("gone")


def test_no_server_in_a_process_running_other_threads(tmp_path):
    out = _in_fresh_python("pass", tmp_path, after='''
        import threading
        threading.Thread(target=time.sleep, args=(2,)).start()
        with forkserver.serving(forkserver.threads_before_loading()) as serves:
            out.update(threaded_serves=serves, threaded_python=forkserver.python())
        ''')
    assert out["serves"]
    assert out["threaded_serves"] is False and out["threaded_python"] == sys.executable


def _certify_recording(tmp_path: Path, forkserver: str) -> list[tuple[str, str]]:
    record = tmp_path / f"record-{forkserver}.txt"
    proc = run_cli("certify", "tests.bad_backends:RecordsItsProcess", "--effort", "quick",
                   "--seed", "0", "-n", "1", "--report-dir", tmp_path / f"reports-{forkserver}",
                   cwd=tmp_path, timeout=180, env={"RECORD_PROCESS": str(record),
                                                   "RMSPROP_CONFORMANCE_FORKSERVER": forkserver})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [tuple(line.split()) for line in record.read_text().splitlines()]


def test_certify_runs_its_workers_and_evidence_in_forked_processes(tmp_path):
    forked = _certify_recording(tmp_path, "1")
    fresh = _certify_recording(tmp_path, "0")
    # The controller only loads the backend; the worker and the evidence process run it.
    assert len({pid for _, pid in forked}) >= 2 and len({pid for _, pid in fresh}) >= 2
    assert all(loaded != pid for loaded, pid in forked)  # found it imported by the controller
    assert all(loaded == pid for loaded, pid in fresh)  # imported it themselves


def test_an_exit_without_teardown_runs_the_exit_handlers_flushes_and_keeps_the_code(tmp_path):
    """What the command and every child exit through: the exit handlers run (a temporary
    directory is removed), buffered output reaches a pipe, the status is the one given, and
    what only the interpreter's teardown would run (an object's finaliser at shutdown) does not."""
    script = tmp_path / "exits.py"
    script.write_text(textwrap.dedent('''
        import atexit, sys, tempfile
        from conformance import forkserver
        class AtTeardown:
            def __del__(self):
                print("teardown ran")
        keep = AtTeardown()
        tmp = tempfile.TemporaryDirectory()
        print(tmp.name)
        atexit.register(print, "exit handler ran")
        sys.stdout.write("x" * 100000)  # buffered: a pipe is not a terminal
        forkserver.exit_without_teardown(7)
        '''), encoding="utf-8")
    proc = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 7, proc.stderr
    lines = proc.stdout.split("\n")
    assert not Path(lines[0]).exists()
    assert lines[1] == "x" * 100000 + "exit handler ran"
    assert "teardown ran" not in proc.stdout
