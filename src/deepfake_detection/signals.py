"""SIGTERM ends a command like Ctrl-C: the one place that turns the signal into an exception.

While a command runs, SIGTERM raises :class:`Terminated` (a ``KeyboardInterrupt``), so what
handles Ctrl-C handles it: the stage's MLflow run ends KILLED (``tracking.stage_run``), a stage's
partial outputs are removed and its previous ones put back (``paths.replaced_on_success``) and
the CLI exits 143.

The handler also records that the signal came (:func:`interrupted`). Raised between two bytecodes
that sit inside C code (TensorFlow, a list operation calling back into Python), the exception can
come back as another error, e.g. ``SystemError: bad argument to internal function``; whatever
error ends the work after a SIGTERM is still taken as the termination it is.

Inside :func:`deferred` (``model.fit``) the signal is only recorded, and :func:`raise_if_received`
raises it at the next safe point (a Keras callback between two batches): raised in the middle of
TensorFlow's executor, it could leave TensorFlow broken and the process ended by a segmentation
fault (exit -11) instead of 143, about one run in six on a loaded machine.
"""

from __future__ import annotations

import contextlib
import signal
import threading

_received = threading.Event()
_deferred = threading.Event()  # inside deferred(): the handler holds the signal back
_held = threading.Event()  # a signal came inside deferred() and was held back


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived."""

    exit_code = 128 + signal.SIGTERM  # 143, what a shell reports for a process ended by SIGTERM


def _on_sigterm(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    _received.set()
    if _deferred.is_set():
        _held.set()
    else:
        raise Terminated()


def raise_if_received() -> None:
    """Raise :class:`Terminated` if SIGTERM came while :func:`deferred` held it back."""
    if _held.is_set():
        raise Terminated()


@contextlib.contextmanager
def deferred():
    """While the block runs, SIGTERM is recorded but raised only by :func:`raise_if_received`
    (or when the block ends): for code that must not be interrupted between two bytecodes."""
    if _deferred.is_set():  # nested: the outer block decides
        yield
        return
    _held.clear()
    _deferred.set()
    try:
        yield
    finally:
        _deferred.clear()
    if _held.is_set():  # came after the last safe point
        raise Terminated()


@contextlib.contextmanager
def sigterm_raises():
    """Turn SIGTERM into :class:`Terminated` while the block runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received.clear()
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def terminated(err: BaseException) -> bool:
    """Whether ``err`` is the way a SIGTERM ended the work: :class:`Terminated`, or any error
    raised after the signal came (its exception, mangled by C code on its way up)."""
    return isinstance(err, Terminated) or _received.is_set()


def interrupted(err: BaseException) -> bool:
    """Whether ``err`` ends the work as an interruption: Ctrl-C, SIGTERM, or any error raised
    after a SIGTERM arrived (the signal's exception, mangled by C code on its way up)."""
    return isinstance(err, KeyboardInterrupt) or terminated(err)
