"""Training runs as recorded in the workspace database (tables ``runs`` and ``epochs``).

Every training run gets a row when it starts (status 'running'), its per-epoch metrics as
they happen, and its final status: 'finished', 'cancelled' (stopped by the user; resumable
from ``last.pt``) or 'failed'. A run of another dataset used here is copied in as an
'imported' row pointing at the other workspace's checkpoint.

Killed runs. A process that is killed (or crashes) cannot mark its run; its row stays
'running'. To tell such a row from a run that is really training (perhaps in another
process), the process that creates a run holds an OS lock on ``run_dir/running.lock``
until it records a final status; the OS drops the lock when the process dies. Whenever
runs are read (:func:`list_runs`, :func:`get_run`, :func:`resolve_run`) a 'running' row
whose lock is free is marked 'cancelled' with a message beginning "Interrupted", and can
be resumed from its last finished epoch like any cancelled run.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from core.atomic import atomic_write
from core.training.config import TrainConfig
from core.workspace import Workspace, workspace_dir_for

STATUSES = ("running", "finished", "cancelled", "failed", "imported")
FINAL_STATUSES = ("finished", "cancelled", "failed")
LOCK_NAME = "running.lock"
VALIDATION_IDS = "validation_ids.npy"
HOLDOUT_IDS = "holdout_ids.npy"
INTERRUPTED = "Interrupted"


class RunNotFound(ValueError):
    """No run matches the given reference."""


@dataclass
class RunRecord:
    """One training run (a row of ``runs``).

    For a run trained here, ``val_auc``, ``val_loss``, ``escapes`` and ``false_calls`` are
    measured with the best checkpoint on the run's holdout images (``holdout_good`` +
    ``holdout_bad`` of them), never on the images that chose the epoch; ``threshold`` is
    the config's, or the operating point placed on the holdout. Scores are corrected from
    the training prior ``train_prior`` to the labelled defect rate ``defect_rate``.
    """

    id: int
    created_at: str
    model: str
    config: TrainConfig
    status: str
    device: str | None = None
    parameters: int | None = None
    best_epoch: int | None = None
    val_auc: float | None = None
    val_loss: float | None = None
    threshold: float | None = None
    escapes: int | None = None
    false_calls: int | None = None
    train_seconds: float | None = None
    checkpoint: Path | None = None
    source: str | None = None
    message: str | None = None
    train_prior: float | None = None
    defect_rate: float | None = None
    holdout_good: int | None = None
    holdout_bad: int | None = None

    @property
    def logit_offset(self) -> float:
        """What scoring adds to the network's logit (the prior correction; 0 if unknown)."""
        from core.metrics import prior_logit_offset

        return prior_logit_offset(self.defect_rate, self.train_prior)


@dataclass
class EpochRecord:
    """Metrics of one finished epoch (a row of ``epochs``)."""

    run_id: int
    epoch: int
    train_loss: float
    val_loss: float
    val_auc: float
    escapes: int
    false_calls: int
    images_per_s: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


_RUN_COLUMNS = [f.name for f in fields(RunRecord) if f.name not in ("id", "config")]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _row_to_run(row: sqlite3.Row) -> RunRecord:
    values = {name: row[name] for name in _RUN_COLUMNS}
    if values["checkpoint"]:
        values["checkpoint"] = Path(values["checkpoint"])
    return RunRecord(id=row["id"], config=TrainConfig.from_dict(json.loads(row["config_json"])),
                     **values)


# -- the "still alive" lock ------------------------------------------------------------------

_held_locks: dict[tuple[str, int], int] = {}


def _lock_path(workspace: Workspace, run_id: int) -> Path:
    return workspace.run_dir(run_id) / LOCK_NAME


def _try_lock(path: Path) -> int | None:
    """Open and exclusively lock ``path``; the file descriptor, or None when held elsewhere."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if os.name == "nt":
            import msvcrt
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            import fcntl
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except OSError:
        os.close(fd)
        return None


def _hold_lock(workspace: Workspace, run_id: int) -> None:
    fd = _try_lock(_lock_path(workspace, run_id))
    if fd is None:
        raise RuntimeError(f"Run {run_id} is already being trained by another process.")
    _held_locks[(str(workspace.path), run_id)] = fd


def _release_lock(workspace: Workspace, run_id: int) -> None:
    fd = _held_locks.pop((str(workspace.path), run_id), None)
    if fd is not None:
        os.close(fd)  # closing the descriptor drops the lock


def _is_alive(workspace: Workspace, run_id: int) -> bool:
    """True while some process (this one included) holds the run's lock."""
    if (str(workspace.path), run_id) in _held_locks:
        return True
    fd = _try_lock(_lock_path(workspace, run_id))
    if fd is None:
        return True
    os.close(fd)
    return False


