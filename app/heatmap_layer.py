"""The viewer's heatmap overlay: where the current run sees the defect, over the image.

A second ``ImageItem`` in the viewer's own ``ViewBox`` (so it zooms and pans with the image)
shows ``core.explain``'s map for the current image through a colour table whose low values
are transparent: the part stays readable where there is no evidence. **H** (or the
*Heatmap* button) toggles it; a slider sets its opacity; the colour bar beside it reads
"none → this image's strongest evidence for bad".

Maps are computed on a worker for the shown image only, never stored by the viewer (the
run's disk cache is read when ``diesight explain`` or an export filled it). The run's model
and Captum's set-up are kept between images (one :class:`core.explain.Explainer` per run
and method), the last maps are kept in memory, and only the newest request is computed: a
user holding the arrow key does not queue a map per image passed.
"""

from __future__ import annotations

import time
from collections import OrderedDict

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QImage,
    QKeySequence,
    QLinearGradient,
    QPainter,
    QPixmap,
    QShortcut,
)
from PySide6.QtWidgets import QComboBox, QLabel, QSizePolicy, QSlider, QToolButton

from app.icons import icon
from app.state import AppState
from app.workers import TaskOwner
from core.explain_methods import FUSED_METHOD, METHODS

# The method's name in the status line, short enough for a narrow dock.
SHORT_NAMES = {"gradcam": "Grad-CAM", "gradcam-fine": "Grad-CAM fine",
               "layercam": "LayerCAM", "occlusion": "occlusion",
               "integrated-gradients": "IG"}
LUT_FLOOR = 0.15      # map values below this are transparent
MEMORY_MAPS = 48      # maps kept in memory (stepping back and forth is instant)
DEFAULT_OPACITY = 60  # percent


def heat_lut() -> np.ndarray:
    """RGBA (256, 4) uint8: the 'inferno' scale, transparent below LUT_FLOOR."""
    from core.explain import heat_colours

    values = np.linspace(0, 1, 256)
    alpha = np.clip((values - LUT_FLOOR) / (1 - LUT_FLOOR), 0, 1) ** 0.7 * 255
    return np.concatenate([heat_colours(values), alpha.round().astype(np.uint8)[:, None]],
                          axis=1)


def colour_bar(width: int = 64, height: int = 12) -> QPixmap:
    """The colour scale as a small picture for the controls row."""
    lut = heat_lut()
    gradient = QLinearGradient(0, 0, width, 0)
    for i in range(0, 256, 32):
        r, g, b, _a = (int(v) for v in lut[i])
        gradient.setColorAt(i / 255, QColor(r, g, b))
    gradient.setColorAt(1.0, QColor(*(int(v) for v in lut[255][:3])))
    image = QImage(width, height, QImage.Format.Format_RGB32)
    painter = QPainter(image)
    painter.fillRect(0, 0, width, height, gradient)
    painter.end()
    return QPixmap.fromImage(image)


def _heatmap_job(dataset, run, image_id: int, method: str, explainer, *, progress, cancel):
    """Worker: (map, peak, what the map shows, explainer) of one image, reusing
    ``explainer`` when it fits."""
    from core.explain import Explainer, explain

    if explainer is None or (explainer.run_id, explainer.method) != (run.id, method):
        explainer = Explainer(run, method, device="auto")
    result = explain(dataset, run, [image_id], method, store=False, explainer=explainer,
                     progress=progress, cancel=cancel)
    shows = _shown_name(dataset, run, image_id, method)
    return result.maps[0].astype(np.float32), float(result.peaks[0]), shows, explainer


def _shown_name(dataset, run, image_id: int, method: str) -> str:
    """The status line's name of a map: a fused map is one part's map, so it names it."""
    from core.explain import fused_map_source

    name = SHORT_NAMES.get(method, method)
    source = fused_map_source(dataset, run, image_id) if method == FUSED_METHOD else None
    return f"{name}: {SHORT_NAMES.get(source, source)}" if source else name


def _prepare_job(run, method: str, *, progress, cancel):
    """Worker: load the run's model and set the method up before the first H."""
    from core.explain import Explainer

    return Explainer(run, method, device="auto").warm_up()


