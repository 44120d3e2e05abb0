"""TrainConfig's field metadata is the one schema: every field documents itself, and
validation, the command line and the app's form read the same bounds and choices."""

from __future__ import annotations

import dataclasses
import math

import pytest

from core.training.config import (
    DEVICES,
    MAX_EPOCHS,
    MAX_IMAGE_SIZE,
    MIN_IMAGE_SIZE,
    SAMPLER_HELP,
    SAMPLERS,
    FieldSpec,
    TrainConfig,
    field_spec,
    field_specs,
)
from core.training.presets import PRESETS

# The train flags users and scripts already type: they must keep working.
EXISTING_FLAGS = {
    "model": "--model", "epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr",
    "optimizer": "--optimizer", "weight_decay": "--weight-decay", "schedule": "--schedule",
    "sampler": "--sampler", "per_class": "--per-class", "augment": "--no-augment",
    "val_fraction": "--val-fraction", "seed": "--seed", "split_seed": "--split-seed",
    "device": "--device", "precision": "--precision", "image_size": "--image-size",
    "early_stopping_patience": "--patience", "threshold": "--threshold",
    "num_threads": "--threads", "weights": "--weights",
}

NUMERIC = [s for s in field_specs() if s.type in (int, float)]


def test_every_field_has_a_spec_with_label_and_help():
    specs = field_specs()
    assert [s.name for s in specs] == [f.name for f in dataclasses.fields(TrainConfig)]
    for spec in specs:
        assert spec.label and spec.help, f"{spec.name} needs a label and a help text"
        assert spec.type in (int, float, str, bool), spec
        assert spec.default == getattr(TrainConfig(), spec.name)


def test_cli_flags_are_unique_and_keep_the_existing_names():
    flags = [s.cli_flag for s in field_specs()]
    assert len(flags) == len(set(flags))
    for name, flag in EXISTING_FLAGS.items():
        assert field_spec(name).cli_flag == flag


def test_specs_carry_the_bounds_and_choices():
    assert field_spec("image_size").minimum == MIN_IMAGE_SIZE
    assert field_spec("image_size").maximum == MAX_IMAGE_SIZE
    assert field_spec("image_size").unit == "rows"
    assert field_spec("epochs").maximum == MAX_EPOCHS
    assert field_spec("sampler").choices == SAMPLERS
    assert dict(field_spec("sampler").choice_help) == SAMPLER_HELP
    assert field_spec("device").choices == DEVICES
    assert field_spec("num_threads").optional and field_spec("num_threads").none_label
    assert not field_spec("epochs").optional
    for spec in NUMERIC:  # lr alone is open above (a diverging run has its own message)
        assert spec.minimum is not None, spec.name
        assert spec.maximum is not None or spec.name == "lr", spec.name
    with pytest.raises(KeyError):
        field_spec("colour")


def test_specs_are_immutable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        field_spec("epochs").maximum = 3  # type: ignore[misc]
    assert isinstance(field_specs()[0], FieldSpec)
    field_specs().clear()  # a caller's list, not the schema
    assert field_specs()


@pytest.mark.parametrize("spec", NUMERIC, ids=lambda s: s.name)
def test_validation_uses_the_spec_bounds(spec):
    """A value at an inclusive bound is accepted; one just past a bound is refused with a
    message naming the field."""
    step = 1 if spec.type is int else 1e-9
    for bound, exclusive, outside in ((spec.minimum, spec.exclusive_minimum, -step),
                                      (spec.maximum, spec.exclusive_maximum, step)):
        if bound is None:
            continue
        bound = spec.type(bound)
        if not exclusive:
            TrainConfig(**{spec.name: bound})
        with pytest.raises(ValueError, match=rf"^{spec.name} must be "):
            TrainConfig(**{spec.name: bound + outside if not exclusive else bound})


@pytest.mark.parametrize("spec", NUMERIC, ids=lambda s: s.name)
def test_numbers_must_be_numbers(spec):
    for bad in ("3", True, math.nan, math.inf):
        if spec.type is int and isinstance(bad, float):
            bad = 2.5
        with pytest.raises(ValueError, match=spec.name):
            TrainConfig(**{spec.name: bad})


def test_choices_and_types_are_validated():
    for spec in field_specs():
        if spec.choices:
            with pytest.raises(ValueError, match=rf"{spec.name} must be one of"):
                TrainConfig(**{spec.name: "nonsense"})
    with pytest.raises(ValueError, match="augment must be true or false"):
        TrainConfig(augment=1)
    with pytest.raises(ValueError, match="model must be text"):
        TrainConfig(model=None)


def test_optional_fields_accept_none_and_the_others_do_not():
    for spec in field_specs():
        if spec.optional:
            TrainConfig(**{spec.name: None})
        else:
            with pytest.raises(ValueError, match=spec.name):
                TrainConfig(**{spec.name: None})


def test_range_text_describes_the_bounds():
    assert field_spec("epochs").range_text() == "an integer from 1 to 10,000"
    assert field_spec("lr").range_text() == "positive and finite"
    assert field_spec("val_fraction").range_text() == "more than 0 and less than 1"
    assert field_spec("threshold").range_text() == "from 0 to 1"


def test_presets_validate_against_the_schema():
    for p in PRESETS.values():
        for spec in field_specs():
            spec.check(getattr(p.config, spec.name))
