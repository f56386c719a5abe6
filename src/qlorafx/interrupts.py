"""Ctrl-C that always stops the command, even when it lands where Python cannot raise it.

Python raises KeyboardInterrupt wherever the main thread happens to be when SIGINT arrives. When
that is a finalizer, the exception cannot propagate: the interpreter prints "Exception ignored
in: <function Group.__del__ ...> KeyboardInterrupt" and carries on as if no key was pressed. This
is no rare corner: `import transformers` compiles patterns with the `regex` package, whose parse
tree nodes (``regex._regex_core.Group``) define ``__del__``, so a Ctrl-C during the library imports
at start-up was lost and training ran to the end. Library code that catches BaseException loses
it the same way.

So while a command runs, a Ctrl-C is also recorded, and delivered again: at once when a
finalizer swallowed it (sys.unraisablehook sees it), and, whatever swallowed it, at the next stage
boundary that calls ``stop_if_interrupted()``.
"""

from __future__ import annotations

import _thread
import signal
import sys
import threading
import time
from contextlib import contextmanager

REDELIVERY_DELAY_S = 0.01  # long enough for a cascade of finalizers to finish, short for a person
_pressed = False  # a Ctrl-C arrived while the guard was installed
# A press a finalizer swallowed and nothing has raised again yet. Once a stage boundary (or the guard's end)
# has dealt with it, the redelivery a moment later must not raise a second KeyboardInterrupt: it would land
# in the code handling the first ("interrupted", exit handlers) as a traceback.
_swallowed = False
_redelivering = False  # the next SIGINT handler call is our own redelivery, not a person's press
_lock = threading.Lock()  # the redelivery checks _swallowed and trips as one step; the guard's end clears it


def _on_sigint(signum, frame) -> None:
    global _pressed, _swallowed, _redelivering
    if _redelivering:
        _redelivering = False
        if not _swallowed:
            return  # delivered meanwhile: once is enough
    _pressed, _swallowed = True, False
    raise KeyboardInterrupt


def _trip_soon() -> None:
    global _redelivering
    time.sleep(REDELIVERY_DELAY_S)
    with _lock:
        if _swallowed:
            _redelivering = True
            _thread.interrupt_main(signal.SIGINT)


def _redeliver(previous):
    def hook(unraisable) -> None:
        global _swallowed
        if isinstance(unraisable.exc_type, type) and issubclass(unraisable.exc_type, KeyboardInterrupt):
            _swallowed = True
            # Swallowed by a finalizer: raise it again in the code that was interrupted. Not from here: a
            # signal tripped in this hook is handled before the hook returns, inside the finalizer again.
            # A thread of its own trips it a moment later (should it land in a finalizer once more, this
            # hook runs again); threading.Thread.start would wait for the thread, and so be interrupted.
            _thread.start_new_thread(_trip_soon, ())
            return
        previous(unraisable)

    return hook


@contextmanager
def ctrl_c_always_stops():
    """Install the recording SIGINT handler and the finalizer hook; restore both on the way out."""
    global _pressed, _swallowed, _redelivering
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread; a caller in another one keeps its own
        return
    previous_handler, previous_hook = signal.getsignal(signal.SIGINT), sys.unraisablehook
    _pressed = _swallowed = _redelivering = False
    signal.signal(signal.SIGINT, _on_sigint)
    sys.unraisablehook = _redeliver(previous_hook)
    try:
        yield
    finally:
        try:
            with _lock:  # the command is over: a redelivery still to come must not outlive it
                lost, _swallowed = _swallowed, False
        finally:  # a redelivery tripped a moment ago raises here, and the previous handler and hook still return
            signal.signal(signal.SIGINT, previous_handler if previous_handler is not None else signal.default_int_handler)
            sys.unraisablehook = previous_hook
            _pressed = False
    if lost:  # swallowed moments before the command ended, and not raised again: it still stops the command
        raise KeyboardInterrupt


def interrupted() -> bool:
    """Whether a Ctrl-C arrived (and was perhaps swallowed) since the guard was installed."""
    return _pressed


def stop_if_interrupted() -> None:
    """At a stage boundary: a Ctrl-C that something swallowed stops the command here."""
    global _swallowed
    if _pressed:
        _swallowed = False  # raised here: the finalizer's redelivery, should it come, stays silent
        raise KeyboardInterrupt
