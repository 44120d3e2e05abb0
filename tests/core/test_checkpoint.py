"""Tests of checkpoint files: atomic round trip and clear errors for bad files."""

from __future__ import annotations

import pytest
import torch

from core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def test_round_trip_adds_the_format_marker(tmp_path):
    path = save_checkpoint(tmp_path / "runs" / "last.pt",
                           {"model": {"w": torch.ones(2)}, "epoch": 3, "config": {"lr": 0.1},
                            "rng": {"torch": torch.get_rng_state()}, "history": [{"a": 1.0}]})
    data = load_checkpoint(path)
    assert data["diesight"] == 1 and data["epoch"] == 3 and torch.equal(data["model"]["w"],
                                                                         torch.ones(2))
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"], "no temporary files left"


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nothing.pt")


@pytest.mark.parametrize("content", [b"", b"garbage bytes", b"PK\x03\x04truncated zip"])
def test_corrupt_file(tmp_path, content):
    (tmp_path / "bad.pt").write_bytes(content)
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(tmp_path / "bad.pt")


def test_truncated_checkpoint(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"model": {"w": torch.ones(1000)}})
    path.write_bytes(path.read_bytes()[:-500])
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(path)


def test_pickled_code_is_refused(tmp_path):
    torch.save({"model": {}, "diesight": 1, "evil": object()}, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(tmp_path / "c.pt")


def test_other_torch_files_and_newer_formats(tmp_path):
    torch.save({"w": torch.ones(1)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a DieSight checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    torch.save({"model": {}, "diesight": 99}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="newer DieSight"):
        load_checkpoint(tmp_path / "future.pt")
