"""What every ``diesight`` command shares: progress on the terminal, Ctrl-C as a clean
cancel, plain-text tables, opening DATA, and running a command under the exit-code policy
(the codes and messages are core.errors')."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Sequence

from core.errors import EXIT_CANCELLED, EXIT_USER_ERROR, user_message
from core.progress import Cancelled, Progress


class TerminalProgress:
    """Progress on stderr, fed by core's progress callback.

    On a terminal, a tqdm bar per stage (decode, train, score, ...) redrawn in place.
    Redirected to a file or a pipe (a batch job's log), plain lines instead: a stage's first
    and last report and at most one line every ``log_interval`` seconds between, so the log
    stays readable. Notices (say, an out-of-memory back-off) are always printed on a line of
    their own.
    """

    def __init__(self, stream=None, log_interval: float = 10.0) -> None:
        self.stream = stream or sys.stderr
        self.on_terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self.log_interval = log_interval
        self._stage = None
        self._bar = None  # the stage's tqdm bar, on a terminal
        self._last_line_at = 0.0

    def __call__(self, p: Progress) -> None:
        if p.stage == "notice":
            self.close()
            self._write_line(p.message)
        elif self.on_terminal:
            self._draw(p)
        else:
            self._log(p)

    def _draw(self, p: Progress) -> None:
        if p.stage != self._stage:
            self.close()
            from tqdm import tqdm  # only when a bar is drawn: `diesight runs` needs none

            self._stage = p.stage
            self._bar = tqdm(total=p.total or None, desc=f"{p.stage:>8}", file=self.stream,
                             dynamic_ncols=True, leave=True)
        bar = self._bar
        if (p.total or None) != bar.total:
            bar.total = p.total or None
        bar.set_postfix_str(p.message, refresh=False)
        bar.update(p.done - bar.n)

    def _log(self, p: Progress) -> None:
        now = time.monotonic()
        finished = bool(p.total) and p.done >= p.total
        if p.stage != self._stage or finished or now - self._last_line_at >= self.log_interval:
            self._stage, self._last_line_at = p.stage, now
            counts = f"{p.done}/{p.total} " if p.total else ""
            self._write_line(f"{p.stage:>8} {counts}{p.message}".rstrip())

    def _write_line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the current stage's bar (drawn in its final state) or log line."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._stage = None


class CtrlC:
    """Turns the first Ctrl-C into a cooperative cancel; a second one kills as usual."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._previous = None

    def __enter__(self) -> CtrlC:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _on_sigint(self, signum, frame) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()
        sys.stderr.write("\nStopping after the current step (Ctrl-C again to abort)...\n")

    def __call__(self) -> bool:
        return self.event.is_set()


class Silent:
    """A stream that drops what is written (the progress of ranks other than 0)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def distributable(command):
    """``--devices N``: core.training.distributed runs the command in N processes."""
    import functools

    @functools.wraps(command)
    def wrapper(args) -> int:
        from core.training.distributed import run_command as run_distributed

        return run_distributed(command, args)
    return wrapper


def is_main_process() -> bool:
    """False on the ranks other than 0 of a distributed run (they print nothing)."""
    import os

    return int(os.environ.get("RANK", 0)) == 0


class BusyError(Exception):
    """Another DieSight process holds what this command needs."""


def run_command(args) -> int:
    """Run a parsed command under the one exit-code policy of core.errors: EXIT_CANCELLED
    after Ctrl-C, EXIT_USER_ERROR with one line on stderr for what a user can cause (and
    DatasetError's skipped files below it), a traceback (EXIT_BUG) for anything else."""
    try:
        return int(args.func(args) or 0)
    except Cancelled:
        print("Cancelled.", file=sys.stderr)
        return EXIT_CANCELLED
    except Exception as exc:
        message = user_message(exc, getattr(args, "data", None))
        if message is None:
            raise
        print(f"diesight {args.command}: {message}", file=sys.stderr)
        for skipped in getattr(exc, "skipped", None) or []:
            print(f"  {skipped.relpath}: {skipped.reason}", file=sys.stderr)
        return EXIT_USER_ERROR


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]],
           right: Sequence[str] = ()) -> str:
    """A plain-text table; the columns named in ``right`` (numbers) are right-aligned."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) if h in right else c.ljust(w)
                       for c, w, h in zip(row, widths, headers, strict=True)).rstrip()
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _open_dataset_cli(args, progress, cancel):
    from core.dataset import open_dataset

    return open_dataset(args.data, labels_csv=args.labels, progress=progress, cancel=cancel)


def with_progress(task, *args, **kwargs):
    """``task(*args, progress=, cancel=, **kwargs)`` with a progress bar on stderr; the first
    Ctrl-C asks it to stop cleanly (core raises Cancelled)."""
    bar = TerminalProgress()
    try:
        with CtrlC() as cancel:
            return task(*args, progress=bar, cancel=cancel, **kwargs)
    finally:
        bar.close()


def _open_dataset_with_bar(args):
    """Open DATA with a progress bar; Ctrl-C stops the opening cleanly."""
    from core.dataset import open_dataset

    return with_progress(open_dataset, args.data, labels_csv=args.labels)
