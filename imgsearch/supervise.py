"""Keep a deployment's processes running: start each, start again whichever exits, stop them all on Ctrl-C.

`make run` (imgsearch/embedded.py) runs its Celery workers, beat and the web server under `supervise`. A program
that exits, whatever the cause (kill -9, out of memory, a crash in a C extension), is started again after a
backoff that doubles while it keeps dying young (1 s, 2 s, 4 s ... 30 s) and starts over once it has run a while;
the others keep serving meanwhile. Each program runs in a process group of its own, so what its main process
leaves behind (a Celery pool process, a gunicorn worker) is stopped before it is started again, and nothing is
left running after Ctrl-C. This module does not import Django.
"""

import os
import signal
import subprocess
import sys
import time

FIRST_DELAY = 1.0  # seconds before the first restart: long enough for a dead gunicorn's workers to free the port
MAX_DELAY = 30.0
STABLE_SECONDS = 60.0  # a program that ran this long before exiting is restarted after FIRST_DELAY again
STOP_SECONDS = 20.0  # on Ctrl-C, the time a program gets to finish its work (a search) before SIGKILL


def say(message):
    print(f"supervise: {message}", file=sys.stderr, flush=True)


def describe_exit(code):
    """'exited with code 3' or 'was killed by SIGKILL (exit code -9)' from a Popen returncode."""
    if code is not None and code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name} (exit code {code})"
        except ValueError:
            return f"was killed by signal {-code} (exit code {code})"
    return f"exited with code {code}"


class Program:
    """One supervised command: its current process, when it started, and when to start it again."""

    def __init__(self, name, command, env=None, cwd=None):
        self.name, self.command, self.env, self.cwd = name, command, env, cwd
        self.proc, self.started, self.restarts = None, 0.0, 0
        self.delay, self.due = FIRST_DELAY, None  # due: when to start it again, while it is down

    def start(self, now):
        # A session of its own: its process group holds whatever it forks, and Ctrl-C in the terminal reaches
        # only the supervisor, which then stops every program (stop_all).
        self.proc = subprocess.Popen(self.command, cwd=self.cwd, env=self.env, start_new_session=True)
        self.started, self.due = now, None

    def check(self, now):
        """Notice an exit (stop its leftovers, schedule a restart) or start again when due."""
        if self.due is not None:
            if now >= self.due:
                signal_group(self.proc.pid, signal.SIGKILL)  # leftovers that ignored SIGTERM
                self.restarts += 1
                self.start(now)
                say(f"started the {self.name} again (restart {self.restarts}, pid {self.proc.pid})")
            return
        code = self.proc.poll()
        if code is None:
            return
        ran = now - self.started
        dying_young = self.restarts and ran < STABLE_SECONDS
        self.delay = min(self.delay * 2, MAX_DELAY) if dying_young else FIRST_DELAY
        self.due = now + self.delay
        # What it leaves behind (the pool process of a Celery worker killed -9, gunicorn's workers) gets SIGTERM
        # now and SIGKILL at the restart: it must not hold the port or a second copy of the model.
        left = signal_group(self.proc.pid, signal.SIGTERM)
        also = "; stopping the processes it left" if left else ""
        say(
            f"the {self.name} (pid {self.proc.pid}) {describe_exit(code)} after {ran:.0f} s{also}; "
            f"starting it again in {self.delay:.0f} s"
        )


def signal_group(pgid, sig):
    """Send sig to every process of a group; whether any was left in it."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def supervise(programs, poll=0.5):
    """Start the programs and keep them running until Ctrl-C (KeyboardInterrupt); then stop them all."""
    try:
        for program in programs:
            program.start(time.monotonic())
        while True:
            time.sleep(poll)
            for program in programs:
                program.check(time.monotonic())
    finally:
        stop_all(programs)


def stop_all(programs, timeout=STOP_SECONDS):
    """SIGTERM every program's main process at once (a Celery worker finishes its task, gunicorn its requests, and
    each stops its own children), wait up to timeout, then SIGKILL whatever is left of their groups, so no process
    outlives the supervisor; a second Ctrl-C kills at once."""
    started = [program for program in programs if program.proc is not None]
    for program in started:
        program.proc.terminate()  # nothing if it has exited (waiting for its restart)
    deadline = time.monotonic() + timeout
    try:
        for program in started:
            try:
                program.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"the {program.name} did not stop within {timeout:.0f} s; killing it")
    except KeyboardInterrupt:
        say("killing every process now")
    finally:
        for program in started:
            signal_group(program.proc.pid, signal.SIGKILL)
            program.proc.wait()
