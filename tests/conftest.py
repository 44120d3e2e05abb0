"""Shared fixtures: an isolated DieSight home per test session and small generated datasets."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    """Workspaces and settings go to a temporary folder, never the developer's home."""
    home = tmp_path_factory.mktemp("diesight-home")
    monkeypatch.setenv("DIESIGHT_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def demo_folder(tmp_path_factory):
    """A small labelled demo set in the Kaggle layout (generated once per session).

    Tests must not write into it (it is shared); copy it first if a test needs to.
    """
    from core.demodata import generate_demo_data

    out = tmp_path_factory.mktemp("demo") / "nexperia"
    generate_demo_data(out, n=240, bad_fraction=0.25, seed=7)
    return out
