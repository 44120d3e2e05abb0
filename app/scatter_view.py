"""The activation-space view: every image as a point of a PCA or t-SNE map of a run's embeddings.

:class:`ActivationScatter` is a self-contained widget fed with plain arrays (coordinates,
image ids, per-point values) that reports what the user does as Qt signals (a point clicked,
a selection made, an action asked for). It computes nothing itself; the t-SNE animation is
driven from outside through :meth:`ActivationScatter.show_partial` and
:meth:`ActivationScatter.show_progress` (``app.map_controller`` does that).

Speed at 100,000 points rests on three choices:

* ONE scatter item for all points, in pixel mode, without outlines, with one shared QBrush per
  colour class (score: 64 bins). pyqtgraph renders each distinct brush once into a symbol atlas
  and blits fragments; ``app.scatter_items.FastScatter`` assigns brushes and atlas rectangles
  with numpy instead of pyqtgraph's per-point Python loop (0.3 s -> a few ms at 100,000 points).
* Hover and click use a KD-tree nearest query (built lazily once per layout), never
  pyqtgraph's ``hoverable`` (which builds a Python object per point).
* Lasso containment is a vectorised even-odd test (``core.activation_maps.points_in_polygon``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QPointF, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.palette import MAP_AXIS_COLOUR, MAP_BACKGROUND
from app.scatter_items import (
    CATEGORIES,
    MISSING_HEX,
    SCORE_BINS,
    SCORE_COLORMAP,
    BrushBook,
    Coloring,
    FastScatter,
    ScatterLegend,
    SelectionViewBox,
    categorical_coloring,
    score_coloring,
)
from core.activation_maps import points_in_polygon
from core.map_runner import METHOD_TITLES

__all__ = ["CATEGORIES", "COLOR_MODES", "SCORE_BINS", "ActivationScatter", "FastScatter"]


COLOR_MODES = ("label", "score", "prediction", "flagged", "split")
COLOR_MODE_TITLES = {"label": "Label", "score": "Score", "prediction": "Prediction",
                     "flagged": "Flagged", "split": "Split"}
AXIS_TITLES = {"pca": ("principal component 1", "principal component 2"),
               "tsne": ("t-SNE 1", "t-SNE 2")}
SELECTION_MODES = ("pointer", "rectangle", "lasso")

DIMMED_ALPHA = 38  # unselected points while a selection exists
SELECTED_PRIORITY = 1000  # above every colouring's priorities: selected points draw last
HOVER_RADIUS_PX = 8
CLICK_RADIUS_PX = 6
HOVER_INTERVAL_MS = 40
TREE_DELAY_MS = 50  # after the first paint of a new layout


class ActivationScatter(QWidget):
    """PCA / t-SNE map of a run's embeddings, with colouring, hover, click and selection.

    Feed it with :meth:`set_points` (coordinates + image ids), :meth:`set_coloring` (values per
    colour mode) and, while t-SNE runs, :meth:`show_partial` / :meth:`show_progress`.

    Signals:
        point_clicked(int): image id of the point clicked (pointer mode).
        point_hovered(object): image id of the point under the pointer, None off points.
        selection_changed(object): int64 array of the selected image ids.
        method_changed(str): the user picked 'pca' or 'tsne' in the toolbar.
        coloring_requested(str): the view needs values for this colour mode (new points, or
            the user picked a mode whose values were never given).
        tsne_cancel_requested(): the Cancel button next to the t-SNE progress.
        flag_requested(object), unflag_requested(object), label_bad_requested(object),
        label_good_requested(object), show_in_list_requested(object): an action button,
            with the selected image ids (int64 array).
    """

    point_clicked = Signal(int)
    selection_changed = Signal(object)
    method_changed = Signal(str)
    coloring_requested = Signal(str)
    tsne_cancel_requested = Signal()
    flag_requested = Signal(object)
    unflag_requested = Signal(object)
    label_bad_requested = Signal(object)
    label_good_requested = Signal(object)
    show_in_list_requested = Signal(object)
    point_hovered = Signal(object)  # the image id under the pointer, None when it leaves

    def __init__(self, parent: QWidget | None = None, *, point_size: float = 5) -> None:
        super().__init__(parent)
        self.point_size = point_size
        self._book = BrushBook()
        self._coords = np.zeros((0, 2), dtype=np.float32)
        self._ids = np.zeros(0, dtype=np.int64)
        self._id_order = np.zeros(0, dtype=np.int64)  # argsort of _ids, for id lookups
        self._names: list[str] | None = None
        self._values: dict[str, np.ndarray] = {}
        self._coloring: Coloring | None = None
        self._order = np.zeros(0, dtype=np.int64)  # drawing order: point indices, bottom first
        self._tree = None
        self._tree_scale = np.ones(2)
        self._selected = np.zeros(0, dtype=np.int64)  # point indices
        self._highlighted = -1
        self._drag_points: list[tuple[float, float]] = []
        self._hover_scene_pos: QPointF | None = None
        self._hovered_id: int | None = None
        self._build_plot()
        self._build_toolbar()
        self._build_progress_row()
        self._label_axes()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addWidget(self.toolbar)
        layout.addWidget(self.progress_row)
        layout.addWidget(self.plot_widget, 1)
        layout.addWidget(self.legend)
        self._update_actions()

    # -- Esc -----------------------------------------------------------------------------
    def event(self, event: QEvent) -> bool:  # noqa: D102 - Qt's event dispatch
        # Esc belongs to the window (Cancel Task) unless the map has something of its own to
        # drop: then the map takes this Esc (accepting the override makes it a key press
        # here). A second shortcut for Esc made Qt refuse both as ambiguous.
        if (event.type() == QEvent.Type.ShortcutOverride
                and event.key() == Qt.Key.Key_Escape and self.has_escapable()):
            event.accept()
            return True
        return super().event(event)

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt naming
        if event.key() == Qt.Key.Key_Escape and self.has_escapable():
            self.escape()
            event.accept()
            return
        super().keyPressEvent(event)

    def has_escapable(self) -> bool:
        """A selection (or one being drawn) that Esc would drop."""
        return bool(len(self._selected) or self._drag_points)

    def escape(self) -> None:
        """Drop the lasso or box being drawn, else the selection."""
        if self._drag_points:
            self._drag_points = []
            self.drag_item.setData([], [])
            return
        self.clear_selection()

    # -- construction ------------------------------------------------------------------
    def _build_toolbar(self) -> None:
        # Two rows: what is shown (map, colours, mouse mode) and what to do with a selection,
        # so the whole bar fits a 700-pixel-wide tab with the application's style sheet.
        self.toolbar = QWidget(objectName="scatterToolbar")
        rows = QVBoxLayout(self.toolbar)
        rows.setContentsMargins(4, 2, 4, 2)
        rows.setSpacing(2)
        rows.addLayout(self._build_view_row())
        rows.addLayout(self._build_action_row())

    def _build_view_row(self) -> QHBoxLayout:
        bar = QHBoxLayout()
        bar.setSpacing(4)
        self.method_combo = QComboBox(objectName="scatterMethod")
        for method, title in METHOD_TITLES.items():
            self.method_combo.addItem(title, method)
        self.method_combo.setToolTip("Projection of the activations: PCA (instant) or t-SNE")
        self.method_combo.currentIndexChanged.connect(
            lambda _i: self.method_changed.emit(self.method))
        self.method_combo.currentIndexChanged.connect(lambda _i: self._label_axes())
        self.color_combo = QComboBox(objectName="scatterColorBy")
        for mode in COLOR_MODES:
            self.color_combo.addItem(COLOR_MODE_TITLES[mode], mode)
        self.color_combo.currentIndexChanged.connect(self._on_color_combo_change)
        bar.addWidget(QLabel("Map"))
        bar.addWidget(self.method_combo)
        bar.addSpacing(6)
        bar.addWidget(QLabel("Colour by"))
        bar.addWidget(self.color_combo)
        bar.addSpacing(12)
        self.mode_buttons = QButtonGroup(self)
        self.mode_buttons.setExclusive(True)
        tips = {"pointer": "Pointer: click a point to open its image; drag to pan",
                "rectangle": "Rectangle selection (Shift adds)",
                "lasso": "Lasso selection: draw around points (Shift adds)"}
        for mode in SELECTION_MODES:
            button = QToolButton(text=mode.capitalize(), checkable=True, toolTip=tips[mode])
            button.setObjectName(f"scatterMode_{mode}")
            self.mode_buttons.addButton(button)
            button.toggled.connect(lambda on, m=mode: on and self.set_selection_mode(m))
            bar.addWidget(button)
        self.mode_buttons.buttons()[0].setChecked(True)
        bar.addStretch(1)
        return bar

    def _build_action_row(self) -> QHBoxLayout:
        bar = QHBoxLayout()
        bar.setSpacing(4)
        self.selection_label = QLabel("", objectName="scatterSelectionCount")
        self.selection_label.setMinimumWidth(110)
        bar.addWidget(self.selection_label)
        self.action_buttons: dict[str, QToolButton] = {}
        actions = (("flag", "Flag", self.flag_requested),
                   ("unflag", "Unflag", self.unflag_requested),
                   ("label_bad", "Label bad", self.label_bad_requested),
                   ("label_good", "Label good", self.label_good_requested),
                   ("show_in_list", "Show in list", self.show_in_list_requested))
        for key, text, signal in actions:
            button = QToolButton(text=text, objectName=f"scatterAction_{key}",
                                 toolTip=f"{text}: the selected images")
            button.clicked.connect(lambda _c=False, s=signal: s.emit(self.selected_ids()))
            self.action_buttons[key] = button
            bar.addWidget(button)
        bar.addStretch(1)
        return bar

    def _build_progress_row(self) -> None:
        self.progress_row = QWidget(objectName="scatterProgress")
        row = QHBoxLayout(self.progress_row)
        row.setContentsMargins(4, 0, 4, 0)
        self.progress_label = QLabel("")
        self.progress_bar = QProgressBar()
        self.progress_bar.setMaximumWidth(220)
        self.progress_bar.setTextVisible(False)
        self.cancel_button = QPushButton("Cancel", objectName="scatterCancel")
        self.cancel_button.clicked.connect(self.tsne_cancel_requested.emit)
        row.addWidget(self.progress_label, 1)
        row.addWidget(self.progress_bar)
        row.addWidget(self.cancel_button)
        self.progress_row.hide()

    def _build_plot(self) -> None:
        self.view_box = SelectionViewBox()
        self.plot_widget = pg.PlotWidget(viewBox=self.view_box, background=MAP_BACKGROUND)
        self.plot_item = self.plot_widget.getPlotItem()
        self.plot_item.hideButtons()
        self.plot_item.setContentsMargins(2, 10, 10, 2)  # room for the colour bar's end labels
        for name in ("left", "bottom"):
            axis = self.plot_item.getAxis(name)
            axis.setPen(pg.mkPen(MAP_AXIS_COLOUR))
            axis.setTextPen(pg.mkPen(MAP_AXIS_COLOUR))
        self.plot_item.showGrid(x=False, y=False)
        self.points_item = FastScatter(pxMode=True, pen=None, size=self.point_size, symbol="o")
        self.highlight_item = pg.ScatterPlotItem(
            pxMode=True, pen=pg.mkPen("#ffffff", width=2.5), brush=None, size=18, symbol="o")
        self.hover_item = pg.ScatterPlotItem(
            pxMode=True, pen=pg.mkPen("#e6e9ee", width=1.2), brush=None, size=11, symbol="o")
        self.drag_item = pg.PlotCurveItem(
            pen=pg.mkPen("#ffd400", width=1.5, style=Qt.PenStyle.DashLine))
        self.hover_text = pg.TextItem(anchor=(0, 1), color="#f3f5f8",
                                      fill=pg.mkBrush(20, 24, 29, 215),
                                      border=pg.mkPen("#5d6673"))
        self.plot_item.addItem(self.points_item)
        for item, z in ((self.highlight_item, 6),
                        (self.hover_item, 7), (self.drag_item, 8), (self.hover_text, 9)):
            item.setZValue(z)
            self.plot_item.addItem(item, ignoreBounds=True)
        self.hover_text.hide()
        self.legend = ScatterLegend()  # under the plot: over it, it covered points
        self.color_bar = pg.ColorBarItem(values=(0, 1), colorMap=SCORE_COLORMAP, width=14,
                                         interactive=False, label="defect score")
        self.color_bar.getAxis("right").setPen(pg.mkPen(MAP_AXIS_COLOUR))
        self.color_bar.getAxis("right").setTextPen(pg.mkPen(MAP_AXIS_COLOUR))
        self.color_bar.hide()
        self._color_bar_shown = False
        self.view_box.left_clicked.connect(self._on_left_click)
        self.view_box.selection_drag.connect(self._on_selection_drag)
        self._hover_timer = QTimer(self, singleShot=True, interval=HOVER_INTERVAL_MS)
        self._hover_timer.timeout.connect(self._update_hover)
        # The KD-tree of a final layout is built just after its first paint, while the user
        # is still looking, so the first click does not pay for it (80 ms at 100,000 points).
        self._tree_timer = QTimer(self, singleShot=True, interval=TREE_DELAY_MS)
        self._tree_timer.timeout.connect(self._kd_tree)
        self.plot_widget.scene().sigMouseMoved.connect(self._on_mouse_moved)

    # -- data --------------------------------------------------------------------------
    @property
    def image_ids(self) -> np.ndarray:
        """Image ids of the points, in the order given to :meth:`set_points`."""
        return self._ids

    @property
    def coords(self) -> np.ndarray:
        """Current (n, 2) coordinates."""
        return self._coords

    @property
    def method(self) -> str:
        """The projection chosen in the toolbar: 'pca' or 'tsne'."""
        return self.method_combo.currentData()

    @property
    def color_mode(self) -> str:
        return self.color_combo.currentData()

    def set_method(self, method: str) -> None:
        """Show ``method`` in the toolbar without emitting :attr:`method_changed`."""
        index = self.method_combo.findData(method)
        if index < 0:
            raise ValueError(f"unknown projection method {method!r}")
        self.method_combo.blockSignals(True)
        self.method_combo.setCurrentIndex(index)
        self.method_combo.blockSignals(False)
        self._label_axes()

    def _label_axes(self) -> None:
        # PCA coordinates are projections in activation units, worth reading; t-SNE's are
        # arbitrary (only neighbourhoods mean something), so its axes carry no numbers.
        for name, title in zip(("bottom", "left"), AXIS_TITLES[self.method], strict=True):
            axis = self.plot_item.getAxis(name)
            axis.setLabel(title, color=MAP_AXIS_COLOUR)
            axis.setStyle(showValues=self.method == "pca",
                          tickLength=5 if self.method == "pca" else 0)

    def set_points(self, coords: np.ndarray, image_ids: np.ndarray, *,
                   names: Sequence[str] | None = None, keep_values: bool = True) -> None:
        """Show a new layout: one point per image.

        Colour values given before are kept when the image ids are the same (a new map of the
        same run); otherwise they are dropped, the points are grey, and
        :attr:`coloring_requested` asks for the current mode's values (answer with
        :meth:`set_coloring`). The selection and highlight survive when the ids match.

        Args:
            coords: (n, 2) x, y.
            image_ids: int (n,) image ids, unique.
            names: optional (n,) file names for the hover label.
            keep_values: False forgets the colour values even if the ids match.
        """
        xy = np.asarray(coords, dtype=np.float32).reshape(-1, 2)
        ids = np.asarray(image_ids, dtype=np.int64).ravel()
        if len(xy) != len(ids):
            raise ValueError(f"{len(xy)} coordinates for {len(ids)} image ids")
        if names is not None and len(names) != len(ids):
            raise ValueError(f"{len(names)} names for {len(ids)} image ids")
        same_points = np.array_equal(ids, self._ids)
        if not same_points:
            order = np.argsort(ids, kind="stable")
            if len(ids) > 1 and (np.diff(ids[order]) == 0).any():
                raise ValueError("image ids must be unique")
            selected_ids = self.selected_ids()
            self._ids, self._id_order = ids, order
            # The selection follows its images (e.g. a new lot joined): never a stale count.
            kept = self.indices_of(selected_ids)
            self._selected = np.sort(kept[kept >= 0])
            self._update_actions()
            self._highlighted = -1
        if not same_points or not keep_values:
            self._values = {}
        if names is not None or not same_points:
            self._names = list(names) if names is not None else None
        self._coords = np.ascontiguousarray(xy)
        self._tree = None
        self._tree_timer.start()
        self._recolour(self.color_mode)
        self.view_box.autoRange(padding=0.04)
        self._refresh_overlays()
        if self.color_mode not in self._values:
            self.coloring_requested.emit(self.color_mode)

    def show_partial(self, coords: np.ndarray) -> None:
        """Move the current points to a new layout (a t-SNE animation frame).

        Same points, same colours; only positions change, and the view follows the layout.
        A frame of a different size (a stale task) is ignored.
        """
        xy = np.asarray(coords, dtype=np.float32).reshape(-1, 2)
        if len(xy) != len(self._ids) or len(xy) == 0:
            return
        self._coords = np.ascontiguousarray(xy)
        self._tree = None
        ordered = self._coords[self._order]
        self.points_item.move_points(ordered[:, 0], ordered[:, 1])
        self.view_box.autoRange(padding=0.04)
        self._refresh_overlays()

    def indices_of(self, image_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Point indices of image ids (int64 array; -1 where an id has no point)."""
        wanted = np.asarray(image_ids, dtype=np.int64).ravel()
        if len(self._ids) == 0:
            return np.full(len(wanted), -1, dtype=np.int64)
        sorted_ids = self._ids[self._id_order]
        where = np.minimum(np.searchsorted(sorted_ids, wanted), len(sorted_ids) - 1)
        found = sorted_ids[where] == wanted
        return np.where(found, self._id_order[where], -1).astype(np.int64)

    def set_names(self, names: Sequence[str] | None) -> None:
        """File names shown by the hover label (aligned with the points)."""
        if names is not None and len(names) != len(self._ids):
            raise ValueError(f"{len(names)} names for {len(self._ids)} points")
        self._names = list(names) if names is not None else None

    # -- colouring -----------------------------------------------------------------------
    def set_coloring(self, mode: str, values: np.ndarray | None = None) -> None:
        """Colour the points by ``mode``, with new ``values`` or those given before.

        Args:
            mode: 'label' (1 bad, 0 good, -1 unlabelled), 'score' (defect probability, NaN =
                not scored), 'prediction' (1 / 0 / -1), 'flagged' (bool) or 'split' (str).
            values: (n,) aligned with the points; None re-uses the last values of the mode.

        Raises:
            ValueError: unknown mode, wrong length, or no values known for the mode.
        """
        if mode not in COLOR_MODES:
            raise ValueError(f"unknown colour mode {mode!r}; choose from {COLOR_MODES}")
        if values is not None:
            values = np.asarray(values)
            if values.shape != (len(self._ids),):
                raise ValueError(f"{len(values)} {mode} values for {len(self._ids)} points")
            self._values[mode] = values
        elif mode not in self._values:
            raise ValueError(f"no {mode} values were given yet")
        if mode != self.color_mode:
            self.color_combo.blockSignals(True)
            self.color_combo.setCurrentIndex(self.color_combo.findData(mode))
            self.color_combo.blockSignals(False)
        self._recolour(mode)

    def set_values(self, mode: str, values: np.ndarray) -> None:
        """Remember values for ``mode`` (recolouring only if it is the mode shown).

        Use it to refresh flags or labels after an action without switching the colouring.
        """
        if mode == self.color_mode:
            self.set_coloring(mode, values)
            return
        if mode not in COLOR_MODES:
            raise ValueError(f"unknown colour mode {mode!r}")
        values = np.asarray(values)
        if values.shape != (len(self._ids),):
            raise ValueError(f"{len(values)} {mode} values for {len(self._ids)} points")
        self._values[mode] = values

    @property
    def coloring(self) -> Coloring | None:
        """The colouring on screen (None while the points are uncoloured)."""
        return self._coloring

    def _make_coloring(self, mode: str) -> Coloring:
        n = len(self._ids)
        values = self._values.get(mode)
        if values is None:
            grey = self._book.get(MISSING_HEX, 170)
            return Coloring(mode, np.zeros(n, dtype=np.int64), [grey], ["no values"],
                            np.zeros(n, dtype=np.int16))
        if mode == "score":
            return score_coloring(values, self._book)
        return categorical_coloring(mode, values, self._book)

    def _recolour(self, mode: str) -> None:
        self._coloring = self._make_coloring(mode)
        self._redraw_points()
        self._update_legend(self._coloring)

    def _redraw_points(self) -> None:
        """Hand positions and brush classes to the scatter item, in drawing order.

        With a selection, the other points switch to faint copies of their brushes and the
        selected ones are drawn last, so the selection stands out in its own colours.
        """
        coloring = self._coloring
        classes, brushes, priority = coloring.classes, coloring.brushes, coloring.priority
        if len(self._selected):
            selected = np.zeros(len(self._ids), dtype=bool)
            selected[self._selected] = True
            classes = np.where(selected, classes, classes + len(brushes))
            brushes = brushes + [self._book.get(b.color(), DIMMED_ALPHA) for b in brushes]
            priority = np.where(selected, priority + SELECTED_PRIORITY, priority)
        # Stable sort: within a class the caller's order is kept, so redraws are repeatable.
        self._order = np.argsort(priority, kind="stable")
        ordered = self._coords[self._order]
        self.points_item.set_points(ordered[:, 0], ordered[:, 1], classes[self._order], brushes)

    def _update_legend(self, coloring: Coloring) -> None:
        counts = coloring.counts()
        if coloring.levels is not None:
            self.color_bar.setLevels(coloring.levels)
            self._show_color_bar(True)
            missing = int(counts[-1])
            self.legend.set_entries([(coloring.brushes[-1], f"not scored  {missing:,}")]
                                    if missing else [])
            return
        self._show_color_bar(False)
        self.legend.set_entries([(brush, f"{name}  {int(count):,}") for brush, name, count
                                 in zip(coloring.brushes, coloring.names, counts, strict=True)
                                 if count and len(self._ids)])

    def _show_color_bar(self, show: bool) -> None:
        if show == self._color_bar_shown:
            return
        layout = self.plot_item.layout
        if show:
            layout.addItem(self.color_bar, 2, 5)
            layout.setColumnFixedWidth(4, 6)
            self.color_bar.show()
        else:
            layout.removeItem(self.color_bar)
            self.color_bar.hide()
        self._color_bar_shown = show

    def _on_color_combo_change(self, _index: int) -> None:
        mode = self.color_mode
        self._recolour(mode)  # grey until values arrive, if none are known yet
        if mode not in self._values:
            self.coloring_requested.emit(mode)

    # -- progress (t-SNE) --------------------------------------------------------------
    def show_progress(self, done: int, total: int, message: str = "") -> None:
        """Show the progress row (label, bar, Cancel) with ``done`` of ``total``."""
        self.progress_row.show()
        self.progress_label.setText(message)
        self.progress_bar.setRange(0, max(total, 0))
        self.progress_bar.setValue(min(done, total) if total else 0)
        self.cancel_button.setEnabled(True)

    def finish_progress(self) -> None:
        """Hide the progress row (the computation ended, however)."""
        self.progress_row.hide()

    # -- hit testing -------------------------------------------------------------------
    def _kd_tree(self):
        if self._tree is None:
            from scipy.spatial import cKDTree

            # Normalised by the layout's spread so view pixels are roughly isotropic in tree
            # units whatever the axes' scales (PCA's first axis is often 10x the second).
            spread = np.ptp(self._coords, axis=0) if len(self._coords) else np.ones(2)
            self._tree_scale = np.where(spread > 0, spread, 1.0).astype(np.float64)
            self._tree = cKDTree(self._coords / self._tree_scale)
        return self._tree

    def nearest_point(self, view_pos: QPointF | tuple[float, float],
                      radius_px: float = CLICK_RADIUS_PX) -> int:
        """Index of the point nearest to ``view_pos`` within ``radius_px`` screen pixels, or -1.

        Args:
            view_pos: a position in data (view) coordinates.
            radius_px: the largest on-screen distance that still counts as a hit.
        """
        if len(self._ids) == 0:
            return -1
        x, y = (view_pos.x(), view_pos.y()) if isinstance(view_pos, QPointF) else view_pos
        pixel_w, pixel_h = self.view_box.viewPixelSize()
        if not (pixel_w > 0 and pixel_h > 0):
            return -1
        tree = self._kd_tree()
        sx, sy = self._tree_scale
        # A circle covering the pixel ellipse in tree units; exact pixel distances decide.
        radius = radius_px * max(pixel_w / sx, pixel_h / sy)
        candidates = tree.query_ball_point((x / sx, y / sy), radius)
        if not candidates:
            return -1
        candidates = np.asarray(candidates)
        pts = self._coords[candidates]
        d2 = ((pts[:, 0] - x) / pixel_w) ** 2 + ((pts[:, 1] - y) / pixel_h) ** 2
        best = int(np.argmin(d2))
        return int(candidates[best]) if d2[best] <= radius_px ** 2 else -1

    def view_to_widget(self, x: float, y: float):
        """The plot widget's pixel position (QPoint) of data coordinates (tests, benchmarks)."""
        scene = self.view_box.mapViewToScene(QPointF(float(x), float(y)))
        return self.plot_widget.mapFromScene(scene)

    # -- click / hover -----------------------------------------------------------------
    def _on_left_click(self, view_pos: QPointF, _modifiers) -> None:
        index = self.nearest_point(view_pos, CLICK_RADIUS_PX)
        if index >= 0:
            image_id = int(self._ids[index])
            self._set_highlight_index(index)
            self.point_clicked.emit(image_id)

    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        # Throttled: the latest position is handled at most every HOVER_INTERVAL_MS.
        self._hover_scene_pos = scene_pos
        if not self._hover_timer.isActive():
            self._hover_timer.start()

    def _update_hover(self) -> None:
        scene_pos = self._hover_scene_pos
        if scene_pos is None or len(self._ids) == 0 or self._drag_points:
            self._hide_hover()
            return
        if not self.view_box.sceneBoundingRect().contains(scene_pos):
            self._hide_hover()
            return
        index = self.nearest_point(self.view_box.mapSceneToView(scene_pos), HOVER_RADIUS_PX)
        if index < 0:
            self._hide_hover()
            return
        x, y = self._coords[index]
        self.hover_item.setData(x=[x], y=[y])
        self.hover_text.setHtml(self.describe_point(index))
        self._place_hover_text(float(x), float(y))
        self.hover_text.show()
        self._set_hovered(int(self._ids[index]))

    def _set_hovered(self, image_id: int | None) -> None:
        if image_id != self._hovered_id:
            self._hovered_id = image_id
            self.point_hovered.emit(image_id)

    def _place_hover_text(self, x: float, y: float) -> None:
        """Beside the point, on the side with room, and always inside the plot: a label
        running past the view's edge went under the colour bar."""
        area = self.view_box.sceneBoundingRect()
        point = self.view_box.mapViewToScene(QPointF(x, y))
        size = self.hover_text.boundingRect()
        gap = HOVER_RADIUS_PX
        left = point.x() + gap
        if left + size.width() > area.right():
            left = point.x() - gap - size.width()
        top = point.y() - gap - size.height()
        if top < area.top():
            top = point.y() + gap
        left = max(area.left(), min(left, area.right() - size.width()))
        top = max(area.top(), min(top, area.bottom() - size.height()))
        self.hover_text.setAnchor((0.0, 0.0))
        self.hover_text.setPos(self.view_box.mapSceneToView(QPointF(left, top)))

    def _hide_hover(self) -> None:
        self.hover_item.setData(x=[], y=[])
        self.hover_text.hide()
        self._set_hovered(None)

    def describe_point(self, index: int) -> str:
        """HTML for the hover label: file name (or id), score and the colour class."""
        image_id = int(self._ids[index])
        title = self._names[index] if self._names is not None else f"image {image_id}"
        lines = [f"<b>{_escape(title)}</b>"]
        scores = self._values.get("score")
        if scores is not None and np.isfinite(scores[index]):
            lines.append(f"score {float(scores[index]):.3f}")
        coloring = self._coloring
        if coloring is not None and coloring.mode != "score" and coloring.mode in self._values:
            lines.append(coloring.names[int(coloring.classes[index])])
        return "<br>".join(lines)

    # -- highlight -----------------------------------------------------------------------
    def highlight(self, image_id: int | None) -> None:
        """Ring the point of ``image_id`` (e.g. the row selected in the ranked list).

        None, -1 or an id without a point clears the ring.
        """
        index = -1 if image_id is None else int(self.indices_of([image_id])[0])
        self._set_highlight_index(index)

    @property
    def highlighted_id(self) -> int | None:
        return None if self._highlighted < 0 else int(self._ids[self._highlighted])

    def _set_highlight_index(self, index: int) -> None:
        self._highlighted = index
        self._refresh_highlight()

    def _refresh_highlight(self) -> None:
        if self._highlighted < 0:
            self.highlight_item.setData(x=[], y=[])
            return
        x, y = self._coords[self._highlighted]
        self.highlight_item.setData(x=[x], y=[y])

    # -- selection -----------------------------------------------------------------------
    def set_selection_mode(self, mode: str) -> None:
        """'pointer' (click opens, drag pans), 'rectangle' or 'lasso' (drag selects)."""
        if mode not in SELECTION_MODES:
            raise ValueError(f"unknown selection mode {mode!r}; choose from {SELECTION_MODES}")
        self.view_box.selection_mode = mode
        button = self.mode_buttons.buttons()[SELECTION_MODES.index(mode)]
        if not button.isChecked():
            button.setChecked(True)

    @property
    def selection_mode(self) -> str:
        return self.view_box.selection_mode

    def selected_ids(self) -> np.ndarray:
        """Image ids of the selected points (int64, in point order)."""
        return self._ids[self._selected]

    def select_ids(self, image_ids: Sequence[int] | np.ndarray) -> None:
        """Select the points of these image ids (unknown ids are ignored); emits the change."""
        indices = self.indices_of(image_ids)
        self._set_selection(np.unique(indices[indices >= 0]))

    def clear_selection(self) -> None:
        if len(self._selected):
            self._set_selection(np.zeros(0, dtype=np.int64))

    def select_polygon(self, polygon: np.ndarray, *, add: bool = False) -> np.ndarray:
        """Select the points inside a polygon given in data coordinates; returns their ids."""
        mask = points_in_polygon(self._coords, polygon)
        return self._select_mask(mask, add)

    def select_rectangle(self, x0: float, y0: float, x1: float, y1: float, *,
                         add: bool = False) -> np.ndarray:
        """Select the points in the axis-aligned box between two corners; returns their ids."""
        xlo, xhi = sorted((x0, x1))
        ylo, yhi = sorted((y0, y1))
        c = self._coords
        mask = (c[:, 0] >= xlo) & (c[:, 0] <= xhi) & (c[:, 1] >= ylo) & (c[:, 1] <= yhi)
        return self._select_mask(mask, add)

    def _select_mask(self, mask: np.ndarray, add: bool) -> np.ndarray:
        indices = np.flatnonzero(mask)
        if add:
            indices = np.union1d(self._selected, indices)
        self._set_selection(indices.astype(np.int64))
        return self.selected_ids()

    def _set_selection(self, indices: np.ndarray) -> None:
        self._selected = np.sort(indices)
        self._redraw_points()
        self._update_actions()
        self.selection_changed.emit(self.selected_ids())

    def _refresh_overlays(self) -> None:
        self._refresh_highlight()
        self._hide_hover()

    def _update_actions(self) -> None:
        count = len(self._selected)
        self.selection_label.setText(f"{count:,} selected" if count else "No selection")
        for button in self.action_buttons.values():
            button.setEnabled(count > 0)

    def _on_selection_drag(self, phase: str, view_pos: QPointF, modifiers) -> None:
        point = (view_pos.x(), view_pos.y())
        if phase == "start":
            self._drag_points = [point]
            self._hide_hover()
        elif self._drag_points:
            self._drag_points.append(point)
        if not self._drag_points:
            return
        outline = self._drag_outline()
        if phase != "finish":
            self.drag_item.setData(outline[:, 0], outline[:, 1])
            return
        self.drag_item.setData([], [])
        add = bool(modifiers & Qt.KeyboardModifier.ShiftModifier)
        points, self._drag_points = self._drag_points, []
        if self.selection_mode == "rectangle":
            (x0, y0), (x1, y1) = points[0], points[-1]
            self.select_rectangle(x0, y0, x1, y1, add=add)
        else:
            self.select_polygon(np.asarray(points), add=add)

    def _drag_outline(self) -> np.ndarray:
        """The closed outline drawn while dragging: the box or the lasso so far."""
        if self.selection_mode == "rectangle":
            (x0, y0), (x1, y1) = self._drag_points[0], self._drag_points[-1]
            return np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)])
        return np.asarray(self._drag_points + self._drag_points[:1])


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
