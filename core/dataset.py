"""Opening a folder of images as a :class:`Dataset` — the API the rest of DieSight uses.

``open_dataset`` walks the folder, recognises its layout (core.folder_layout), decodes every new
or changed image once into the workspace's memory-mapped cache (core.cache) and keeps the
workspace database's ``images`` and ``skipped`` tables in step with the folder:

* an unchanged file (same size, mtime and ctime) is never read again, so reopening 30,000
  images costs a scandir and a query;
* a file whose times moved but whose size did not is read and hashed: the same bytes keep
  its row (a ``touch`` or a copy is not a change), other bytes are a change. The ctime
  catches a replacement that set the old mtime back (a program cannot set the ctime), and
  the content hash, computed from the bytes the decode reads anyway, is what scores and
  flags are checked against (core.score_store, core.annotations);
* a changed file is re-read into its own row; a new file gets a new row (ids are stable
  rows of the cache and never reused); a vanished file keeps its row with ``present = 0``;
* a row is inserted or updated only after its pixels are on disk, so a killed or
  cancelled open leaves the workspace consistent and the next open finishes the job.

The folders registered as lots of the dataset (core.lot_folders) are walked on every open too:
their images join the dataset unlabelled, with the split ``'lot <name>'`` and their
absolute path as relpath.

Nothing is ever written into the image folder (or a lot folder).
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from core.annotations import flags_on_changed_images, journal_annotations
from core.cache import (
    CACHE_FILE_NAME,
    DecodeResult,
    ImageCache,
    Job,
    content_hash,
    decode_into_cache,
    exclusive_open,
    most_common_size,
    read_image_bytes,
)
from core.folder_layout import (
    UNLABELLED,
    LabelsCsvError,
    Layout,
    LayoutResult,
    count_by_split,
    detect_layout,
)
from core.folderscan import FolderScan, SkippedFile, scan_folder
from core.imagefile import IMAGE_EXTENSIONS, UnreadableImage, decode_gray
from core.lot_folders import Lot, LotScan, scan_lots
from core.progress import CancelCheck, ProgressFn, Throttle, check_cancel, report
from core.workspace import Workspace

__all__ = ["Dataset", "DatasetError", "Layout", "OpenStats", "SkippedFile", "open_dataset"]

_META_HEIGHT = "image_height"
_META_WIDTH = "image_width"

# A file whose ctime is this close to the start of an open may be rewritten within the
# same tick of the filesystem's clock (FAT keeps 2 s, Linux a clock tick) without its
# times moving: its ctime is stored as NULL, so the next open checks its bytes (git's
# "racily clean" entries).
RACY_WINDOW_NS = 2 * 10**9

_UPSERT_IMAGE = """
INSERT INTO images (id, relpath, size_bytes, mtime_ns, ctime_ns, content_hash, label, split,
                    orig_width, orig_height, present)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)
ON CONFLICT(id) DO UPDATE SET
    size_bytes = excluded.size_bytes, mtime_ns = excluded.mtime_ns,
    ctime_ns = excluded.ctime_ns, content_hash = excluded.content_hash, label = excluded.label,
    split = excluded.split, orig_width = excluded.orig_width,
    orig_height = excluded.orig_height, present = 1
