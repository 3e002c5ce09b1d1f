"""The supervisor of `make run` (imgsearch/supervise.py): a program that exits is started again with a backoff and a
log line, what it leaves behind is stopped, and Ctrl-C leaves no process running."""

import os
import signal
import subprocess
import sys
import time

import pytest

from imgsearch import supervise
from imgsearch.supervise import Program, describe_exit, stop_all

from .conftest import ROOT

# sh -c with `exec` keeps the shell's pid for the last command: the program's main process, with a child of its own.
WITH_CHILD = "sleep 300 & echo $! > {pidfile}; exec sleep 300"
STUBBORN_CHILD = "sh -c 'trap \"\" TERM; echo $$ > {pidfile}; while :; do sleep 0.1; done' & exec sleep 300"


def alive(pid):
    """Whether pid runs (a zombie, dead but not yet reaped by its parent, does not count)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_for(condition, timeout=10):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def read_pid(path):
    wait_for(lambda: path.exists() and path.read_text().strip())
    return int(path.read_text())


@pytest.fixture
def programs():
    """Programs a test starts; any still running at the end are stopped."""
    started = []
    yield started
    stop_all(started, timeout=1)


def test_describe_exit_names_the_code_or_the_signal():
    assert describe_exit(3) == "exited with code 3"
    assert describe_exit(-9) == "was killed by SIGKILL (exit code -9)"


def test_a_program_that_exits_is_started_again_after_a_delay_with_a_log_line(programs, capsys):
    """The exit is logged with its code and the delay; the program is started again once the delay has passed."""
    program = Program("test worker", ["sh", "-c", "exit 3"])
    programs.append(program)
    program.start(now=0)
    first = program.proc.pid
    program.proc.wait(10)
    program.check(now=5)
    assert program.due == 5 + supervise.FIRST_DELAY and program.restarts == 0
    assert (
        f"the test worker (pid {first}) exited with code 3 after 5 s; starting it again in 1 s"
        in capsys.readouterr().err
    )
    program.check(now=5.5)  # not yet due
    assert program.proc.pid == first
    program.check(now=6)
    assert program.proc.pid != first and program.restarts == 1 and program.due is None
    assert f"started the test worker again (restart 1, pid {program.proc.pid})" in capsys.readouterr().err


def test_the_delay_doubles_while_a_program_keeps_dying_young_and_starts_over_once_it_ran_a_while(programs):
    """1, 2, 4 ... up to MAX_DELAY s between restarts of a crash loop; after a long run, the first delay again."""
    program = Program("crasher", ["true"])
    programs.append(program)
    now, delays = 0.0, []
    program.start(now)
    for _ in range(7):
        program.proc.wait(10)
        now += 1
        program.check(now)
        delays.append(program.delay)
        now = program.due
        program.check(now)  # started again
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    program.proc.wait(10)
    program.check(now + supervise.STABLE_SECONDS)
    assert program.delay == supervise.FIRST_DELAY


def test_what_a_killed_program_leaves_behind_is_stopped_before_it_is_started_again(programs, tmp_path):
    """kill -9 of the main process (as of a Celery worker) stops its child (as its pool process) too."""
    pidfile = tmp_path / "child"
    program = Program("worker", ["sh", "-c", WITH_CHILD.format(pidfile=pidfile)])
    programs.append(program)
    program.start(time.monotonic())
    child = read_pid(pidfile)
    os.kill(program.proc.pid, signal.SIGKILL)
    program.proc.wait(10)
    program.check(time.monotonic())
    wait_for(lambda: not alive(child))
    assert program.due is not None


def test_a_child_that_ignores_sigterm_is_killed_at_the_restart(programs, tmp_path):
    pidfile = tmp_path / "child"
    program = Program("worker", ["sh", "-c", STUBBORN_CHILD.format(pidfile=pidfile)])
    programs.append(program)
    program.start(0)
    child = read_pid(pidfile)
    os.kill(program.proc.pid, signal.SIGKILL)
    program.proc.wait(10)
    program.check(0)
    time.sleep(0.5)
    assert alive(child)  # SIGTERM is ignored
    program.check(program.due)
    wait_for(lambda: not alive(child))


SUPERVISOR = """
import sys
from imgsearch.supervise import Program, supervise
crasher = Program("crasher", ["sh", "-c", "sleep 0.3; exit 3"])
server = Program("server", ["sh", "-c", sys.argv[1]])
supervise([crasher, server], poll=0.1)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stops_every_process_even_one_that_ignores_sigterm(tmp_path, monkeypatch, sig):
    """The supervisor in a process of its own, as `make run` runs it: a crashing program is restarted meanwhile, and
    after Ctrl-C (or kill) no program, child or grandchild is left, the stubborn one killed after the timeout."""
    pidfile = tmp_path / "child"
    handler = "import signal, sys; signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))"
    proc = subprocess.Popen(
        [sys.executable, "-c", handler + "\n" + SUPERVISOR, STUBBORN_CHILD.format(pidfile=pidfile)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=subprocess.PIPE,
        text=True,
    )
    child = read_pid(pidfile)
    time.sleep(2)  # the crasher dies and is started again meanwhile
    server = group_members(os.getpgid(child))  # the server, its stubborn child (and its sleep)
    assert len(server) >= 2
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    assert "the crasher (pid" in err and "exited with code 3" in err and "started the crasher again (restart 1" in err
    assert "did not stop" not in err  # the server's main process stops at once; its child is killed after it
    assert not any(alive(pid) for pid in server)


def group_members(pgid):
    members = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.getpgid(int(entry)) == pgid and alive(int(entry)):
                members.append(int(entry))
        except ProcessLookupError:
            pass
    return members
