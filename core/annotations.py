"""The user's own work on a dataset: flagged images and relabelled images.

Both live in the workspace table ``annotations`` (one row per touched image) and are
written the moment the user acts, one transaction per call, each with a timestamp, so
closing the app, a crash or a kill never loses a flag. Images are named by their id
(``Dataset.image_ids``), the same id scores and embeddings use.

A flag keeps the content hash of the picture it was set on (core.dataset): when the file
is replaced later the flag stays (it is the user's work) and
:func:`flags_on_changed_images` names it, so exports and views can say "image changed
since flagged".

Each change is also appended, by image path, to the workspace's annotations journal
(core.workspace_guard) before its transaction commits, so a damaged database loses none of the
user's work: ``diesight repair`` restores it from the journal.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone

import numpy as np

from core.dbarrays import align_by_id, query_array
from core.workspace import Workspace
from core.workspace_guard import append_journal, journal_path

LABEL_GOOD = 0
LABEL_BAD = 1
UNLABELLED = -1


def now_iso() -> str:
    """The current UTC time as ISO 8601 with seconds (what the tables and exports store)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _as_id_list(image_ids: Iterable[int] | int) -> list[int]:
    if isinstance(image_ids, (int, np.integer)):
        return [int(image_ids)]
    return [int(i) for i in np.unique(np.asarray(list(image_ids), dtype=np.int64))]


def _check_known(con, ids: list[int]) -> None:
    """Refuse unknown image ids with a clear message (rather than a foreign-key error)."""
    if not ids:
        return
    _fill_wanted_ids(con, ids)
    missing = [row[0] for row in con.execute(
        "SELECT w.id FROM wanted_ids w LEFT JOIN images i ON i.id = w.id "
        "WHERE i.id IS NULL ORDER BY w.id LIMIT 5")]
    if missing:
        raise ValueError(f"Unknown image id(s) in this workspace: {missing}")


def _fill_wanted_ids(con, ids: list[int]) -> None:
    con.execute("CREATE TEMP TABLE IF NOT EXISTS wanted_ids (id INTEGER PRIMARY KEY)")
    con.execute("DELETE FROM wanted_ids")
    con.executemany("INSERT INTO wanted_ids (id) VALUES (?)", [(i,) for i in ids])


def set_flag(workspace: Workspace, image_ids: Iterable[int] | int, flagged: bool) -> int:
    """Flag (or unflag) images, saved at once in one transaction.

    Re-flagging an image that is already flagged keeps its original ``flagged_at`` and
    picture hash, so an export shows when a defect was first marked, and on which picture.
    Unflagging clears both; flagging again takes the picture as it is now.

    Args:
        workspace: the dataset's workspace.
        image_ids: one id or many.
        flagged: True to flag, False to unflag.

    Returns:
        How many images were given.

    Raises:
        ValueError: if an id is not an image of this workspace.
    """
    ids = _as_id_list(image_ids)
    stamp = now_iso() if flagged else None
    with workspace.transaction() as con:
        _check_known(con, ids)
        con.executemany(
            """INSERT INTO annotations (image_id, flagged, flagged_at, flagged_hash)
               VALUES (?1, ?2, ?3, CASE WHEN ?2 = 1 THEN
                                   (SELECT content_hash FROM images WHERE id = ?1) END)
               ON CONFLICT (image_id) DO UPDATE SET
                 flagged = excluded.flagged,
                 flagged_at = CASE WHEN annotations.flagged = 1 AND excluded.flagged = 1
                                   THEN annotations.flagged_at ELSE excluded.flagged_at END,
                 flagged_hash = CASE WHEN annotations.flagged = 1 AND excluded.flagged = 1
                                     THEN annotations.flagged_hash
                                     ELSE excluded.flagged_hash END""",
            [(i, int(bool(flagged)), stamp) for i in ids])
        _journal(workspace, con, ids)
    return len(ids)


def set_user_label(workspace: Workspace, image_ids: Iterable[int] | int,
                   label: int | None) -> int:
    """Relabel images (1 bad, 0 good), or with ``None`` go back to the label as found.

    Args:
        workspace: the dataset's workspace.
        image_ids: one id or many.
        label: 1, 0, or None to drop the user's label.

    Returns:
        How many images were given.

    Raises:
        ValueError: for a label other than 0, 1 or None, or an unknown image id.
    """
    if label is not None and label not in (LABEL_GOOD, LABEL_BAD):
        raise ValueError(f"A label is 1 (bad), 0 (good) or None (as found), not {label!r}")
    ids = _as_id_list(image_ids)
    stamp = None if label is None else now_iso()
    with workspace.transaction() as con:
        _check_known(con, ids)
        con.executemany(
            """INSERT INTO annotations (image_id, user_label, labelled_at) VALUES (?, ?, ?)
               ON CONFLICT (image_id) DO UPDATE SET
                 user_label = excluded.user_label, labelled_at = excluded.labelled_at""",
            [(i, label, stamp) for i in ids])
        _journal(workspace, con, ids)
    return len(ids)


