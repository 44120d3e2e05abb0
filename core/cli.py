"""The ``diesight`` command line: headless front door to the same core the GUI uses.

Each subcommand is one ``_add_<name>`` (its arguments) and one ``_cmd_<name>`` (its work,
which only calls core functions and prints). ``app.entry`` sends every subcommand here and
opens the GUI when there is none.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence

from core.progress import Cancelled, Progress


class TerminalProgress:
    """A one-line progress bar on stderr, fed by core's progress callback."""

    def __init__(self, stream=None, width: int = 30) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self._stage = None

    def __call__(self, p: Progress) -> None:
        if p.stage != self._stage and self._stage is not None:
            self.stream.write("\n")
        self._stage = p.stage
        if p.total:
            filled = int(self.width * min(1.0, p.fraction))
            bar = "#" * filled + "-" * (self.width - filled)
            line = f"\r{p.stage:>8} [{bar}] {p.done}/{p.total} {p.message}"
        else:
            line = f"\r{p.stage:>8} {p.message}"
        self.stream.write(line[:160].ljust(60))
        self.stream.flush()

    def close(self) -> None:
        if self._stage is not None:
            self.stream.write("\n")
            self.stream.flush()
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diesight",
        description="DieSight visual inspection. Without a command, opens the GUI.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _PARSERS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except Cancelled:
        print("Cancelled.", file=sys.stderr)
        return 130


# --- subcommands -------------------------------------------------------------------------

_PARSERS: list = []
