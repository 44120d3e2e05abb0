"""The thumbnail grid: downscaling, the lazy model, filters and selection."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap

from app.state import AppState
from app.thumbnail_grid import (
    IMAGE_ID_ROLE,
    LABEL_ROLE,
    POSITION_ROLE,
    ThumbnailGrid,
    downscale,
    gray_qimage,
)
from core.dataset import open_dataset
from core.ranking import filter_positions


@pytest.fixture
def dataset(demo_folder):
    return open_dataset(demo_folder, workers=1)


@pytest.fixture
def grid(qtbot, dataset):
    state = AppState()
    grid = ThumbnailGrid(state)
    qtbot.addWidget(grid)
    grid.resize(800, 600)
    grid.show()
    state.set_dataset(dataset)
    return grid


def test_downscale_is_an_area_mean():
    image = np.arange(267 * 275, dtype=np.uint32).reshape(267, 275) % 251
    image = image.astype(np.uint8)
    small = downscale(image, 96)
    assert small.shape == (89, 91)  # factor 3; the last partial column is dropped
    block_means = image[:267, :273].reshape(89, 3, 91, 3).mean(axis=(1, 3))
    assert np.abs(small.astype(float) - block_means).max() <= 1.0  # rounding only
    assert downscale(image[:50, :60], 96).shape == (50, 60)  # small images stay as they are


def test_gray_qimage_keeps_the_pixels():
    array = np.random.default_rng(1).integers(0, 256, (7, 13), dtype=np.uint8)
    image = gray_qimage(array)
    assert (image.width(), image.height()) == (13, 7)
    assert all(image.pixelColor(x, y).red() == array[y, x] for x in (0, 5, 12) for y in (0, 6))


def test_filter_positions_matches_labels_and_splits(dataset):
    labels = dataset.labels
    bad_train = filter_positions(dataset, labels, "bad", "train")
    expected = np.flatnonzero((dataset.labels == 1) & (dataset.splits == "train"))
    assert np.array_equal(bad_train, expected)
    assert len(filter_positions(dataset, labels)) == len(dataset.image_ids)
    assert len(filter_positions(dataset, labels, "unlabelled", "test")) == \
        dataset.counts()["test"]["unlabelled"]


def test_model_rows_and_roles(grid, dataset):
    model = grid.model
    assert model.rowCount() == len(dataset.image_ids)
    index = model.index(10)
    assert index.data(Qt.ItemDataRole.DisplayRole) == dataset.names[10]
    assert index.data(POSITION_ROLE) == 10
    assert index.data(IMAGE_ID_ROLE) == int(dataset.image_ids[10])
    assert index.data(LABEL_ROLE) == int(dataset.labels[10])
    assert dataset.relpaths[10] in index.data(Qt.ItemDataRole.ToolTipRole)


def test_thumbnails_load_lazily_off_the_gui_thread(qtbot, grid, dataset):
    index = grid.model.index(3)
    index.data(Qt.ItemDataRole.DecorationRole)  # a miss queues the request
    qtbot.waitUntil(lambda: isinstance(index.data(Qt.ItemDataRole.DecorationRole), QPixmap),
                    timeout=5000)
    pixmap = index.data(Qt.ItemDataRole.DecorationRole)
    expected = downscale(dataset.images[dataset.image_ids[3]])
    image = pixmap.toImage()
    assert (image.height(), image.width()) == expected.shape
    assert image.pixelColor(10, 20).red() == expected[20, 10]


def test_only_requested_rows_are_rendered(qtbot, grid, dataset):
    grid.model.set_dataset(dataset)  # empty cache
    grid.model.loader.wait()
    grid.model.data(grid.model.index(0), Qt.ItemDataRole.DecorationRole)
    qtbot.waitUntil(lambda: grid.model.thumbnail(int(dataset.image_ids[0])) is not None,
                    timeout=5000)
    # A 240-image set fits the cache, yet rows nobody asked for were never made.
    assert len(grid.model._cache) < len(dataset.image_ids)


def test_filters_change_the_rows(qtbot, grid, dataset):
    counts = dataset.counts()
    grid.set_filters("bad", "train")
    assert grid.model.rowCount() == counts["train"]["bad"]
    assert all(dataset.labels[p] == 1 for p in grid.model.positions)
    grid.set_filters("all", "test")
    assert grid.model.rowCount() == sum(counts["test"].values())
    grid.set_filters("good", "test")
    assert grid.model.rowCount() == counts["test"]["good"] == 0
    assert "0 of 240" in grid.count_label.text()
    grid.set_filters("all", "all")
    assert grid.model.rowCount() == len(dataset.image_ids)
    assert grid.class_filter.itemText(2) == f"Bad ({int((dataset.labels == 1).sum())})"


def test_selection_and_current_image_follow_each_other(qtbot, grid, dataset):
    grid.set_filters("bad", "all")
    grid.view.setCurrentIndex(grid.model.index(4))
    assert grid.state.current_image == grid.model.positions[4]
    other = int(grid.model.positions[9])
    grid.state.set_current_image(other)
    assert grid.view.currentIndex().row() == 9
    good = int(np.flatnonzero(dataset.labels == 0)[0])
    grid.state.set_current_image(good)  # filtered out: nothing selected, state kept
    assert not grid.view.currentIndex().isValid()
    grid.set_filters("all", "all")  # back in view: selected again
    assert grid.view.currentIndex().row() == grid.model.row_of(good)