_JOURNAL_COLUMNS = ("relpath", "flagged", "flagged_at", "user_label", "labelled_at",
                    "flagged_hash")
# The picture hash as hex text (JSON has no bytes); NULL stays null, b'' becomes ''.
_JOURNAL_QUERY = ("SELECT i.relpath, a.flagged, a.flagged_at, a.user_label, a.labelled_at, "
                  "CASE WHEN a.flagged_hash IS NOT NULL THEN lower(hex(a.flagged_hash)) END "
                  "FROM annotations a JOIN images i ON i.id = a.image_id")


def _journal(workspace: Workspace, con, ids: list[int]) -> None:
    """Append the new state of the ``ids``' annotations to the journal, inside the
    caller's transaction (a journal that cannot be written rolls the change back).

    A workspace made before the journal existed gets every annotation it holds first.
    """
    if not ids:
        return
    query = _JOURNAL_QUERY + " WHERE a.image_id IN (SELECT id FROM wanted_ids)"
    if not journal_path(workspace.path).exists():
        query = _JOURNAL_QUERY
    rows = [dict(zip(_JOURNAL_COLUMNS, row, strict=True)) for row in con.execute(query)]
    append_journal(workspace.path, rows)


def journal_annotations(workspace: Workspace, con, image_ids: Iterable[int]) -> None:
    """Journal the annotations of ``image_ids`` as ``con``'s open transaction holds them:
    for changes made outside this module (an open settling the picture hash of flags set
    before hashes were kept)."""
    ids = _as_id_list(image_ids)
    _fill_wanted_ids(con, ids)
    _journal(workspace, con, ids)


def flags(workspace: Workspace) -> dict[int, str]:
    """The flagged images: ``{image_id: flagged_at}`` (ISO 8601 UTC)."""
    with workspace.transaction() as con:
        rows = con.execute(
            "SELECT image_id, flagged_at FROM annotations WHERE flagged = 1").fetchall()
    return {int(r[0]): r[1] or "" for r in rows}


def flags_on_changed_images(workspace: Workspace) -> set[int]:
    """Flagged images whose file changed since the flag was set (the flag stays).

    A flag set before pictures were hashed counts as unchanged until an open finds its
    file changed (core.dataset).
    """
    with workspace.transaction() as con:
        rows = con.execute(
            "SELECT a.image_id FROM annotations a JOIN images i ON i.id = a.image_id "
            "WHERE a.flagged = 1 AND a.flagged_hash IS NOT NULL "
            "AND i.content_hash IS NOT NULL AND a.flagged_hash != i.content_hash").fetchall()
    return {int(r[0]) for r in rows}


def user_labels(workspace: Workspace) -> dict[int, int]:
    """The user's relabels: ``{image_id: label}`` with label 1 bad / 0 good."""
    with workspace.transaction() as con:
        rows = con.execute(
            "SELECT image_id, user_label FROM annotations WHERE user_label IS NOT NULL"
        ).fetchall()
    return {int(r[0]): int(r[1]) for r in rows}


def flagged_mask(workspace: Workspace, image_ids: np.ndarray) -> np.ndarray:
    """Boolean array aligned with ``image_ids``: True where the image is flagged."""
    flagged = np.fromiter(flags(workspace).keys(), dtype=np.int64)
    return np.isin(np.asarray(image_ids, dtype=np.int64), flagged)


def current_labels(workspace: Workspace, image_ids: np.ndarray) -> np.ndarray:
    """Labels as they stand now (user relabels over the labels as found), aligned.

    ``Dataset.labels`` is a snapshot taken when the dataset was opened; views that let
    the user relabel read this instead so a relabel (or its undo) shows at once.

    Args:
        workspace: the dataset's workspace.
        image_ids: int64 ids, ascending (as ``Dataset.image_ids``).

    Returns:
        int8 array: 1 bad, 0 good, -1 unlabelled (also for ids the table lacks).
    """
    table = query_array(
        workspace, "SELECT i.id, COALESCE(a.user_label, i.label, -1) FROM images i "
                   "LEFT JOIN annotations a ON a.image_id = i.id ORDER BY i.id",
        columns=2, dtype=np.int64)
    return align_by_id(image_ids, table[:, 0], table[:, 1], UNLABELLED).astype(np.int8)
