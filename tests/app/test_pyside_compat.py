"""The singleton guard: PySide calls must not be able to run None/True down to zero."""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal

import app  # noqa: F401 - importing the GUI package applies the guard
from app._pyside_compat import protect_singletons


class _Emitter(QObject):
    fired = Signal(int)


def test_many_pyside_calls_leave_the_singletons_alive():
    none_before, true_before = sys.getrefcount(None), sys.getrefcount(True)
    emitter = _Emitter()
    for i in range(50_000):
        emitter.setObjectName("x")  # returns None
        emitter.fired.emit(i)       # returns True
    # A correct PySide loses nothing; a leaking one lost 50,000 references to each, which
    # must have come out of the guard's reserve (else the interpreter aborts later).
    for value, before in ((None, none_before), (True, true_before)):
        if before - sys.getrefcount(value) > 1000:
            assert sys.getrefcount(value) > 1 << 39


def test_guard_is_idempotent():
    assert protect_singletons() == protect_singletons()
