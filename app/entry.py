"""The ``diesight`` executable: a subcommand runs headless in core, none opens the GUI."""

from __future__ import annotations

import os
import sys

HEADLESS_HINT = """\
DieSight cannot open its window: no display was found (DISPLAY and WAYLAND_DISPLAY are unset).

Headless alternatives:
  diesight demo-data OUT     write realistic demo images
  diesight scan DATA         open a folder and report layout, counts and skipped files
  diesight --help            every command (train, score, runs, export, ...)
Or run the window on a virtual screen:  xvfb-run diesight gui DATA
"""


def has_display() -> bool:
    """False on a Linux box with no X/Wayland and no explicit Qt platform (e.g. offscreen)."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                or os.environ.get("QT_QPA_PLATFORM"))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] != "gui":
        from core.cli import main as cli_main

        return cli_main(argv)
    if not has_display():
        sys.stderr.write(HEADLESS_HINT)
        return 2
    from app.main_window import run_gui

    folder = argv[1] if len(argv) > 1 else None
    return run_gui(folder)


if __name__ == "__main__":
    sys.exit(main())
