"""A guard against PySide6 builds that return None/True/False without a reference.

Some PySide6 wheels (seen with 6.12.0 on CPython 3.11) hand out the ``None``, ``True`` and
``False`` singletons without taking the reference the caller will later drop: nearly every
method returning nothing (``QLabel.setText``, ``QObject.setObjectName``, ...) loses one
reference to ``None``, and every ``Signal.emit()`` one to ``True``. That is harmless on
CPython >= 3.12, where these objects are immortal, but on older interpreters the counts run
down while the GUI works and the process aborts with "Fatal Python error: none_dealloc" (or
``bool_dealloc``), typically when it exits. We do what CPython 3.12 does: give these
singletons a reference count that can never run out, and only when a probe shows the leak,
so a correct PySide build or a newer Python is left untouched.
"""

from __future__ import annotations

import ctypes
import sys

from PySide6.QtCore import QObject, Signal

# 2**40 references: more leaked calls than a process can make in its lifetime.
_RESERVE = 1 << 40
_PROBE_CALLS = 32
_applied = False


class _Probe(QObject):
    ping = Signal()


def _lost_references(value: object, call) -> int:
    before = sys.getrefcount(value)
    for _ in range(_PROBE_CALLS):
        call()
    return before - sys.getrefcount(value)


def pyside_leaks_singletons() -> bool:
    """True when calling PySide loses references to ``None`` or ``True``."""
    probe = _Probe()
    lost_none = _lost_references(None, lambda: probe.setObjectName("probe"))
    lost_true = _lost_references(True, probe.ping.emit)
    # Half the calls as the threshold: immune to unrelated references coming and going.
    return max(lost_none, lost_true) >= _PROBE_CALLS // 2


def protect_singletons() -> bool:
    """Make None, True, False and NotImplemented effectively immortal if PySide leaks them.

    Returns:
        True when the guard is in place (applied now or by an earlier call).
    """
    global _applied
    if _applied:
        return True
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return False  # immortal already
    if not pyside_leaks_singletons():
        return False
    for value in (None, True, False, NotImplemented):
        # ob_refcnt is the first field of every CPython object.
        ctypes.c_ssize_t.from_address(id(value)).value += _RESERVE
    _applied = True
    return True
