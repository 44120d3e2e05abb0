"""``diesight train``'s settings flags are made from TrainConfig's field specs: one flag per
field, under the names users already type, overriding only what is given."""

from __future__ import annotations

import subprocess
import sys

import pytest

from core.cli import build_parser
from core.cli_train import _train_config
from core.training.config import TrainConfig, field_specs


def _config_from(argv, tmp_path):
    args = build_parser().parse_args(["train", str(tmp_path), *argv])
    return _train_config(args, workspace=None)


def _value_for(spec):
    """A valid value different from the default, as typed on the command line."""
    if spec.choices:
        return next(c for c in spec.choices if c != spec.default)
    if spec.type is int:
        return (spec.minimum or 0) + 2
    if spec.type is float:
        return 0.5 if spec.maximum == 1 else 0.25
    return "/tmp/weights.pt" if spec.name == "weights" else "stratified"


@pytest.mark.parametrize("spec", [s for s in field_specs() if s.type is not bool],
                         ids=lambda s: s.name)
def test_every_field_has_a_flag_that_overrides_only_itself(spec, tmp_path):
    value = _value_for(spec)
    config = _config_from([spec.cli_flag, str(value)], tmp_path)
    assert config == TrainConfig().replace(**{spec.name: value})


def test_boolean_fields_are_switches(tmp_path):
    for spec in (s for s in field_specs() if s.type is bool):
        config = _config_from([spec.cli_flag], tmp_path)
        assert getattr(config, spec.name) is not spec.default
    assert _config_from([], tmp_path).augment is True
    assert _config_from(["--no-augment"], tmp_path).augment is False


def test_flags_keep_their_old_names_and_override_a_preset(tmp_path):
    config = _config_from(["--preset", "quick", "--patience", "3", "--threads", "2",
                           "--per-class", "7", "--split-seed", "11"], tmp_path)
    assert (config.early_stopping_patience, config.num_threads, config.per_class,
            config.split_seed, config.image_size) == (3, 2, 7, 11, 80)


def test_help_lists_every_flag_with_its_bounds():
    parser = build_parser()._subparsers._group_actions[0].choices["train"]
    text = " ".join(parser.format_help().split())
    for spec in field_specs():
        assert spec.cli_flag in text
    assert "an integer from 64 to 1,068" in text  # --image-size's bounds from the spec


def test_a_bad_choice_or_type_is_argparses_one_line_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "app.entry", "train", str(tmp_path),
                             "--epochs", "many"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "argument --epochs: invalid int value: 'many'" in result.stderr
    assert "Traceback" not in result.stderr
