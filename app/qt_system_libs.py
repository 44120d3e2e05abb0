"""Qt's system libraries on Linux: which ones the window needs and the system lacks.

PySide6 brings Qt but not the X11 libraries Qt's ``xcb`` platform plugin links against. On a
fresh Debian or Ubuntu three of them are usually missing (libxcb-cursor0, libxcb-icccm4,
libxcb-keysyms1), and Qt then only says it could not load the "xcb" plugin and that
"Reinstalling the application may fix this problem", which it does not. ``make run`` runs
this module first::

    python -m app.qt_system_libs [--install]

It asks ``ldd`` which libraries of the plugin are "not found", names the Debian packages that
provide them and prints the exact ``apt-get install`` line; with ``--install``, run as root
on a system with apt-get, it installs them. Nothing here imports Qt (that is what could fail).
Exit status: 0 when nothing is missing (or there is nothing to check), 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

# Libraries whose Debian package is not named after the library (the rule in debian_package).
PACKAGE_EXCEPTIONS = {
    "libc.so.6": "libc6", "libm.so.6": "libc6", "libdl.so.2": "libc6",
    "libpthread.so.0": "libc6", "librt.so.1": "libc6",
    "libz.so.1": "zlib1g", "libgcc_s.so.1": "libgcc-s1",
}
# Libraries that come with PySide6 itself: missing, they mean a broken install, not a
# missing system package.
BUNDLED = re.compile(r"^(libQt6|libpyside6|libshiboken6|libicu)")


def xcb_plugin() -> Path | None:
    """PySide6's xcb platform plugin, found without importing Qt (None: not installed)."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    plugin = Path(spec.submodule_search_locations[0]) / "Qt/plugins/platforms/libqxcb.so"
    return plugin if plugin.is_file() else None


def missing_libraries(library: Path) -> list[str]:
    """The libraries ``library`` needs (directly or through others) that ldd cannot find."""
    result = subprocess.run(["ldd", str(library)], capture_output=True, text=True, timeout=60)
    missing = [line.split("=>")[0].strip() for line in result.stdout.splitlines()
               if "=> not found" in line]
    return list(dict.fromkeys(missing))


def debian_package(soname: str) -> str:
    """The Debian/Ubuntu package of a library: ``libxcb-cursor.so.0`` -> ``libxcb-cursor0``,
    ``libxkbcommon-x11.so.0`` -> ``libxkbcommon-x11-0`` (Debian's naming of library
    packages: the soname's name and version, a hyphen between two digits)."""
    if soname in PACKAGE_EXCEPTIONS:
        return PACKAGE_EXCEPTIONS[soname]
    match = re.fullmatch(r"(.+)\.so\.(\d+)(?:\.\d+)*", soname)
    if match is None:
        return soname.lower()
    name, version = match.group(1).lower(), match.group(2)
    return f"{name}{'-' if name[-1].isdigit() else ''}{version}"


def install_command(packages: Sequence[str], as_root: bool) -> list[str]:
    return ([] if as_root else ["sudo"]) + ["apt-get", "install", "-y", *packages]


def _install(packages: Sequence[str]) -> bool:
    """apt-get install as root; a fresh system may have no package lists yet: update once."""
    command = install_command(packages, as_root=True)
    if subprocess.run(command).returncode == 0:
        return True
    return (subprocess.run(["apt-get", "update"]).returncode == 0
            and subprocess.run(command).returncode == 0)


def check(plugin: Path | None, install: bool, out=sys.stderr) -> int:
    """Report (and with ``install``, as root, install) what the plugin lacks; 0 when
    nothing is missing."""
    if plugin is None or shutil.which("ldd") is None:
        return 0
    missing = missing_libraries(plugin)
    if not missing:
        return 0
    bundled = [lib for lib in missing if BUNDLED.match(lib)]
    if bundled:
        print(f"PySide6 is incomplete (missing {', '.join(bundled)}); reinstall it: "
              "rm -rf .venv && make install", file=out)
        return 1
    packages = list(dict.fromkeys(debian_package(lib) for lib in missing))
    as_root = hasattr(os, "geteuid") and os.geteuid() == 0
    has_apt = shutil.which("apt-get") is not None
    print(f"Qt cannot open a window: the system lacks {', '.join(missing)}, which Qt's xcb "
          "platform plugin needs (Qt's own message, \"Reinstalling the application may fix "
          "this problem\", is misleading: these libraries are what is missing).", file=out)
    if install and as_root and has_apt:
        print("Installing: " + " ".join(install_command(packages, as_root)), file=out)
        if _install(packages) and not missing_libraries(plugin):
            return 0
        print("The installation did not complete; see apt-get's messages above.", file=out)
        return 1
    if has_apt:
        print("Install them with:\n  " + " ".join(install_command(packages, as_root)), file=out)
    else:
        print("Install the packages of your distribution that provide them (on Debian or "
              f"Ubuntu: {' '.join(packages)}).", file=out)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.qt_system_libs",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--install", action="store_true",
                        help="install the missing packages with apt-get when run as root")
    parser.add_argument("--plugin", type=Path, default=None,
                        help="the library to check (default: PySide6's xcb plugin)")
    args = parser.parse_args(argv)
    if not sys.platform.startswith("linux"):
        return 0
    if args.plugin is None and not uses_xcb():
        return 0
    return check(args.plugin or xcb_plugin(), args.install)


def uses_xcb() -> bool:
    """Whether Qt would open its window through xcb: an X display and no other platform
    chosen (without a display, ``diesight gui`` lists the headless commands instead)."""
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform:
        return platform.startswith("xcb")
    return bool(os.environ.get("DISPLAY"))


if __name__ == "__main__":
    sys.exit(main())
