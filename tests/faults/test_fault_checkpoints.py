"""Guarantee: a crafted, foreign, random or truncated checkpoint gives one line naming the
file (a CheckpointError), runs no code, leaks no torch warning and never repeats torch's
advice to load with ``weights_only=False``."""

from __future__ import annotations

import collections
import io
import os
import pickle
import warnings

import pytest
import torch
from fault_helpers import cli, error_line

from core.checkpoint import CheckpointError, load_checkpoint, load_state_into
from core.models import create_model


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _crafted(folder, name: str):
    """Write one crafted file; returns its path."""
    path = folder / f"{name}.pt"
    weights = create_model("designed_resnet").state_dict()
    if name == "marker_not_a_number":
        torch.save({"diesight": "x", "model": weights}, path)
    elif name == "marker_bool":
        torch.save({"diesight": True, "model": weights}, path)
    elif name == "model_a_list":
        torch.save({"diesight": 1, "model": [1, 2, 3]}, path)
    elif name == "model_of_ints":
        torch.save({"diesight": 1, "model": {"stem.0.weight": 3}}, path)
    elif name == "epoch_a_string":
        torch.save({"diesight": 1, "model": weights, "epoch": "three"}, path)
    elif name == "random_bytes":
        path.write_bytes(os.urandom(4096).replace(b"PK", b"pk").lstrip(b"\x80") or b"x")
    elif name == "random_after_zip_magic":
        path.write_bytes(b"PK\x03\x04" + os.urandom(4096))
    elif name == "foreign_pickle":
        path.write_bytes(pickle.dumps(collections.OrderedDict(a=io.BytesIO()), protocol=4))
    elif name == "plain_pickle_protocol_5":
        path.write_bytes(pickle.dumps({"diesight": 1, "model": {}}, protocol=5))
    elif name == "malicious_reduce":
        path.write_bytes(pickle.dumps({"diesight": 1, "model": _Evil(str(folder / "pwned"))}))
    elif name == "torch_save_of_code":
        torch.save({"diesight": 1, "model": weights, "evil": _Evil(str(folder / "pwned"))},
                   path)
    elif name == "truncated":
        torch.save({"diesight": 1, "model": weights}, path)
        path.write_bytes(path.read_bytes()[:5000])
    elif name == "empty":
        path.write_bytes(b"")
    elif name == "wrong_model":
        torch.save({"diesight": 1, "model": {"fc.weight": torch.zeros(2, 2)}}, path)
    return path


CASES = ["marker_not_a_number", "marker_bool", "model_a_list", "model_of_ints",
         "epoch_a_string", "random_bytes", "random_after_zip_magic", "foreign_pickle",
         "plain_pickle_protocol_5", "malicious_reduce", "torch_save_of_code", "truncated",
         "empty", "wrong_model"]


@pytest.mark.parametrize("name", CASES)
def test_crafted_checkpoint_is_one_clear_line(tmp_path, name):
    path = _crafted(tmp_path, name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(CheckpointError) as error:
            checkpoint = load_checkpoint(path)
            load_state_into(create_model("designed_resnet"), checkpoint["model"], str(path))
    message = str(error.value)
    assert str(path) in message
    assert "\n" not in message and "weights_only" not in message
    assert len(message) < 300
    assert not [w for w in caught if "pickle" in str(w.message).lower()], caught
    assert not (tmp_path / "pwned").exists()


def test_crafted_best_checkpoint_through_the_cli(tmp_path, isolated_home):
    """``diesight score`` with a forged best.pt: the user-error exit code and one line."""
    from scoring_fixtures import make_lot, make_run

    from core.dataset import open_dataset

    data = make_lot(tmp_path / "lot", good=4, bad=2, test=0)
    dataset = open_dataset(data, workers=1)
    run = make_run(dataset.workspace)
    best = run.checkpoint
    best.write_bytes(pickle.dumps({"diesight": 1, "model": {}}, protocol=4))
    result = cli("score", data, "--run", str(run.id), "--device", "cpu", home=isolated_home)
    assert result.returncode == 2, result.stderr
    error_line(result, str(best))
    assert "UserWarning" not in result.stderr