"""
_CONFIRM_IMAGE = ("UPDATE images SET size_bytes = ?, mtime_ns = ?, ctime_ns = ?, "
                  "content_hash = ?, label = ?, split = ?, present = 1 WHERE id = ?")
# The picture hash given to scores and flags made before hashes were kept whose picture has
# changed since: it matches no file's hash.
EARLIER_CONTENT = b""


class DatasetError(Exception):
    """A folder that cannot be opened as a dataset; the message says why.

    Attributes:
        skipped: files that were skipped on the way (shown with the message).
    """

    def __init__(self, message: str, skipped: list[SkippedFile] | None = None) -> None:
        super().__init__(message)
        self.skipped = skipped or []


@dataclass
class OpenStats:
    """What one ``open_dataset`` call did (shown by ``diesight scan``, checked by tests)."""

    decoded: int = 0     # files decoded into the cache this time
    reused: int = 0      # files whose cached pixels were still valid
    new: int = 0         # files seen for the first time
    changed: int = 0     # known files re-read because their content changed
    checked: int = 0     # files whose times moved, read and hashed to see if they changed
    vanished: int = 0    # known files no longer in the folder
    failed: int = 0      # files that could not be decoded
    seconds: float = 0.0


@dataclass(eq=False, repr=False)
class Dataset:
    """An opened image folder; per-image arrays are aligned by position 0..n-1.

    ``images[image_ids[i]]`` is image ``i``. Scores, flags and embeddings are stored by
    image id, which stays the same across reopenings.

    Images of a lot (core.lots) have the split ``'lot <name>'``, label -1 (unless the user
    relabelled them) and their absolute POSIX path as relpath, so ``path(i)`` is the real
    file for every image.
    """

    root: Path
    workspace: Workspace
    layout: Layout
    images: np.ndarray          # read-only memmap (rows, H, W) uint8; row = image id
    image_ids: np.ndarray       # int64 (n,), ascending
    relpaths: list[str]
    labels: np.ndarray          # int8 (n,): 1 bad, 0 good, -1 unlabelled (user relabels applied)
    splits: np.ndarray          # str (n,): 'train' / 'val' / 'test' / 'unlabelled' / 'lot X'
    skipped: list[SkippedFile] = field(default_factory=list)
    ignored: dict[str, int] = field(default_factory=dict)
    stats: OpenStats = field(default_factory=OpenStats)
    lots: list[Lot] = field(default_factory=list)  # registered lots; ``missing`` if unreadable

    def __len__(self) -> int:
        return len(self.image_ids)

    def __repr__(self) -> str:  # the default would print 30,000 paths
        return (f"Dataset(root={str(self.root)!r}, layout={self.layout.kind!r}, "
                f"images={len(self)}, size={self.image_size}, skipped={len(self.skipped)})")

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of every cached image."""
        return int(self.images.shape[1]), int(self.images.shape[2])

    @cached_property
    def names(self) -> list[str]:
        """File names (no folders)."""
        return [relpath.rpartition("/")[2] for relpath in self.relpaths]

    @cached_property
    def ids(self) -> list[str]:
        """File stems, e.g. the Kaggle ids."""
        return [os.path.splitext(name)[0] for name in self.names]

    def positions(self, image_ids) -> np.ndarray:
        """Positions (0..n-1) of the given image ids; -1 for ids not present."""
        wanted = np.asarray(image_ids, dtype=np.int64)
        if len(self.image_ids) == 0:
            return np.full(wanted.shape, -1, dtype=np.int64)
        found = np.clip(np.searchsorted(self.image_ids, wanted), 0, len(self.image_ids) - 1)
        return np.where(self.image_ids[found] == wanted, found, -1)

    def path(self, position: int) -> Path:
        """The file of image ``position`` (a lot image's relpath is absolute)."""
        return self.root / self.relpaths[position]

    def counts(self) -> dict[str, dict[str, int]]:
        """{split: {'good': n, 'bad': n, 'unlabelled': n}} for the splits that occur."""
        return count_by_split(self.labels, self.splits)


@dataclass
class _Plan:
    """What an open must do to bring the workspace in step with the folder."""

    racy_after_ns: int  # a ctime from then on does not vouch for the bytes (RACY_WINDOW_NS)
    jobs: list[Job] = field(default_factory=list)
    # row -> (relpath, size, mtime, ctime, label, split) for the DB, of jobs and checks
    job_info: dict[int, tuple] = field(default_factory=dict)
    # rows that were valid before -> their content hash (None: stored before hashes were)
    job_existing: dict[int, bytes | None] = field(default_factory=dict)
    # (row, path) of files whose bytes decide whether they changed, and the hash the bytes
    # must have to keep the row (None: any, for a row stored before hashes were kept
    # whose size and mtime still match, as they vouched for it then)
    checks: list[Job] = field(default_factory=list)
    check_hash: dict[int, bytes | None] = field(default_factory=dict)
    updates: list[tuple] = field(default_factory=list)        # (label, split, id) of unchanged
    vanished: list[int] = field(default_factory=list)
    # id -> (relpath, label, split) of the images valid in the cache (what the DB says is
    # present), so the Dataset is built without reading 30,000 rows back.
    present: dict[int, tuple[str, int | None, str]] = field(default_factory=dict)
    stats: OpenStats = field(default_factory=OpenStats)

    def vouching_ctime(self, ctime_ns: int) -> int | None:
        """The ctime to store for a file read now: None when it is too recent to vouch."""
        return None if ctime_ns >= self.racy_after_ns else ctime_ns


