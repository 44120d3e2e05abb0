"""The one observable state every view shares.

Views never talk to each other: they take the :class:`AppState` in ``__init__``, connect to
its signals (handlers named ``_on_<thing>_change``) and call its setters. A new tab (training,
ranking, activation space, ...) adds its own piece of state here as a property, a setter and a
``<thing>_changed`` signal, so every view can follow it without knowing who changed it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal

if TYPE_CHECKING:
    from core.dataset import Dataset


class AppState(QObject):
    """The current dataset and the current image (a position in the dataset).

    Signals:
        dataset_changed: a different dataset was opened (or the dataset was closed).
            The current image is reset to ``-1`` right after.
        current_image_changed(int): the current image's position, ``-1`` for none.
    """

    dataset_changed = Signal()
    current_image_changed = Signal(int)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._dataset: Dataset | None = None
        self._current_image = -1

    @property
    def dataset(self) -> Dataset | None:
        """The open dataset, or None before the first folder is opened."""
        return self._dataset

    @property
    def current_image(self) -> int:
        """Position (0..n-1) of the image the user is looking at, -1 for none."""
        return self._current_image

    def set_dataset(self, dataset: Dataset | None) -> None:
        """Replace the open dataset; the current image goes back to none."""
        self._dataset = dataset
        self._current_image = -1
        self.dataset_changed.emit()
        self.current_image_changed.emit(-1)

    def set_current_image(self, position: int) -> None:
        """Make the image at ``position`` current (``-1`` clears it).

        Raises:
            IndexError: position is outside the open dataset.
        """
        position = int(position)
        if position != -1:
            n = 0 if self._dataset is None else len(self._dataset.image_ids)
            if not 0 <= position < n:
                raise IndexError(f"image position {position} is outside 0..{n - 1}")
        if position == self._current_image:
            return
        self._current_image = position
        self.current_image_changed.emit(position)