def claim_run(workspace: Workspace, run_id: int) -> None:
    """Take a run's lock to train it again (resume); fails if it is being trained."""
    if (str(workspace.path), run_id) not in _held_locks:
        _hold_lock(workspace, run_id)


def mark_interrupted_runs(workspace: Workspace) -> list[int]:
    """Mark 'running' rows whose training process is gone as interrupted (status
    'cancelled'). Returns their ids."""
    with workspace.transaction() as con:
        running = [r[0] for r in con.execute("SELECT id FROM runs WHERE status = 'running'")]
    dead = [run_id for run_id in running if not _is_alive(workspace, run_id)]
    for run_id in dead:
        settle_checkpoints(workspace, run_id)
        done = [e.epoch for e in epochs(workspace, run_id)]
        kept = f"last.pt from epoch {max(done)} is kept" if done else "no epoch had finished"
        update_run(workspace, run_id, status="cancelled",
                   message=f"{INTERRUPTED}: the training process ended without finishing "
                           f"(killed or crashed); {kept}. Resume with --resume {run_id}.")
    return dead


# -- rows ------------------------------------------------------------------------------------

def create_run(workspace: Workspace, config: TrainConfig, *, device: str,
               parameters: int) -> int:
    """Add a 'running' run and take its lock (held until a final status is recorded)."""
    with workspace.transaction() as con:
        cur = con.execute(
            "INSERT INTO runs (created_at, model, config_json, status, device, parameters,"
            " threshold) VALUES (?, ?, ?, 'running', ?, ?, ?)",
            (_now(), config.model, json.dumps(config.to_dict()), device, parameters,
             config.threshold))
        run_id = int(cur.lastrowid)
        # Locked before the row is committed, so no reader ever sees it unlocked.
        _hold_lock(workspace, run_id)
    return run_id


def update_run(workspace: Workspace, run_id: int, **changes: Any) -> None:
    """Change some columns of a run; recording a final status releases its lock.

    Accepts the RunRecord field names (``config`` as a TrainConfig, ``checkpoint`` as a
    path).
    """
    columns = {}
    for name, value in changes.items():
        if name == "config":
            columns["config_json"] = json.dumps(value.to_dict())
        elif name in _RUN_COLUMNS:
            columns[name] = str(value) if isinstance(value, Path) else value
        else:
            raise ValueError(f"Unknown run field {name!r}")
    if "status" in columns and columns["status"] not in STATUSES:
        raise ValueError(f"Unknown run status {columns['status']!r}")
    if columns:
        assignments = ", ".join(f"{name} = ?" for name in columns)
        with workspace.transaction() as con:
            con.execute(f"UPDATE runs SET {assignments} WHERE id = ?",
                        (*columns.values(), run_id))
    if columns.get("status") in FINAL_STATUSES:
        _release_lock(workspace, run_id)


def record_epoch(workspace: Workspace, record: EpochRecord) -> None:
    """Store one epoch's metrics (replacing that epoch if it was recorded before)."""
    values = record.to_dict()
    names = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    with workspace.transaction() as con:
        con.execute(f"INSERT OR REPLACE INTO epochs ({names}) VALUES ({marks})",
                    tuple(values.values()))


def commit_epoch(workspace: Workspace, record: EpochRecord,
                 run_changes: dict[str, Any] | None = None) -> None:
    """Store one epoch's metrics and (when it is the new best) the run's best-epoch columns
    in one transaction: the moment the epoch's pending checkpoints become the run's
    (:func:`settle_checkpoints`)."""
    values = record.to_dict()
    names = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    columns = {name: str(value) if isinstance(value, Path) else value
               for name, value in (run_changes or {}).items()}
    unknown = sorted(set(columns) - set(_RUN_COLUMNS) - {"status"})
    if unknown or "status" in columns:
        raise ValueError(f"commit_epoch cannot change {', '.join(unknown) or 'status'}")
    with workspace.transaction() as con:
        con.execute(f"INSERT OR REPLACE INTO epochs ({names}) VALUES ({marks})",
                    tuple(values.values()))
        if columns:
            assignments = ", ".join(f"{name} = ?" for name in columns)
            con.execute(f"UPDATE runs SET {assignments} WHERE id = ?",
                        (*columns.values(), record.run_id))


