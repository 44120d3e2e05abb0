"""Persistent GUI settings (QSettings, organisation and application "DieSight").

Everything the window remembers between sessions goes through here: recent folders, the
folders last used in file dialogs, window geometry and dock layout. Tests pass their own
``QSettings`` (an INI file in a temporary folder) so they never touch the user's settings.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QSettings

ORGANISATION = "DieSight"
APPLICATION = "DieSight"
RECENT_KEY = "recent_folders"
RECENT_LIMIT = 10


def default_settings() -> QSettings:
    """The user's settings: an INI file in the platform's per-user config folder."""
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope,
                     ORGANISATION, APPLICATION)


def _as_list(value) -> list[str]:
    # QSettings returns a single-element list from an INI file as a plain string.
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


class RecentFolders:
    """The most recently opened folders, newest first, at most ``limit`` of them."""

    def __init__(self, settings: QSettings, limit: int = RECENT_LIMIT) -> None:
        self.settings = settings
        self.limit = limit

    def folders(self) -> list[str]:
        return _as_list(self.settings.value(RECENT_KEY))[: self.limit]

    def add(self, folder: str | os.PathLike) -> None:
        """Put ``folder`` first (moving it if it was already listed)."""
        path = str(Path(folder).expanduser().resolve())
        folders = [path] + [f for f in self.folders() if f != path]
        self._save(folders[: self.limit])

    def remove(self, folder: str | os.PathLike) -> None:
        self._save([f for f in self.folders() if f != str(folder)])

    def clear(self) -> None:
        self._save([])

    def _save(self, folders: list[str]) -> None:
        self.settings.setValue(RECENT_KEY, folders)
        self.settings.sync()


def last_dialog_folder(settings: QSettings, dialog: str) -> str:
    """The folder a file dialog showed last time (the home folder the first time)."""
    value = settings.value(f"dialogs/{dialog}")
    return str(value) if value and Path(str(value)).is_dir() else str(Path.home())


def remember_dialog_folder(settings: QSettings, dialog: str, folder: str | os.PathLike) -> None:
    settings.setValue(f"dialogs/{dialog}", str(folder))