def open_dataset(root: str | os.PathLike, *, labels_csv: str | os.PathLike | None = None,
                 workspace: Workspace | None = None, progress: ProgressFn | None = None,
                 cancel: CancelCheck | None = None, workers: int | None = None) -> Dataset:
    """Open a folder of images, decoding what is new or changed into the workspace cache.

    Args:
        root: the image folder (never written to).
        labels_csv: a CSV of file names and labels for images the folders leave unlabelled.
        workspace: where the cache and database live (default: the folder's workspace
            under ``$DIESIGHT_HOME``).
        progress: receives 'scan' and 'decode' reports.
        cancel: checked between steps and chunks; a cancelled open keeps what it finished.
        workers: decoding processes (default: all CPUs; 1 decodes in this process).

    Returns:
        The opened dataset.

    Raises:
        DatasetError: the folder does not exist, holds no readable images, or the labels
            CSV cannot be used.
        Cancelled: ``cancel`` returned True (the next open continues where this stopped).
    """
    started = time.monotonic()
    root = _checked_root(root)
    if labels_csv is not None and not Path(labels_csv).is_file():
        raise DatasetError(f"Labels file not found: {labels_csv}")
    workspace = workspace or Workspace.for_dataset(root)
    # One connection for the whole open: opening and closing one per batch costs a WAL
    # checkpoint each time.
    con = workspace.connect()
    try:
        with exclusive_open(workspace.path, cancel, progress):
            return _open_locked(root, labels_csv, workspace, con, progress, cancel, workers,
                                started)
    finally:
        con.close()


def _open_locked(root: Path, labels_csv, workspace: Workspace, con: sqlite3.Connection,
                 progress: ProgressFn | None, cancel: CancelCheck | None, workers: int | None,
                 started: float) -> Dataset:
    """The body of :func:`open_dataset`, run while holding the workspace's open lock."""
    report(progress, "scan", message=f"Scanning {root} ...")
    racy_after_ns = time.time_ns() - RACY_WINDOW_NS
    scan = _scan(root)
    check_cancel(cancel)
    if not scan.images:
        raise DatasetError(_no_images_message(root, scan), scan.skipped)
    found = _detect(scan, root, labels_csv)
    report(progress, "scan", message=f"Found {len(scan.images):,} images: "
                                     f"{found.layout.description}")
    lots = scan_lots(workspace)
    check_cancel(cancel)
    cache = _cache_for(workspace, root, scan)
    if cache is None:
        skipped = _diagnose_all(root, scan)
        _save_skipped(con, skipped)
        raise DatasetError(f"None of the {len(scan.images):,} images in {root} could be read.",
                           skipped)
    scan, found = _with_lots(scan, found, lots)
    plan = _plan(con, cache, root, scan, found, racy_after_ns)
    _apply_metadata(con, plan)
    _check_contents(con, workspace, plan, progress, cancel)
    failures = _decode(con, workspace, cache, plan, workers, progress, cancel)
    skipped = sorted(scan.skipped + failures, key=lambda s: s.relpath)
    _save_skipped(con, skipped)
    plan.stats.seconds = time.monotonic() - started
    dataset = _build(con, workspace, root, cache, found.layout, plan, skipped, scan.ignored)
    dataset.lots = lots.lots
    if len(dataset) == 0:
        raise DatasetError(f"None of the {len(scan.images):,} images in {root} could be read.",
                           skipped)
    report(progress, "done", message=f"Opened {len(dataset):,} images "
                                     f"({plan.stats.decoded:,} decoded, "
                                     f"{plan.stats.reused:,} from the cache)")
    return dataset


def _checked_root(root: str | os.PathLike) -> Path:
    path = Path(root).expanduser()
    if not path.exists():
        raise DatasetError(f"Folder not found: {path}")
    if not path.is_dir():
        raise DatasetError(f"Not a folder: {path}")
    return path.resolve()


def _scan(root: Path) -> FolderScan:
    try:
        return scan_folder(root)
    except OSError as exc:
        raise DatasetError(f"Cannot read folder {root}: {exc.strerror or exc}") from exc


