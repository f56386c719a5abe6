"""qlorafx.interrupts: a Ctrl-C that a finalizer swallows is delivered again, at once, in a real process."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

from qlorafx.interrupts import ctrl_c_always_stops, interrupted, stop_if_interrupted

SCRIPT = textwrap.dedent("""
    import os, signal, sys, time
    from qlorafx.interrupts import ctrl_c_always_stops

    class Finalized:
        def __del__(self):
            {body}

    with ctrl_c_always_stops():
        try:
            Finalized()  # dropped at once: its finalizer runs now
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:  # plain code: no stage boundary checks the flag here
                pass
            print("not delivered")
        except KeyboardInterrupt:
            print("delivered")
""")


def _run(body: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT.format(body=body)], capture_output=True, text=True, timeout=60)


def test_a_ctrl_c_inside_a_finalizer_is_delivered_again_at_once():
    done = _run("os.kill(os.getpid(), signal.SIGINT); [None for _ in range(100_000)]  # lands in here")
    assert done.stdout == "delivered\n", done.stderr
    assert done.stderr == ""  # no "Exception ignored in ... KeyboardInterrupt"


ONCE_SCRIPT = textwrap.dedent("""
    import os, signal, sys, time
    from qlorafx.interrupts import ctrl_c_always_stops, stop_if_interrupted

    class Finalized:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)
            [None for _ in range(100_000)]  # the press lands in here, and is swallowed

    def busy(seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            pass

    try:
        with ctrl_c_always_stops():
            Finalized()
            {after_the_finalizer}
            busy(0.5)
            print("not stopped")
    except KeyboardInterrupt:
        print("stopped")
        busy(0.5)  # what follows a stop (cli.main's "interrupted", libraries' exit handlers) runs undisturbed
    busy(0.5)
    print("once")
""")


def test_a_swallowed_ctrl_c_that_a_stage_boundary_raised_is_not_delivered_a_second_time():
    # the boundary raises within the redelivery's delay: the redelivery must not raise it again in the
    # code handling the first (it printed a KeyboardInterrupt traceback after "interrupted")
    done = subprocess.run([sys.executable, "-c", ONCE_SCRIPT.format(after_the_finalizer="stop_if_interrupted()")],
                          capture_output=True, text=True, timeout=60)
    assert (done.stdout, done.stderr) == ("stopped\nonce\n", "")


def test_a_ctrl_c_swallowed_as_the_command_ends_still_stops_it_once():
    # the command ends within the redelivery's delay: it stops (exit 130), and nothing is raised after it
    done = subprocess.run([sys.executable, "-c", ONCE_SCRIPT.replace("busy(0.5)\n        print(\"not stopped\")", "pass")
                           .format(after_the_finalizer="pass")], capture_output=True, text=True, timeout=60)
    assert (done.stdout, done.stderr) == ("stopped\nonce\n", "")


def test_other_exceptions_in_finalizers_still_reach_the_previous_hook():
    done = _run("raise ValueError('from a finalizer')")
    assert done.stdout == "not delivered\n"
    assert "Exception ignored in" in done.stderr and "ValueError: from a finalizer" in done.stderr


def test_the_guard_restores_the_handler_and_hook_and_forgets_the_press():
    handler, hook = signal.getsignal(signal.SIGINT), sys.unraisablehook
    with ctrl_c_always_stops():
        assert signal.getsignal(signal.SIGINT) is not handler and sys.unraisablehook is not hook
        try:
            signal.raise_signal(signal.SIGINT)
            for _ in range(1000):  # the handler runs at the next bytecode boundary
                pass
        except KeyboardInterrupt:
            pass
        assert interrupted()
        try:
            stop_if_interrupted()  # what a stage boundary does with a press that something swallowed
            raise AssertionError("not stopped")
        except KeyboardInterrupt:
            pass
    assert signal.getsignal(signal.SIGINT) is handler and sys.unraisablehook is hook
    assert not interrupted()
    stop_if_interrupted()  # nothing pending: returns