# An epoch's checkpoints are written as ``<name>.epoch-<E>.pending`` (complete files), the
# epoch is committed to the database, and only then are they renamed to ``best.pt`` /
# ``last.pt``. A kill at any point leaves pending files that :func:`settle_checkpoints`
# finishes (epoch E committed: rename) or drops (not committed), so the run row always
# describes the ``best.pt`` and ``last.pt`` on disk.
PENDING_SUFFIX = ".pending"


def pending_path(run_dir: Path, name: str, epoch: int) -> Path:
    """Where epoch ``epoch``'s ``name`` (best.pt / last.pt) waits for its commit."""
    return Path(run_dir) / f"{name}.epoch-{int(epoch)}{PENDING_SUFFIX}"


def settle_checkpoints(workspace: Workspace, run_id: int) -> list[Path]:
    """Finish or drop the pending checkpoints a killed training left (see
    :data:`PENDING_SUFFIX`); call only for a run no process is training. Returns the files
    that became ``best.pt`` / ``last.pt``."""
    run_dir = workspace.path / "runs" / str(int(run_id))
    try:
        names = os.listdir(run_dir)
    except OSError:
        return []
    pending = []
    for name in names:
        base, sep, rest = name.partition(".epoch-")
        if sep and rest.endswith(PENDING_SUFFIX) and rest[:-len(PENDING_SUFFIX)].isdigit():
            pending.append((int(rest[:-len(PENDING_SUFFIX)]), base, run_dir / name))
    if not pending:
        return []
    recorded = {e.epoch for e in epochs(workspace, run_id)}
    settled = []
    for epoch, base, path in sorted(pending):
        try:
            if epoch in recorded:
                os.replace(path, run_dir / base)
                settled.append(run_dir / base)
            else:
                path.unlink()
        except FileNotFoundError:
            pass  # another reader settled it first
    return settled


def delete_epochs_from(workspace: Workspace, run_id: int, first_epoch: int) -> None:
    """Forget epochs ``first_epoch`` and later (they are about to be trained again)."""
    with workspace.transaction() as con:
        con.execute("DELETE FROM epochs WHERE run_id = ? AND epoch >= ?",
                    (int(run_id), int(first_epoch)))


def list_runs(workspace: Workspace) -> list[RunRecord]:
    """Every run of the workspace, newest last (dead 'running' rows marked first)."""
    mark_interrupted_runs(workspace)
    with workspace.transaction() as con:
        rows = con.execute("SELECT * FROM runs ORDER BY id").fetchall()
    return [_row_to_run(row) for row in rows]


def get_run(workspace: Workspace, run_id: int) -> RunRecord:
    """One run by id.

    Raises:
        RunNotFound: when there is no such run.
    """
    mark_interrupted_runs(workspace)
    return _fetch_run(workspace, run_id)


def _fetch_run(workspace: Workspace, run_id: int) -> RunRecord:
    with workspace.transaction() as con:
        row = con.execute("SELECT * FROM runs WHERE id = ?", (int(run_id),)).fetchone()
    if row is None:
        raise RunNotFound(f"No run {run_id} in this workspace ({workspace.path}).")
    return _row_to_run(row)


def epochs(workspace: Workspace, run_id: int) -> list[EpochRecord]:
    """A run's epoch metrics in epoch order."""
    names = [f.name for f in fields(EpochRecord)]
    with workspace.transaction() as con:
        rows = con.execute(f"SELECT {', '.join(names)} FROM epochs WHERE run_id = ? "
                           "ORDER BY epoch", (int(run_id),)).fetchall()
    return [EpochRecord(*row) for row in rows]


# -- references ------------------------------------------------------------------------------

def resolve_run(workspace: Workspace, ref: str | int) -> RunRecord:
    """Find a run from a user's reference.

    Args:
        workspace: this dataset's workspace.
        ref: a run id; 'latest' (the newest run with a checkpoint file on disk that is not
            still running); or 'OTHER_DATA@ID' / 'OTHER_DATA@latest' for a run trained on
            another dataset folder, which is imported here (status 'imported', same
            config, checkpoint in the other workspace). Importing the same run twice
            reuses (and refreshes) the imported row.

    Raises:
        RunNotFound: when nothing matches.
    """
    mark_interrupted_runs(workspace)
    if isinstance(ref, int) or str(ref).strip().isdigit():
        return _fetch_run(workspace, int(ref))
    ref = str(ref).strip()
    if ref == "latest":
        return _latest_usable(workspace)
    if "@" in ref:
        other_root, other_ref = ref.rsplit("@", 1)
        return _import_run(workspace, Path(other_root), other_ref)
    raise RunNotFound(f"Cannot understand run reference {ref!r}: use a run id, 'latest', "
                      f"or OTHER_DATA@ID.")