def _no_images_message(root: Path, scan: FolderScan) -> str:
    extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
    message = f"No images found in {root} (looked for {extensions} in any case)"
    if scan.skipped:
        message += f"; {len(scan.skipped)} unreadable file(s) skipped"
    ignored = sum(scan.ignored.values())
    if ignored:
        message += f"; {ignored} other or hidden file(s) ignored"
    return message + "."


def _detect(scan: FolderScan, root: Path, labels_csv) -> LayoutResult:
    try:
        return detect_layout([image.relpath for image in scan.images], root,
                             labels_csv=labels_csv, root_csv_files=scan.root_csv_files)
    except LabelsCsvError as exc:
        raise DatasetError(f"Cannot use the labels file: {exc}") from exc


def _cache_for(workspace: Workspace, root: Path, scan: FolderScan) -> ImageCache | None:
    """The workspace's cache; its image size is fixed by the first open.

    None when the workspace is new and not one image header in the folder is readable.
    """
    height = workspace.get_meta(_META_HEIGHT)
    width = workspace.get_meta(_META_WIDTH)
    if height is not None and width is not None:
        return ImageCache(workspace.path / CACHE_FILE_NAME, int(height), int(width))
    size = most_common_size([os.path.join(root, image.relpath) for image in scan.images])
    if size is None:
        return None
    workspace.set_meta(_META_HEIGHT, str(size[0]))
    workspace.set_meta(_META_WIDTH, str(size[1]))
    return ImageCache(workspace.path / CACHE_FILE_NAME, *size)


def _diagnose_all(root: Path, scan: FolderScan) -> list[SkippedFile]:
    """Why each file failed, when none was readable (so the user sees every reason)."""
    skipped = list(scan.skipped)
    for image in scan.images:
        try:
            decode_gray(root / image.relpath)
        except UnreadableImage as exc:
            skipped.append(SkippedFile(image.relpath, str(exc)))
        else:  # readable after all (it changed since the header check): report it
            skipped.append(SkippedFile(image.relpath, "became readable while opening; "
                                                      "open the folder again"))
    return sorted(skipped, key=lambda s: s.relpath)


def _with_lots(scan: FolderScan, found: LayoutResult,
               lots: LotScan) -> tuple[FolderScan, LayoutResult]:
    """The root's scan and layout extended by the lots' images (unlabelled)."""
    if not lots.lots:
        return scan, found
    ignored = dict(scan.ignored)
    for why, count in lots.ignored.items():
        ignored[why] = ignored.get(why, 0) + count
    merged_scan = FolderScan(images=scan.images + lots.images,
                             skipped=scan.skipped + lots.skipped, ignored=ignored,
                             root_csv_files=scan.root_csv_files)
    labels = np.concatenate([found.labels,
                             np.full(len(lots.images), UNLABELLED, dtype=found.labels.dtype)])
    return merged_scan, LayoutResult(found.layout, labels, found.splits + lots.splits)


def _known_images(con: sqlite3.Connection) -> dict[str, tuple]:
    """relpath -> (id, size_bytes, mtime_ns, ctime_ns, content_hash, present, label, split)
    of every row."""
    with con:
        rows = con.execute("SELECT relpath, id, size_bytes, mtime_ns, ctime_ns, content_hash, "
                           "present, label, split FROM images").fetchall()
    return {row[0]: row[1:] for row in rows}


