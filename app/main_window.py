"""DieSight's main window and ``run_gui``, the entry point of ``diesight gui [FOLDER]``.

The window is a frame: menus and a toolbar, the "Dataset" dock on the left, tabs in the
centre ("Images" first; later work adds more through :meth:`MainWindow.add_tab`), the image
viewer dock on the right and a status bar whose corner shows the running task with a Cancel
button. All views share one :class:`app.state.AppState`; every long job runs as an
:class:`app.workers.Task` through :meth:`MainWindow.run_task`, which shows its progress and
reports its failure to the user.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt, QTimer, QUrl
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QTabWidget,
    QToolButton,
    QWidget,
)

from app.activation_tab import ActivationTab
from app.dataset_panel import DatasetPanel
from app.demo_dialog import DemoDataDialog
from app.evaluation_view import EvaluationView
from app.evidence_panel import EvidencePanel
from app.export_dialog import ExportDialog
from app.icons import app_icon, icon, style_sheet
from app.image_viewer import ImageViewer
from app.ranked_view import RankedView
from app.score_lot import LotScoring
from app.settings import (
    RecentFolders,
    default_settings,
    last_dialog_folder,
    remember_dialog_folder,
)
from app.state import AppState
from app.task_status import TaskStatus
from app.threshold_bar import ThresholdBar
from app.thumbnail_grid import ThumbnailGrid
from app.training_panel import TrainingPanel
from app.workers import (
    Task,
    TaskOwner,
    error_message,
    is_user_error,
    running_tasks,
    task_pool,
)
from core.dataset import Dataset, change_notes, open_dataset
from core.demodata import generate_demo_data

log = logging.getLogger(__name__)

APP_NAME = "DieSight"


def _display_path(path: str) -> str:
    """``~/data/lot7`` rather than ``/home/ann/data/lot7`` in menus."""
    home = str(Path.home())
    return "~" + path[len(home):] if path == home or path.startswith(home + os.sep) else path


def folder_from_urls(urls: list[QUrl]) -> Path | None:
    """The first local folder among dropped URLs, None if there is none."""
    for url in urls:
        if url.isLocalFile():
            path = Path(url.toLocalFile())
            if path.is_dir():
                return path
    return None


class MainWindow(QMainWindow):
    """The main window.

    Args:
        settings: where recent folders, dialog folders and the window layout persist
            (default: the user's DieSight settings; tests pass a temporary INI file).
        state: the shared state (a new one by default).

    Attributes:
        state: the :class:`AppState` every view follows.
        open_workers: ``workers`` argument for ``open_dataset`` (None: core decides).
    """

    def __init__(self, settings: QSettings | None = None, state: AppState | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings if settings is not None else default_settings()
        self.recent = RecentFolders(self.settings)
        self.state = state if state is not None else AppState(self)
        self.open_workers: int | None = None
        self.message_box: QMessageBox | None = None  # the last error/info box shown
        # The folder being opened or generated: the newest request wins.
        self.dataset_tasks = TaskOwner(self, launch=self.run_task)
        self.setWindowIcon(app_icon())
        self.setAcceptDrops(True)
        self.setDockOptions(QMainWindow.DockOption.AnimatedDocks
                            | QMainWindow.DockOption.AllowTabbedDocks)
        self._build_actions()
        self._build_menus()
        self._build_toolbar()
        self._build_tabs()
        self._build_docks()
        self._build_status_bar()
        self._restore_layout()
        self.state.dataset_changed.connect(self._on_dataset_change)
        self.state.annotations_changed.connect(self._on_annotations_change)
        self._on_dataset_change()
        self.lots = LotScoring(self)

    # -- construction --------------------------------------------------------------
    def _action(self, text: str, icon_name: str | None, slot: Callable[[], Any],
                shortcut: QKeySequence | str | None = None, tip: str = "") -> QAction:
        action = QAction(text, self)
        if icon_name:
            action.setIcon(icon(icon_name))
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.setStatusTip(tip or text.rstrip("…"))
        action.setToolTip(tip or text.rstrip("…"))
        action.triggered.connect(slot)
        return action

    def _build_actions(self) -> None:
        self.open_action = self._action("&Open Folder…", "open", self._on_open_triggered,
                                        QKeySequence.StandardKey.Open,
                                        "Open an image folder (Ctrl+O)")
        self.demo_action = self._action("&Generate Demo Data…", "demo",
                                        self._on_demo_triggered,
                                        tip="Write synthetic part images and open them")
        self.export_action = self._action("&Export…", "export", self._on_export_triggered,
                                          QKeySequence("Ctrl+E"),
                                          "Export flagged defects, all scores or a Kaggle "
                                          "submission as CSV (Ctrl+E)")
        self.score_lot_action = self._action(
            "Score New &Lot…", "new-lot", lambda: self.lots.choose(),
            tip="Add a folder of new images to this dataset as a lot and score it with the "
                "current run")
        self.score_lot_action.setEnabled(False)  # needs a current run (app.score_lot)
        self.undo_action = self._action("&Undo Flag or Label", "", self._on_undo_triggered,
                                        QKeySequence.StandardKey.Undo,
                                        "Take back the last flag or relabel (Ctrl+Z)")
        self.undo_action.setEnabled(False)
        self.cancel_action = self._action("&Cancel Task", "cancel", self._on_cancel_triggered,
                                          "Esc", "Stop the running task (Esc)")
        self.cancel_action.setEnabled(False)
        self.quit_action = self._action("&Quit", "quit", self.close, QKeySequence("Ctrl+Q"))
        self.about_action = self._action("&About DieSight", "about", self._on_about_triggered)
        self.recent_menu = QMenu("Open &Recent", self)
        self.recent_menu.setIcon(icon("recent"))
        self.recent_menu.aboutToShow.connect(self._rebuild_recent_menu)
        self._rebuild_recent_menu()

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        file_menu.addAction(self.open_action)
        file_menu.addMenu(self.recent_menu)
        file_menu.addAction(self.demo_action)
        file_menu.addAction(self.score_lot_action)
        file_menu.addAction(self.export_action)
        file_menu.addSeparator()
        file_menu.addAction(self.cancel_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        edit_menu = self.menuBar().addMenu("&Edit")
        edit_menu.addAction(self.undo_action)
        self.view_menu = self.menuBar().addMenu("&View")
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction(self.about_action)

    def _build_toolbar(self) -> None:
        bar = self.addToolBar("Main")
        bar.setObjectName("mainToolbar")
        bar.setMovable(False)
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        bar.addAction(self.open_action)
        recent_button = QToolButton(objectName="recentButton")
        recent_button.setIcon(icon("recent"))
        recent_button.setText("Recent ▾")
        recent_button.setToolTip("Open a recently used folder")
        recent_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        recent_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        recent_button.setMenu(self.recent_menu)
        bar.addWidget(recent_button)
        bar.addAction(self.demo_action)
        bar.addAction(self.score_lot_action)
        bar.addSeparator()
        bar.addAction(self.cancel_action)
        self.toolbar = bar
        self._build_threshold_bar()

    def _build_threshold_bar(self) -> None:
        """The shared decision threshold, on its own row so every tab sees it."""
        self.addToolBarBreak()
        bar = self.addToolBar("Threshold")
        bar.setObjectName("thresholdToolbar")
        bar.setMovable(False)
        self.threshold_bar = ThresholdBar(self.state)
        bar.addWidget(self.threshold_bar)
        self.threshold_toolbar = bar

    def _build_tabs(self) -> None:
        self.tabs = QTabWidget(objectName="mainTabs")
        self.tabs.setDocumentMode(True)
        # Every tab title whole ("Ev" was all of Evaluation at 1366 x 768): the bar's
        # width is part of the window's minimum, so the padding is a little tighter.
        self.tabs.tabBar().setElideMode(Qt.TextElideMode.ElideNone)
        self.tabs.tabBar().setUsesScrollButtons(False)
        self.tabs.setStyleSheet("QTabBar::tab { padding: 7px 10px; }")
        self.grid = ThumbnailGrid(self.state)
        self.add_tab(self.grid, "Images", "images")
        self.training_panel = TrainingPanel(self.state, self.run_task)
        self.add_tab(self.training_panel, "Training", "training")
        self.ranked = RankedView(self.state, thumbnails=self.grid.model)
        self.add_tab(self.ranked, "Ranked", "ranked")
        self._build_activation_tab()
        self._build_evaluation_tab()
        self.tabs.currentChanged.connect(self._on_tab_change)
        self.state.list_filter_requested.connect(self._on_list_filter_request)
        self.setCentralWidget(self.tabs)

    def _build_activation_tab(self) -> None:
        # The status corner is built after the tabs, hence the late lookup of task_status.
        self.activation = ActivationTab(self.state,
                                        track=lambda task: self.task_status.track(task))
        self.activation.status.connect(lambda text: self.statusBar().showMessage(text, 8000))
        self.activation.failed.connect(lambda text: self.show_message("Activation space", text))
        self.add_tab(self.activation, "Activation space", "activation")

    def _build_evaluation_tab(self) -> None:
        self.evaluation = EvaluationView(self.state, self.settings,
                                         track=lambda task: self.task_status.track(task))
        self.evaluation.status.connect(lambda text: self.statusBar().showMessage(text, 8000))
        self.add_tab(self.evaluation, "Evaluation", "evaluation")

    def _build_docks(self) -> None:
        self.dataset_panel = DatasetPanel(self.state)
        self.dataset_dock = self._dock("Dataset", "datasetDock", self.dataset_panel,
                                       Qt.DockWidgetArea.LeftDockWidgetArea)
        self.viewer = ImageViewer(self.state)
        # Without a ranked order, previous/next follow the thumbnail grid's filtered rows.
        self.viewer.set_fallback_order(lambda: self.grid.model.positions,
                                       self.grid.model.modelReset)
        self.viewer_dock = self._dock("Image", "viewerDock", self.viewer,
                                      Qt.DockWidgetArea.RightDockWidgetArea)
        # The current image's nearest training images and its difference from good parts,
        # a tab beside the Dataset panel: stacked under the image or the panel, either
        # would need more height than a 1366 x 768 screen has (the dock can be moved).
        self.evidence = EvidencePanel(self.state)
        self.evidence_dock = self._dock("Evidence", "evidenceDock", self.evidence,
                                        Qt.DockWidgetArea.LeftDockWidgetArea)
        self.tabifyDockWidget(self.dataset_dock, self.evidence_dock)
        self.dataset_dock.raise_()

    def _dock(self, title: str, name: str, widget: QWidget,
              area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self, objectName=name)
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable
                         | QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.addDockWidget(area, dock)
        self.view_menu.addAction(dock.toggleViewAction())
        return dock

    def _build_status_bar(self) -> None:
        self.task_status = TaskStatus()
        self.task_status.busy_changed.connect(self.cancel_action.setEnabled)
        self.summary_label = QLabel(objectName="datasetSummary")
        self.statusBar().addPermanentWidget(self.task_status)
        self.statusBar().addPermanentWidget(self.summary_label)

    def _restore_layout(self) -> None:
        geometry = self.settings.value("window/geometry")
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1480, 920)
            self.resizeDocks([self.dataset_dock, self.viewer_dock], [340, 460],
                             Qt.Orientation.Horizontal)
        window_state = self.settings.value("window/state")
        if window_state is not None:
            self.restoreState(window_state)
        self.fit_to_screen()

    def fit_to_screen(self) -> None:
        """Shrink and move the window into the screen's available area (a geometry saved
        on a bigger screen, or the default size on a laptop, must not run off it)."""
        screen = self.screen() or QApplication.primaryScreen()
        if screen is None:
            return
        available = screen.availableGeometry()
        frame = self.frameGeometry()
        extra_w, extra_h = frame.width() - self.width(), frame.height() - self.height()
        width = min(self.width(), available.width() - extra_w)
        height = min(self.height(), available.height() - extra_h)
        if (width, height) != (self.width(), self.height()):
            self.resize(width, height)
        x = min(max(frame.x(), available.left()), available.right() + 1 - width - extra_w)
        y = min(max(frame.y(), available.top()), available.bottom() + 1 - height - extra_h)
        if (x, y) != (frame.x(), frame.y()):
            self.move(x, y)

    # -- extension points ----------------------------------------------------------
    def add_tab(self, widget: QWidget, title: str, icon_name: str | None = None) -> int:
        """Add a central tab (Training, Ranked, Activation space, ...); returns its index."""
        return self.tabs.addTab(widget, icon(icon_name) if icon_name else icon("images"), title)

    def run_task(self, fn: Callable[..., Any], *args: Any, title: str,
                 on_done: Callable[[Any], None] | None = None,
                 on_cancelled: Callable[[], None] | None = None, **kwargs: Any) -> Task:
        """Run a core function on a worker with progress, Cancel and error reporting.

        Args:
            fn: the core function (gets ``progress`` and ``cancel`` keyword arguments).
            *args: its positional arguments.
            title: what it does, for the status bar and an error box ("Opening folder").
            on_done: called with the result on the GUI thread.
            on_cancelled: called on the GUI thread when the user cancelled it.
            **kwargs: its keyword arguments.
        """
        task = Task(fn, *args, title=title, **kwargs)
        if on_done is not None:
            task.done.connect(on_done)
        if on_cancelled is not None:
            task.cancelled.connect(on_cancelled)
        task.failed.connect(lambda error, trace: self._on_task_failure(task, error, trace))
        self.task_status.track(task)
        return task.start()

    def show_message(self, title: str, text: str, details: str = "",
                     kind: QMessageBox.Icon = QMessageBox.Icon.Warning) -> QMessageBox:
        """A window-modal message box that does not block the caller (tests stay headless)."""
        box = QMessageBox(kind, title, text, QMessageBox.StandardButton.Ok, self)
        if details:
            box.setDetailedText(details)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        self.message_box = box
        return box

    # -- opening folders -----------------------------------------------------------
    def open_folder(self, folder: str | os.PathLike) -> Task | None:
        """Open an image folder on a worker; the current dataset stays until it is ready.

        A folder being opened already is cancelled first (the newest request wins).
        Returns the task, or None when ``folder`` is not a folder (the user is told).
        """
        path = Path(folder).expanduser()
        if not path.is_dir():
            self.show_message("Cannot open folder", f"{path} is not a folder.")
            return None
        task = self.dataset_tasks.start(open_dataset, path, title=f"Opening {path.name}",
                                        workers=self.open_workers,
                                        on_done=self._on_folder_open,
                                        on_cancelled=self._on_folder_open_cancel)
        task.data_root = path  # names the workspace in an error message
        self.statusBar().showMessage(f"Opening {path}…")
        return task

    def generate_demo_data(self, folder: str | os.PathLike, n: int = 3000,
                           bad_fraction: float = 0.1, seed: int = 0,
                           style: str = "mixed") -> Task:
        """Write a demo set of the given demo style on a worker, then open it."""
        out = Path(folder).expanduser()
        return self.dataset_tasks.start(
            generate_demo_data, out, n, bad_fraction, seed, style=style,
            title=f"Generating {n:,} demo images ({style})",
            on_done=lambda _: self.open_folder(out),
            on_cancelled=lambda: self.statusBar().showMessage(
                "Demo data generation cancelled.", 8000))

    def _on_folder_open(self, dataset: Dataset) -> None:
        self.recent.add(dataset.root)
        self._rebuild_recent_menu()
        # Pick up where the user left off: the run last made current, at its threshold.
        self.state.open_dataset(dataset)
        skipped = f", {len(dataset.skipped):,} skipped" if dataset.skipped else ""
        run = self.state.current_run
        changes = "".join(f"; {note}" for note in
                          change_notes(dataset, None if run is None else run.id))
        self.statusBar().showMessage(
            f"Opened {dataset.root}: {len(dataset.image_ids):,} images{skipped}{changes}.",
            20000 if changes else 10000)

    def _on_folder_open_cancel(self) -> None:
        kept = "kept the previous dataset" if self.state.dataset is not None else "nothing open"
        self.statusBar().showMessage(f"Opening cancelled; {kept}.", 10000)

    def _on_task_failure(self, task: Task, error: BaseException, trace: str) -> None:
        data = self.state.dataset.root if self.state.dataset is not None else None
        message = error_message(error, getattr(task, "data_root", None) or data)
        self.statusBar().showMessage(f"{task.title} failed: {message}", 15000)
        skipped = getattr(error, "skipped", None) or []  # core.dataset.DatasetError lists them
        details = "".join(f"{s.relpath}: {s.reason}\n" for s in skipped)
        if not is_user_error(error):  # a bug: the traceback is for the report
            details += ("\n" if details else "") + trace
        self.show_message(f"{task.title} failed", message, details, QMessageBox.Icon.Critical)

    # -- new lots (app.score_lot) ------------------------------------------------------
    def score_new_lot(self, folder: str | os.PathLike, name: str | None = None) -> Task | None:
        """Add ``folder`` to the open dataset as a lot and score it with the current run
        (:meth:`app.score_lot.LotScoring.score`)."""
        return self.lots.score(folder, name)

    # -- recent folders ------------------------------------------------------------
    def _rebuild_recent_menu(self) -> None:
        menu = self.recent_menu
        menu.clear()
        folders = self.recent.folders()
        for i, folder in enumerate(folders):
            text = f"&{i + 1}  {_display_path(folder)}" if i < 9 else _display_path(folder)
            action = menu.addAction(text)
            action.setData(folder)
            action.setToolTip(folder)
            action.triggered.connect(lambda _=False, f=folder: self.open_recent(f))
        if not folders:
            menu.addAction("No recent folders").setEnabled(False)
        menu.addSeparator()
        clear = menu.addAction("Clear Recent Folders")
        clear.setEnabled(bool(folders))
        clear.triggered.connect(self._on_clear_recent_triggered)

    def open_recent(self, folder: str) -> Task | None:
        """Open a recent folder; one that is gone is dropped from the list, with a message."""
        if not Path(folder).is_dir():
            self.recent.remove(folder)
            self._rebuild_recent_menu()
            self.show_message("Folder not found",
                              f"{folder} no longer exists. It was removed from the recent "
                              "folders.")
            return None
        return self.open_folder(folder)

    def _on_clear_recent_triggered(self) -> None:
        self.recent.clear()
        self._rebuild_recent_menu()

    # -- menu actions --------------------------------------------------------------
    def _on_open_triggered(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open image folder",
                                                  last_dialog_folder(self.settings, "open"))
        if folder:
            remember_dialog_folder(self.settings, "open", Path(folder).parent)
            self.open_folder(folder)

    def _on_demo_triggered(self) -> None:
        start = Path(last_dialog_folder(self.settings, "demo")) / "diesight-demo"
        dialog = DemoDataDialog(str(start), self)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return
        request = dialog.request()
        remember_dialog_folder(self.settings, "demo", request.folder.parent)
        self.generate_demo_data(request.folder, request.n, request.bad_fraction, request.seed,
                                request.style)

    def _on_export_triggered(self) -> ExportDialog:
        dialog = ExportDialog(self.state, self.settings, self, track=self.task_status.track)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()  # window-modal, does not block the caller
        self.export_dialog = dialog
        return dialog

    def _on_tab_change(self, _index: int) -> None:
        # Previous/next in the viewer follow the list the user looks at: the grid and the
        # ranked list publish their rows when shown (and whenever the rows change).
        if self.tabs.currentWidget() is self.grid:
            self.grid.publish_order()

    def _on_undo_triggered(self) -> None:
        done = self.state.undo()
        if done:
            self.statusBar().showMessage(done + ".", 8000)
        self.undo_action.setEnabled(self.state.can_undo)

    def _on_list_filter_request(self, _positions) -> None:
        self.tabs.setCurrentWidget(self.ranked)  # the ranked list shows the selection

    def _on_cancel_triggered(self) -> None:
        if self.training_panel.is_training(self.task_status.current):
            self.training_panel.confirm_cancel()  # Esc is easily pressed by mistake: ask
        else:
            self.task_status.cancel_current()

    def _on_about_triggered(self) -> None:
        QMessageBox.about(self, "About DieSight",
                          "<b>DieSight</b><br>Visual inspection of semiconductor parts: "
                          "train CNNs that score images good/bad, rank them, explore "
                          "activation space and export flagged defects.")

    # -- state ---------------------------------------------------------------------
    def _on_dataset_change(self) -> None:
        dataset = self.state.dataset
        self.undo_action.setEnabled(self.state.can_undo)
        if dataset is None:
            self.setWindowTitle(APP_NAME)
            self.summary_label.setText("No dataset")
            return
        self.setWindowTitle(f"{Path(dataset.root).name} — {APP_NAME}")
        self._update_summary()

    def _on_annotations_change(self, _positions) -> None:
        self.undo_action.setEnabled(self.state.can_undo)
        self._update_summary()

    def _update_summary(self) -> None:
        """Images and bad ones as labelled now (a relabel counts at once)."""
        dataset = self.state.dataset
        if dataset is not None:
            bad = self.state.label_counts()["bad"]
            self.summary_label.setText(f"{len(dataset.image_ids):,} images · {bad:,} bad")

    # -- drag and drop -------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if event.mimeData().hasUrls() and folder_from_urls(event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        folder = folder_from_urls(event.mimeData().urls()) if event.mimeData().hasUrls() else None
        if folder is None:
            event.ignore()
            return
        event.acceptProposedAction()
        self.open_folder(folder)

    # -- shutdown ------------------------------------------------------------------
    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        self.fit_to_screen()  # never save a geometry the screen cannot show
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState())
        self.settings.sync()
        self.state.save_threshold()
        for task in running_tasks():
            task.cancel()
        # Core checks cancel often; give the workers a moment to leave files consistent.
        task_pool().waitForDone(5000)
        self.grid.model.loader.shutdown()
        super().closeEvent(event)


def _show_uncaught(exc_type, exc, tb) -> None:
    """sys.excepthook for the GUI: an error in a slot is logged and shown, never lost."""
    trace = "".join(traceback.format_exception(exc_type, exc, tb))
    log.error("Uncaught exception:\n%s", trace)
    sys.__stderr__.write(trace)
    app = QApplication.instance()
    if app is not None and issubclass(exc_type, Exception):
        box = QMessageBox(QMessageBox.Icon.Critical, "Unexpected error",
                          error_message(exc), QMessageBox.StandardButton.Ok,
                          app.activeWindow())
        box.setDetailedText(trace)
        box.exec()


def create_application(argv: list[str] | None = None) -> QApplication:
    """The QApplication with DieSight's name, icon and style (reused if one exists)."""
    app = QApplication.instance() or QApplication(argv if argv is not None else sys.argv[:1])
    app.setOrganizationName("DieSight")
    app.setApplicationName(APP_NAME)
    app.setWindowIcon(app_icon())
    app.setStyle("Fusion")  # the same look on every platform; the sheet refines it
    app.setStyleSheet(style_sheet())
    return app


def run_gui(folder: str | None = None) -> int:
    """Show the main window (opening ``folder`` if given) and run the event loop.

    Returns:
        The application's exit code.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app = create_application()
    sys.excepthook = _show_uncaught
    window = MainWindow()
    window.show()
    if folder:
        QTimer.singleShot(0, lambda: window.open_folder(folder))
    return app.exec()
