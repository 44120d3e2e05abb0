"""Regression tests for GUI defects of issue 10 (Esc, window geometry, Show in list, ...)."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QRect, Qt

from app.main_window import MainWindow
from core.activation_maps import TSNESettings

TIMEOUT_MS = 30_000
SLOW_TSNE = TSNESettings(perplexity=10, early_exaggeration_iter=250, n_iter=5000,
                         step_iters=5, n_jobs=1)


def show_map(qtbot, window, method="pca"):
    tab = window.activation
    window.tabs.setCurrentWidget(tab)
    qtbot.waitUntil(lambda: tab.showing_map and tab.controller.task is None
                    and len(tab.scatter.image_ids) > 0 and tab.scatter.method == method,
                    timeout=TIMEOUT_MS)
    return tab


def test_esc_clears_a_map_selection_then_stops_the_running_tsne(qtbot, scored_window, qtlog):
    window = scored_window
    tab = show_map(qtbot, window)
    tab.controller.settings = SLOW_TSNE
    tab.controller.set_embeddings(tab.points.image_ids, tab.points.embeddings)
    scatter = tab.scatter
    scatter.method_combo.setCurrentIndex(scatter.method_combo.findData("tsne"))
    task = tab.controller.task
    try:
        qtbot.waitUntil(scatter.progress_row.isVisible, timeout=TIMEOUT_MS)
        scatter.set_selection_mode("lasso")
        scatter.select_ids(scatter.image_ids[:25])
        scatter.plot_widget.setFocus()
        qtbot.keyClick(scatter.plot_widget, Qt.Key.Key_Escape)
        assert len(scatter.selected_ids()) == 0  # the first Esc: the selection goes
        assert task.is_running and not task.cancel_requested
        qtbot.keyClick(scatter.plot_widget, Qt.Key.Key_Escape)
        assert task.cancel_requested  # the second: the running t-SNE stops
        assert not [r for r in qtlog.records if "Ambiguous shortcut" in r.message]
    finally:
        task.cancel()
    qtbot.waitUntil(lambda: not task.is_running, timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: scatter.method == "pca", timeout=TIMEOUT_MS)


def test_show_in_list_does_not_widen_the_window(qtbot, scored_window):
    window = scored_window
    tab = show_map(qtbot, window)
    window.resize(1480, 800)
    qtbot.wait(50)
    width, minimum = window.width(), window.minimumSizeHint().width()
    tab.scatter.select_ids(tab.scatter.image_ids[:40])
    tab.scatter.action_buttons["show_in_list"].click()
    assert window.tabs.currentWidget() is window.ranked
    qtbot.wait(100)
    assert window.ranked.selection_chip.isVisible()
    assert window.minimumSizeHint().width() <= minimum
    assert window.width() == width


def test_a_saved_geometry_larger_than_the_screen_is_not_restored(qtbot, settings):
    big = MainWindow(settings=settings)
    qtbot.addWidget(big)
    big.setGeometry(QRect(0, 0, 3000, 3000))
    settings.setValue("window/geometry", big.saveGeometry())  # as a bigger screen left it
    big.deleteLater()
    window = MainWindow(settings=settings)
    qtbot.addWidget(window)
    available = window.screen().availableGeometry()
    frame = window.frameGeometry()
    assert frame.height() <= available.height()
    assert window.width() <= max(available.width(), window.minimumSizeHint().width())
    window.show()
    window.close()  # closing saves the geometry: the clamped one
    again = MainWindow(settings=settings)
    qtbot.addWidget(again)
    assert again.frameGeometry().height() <= available.height()


def _count(image, rect, test) -> int:
    return sum(1 for x in range(rect.left(), rect.right() + 1)
               for y in range(rect.top(), rect.bottom() + 1) if test(image.pixelColor(x, y)))


def test_spin_boxes_show_their_up_and_down_arrows(qtbot):
    from PySide6.QtGui import QColor
    from PySide6.QtWidgets import QApplication, QSpinBox, QStyle, QStyleOptionSpinBox

    from app.icons import style_sheet

    app = QApplication.instance()
    previous = app.styleSheet()
    app.setStyleSheet(style_sheet())
    try:
        spin = QSpinBox()
        qtbot.addWidget(spin)
        spin.setValue(5)
        spin.resize(120, 30)
        spin.show()
        qtbot.wait(20)
        image = spin.grab().toImage()
        option = QStyleOptionSpinBox()
        option.rect = spin.rect()
        option.subControls = QStyle.SubControl.SC_SpinBoxUp | QStyle.SubControl.SC_SpinBoxDown
        button_fill = QColor("#f4f6f9")
        for control in (QStyle.SubControl.SC_SpinBoxUp, QStyle.SubControl.SC_SpinBoxDown):
            rect = spin.style().subControlRect(QStyle.ComplexControl.CC_SpinBox, option,
                                               control, spin).intersected(spin.rect())
            assert rect.width() >= 16 and rect.height() >= 10, rect
            filled = _count(image, rect, lambda c: c == button_fill)
            assert filled > rect.width() * rect.height() // 3, "the button is not drawn"
            centre = rect.adjusted(4, 3, -4, -3)
            assert _count(image, centre, lambda c: c.lightness() < 160) >= 3, "no arrow"
    finally:
        app.setStyleSheet(previous)


def test_long_texts_end_in_an_ellipsis_instead_of_widening_or_clipping(qtbot):
    from app.elide import ElidedLabel

    label = ElidedLabel("2,787 of 3,301 images · run 12 · threshold 0.400", min_chars=6)
    qtbot.addWidget(label)
    assert label.minimumSizeHint().width() < label.sizeHint().width() // 3
    label.resize(label.sizeHint())
    assert not label.elided and label.displayed_text() == label.text()
    label.resize(90, label.height())
    assert label.elided and label.displayed_text().endswith("…")
    label.grab()  # paints: the whole text becomes the tooltip
    assert label.toolTip() == label.text()


def test_dataset_counts_table_shows_every_column_whole(qtbot, window, demo_folder):
    task = window.open_folder(demo_folder)
    qtbot.waitUntil(lambda: not task.is_running, timeout=TIMEOUT_MS)
    window.resizeDocks([window.dataset_dock], [1], Qt.Orientation.Horizontal)  # narrowest
    qtbot.wait(50)
    table = window.dataset_panel.counts_table
    header = table.horizontalHeader()
    needed = sum(max(table.sizeHintForColumn(c), header.sectionSizeHint(c))
                 for c in range(table.columnCount()))
    dock = window.dataset_dock.widget()
    left = table.viewport().mapTo(dock, QPoint(0, 0)).x()
    visible = min(table.viewport().width(), dock.width() - left)
    assert needed <= visible  # room for every number and title, "Total" too