def _plan(con: sqlite3.Connection, cache: ImageCache, root: Path, scan: FolderScan,
          found: LayoutResult, racy_after_ns: int) -> _Plan:
    """Compare the folder with the database: what to decode, check, update and mark
    vanished."""
    known = _known_images(con)
    rows_stored = cache.rows_stored()
    next_id = max((old[0] for old in known.values()), default=-1) + 1
    plan = _Plan(racy_after_ns)
    labels = found.labels.tolist()
    root_prefix = os.path.join(root, "")
    # One pass over 30,000 files on every reopen: kept to plain tuples and dict lookups.
    for (relpath, size_bytes, mtime_ns, ctime_ns), label, split in zip(
            scan.images, labels, found.splits, strict=True):
        db_label = None if label == UNLABELLED else label
        old = known.get(relpath)
        # join, not +: a lot image's relpath is absolute, and join keeps it as it is.
        path = os.path.join(root_prefix, relpath)
        if old is not None:
            row, old_size, old_mtime, old_ctime, old_hash, old_present, old_label, \
                old_split = old
            if row < rows_stored and old_size == size_bytes and (
                    old_hash is not None or old_mtime == mtime_ns):
                if old_mtime == mtime_ns and old_ctime == ctime_ns and old_hash is not None:
                    plan.stats.reused += 1
                    plan.present[row] = (relpath, db_label, split)
                    if old_present != 1 or old_label != db_label or old_split != split:
                        plan.updates.append((db_label, split, row))
                    continue
                plan.checks.append((row, path))
                plan.check_hash[row] = old_hash
                plan.job_info[row] = (relpath, size_bytes, mtime_ns, ctime_ns, db_label, split)
                continue
            plan.job_existing[row] = old_hash
            plan.stats.changed += 1
        else:
            row, next_id = next_id, next_id + 1
            plan.stats.new += 1
        plan.jobs.append((row, path))
        plan.job_info[row] = (relpath, size_bytes, mtime_ns, ctime_ns, db_label, split)
    seen = {image.relpath for image in scan.images}
    plan.vanished = [old[0] for relpath, old in known.items() if old[5] and relpath not in seen]
    plan.stats.vanished = len(plan.vanished)
    return plan


def _apply_metadata(con: sqlite3.Connection, plan: _Plan) -> None:
    """Labels/splits of unchanged images and vanished files, in one transaction."""
    if not plan.updates and not plan.vanished:
        return
    with con:
        con.executemany("UPDATE images SET label = ?, split = ?, present = 1 WHERE id = ?",
                        plan.updates)
        con.executemany("UPDATE images SET present = 0 WHERE id = ?",
                        [(row,) for row in plan.vanished])


def _settle_unhashed_work(con: sqlite3.Connection, workspace: Workspace,
                          pairs: list[tuple[bytes, int]]) -> None:
    """Give the scores and flags of images ``(hash, id)`` that were made before hashes were
    kept (NULL) the hash of the picture they were made on (or :data:`EARLIER_CONTENT`),
    journalling the flags. Runs inside the caller's transaction."""
    if not pairs:
        return
    con.executemany("UPDATE scores SET content_hash = ? WHERE image_id = ? "
                    "AND content_hash IS NULL", pairs)
    settled = [row for digest, row in pairs if con.execute(
        "UPDATE annotations SET flagged_hash = ? WHERE image_id = ? AND flagged = 1 "
        "AND flagged_hash IS NULL", (digest, row)).rowcount]
    if settled:
        journal_annotations(workspace, con, settled)


def _check_contents(con: sqlite3.Connection, workspace: Workspace, plan: _Plan,
                    progress: ProgressFn | None, cancel: CancelCheck | None) -> None:
    """Hash the files whose times moved (or do not vouch for them): the same bytes keep
    their row, other bytes join the decode jobs as changed.

    Only these files are read (a ``touch``, a copy that kept the bytes, the first open
    after an upgrade); confirmed rows are committed in batches, so a cancelled check
    keeps what it finished.
    """
    confirmed: list[tuple] = []
    adopted: list[tuple[bytes, int]] = []

    def commit() -> None:
        with con:
            con.executemany(_CONFIRM_IMAGE, confirmed)
            _settle_unhashed_work(con, workspace, adopted)
        confirmed.clear()
        adopted.clear()

    throttle = Throttle(0.2)
    try:
        for done, (row, path) in enumerate(plan.checks, 1):
            if done % 256 == 0:
                check_cancel(cancel)
                commit()
            if throttle.ready(final=done == len(plan.checks)):
                report(progress, "check", done, len(plan.checks),
                       f"Checking {len(plan.checks):,} files whose times changed")
            relpath, size_bytes, mtime_ns, ctime_ns, label, split = plan.job_info[row]
            expected = plan.check_hash[row]
            try:
                digest = content_hash(read_image_bytes(path))
            except UnreadableImage:
                digest = None  # the decode says why
            plan.stats.checked += 1
            if digest is not None and expected in (None, digest):
                confirmed.append((size_bytes, mtime_ns, plan.vouching_ctime(ctime_ns), digest,
                                  label, split, row))
                if expected is None:
                    adopted.append((digest, row))
                plan.present[row] = (relpath, label, split)
                plan.stats.reused += 1
            else:
                plan.jobs.append((row, path))
                plan.job_existing[row] = expected
                plan.stats.changed += 1
    finally:
        commit()


