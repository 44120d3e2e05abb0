"""Presets: one definition in core, used by ``diesight train --preset`` and the app."""

from __future__ import annotations

import pytest

from core.cli import build_parser
from core.cli_train import _train_config
from core.training import presets
from core.training.config import TrainConfig


def _config_from(argv, tmp_path):
    args = build_parser().parse_args(["train", str(tmp_path), *argv])
    return _train_config(args, workspace=None)


@pytest.mark.parametrize("key", sorted(presets.PRESETS))
def test_preset_flag_gives_exactly_the_preset(key, tmp_path):
    assert _config_from(["--preset", key], tmp_path) == presets.preset(key).config


def test_flags_after_a_preset_override_its_fields(tmp_path):
    config = _config_from(["--preset", "quick", "--seed", "3", "--epochs", "2"], tmp_path)
    assert config == presets.QUICK.config.replace(seed=3, epochs=2)
    assert presets.matching_preset(config) is None
    assert presets.matching_preset(presets.QUICK.config.replace()) is presets.QUICK


def test_unknown_preset_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", str(tmp_path), "--preset", "fast"])
    assert "invalid choice: 'fast'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="presets: quick, full"):
        presets.preset("fast")


def test_preset_excludes_the_other_starting_points(tmp_path):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", str(tmp_path), "--preset", "quick",
                                   "--replay", "latest"])


def test_presets_are_valid_and_differ_from_the_defaults():
    for p in presets.PRESETS.values():
        assert p.config.validate() is None and p.note and p.title
        assert p.config != TrainConfig()
