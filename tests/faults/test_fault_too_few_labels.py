"""Guarantee: too few labelled images is one line that says which class is short and by how
many (never "2 good and 2 bad" when only the bad ones are missing), before any run is
recorded."""

from __future__ import annotations

import pytest
from fault_helpers import cli, error_line
from scoring_fixtures import make_lot

from core.cli import EXIT_USER_ERROR
from core.workspace import workspace_dir_for


@pytest.mark.parametrize("good, bad, needles, absent", [
    (10, 1, ("at least 3 bad", "found only 1 bad", "label 2 more bad"), "good"),
    (10, 0, ("at least 1 bad", "found only 0 bad", "label 1 more bad"), "good"),
    (2, 10, ("at least 3 good", "found only 2 good", "label 1 more good"), "bad"),
])
def test_too_few_labelled_images_names_the_short_class(tmp_path, isolated_home, good, bad,
                                                       needles, absent):
    data = make_lot(tmp_path / "lot", good=good, bad=bad, test=0)
    result = cli("train", data, "--image-size", "64", "--device", "cpu", home=isolated_home,
                 timeout=90)
    assert result.returncode == EXIT_USER_ERROR, result.stderr
    line = error_line(result, *needles)
    assert f" {absent}" not in line.split(";")[0], line
    assert not (workspace_dir_for(data) / "runs").exists()