class HeatmapLayer(QObject):
    """The overlay item, its controls and the worker that feeds it.

    Attributes:
        item: the overlay's ``ImageItem`` (added to the viewer's view box).
        toggle_button: checkable, shortcut H.
        opacity_slider: 0..100 %.
        method_box: the attribution method ('default' = the model's measured best).
        status_label: what is shown ("computing…", the method and the peak).
        last_latency_ms: time from a request to the map on screen (None before the first).

    Signals:
        shown(): a map was put on screen (tests and the latency measurement wait on it).
    """

    shown = Signal()

    def __init__(self, state: AppState, view_box: pg.ViewBox, parent=None) -> None:
        super().__init__(parent)
        self.state = state
        self.item = pg.ImageItem(axisOrder="row-major")
        self.item.setLookupTable(heat_lut())
        self.item.setZValue(10)
        self.item.setOpacity(DEFAULT_OPACITY / 100)
        self.item.hide()
        view_box.addItem(self.item)
        self._maps: OrderedDict[tuple, tuple[np.ndarray, float, str]] = OrderedDict()
        self._explainer = None
        self.tasks = TaskOwner(self)  # a map or the run's model being prepared
        self._requested_at: dict[tuple, float] = {}
        self._shown_key: tuple | None = None
        self.last_latency_ms: float | None = None
        self._build_controls()
        state.current_image_changed.connect(self._on_current_image_change)
        state.current_run_changed.connect(self._on_current_run_change)
        state.dataset_changed.connect(self._on_dataset_change)
        self._prepare()  # a run may be current already

    # -- controls --------------------------------------------------------------------
    def _build_controls(self) -> None:
        self.toggle_button = QToolButton(objectName="heatmapToggle")
        self.toggle_button.setIcon(icon("heatmap"))
        self.toggle_button.setText("Heatmap")
        self.toggle_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle_button.setCheckable(True)
        self.toggle_button.setToolTip("Show where the run sees the defect (H)")
        self.toggle_button.toggled.connect(self._on_toggle)
        self.method_box = QComboBox(objectName="heatmapMethod")
        self.method_box.addItem("default", None)
        for name, description in METHODS.items():
            self.method_box.addItem(name, name)
            self.method_box.setItemData(self.method_box.count() - 1, description,
                                        Qt.ItemDataRole.ToolTipRole)
        self.method_box.setToolTip("Heatmap method, for the viewer, the ranked thumbnails "
                                   "and the activation-space preview alike; 'default' is "
                                   "the one measured to localise defects best for the run")
        self.method_box.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.method_box.setMinimumContentsLength(8)
        self.method_box.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.method_box.currentIndexChanged.connect(
            lambda _i: self.state.set_heatmap_choice(self.method_box.currentData()))
        self.state.heatmap_method_changed.connect(self._on_heatmap_method_change)
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal, objectName="heatmapOpacity")
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(DEFAULT_OPACITY)
        self.opacity_slider.setMinimumWidth(50)
        self.opacity_slider.setMaximumWidth(80)
        self.opacity_slider.setToolTip("Heatmap opacity")
        self.opacity_slider.valueChanged.connect(lambda v: self.item.setOpacity(v / 100))
        self.scale_label = QLabel(objectName="heatmapScale")
        self.scale_label.setPixmap(colour_bar())
        self.scale_label.setToolTip("Colour scale: transparent = no evidence, yellow = this "
                                    "image's strongest evidence for 'bad'")
        self.status_label = QLabel(objectName="heatmapStatus")
        # Its text must never widen the dock.
        self.status_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

    def install_shortcut(self, widget) -> QShortcut:
        """H in ``widget``'s window toggles the overlay.

        A QShortcut rather than the button's own shortcut: that one "animates" the click
        and toggles 100 ms later, two thirds of the time allowed to show the map.
        """
        shortcut = QShortcut(QKeySequence("H"), widget)
        shortcut.activated.connect(self.toggle_button.toggle)
        return shortcut

    def controls(self) -> list:
        """The widgets for the viewer's heatmap row, in order."""
        return [self.toggle_button, self.method_box, self.opacity_slider, self.scale_label,
                self.status_label]

    # -- public ----------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        return self.toggle_button.isChecked()

    def method(self) -> str | None:
        """The chosen method, resolved for the current run (the session holds the choice)."""
        return self.state.heatmap_method

    def _on_heatmap_method_change(self) -> None:
        choice = self.state.session.heatmap_choice
        index = 0 if choice is None else self.method_box.findData(choice)
        if index >= 0 and index != self.method_box.currentIndex():
            self.method_box.setCurrentIndex(index)  # chosen elsewhere: show it here too
        self.request()

    def value_at(self, x: int, y: int) -> float | None:
        """The shown map's value at pixel (x, y), None when no map is shown."""
        if not self.item.isVisible() or self._shown_key not in self._maps:
            return None
        heat = self._maps[self._shown_key][0]
        if 0 <= y < heat.shape[0] and 0 <= x < heat.shape[1]:
            return float(heat[y, x])
        return None

    def current_key(self) -> tuple | None:
        state = self.state
        if state.dataset is None or state.current_image < 0 or state.current_run is None:
            return None
        image_id = int(state.dataset.image_ids[state.current_image])
        return state.current_run.id, self.method(), image_id

    def request(self) -> None:
        """Show the current image's map, computing it on a worker when needed."""
        key = self.current_key() if self.enabled else None
        if key is None:
            self._hide(self._reason_hidden())
            return
        self._requested_at.setdefault(key, time.perf_counter())
        if key in self._maps:
            self._show(key)
            return
        self.status_label.setText("computing…")
        if self.tasks.busy:
            # The running map is kept (it is cheap to show again); only the newest request
            # waits for it, older ones are dropped.
            self.tasks.when_idle(self.request)
            return
        _run_id, method, image_id = key
        self.tasks.start(_heatmap_job, self.state.dataset, self.state.current_run, image_id,
                         method, self._explainer, title="Heatmap",
                         on_done=lambda result: self._on_task_done(key, result),
                         on_failed=self._on_task_fail)

    # -- worker ----------------------------------------------------------------------
    def _on_task_done(self, key: tuple, result) -> None:
        heat, peak, shows, self._explainer = result
        self._maps[key] = (heat, peak, shows)
        while len(self._maps) > MEMORY_MAPS:
            self._maps.popitem(last=False)
        if self.enabled and key == self.current_key():
            self._show(key)

    def _on_task_fail(self, error: BaseException) -> None:
        self.status_label.setText("no heatmap")
        self.status_label.setToolTip(str(error))

    # -- showing ---------------------------------------------------------------------
    def _show(self, key: tuple) -> None:
        heat, peak, shows = self._maps[key]
        self.item.setImage(heat, levels=(0.0, 1.0), autoLevels=False)
        self.item.show()
        self._shown_key = key
        self.status_label.setText(f"{shows} · peak {peak:.2g}")
        self.status_label.setToolTip("The map is scaled to this image's strongest evidence; "
                                     "the peak is that evidence in the method's own units")
        started = self._requested_at.pop(key, None)
        if started is not None:
            self.last_latency_ms = 1000 * (time.perf_counter() - started)
        self.shown.emit()

    def _hide(self, reason: str = "") -> None:
        self.item.hide()
        self._shown_key = None
        self.status_label.setText(reason)

    def _reason_hidden(self) -> str:
        if not self.enabled:
            return ""
        if self.state.current_run is None:
            return "needs a run"
        return ""

    # -- state changes ---------------------------------------------------------------
    def _on_toggle(self, _checked: bool) -> None:
        self.request()

    def _on_current_image_change(self, _position: int) -> None:
        if self.enabled:
            self._hide("computing…")  # never leave the previous image's map over this one
            self.request()

    def _on_current_run_change(self) -> None:
        self._explainer = None
        self._maps.clear()
        if not self.enabled:
            self._prepare()
        self.request()

    def _prepare(self) -> None:
        """Load the run's model on a worker now, so the first H costs one map only
        (loading the checkpoint and Captum took ~1 s of the first press)."""
        run = self.state.current_run
        if run is None or run.checkpoint is None or self.tasks.busy:
            return
        # A failure shows on the first H (the map's own task fails with the same reason).
        self.tasks.start(_prepare_job, run, self.method(), title="Heatmap model",
                         on_done=self._on_prepared)

    def _on_prepared(self, explainer) -> None:
        run = self.state.current_run
        if run is not None and explainer.run_id == run.id:
            self._explainer = explainer
        if self.enabled:
            self.request()

    def _on_dataset_change(self) -> None:
        self._maps.clear()
        self._hide()
