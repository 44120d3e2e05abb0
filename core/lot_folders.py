"""The lots registered in a workspace and the walk of their folders: what ``open_dataset``
needs to include a dataset's lots. Adding, checking, removing and scoring lots is
``core.lots`` (which opens datasets, so it sits above ``core.dataset``, and this module below).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from core.folderscan import FoundImage, SkippedFile, scan_folder
from core.workspace import Workspace

LOT_SPLIT_PREFIX = "lot "


@dataclass(frozen=True)
class Lot:
    """A lot registered in a workspace.

    Attributes:
        name: the lot's name; its images have the split ``'lot <name>'``.
        folder: the absolute folder of its images.
        added_at: when it was first added (ISO 8601 UTC).
        missing: set by ``open_dataset`` when the folder could not be read this time.
    """

    name: str
    folder: Path
    added_at: str
    missing: bool = False

    @property
    def split(self) -> str:
        return lot_split(self.name)


@dataclass
class LotScan:
    """The images of every registered lot, ready to join the root's scan.

    Attributes:
        images: image files with their absolute POSIX paths as relpaths.
        splits: the split of each image ('lot <name>'), aligned with ``images``.
        skipped: unusable entries in the lots (and missing lot folders), with reasons.
        ignored: counts of entries left out on purpose ('hidden', 'not an image').
        lots: the registered lots, ``missing`` set for folders that could not be read.
    """

    images: list[FoundImage] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    ignored: dict[str, int] = field(default_factory=dict)
    lots: list[Lot] = field(default_factory=list)


def lot_split(name: str) -> str:
    """The split value of a lot's images: ``'lot <name>'``."""
    return LOT_SPLIT_PREFIX + name


def list_lots(workspace: Workspace) -> list[Lot]:
    """The lots registered in ``workspace``, oldest first."""
    with workspace.transaction() as con:
        rows = con.execute("SELECT name, folder, added_at FROM lots "
                           "ORDER BY added_at, name").fetchall()
    return [Lot(row[0], Path(row[1]), row[2]) for row in rows]


def lot_path_prefix(folder: Path) -> str:
    """The relpath prefix of a lot's images: its absolute POSIX folder plus '/'."""
    return folder.as_posix().rstrip("/") + "/"


def scan_lots(workspace: Workspace) -> LotScan:
    """Walk every registered lot folder (``open_dataset`` calls this on every open).

    A lot folder that is missing or unreadable becomes a skipped entry with the reason,
    never an error: the dataset opens without that lot's images.
    """
    result = LotScan()
    seen: set[str] = set()
    for lot in list_lots(workspace):
        prefix = lot_path_prefix(lot.folder)
        reason = _unreadable_reason(lot.folder)
        scan = None
        if reason is None:
            try:
                scan = scan_folder(lot.folder)
            except OSError as exc:
                reason = f"cannot be read ({exc.strerror or exc})"
        if scan is None:
            result.skipped.append(SkippedFile(
                prefix, f"lot {lot.name!r}: folder {reason}; its images are left out "
                        "until it is back"))
            result.lots.append(replace(lot, missing=True))
            continue
        split = lot_split(lot.name)
        for image in scan.images:
            relpath = prefix + image.relpath
            if relpath not in seen:  # overlapping lots are refused, but never crash on one
                seen.add(relpath)
                result.images.append(image._replace(relpath=relpath))
                result.splits.append(split)
        result.skipped += [SkippedFile(prefix + s.relpath, s.reason) for s in scan.skipped]
        for why, count in scan.ignored.items():
            result.ignored[why] = result.ignored.get(why, 0) + count
        result.lots.append(lot)
    return result


def _unreadable_reason(folder: Path) -> str | None:
    if not folder.exists():
        return "not found"
    if not folder.is_dir():
        return "is not a folder"
    return None