def _decode(con: sqlite3.Connection, workspace: Workspace, cache: ImageCache, plan: _Plan,
            workers: int | None, progress: ProgressFn | None,
            cancel: CancelCheck | None) -> list[SkippedFile]:
    """Decode the plan's jobs into the cache; returns the files that failed."""
    if not plan.jobs:
        return []
    cache.ensure_rows(max(row for row, _ in plan.jobs) + 1)
    failures: list[SkippedFile] = []
    # Scores and flags made before hashes were kept, on a picture that has changed since.
    with con:
        _settle_unhashed_work(con, workspace, [(EARLIER_CONTENT, row) for row, old_hash
                                               in plan.job_existing.items() if old_hash is None])

    def commit(results: list[DecodeResult]) -> None:
        rows, gone = [], []
        for result in results:
            relpath, size_bytes, mtime_ns, ctime_ns, label, split = plan.job_info[result.row]
            if result.reason is None:
                rows.append((result.row, relpath, size_bytes, mtime_ns,
                             plan.vouching_ctime(ctime_ns), result.content_hash, label, split,
                             result.orig_width, result.orig_height))
                plan.present[result.row] = (relpath, label, split)
            else:
                failures.append(SkippedFile(relpath, result.reason))
                if result.row in plan.job_existing:
                    gone.append((result.row,))
        with con:
            con.executemany(_UPSERT_IMAGE, rows)
            con.executemany("UPDATE images SET present = 0 WHERE id = ?", gone)
        plan.stats.decoded += len(rows)
        plan.stats.failed += len(results) - len(rows)

    decode_into_cache(cache, plan.jobs, commit, workers=workers, progress=progress, cancel=cancel)
    return failures


def _save_skipped(con: sqlite3.Connection, skipped: list[SkippedFile]) -> None:
    with con:
        con.execute("DELETE FROM skipped")
        con.executemany("INSERT OR REPLACE INTO skipped (relpath, reason) VALUES (?, ?)",
                        [(s.relpath, s.reason) for s in skipped])


def _build(con: sqlite3.Connection, workspace: Workspace, root: Path, cache: ImageCache,
           layout: Layout, plan: _Plan, skipped: list[SkippedFile],
           ignored: dict[str, int]) -> Dataset:
    """The Dataset of the images present in the cache, with the user's relabels applied."""
    with con:
        relabels = dict(con.execute("SELECT image_id, user_label FROM annotations "
                                    "WHERE user_label IS NOT NULL").fetchall())
    ids = sorted(plan.present)
    entries = [plan.present[row] for row in ids]
    labels = [relabels.get(row, entry[1]) for row, entry in zip(ids, entries, strict=True)]
    return Dataset(root=root, workspace=workspace, layout=layout, images=cache.open_readonly(),
                   image_ids=np.array(ids, dtype=np.int64),
                   relpaths=[entry[0] for entry in entries],
                   labels=np.array([UNLABELLED if label is None else label for label in labels],
                                   dtype=np.int8),
                   splits=np.array([entry[2] for entry in entries], dtype=str),
                   skipped=skipped, ignored=dict(ignored), stats=plan.stats)


def unopened_changes(root: str | os.PathLike, workspace: Workspace) -> int:
    """How many image files of ``root`` appeared, vanished, or changed size or times since
    the folder was last opened: a stat-only walk that reads no file, for commands that
    report on the workspace without opening the folder (``diesight runs``).

    An open decides which of them really changed (core.dataset's content check); lot
    folders are left to it too.
    """
    found = scan_folder(root).images
    with workspace.transaction() as con:
        known = {row[0]: tuple(row[1:]) for row in con.execute(
            "SELECT relpath, size_bytes, mtime_ns, ctime_ns FROM images WHERE present = 1")
            if not os.path.isabs(row[0])}
        unreadable = {row[0] for row in con.execute("SELECT relpath FROM skipped")}
    differing = 0
    for relpath, size_bytes, mtime_ns, ctime_ns in found:
        old = known.pop(relpath, None)
        if old is None:
            differing += relpath not in unreadable  # a file that failed is no news
        elif old[:2] != (size_bytes, mtime_ns) or old[2] not in (None, ctime_ns):
            differing += 1
    return differing + len(known)