def _latest_usable(workspace: Workspace) -> RunRecord:
    with workspace.transaction() as con:
        rows = con.execute("SELECT * FROM runs WHERE status != 'running' "
                           "AND checkpoint IS NOT NULL ORDER BY id DESC").fetchall()
    for row in rows:
        run = _row_to_run(row)
        if run.checkpoint is not None and run.checkpoint.is_file():
            return run
    raise RunNotFound(f"No finished run with a checkpoint in {workspace.path}; "
                      f"train one first (diesight train DATA).")


def _import_run(workspace: Workspace, other_root: Path, other_ref: str) -> RunRecord:
    other_root = other_root.expanduser().resolve()
    other_dir = workspace_dir_for(other_root)
    if not (other_dir / "diesight.sqlite").is_file():
        raise RunNotFound(f"{other_root} has no DieSight workspace (no runs): train a model "
                          f"on it first.")
    other_ws = Workspace(other_dir)
    if other_ws.path == workspace.path:
        return resolve_run(workspace, other_ref)
    original = resolve_run(other_ws, other_ref)
    if original.checkpoint is None or not original.checkpoint.is_file():
        raise RunNotFound(f"Run {original.id} of {other_root} has no checkpoint file.")
    source = f"{other_root}@{original.id}"
    copied = {name: getattr(original, name) for name in
              ("best_epoch", "val_auc", "val_loss", "threshold", "escapes", "false_calls",
               "train_seconds", "device", "parameters", "train_prior", "defect_rate",
               "holdout_good", "holdout_bad")}
    with workspace.transaction() as con:
        row = con.execute("SELECT id FROM runs WHERE source = ?", (source,)).fetchone()
        if row is None:
            cur = con.execute(
                "INSERT INTO runs (created_at, model, config_json, status, source) "
                "VALUES (?, ?, ?, 'imported', ?)",
                (_now(), original.model, json.dumps(original.config.to_dict()), source))
            run_id = int(cur.lastrowid)
        else:
            run_id = int(row[0])
    update_run(workspace, run_id, checkpoint=original.checkpoint, config=original.config,
               message=f"Imported from {source} (status there: {original.status})", **copied)
    return _fetch_run(workspace, run_id)


# -- held-out ids ----------------------------------------------------------------------------

def save_validation_ids(workspace: Workspace, run_id: int, image_ids: np.ndarray,
                        holdout_ids: np.ndarray | None = None) -> Path:
    """Write the image ids a run holds out from training (atomically) to its run folder.

    Args:
        image_ids: every held-out id (selection and holdout).
        holdout_ids: the ones among them that calibrate and report (the rest choose the
            epoch). Written first: a run whose validation ids exist always has its roles.
    """
    if holdout_ids is not None:
        _save_ids(workspace.run_dir(run_id) / HOLDOUT_IDS, holdout_ids)
    return _save_ids(workspace.run_dir(run_id) / VALIDATION_IDS, image_ids)


def _save_ids(path: Path, image_ids: np.ndarray) -> Path:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(image_ids, dtype=np.int64))
    with atomic_write(path, "wb") as fh:
        fh.write(buffer.getvalue())
    return path


def _load_ids(path: Path) -> np.ndarray:
    if not path.is_file():
        return np.empty(0, dtype=np.int64)
    return np.load(path, allow_pickle=False).astype(np.int64)


def validation_ids(workspace: Workspace, run_id: int) -> np.ndarray:
    """Every image id a run of this workspace held out from training (selection + holdout).

    Empty for an imported run (none of this dataset's images validated it) or a run
    that has not saved them yet.
    """
    return _load_ids(workspace.run_dir(run_id) / VALIDATION_IDS)


def has_holdout(workspace: Workspace, run_id: int) -> bool:
    """True when the run saved which held-out ids are its holdout (runs since schema 3)."""
    return (workspace.run_dir(run_id) / HOLDOUT_IDS).is_file()


def holdout_ids(workspace: Workspace, run_id: int) -> np.ndarray:
    """The held-out ids a run calibrates and reports on (never used to choose its epoch).

    A run saved before the holdout existed has only its validation ids, which chose its
    epoch too; they are returned as the closest there is.
    """
    if has_holdout(workspace, run_id):
        return _load_ids(workspace.run_dir(run_id) / HOLDOUT_IDS)
    return validation_ids(workspace, run_id)


def selection_ids(workspace: Workspace, run_id: int) -> np.ndarray:
    """The held-out ids that chose a run's best epoch (all of them for an older run)."""
    return np.setdiff1d(validation_ids(workspace, run_id),
                        _load_ids(workspace.run_dir(run_id) / HOLDOUT_IDS))
