"""`make run`'s check of Qt's system libraries: a plugin whose libraries are missing gets
the exact apt-get line, named by Debian's packages; a complete one passes silently."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.qt_system_libs import debian_package, xcb_plugin

ROOT = Path(__file__).resolve().parents[2]
needs_toolchain = pytest.mark.skipif(
    not (sys.platform.startswith("linux") and shutil.which("gcc") and shutil.which("ldd")),
    reason="needs gcc and ldd to build a library with missing dependencies")


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("QT_QPA_PLATFORM", None)
    return subprocess.run([sys.executable, "-m", "app.qt_system_libs", *args],
                          capture_output=True, text=True, timeout=120, env=env)


def _plugin_missing(tmp_path: Path, *sonames: str) -> Path:
    """A real shared library linked against ``sonames``, which are then deleted."""
    source = tmp_path / "empty.c"
    source.write_text("int diesight_probe(void) { return 0; }\n")
    built = []
    for soname in sonames:
        lib = tmp_path / soname
        subprocess.run(["gcc", "-shared", "-fPIC", f"-Wl,-soname,{soname}", "-o", str(lib),
                        str(source)], check=True)
        built.append(lib)
    plugin = tmp_path / "libqxcb.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,--no-as-needed", "-o", str(plugin),
                    str(source), *map(str, built)], check=True)
    for lib in built:
        lib.unlink()
    return plugin


@needs_toolchain
def test_missing_libraries_get_the_exact_apt_get_line(tmp_path):
    # Names no system has (the real libxcb-cursor.so.0 may be installed here, and ldd would
    # find it); test_debian_package_names covers the real ones.
    plugin = _plugin_missing(tmp_path, "libxcb-dsprobe.so.0", "libdsprobe-x11.so.4",
                             "libDsProbe.so.1")
    result = _run("--plugin", str(plugin))  # no --install: a test never installs
    assert result.returncode == 1
    assert "libxcb-dsprobe.so.0, libdsprobe-x11.so.4, libDsProbe.so.1" in result.stderr
    if shutil.which("apt-get"):
        sudo = "" if os.geteuid() == 0 else "sudo "
        assert (f"\n  {sudo}apt-get install -y libxcb-dsprobe0 libdsprobe-x11-4 libdsprobe1\n"
                in result.stderr)
    assert "Traceback" not in result.stderr


@needs_toolchain
def test_a_library_shipped_with_pyside6_means_reinstalling_it(tmp_path):
    plugin = _plugin_missing(tmp_path, "libQt6DsProbe.so.6")
    result = _run("--plugin", str(plugin))
    assert result.returncode == 1 and "PySide6 is incomplete" in result.stderr


@needs_toolchain
def test_a_complete_plugin_passes_silently(tmp_path):
    plugin = _plugin_missing(tmp_path)  # links nothing missing
    result = _run("--plugin", str(plugin))
    assert (result.returncode, result.stderr) == (0, "")


def test_the_installed_plugin_is_found_without_importing_qt():
    plugin = xcb_plugin()
    assert plugin is None or plugin.name == "libqxcb.so"
    probe = subprocess.run([sys.executable, "-c",
                            "import sys; from app.qt_system_libs import xcb_plugin; "
                            "xcb_plugin(); print('PySide6.QtCore' in sys.modules)"],
                           capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert probe.stdout.strip() == "False", probe.stderr


@pytest.mark.parametrize("soname, package", [
    ("libxcb-cursor.so.0", "libxcb-cursor0"), ("libxcb-icccm.so.4", "libxcb-icccm4"),
    ("libxcb-keysyms.so.1", "libxcb-keysyms1"), ("libxkbcommon-x11.so.0", "libxkbcommon-x11-0"),
    ("libX11-xcb.so.1", "libx11-xcb1"), ("libEGL.so.1", "libegl1"),
    ("libglib-2.0.so.0", "libglib-2.0-0"), ("libz.so.1", "zlib1g"),
    ("libxcb-render-util.so.0", "libxcb-render-util0"), ("libfontconfig.so.1", "libfontconfig1"),
])
def test_debian_package_names(soname, package):
    assert debian_package(soname) == package