def summary_lines(dataset: Dataset) -> list[str]:
    """A plain-text report of an opened dataset: layout, counts, workspace, skipped files."""
    height, width = dataset.image_size
    stats = dataset.stats
    lines = [f"Folder:    {dataset.root}",
             f"Layout:    {dataset.layout.description}"]
    lines += [f"Note:      {note}" for note in dataset.layout.notes]
    lines += [f"Workspace: {dataset.workspace.path}",
              f"Images:    {len(dataset):,} of {height} x {width} pixels "
              f"({stats.decoded:,} decoded, {stats.reused:,} from the cache, "
              f"{stats.seconds:.1f} s)"]
    folder_change, flag_change = _folder_change_note(stats), _flag_change_note(dataset)
    if folder_change:
        lines.append(f"Changes:   {folder_change} (runs score changed and new images again "
                     f"with `diesight score`)")
    if flag_change:
        lines.append(f"Flags:     {flag_change} (the flags stay; `diesight export --flagged` "
                     f"notes them)")
    lines.append("")
    lines += _count_table(dataset.counts())
    lines += _lot_lines(dataset)
    if dataset.ignored:
        parts = ", ".join(f"{n:,} {why}" for why, n in sorted(dataset.ignored.items()))
        lines += ["", f"Ignored:   {parts}"]
    if dataset.skipped:
        lines += ["", f"Skipped {len(dataset.skipped):,} file(s):"]
        lines += [f"  {s.relpath}: {s.reason}" for s in dataset.skipped]
    return lines


def change_notes(dataset: Dataset, run_id: int | None = None) -> list[str]:
    """Short notes for a status line on what the last open found changed: files removed,
    changed and new, flags on changed pictures, and the run's stale scores."""
    notes = [note for note in (_folder_change_note(dataset.stats), _flag_change_note(dataset))
             if note]
    if run_id is not None:
        from core.score_store import has_scores, score_freshness

        if has_scores(dataset.workspace, run_id):
            stale = score_freshness(dataset.workspace, run_id).stale
            if stale:
                notes.append(f"{stale:,} image(s) changed or new since run {run_id} scored "
                             "them: score again")
    return notes


def _folder_change_note(stats: OpenStats) -> str:
    if not (stats.vanished or stats.changed or (stats.new and stats.reused)):
        return ""  # a first open: nothing to compare with
    return (f"{stats.vanished:,} removed, {stats.changed:,} changed, {stats.new:,} new "
            "since the last open")


def _flag_change_note(dataset: Dataset) -> str:
    changed = len(flags_on_changed_images(dataset.workspace))
    return f"{changed:,} flagged image(s) changed since they were flagged" if changed else ""


def _count_table(counts: dict[str, dict[str, int]]) -> list[str]:
    width = max([12] + [len(split) + 2 for split in counts])  # lot splits can be long
    header = f"{'split':<{width}}{'good':>8}{'bad':>8}{'unlabelled':>12}{'total':>8}"
    lines = [header]
    totals = {"good": 0, "bad": 0, "unlabelled": 0}
    for split, row in counts.items():
        lines.append(f"{split:<{width}}{row['good']:>8,}{row['bad']:>8,}"
                     f"{row['unlabelled']:>12,}{sum(row.values()):>8,}")
        for key in totals:
            totals[key] += row[key]
    lines.append(f"{'all':<{width}}{totals['good']:>8,}{totals['bad']:>8,}"
                 f"{totals['unlabelled']:>12,}{sum(totals.values()):>8,}")
    return lines


def _lot_lines(dataset: Dataset) -> list[str]:
    """One line per lot: its images and folder, or that the folder is missing."""
    if not dataset.lots:
        return []
    splits = np.asarray(dataset.splits)
    lines = ["", f"Lots:      {len(dataset.lots)} (scored with the dataset's runs; "
                 "images unlabelled)"]
    for lot in dataset.lots:
        if lot.missing:
            lines.append(f"  {lot.name}: folder not found or unreadable: {lot.folder}")
        else:
            count = int(np.count_nonzero(splits == lot.split))
            lines.append(f"  {lot.name}: {count:,} images from {lot.folder} "
                         f"(added {lot.added_at[:10]})")
    return lines
