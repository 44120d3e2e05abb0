"""Guarantees: every numeric training option has bounds, and a value outside them (or an
image size whose prepared images would not fit in memory) is one line naming the option,
before any run is recorded."""

from __future__ import annotations

import re

import pytest
from fault_helpers import cli, error_line
from scoring_fixtures import make_lot

from core.cli import EXIT_USER_ERROR
from core.training.config import (
    MAX_IMAGE_SIZE,
    TrainConfig,
    check_prepared_memory,
    prepared_bytes,
)
from core.workspace import workspace_dir_for


@pytest.mark.parametrize("option, value, name", [
    ("--image-size", "100000", "image_size"),
    ("--image-size", str(MAX_IMAGE_SIZE + 1), "image_size"),
    ("--batch-size", "1000000", "batch_size"),
    ("--per-class", "1000000000", "per_class"),
    ("--epochs", "10000000", "epochs"),
    ("--lr", "inf", "lr"),
    ("--seed", "-1", "seed"),
])
def test_out_of_range_options_are_one_line_and_leave_no_run(tmp_path, isolated_home, option,
                                                            value, name):
    data = make_lot(tmp_path / "lot", good=4, bad=4, test=0)
    result = cli("train", data, option, value, "--device", "cpu", home=isolated_home,
                 timeout=60)
    assert result.returncode == EXIT_USER_ERROR, result.stderr
    error_line(result, name, value if value != "inf" else "")
    assert not (workspace_dir_for(data) / "runs").exists()


def test_a_size_whose_images_do_not_fit_in_memory_names_one_that_does():
    two_gib = 2 * 2**30
    with pytest.raises(ValueError, match=r"30,000 images need 32\.\d GiB .* only 2\.0 GiB "
                                         r"of memory is free; use --image-size \d+ or less"
                       ) as refused:
        check_prepared_memory(30_000, MAX_IMAGE_SIZE, available=two_gib)
    advised = int(re.search(r"--image-size (\d+)", str(refused.value)).group(1))
    check_prepared_memory(30_000, advised, available=two_gib)  # the advice fits
    assert prepared_bytes(30_000, advised + 1) > 0.6 * two_gib  # and is the largest
    check_prepared_memory(30_000, 267, available=64 * 2**30)


def test_config_files_are_bounded_too():
    for bad in (dict(image_size=5000), dict(batch_size=0), dict(per_class=True),
                dict(weight_decay=float("nan")), dict(val_fraction=float("inf"))):
        with pytest.raises(ValueError):
            TrainConfig.from_dict(bad)
