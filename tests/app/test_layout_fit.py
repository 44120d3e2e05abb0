"""Layouts that fit a 1366 x 768 screen and never cut text (issue 10).

The window's minimum size, with the application's style sheet (its padded, bold headers
and tabs are what made things wider), must fit the laptop screen on every tab; what
cannot have its full width shrinks with "…" or drops to its icon instead of being cut.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtWidgets import QApplication

from app.filter_bar import filter_combo
from app.icons import style_sheet
from app.runs_view import RunsView

TIMEOUT_MS = 60_000
SCREEN = (1366, 768)


@pytest.fixture(autouse=True)
def styled(qapp):
    """The application's style sheet on, as in the real app (cleared after); before the
    window is built, since it decides the widgets' sizes."""
    qapp.setStyleSheet(style_sheet())
    yield
    qapp.setStyleSheet("")


@pytest.fixture
def scored_window(qtbot, scored_window):
    """The shared scored window (conftest) with an image shown in the viewer."""
    scored_window.state.set_current_image(0)
    qtbot.wait(50)
    return scored_window


def squeeze(qtbot, window) -> None:
    """The window at its minimum size (as on a screen just big enough)."""
    QApplication.processEvents()
    window.resize(window.minimumSizeHint())
    qtbot.wait(50)


def test_window_fits_a_1366x768_screen_on_every_tab(qtbot, scored_window):
    window = scored_window
    window.ranked.show_selection(np.arange(40))  # the selection chip widens the filter bar
    for index in range(window.tabs.count()):
        window.tabs.setCurrentIndex(index)
        QApplication.processEvents()
        hint = window.minimumSizeHint()
        title = window.tabs.tabText(index)
        assert hint.width() <= SCREEN[0], f"{title}: {hint.width()} px wide"
        assert hint.height() <= SCREEN[1], f"{title}: {hint.height()} px tall"


def test_every_tab_title_is_shown_whole(qtbot, scored_window):
    window = scored_window
    squeeze(qtbot, window)
    bar = window.tabs.tabBar()
    for index in range(bar.count()):
        rect = bar.tabRect(index)
        text = bar.tabText(index)
        assert rect.right() < bar.width(), f"{text!r} runs off the tab bar"  # was "Ev"
        assert rect.width() > bar.fontMetrics().horizontalAdvance(text), text


def test_viewer_title_elides_and_its_buttons_drop_text_when_the_dock_is_narrow(
        qtbot, scored_window):
    window, viewer = scored_window, scored_window.viewer
    assert viewer.minimumSizeHint().width() <= 400  # was 436 (377 from the title alone)
    window.resizeDocks([window.viewer_dock], [1], Qt.Orientation.Horizontal)  # narrowest
    qtbot.wait(50)
    long_name = "a" * 60 + ".jpg"
    viewer.name_label.setText(long_name)
    qtbot.wait(20)
    assert viewer.name_label.elided and "…" in viewer.name_label.displayed_text()
    assert viewer.name_label.width() <= viewer.width()
    review = (viewer.flag_button, viewer.good_button, viewer.bad_button)
    if any(b.width() < b.sizeHint().width() for b in review):
        assert all(b.compact for b in review if b.width() < b.sizeHint().width())
    window.resize(1900, 1000)
    window.resizeDocks([window.viewer_dock], [700], Qt.Orientation.Horizontal)
    qtbot.wait(50)
    assert viewer.width() >= 600
    assert not any(b.compact for b in review)  # room again: icon and text


def test_filter_combo_shrinks_with_an_elided_text_and_a_tooltip(qtbot, styled):
    combo = filter_combo([("all", "All images (12,345)"),
                          ("disagree", "Disagreements (1,234)")], "testCombo")
    qtbot.addWidget(combo)
    combo.show()
    assert combo.minimumSizeHint().width() < combo.sizeHint().width() - 40
    combo.resize(combo.sizeHint())
    qtbot.wait(20)
    assert not combo.elided() and combo.toolTip() == ""
    combo.resize(combo.minimumSizeHint())
    qtbot.wait(20)
    combo.grab()
    assert combo.elided() and combo.toolTip() == "All images (12,345)"


def test_ranked_tab_with_a_selection_chip_shrinks(qtbot, scored_window):
    window, ranked = scored_window, scored_window.ranked
    window.tabs.setCurrentWidget(ranked)
    ranked.show_selection(np.arange(40))
    assert ranked.selection_chip.isVisibleTo(ranked)
    assert ranked.minimumSizeHint().width() <= 600  # the fixed-width combos made it 1,379
    squeeze(qtbot, window)
    chip = ranked.selection_chip
    assert chip.width() >= chip.sizeHint().width()  # the chip itself is whole
    assert ranked.kind_filter.width() < ranked.kind_filter.sizeHint().width()  # combos gave


def test_runs_table_and_roc_become_tabs_when_narrow_and_the_legend_stays_off_the_curves(
        qtbot, scored_window):
    runs = RunsView(scored_window.state, scored_window.run_task)
    qtbot.addWidget(runs)
    runs.show()
    runs.resize(900, 500)
    qtbot.wait(20)
    assert not runs.narrow and runs.roc.isVisibleTo(runs)
    for width, height in ((900, 500), (400, 300), (300, 240)):
        runs.resize(width, height)
        qtbot.wait(20)
        assert runs.narrow == (width < 560)
        if runs.narrow:
            runs.narrow_tabs.setCurrentWidget(runs.roc)
            qtbot.wait(20)
        plot = runs.roc.getPlotItem()
        assert runs.roc.curves, "the current run's ROC is drawn"
        legend = runs.roc.legend.sceneBoundingRect()
        axes = plot.vb.sceneBoundingRect()
        assert not legend.intersects(axes), (width, height)
        assert axes.height() >= 80, "the curves keep some room"
    runs.resize(900, 500)
    qtbot.wait(20)
    assert not runs.narrow and runs.table.isVisibleTo(runs)


def test_counts_table_keeps_every_column_whole_after_tab_changes(qtbot, scored_window):
    window = scored_window
    window.resizeDocks([window.dataset_dock], [1], Qt.Orientation.Horizontal)  # narrowest
    table = window.dataset_panel.counts_table
    header = table.horizontalHeader()
    for index in range(window.tabs.count()):
        window.tabs.setCurrentIndex(index)
        qtbot.wait(50)
        sections = [header.sectionSize(c) for c in range(table.columnCount())]
        needed = [max(table.sizeHintForColumn(c), header.sectionSizeHint(c))
                  for c in range(table.columnCount())]
        assert all(s >= n for s, n in zip(sections, needed, strict=True)), sections
        last = table.columnCount() - 1
        right = header.sectionViewportPosition(last) + sections[last]
        corner = table.viewport().mapTo(window.dataset_panel, QPointF(right, 0).toPoint())
        assert right <= table.viewport().width() and corner.x() <= window.dataset_panel.width()
