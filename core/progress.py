"""Progress reporting and cooperative cancellation shared by every long task.

Long work in core (ingest, demo data, training, scoring, t-SNE, export) takes an
optional ``progress`` callback and an optional ``cancel`` check, so the CLI, the GUI
workers and the tests drive exactly the same code.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class Cancelled(Exception):
    """Raised inside a task when its cancel check returned True."""


@dataclass
class Progress:
    """One progress report.

    Attributes:
        stage: short name of what is being done ("decode", "train", "score", ...).
        done: units finished so far.
        total: units in all (0 when unknown).
        message: a human-readable line for a status bar or a terminal.
        data: extra values a view may show (loss, images/s, ETA, partial results, ...).
    """

    stage: str
    done: int = 0
    total: int = 0
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


ProgressFn = Callable[[Progress], None]
CancelCheck = Callable[[], bool]


def report(progress: ProgressFn | None, stage: str, done: int = 0, total: int = 0,
           message: str = "", **data: Any) -> None:
    """Send a report if anybody listens."""
    if progress is not None:
        progress(Progress(stage, done, total, message, data))


def check_cancel(cancel: CancelCheck | None) -> None:
    """Raise :class:`Cancelled` when the caller asked to stop."""
    if cancel is not None and cancel():
        raise Cancelled()


class Throttle:
    """Lets at most one report through every ``interval`` seconds (plus the last one).

    Per-item callbacks over 30,000 images would otherwise flood a GUI event queue.
    """

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self._last = 0.0

    def ready(self, final: bool = False) -> bool:
        now = time.monotonic()
        if final or now - self._last >= self.interval:
            self._last = now
            return True
        return False
