"""The workspace: one folder per dataset, outside the image folder, holding everything
DieSight derives from it — the decoded-image cache, the SQLite database (images, labels,
splits, runs, scores, flags) and each run's checkpoints and embeddings.

Image folders may sit on read-only shares, so nothing is ever written next to the images.
Workspaces live under ``$DIESIGHT_HOME/workspaces`` (default: the XDG data folder), named
after the folder plus a hash of its absolute path.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
from contextlib import contextmanager
from pathlib import Path

SCHEMA_VERSION = 5

# Migrations by the version they lead to. A future schema change appends an entry;
# opening an older workspace applies the missing ones in order.
_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    -- id is the image's row in the cache file; a row never moves once assigned.
    CREATE TABLE images (
        id INTEGER PRIMARY KEY,
        relpath TEXT NOT NULL UNIQUE,       -- POSIX path relative to the dataset root
        size_bytes INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        label INTEGER,                      -- 1 bad, 0 good, NULL unlabelled (as found)
        split TEXT NOT NULL,                -- train / val / test / unlabelled
        orig_width INTEGER NOT NULL,
        orig_height INTEGER NOT NULL,
        present INTEGER NOT NULL DEFAULT 1  -- 0 once the file vanished from the folder
    );
    CREATE TABLE skipped (relpath TEXT PRIMARY KEY, reason TEXT NOT NULL);
    CREATE TABLE annotations (              -- the user's work; saved as it happens
        image_id INTEGER PRIMARY KEY REFERENCES images(id),
        flagged INTEGER NOT NULL DEFAULT 0,
        flagged_at TEXT,
        user_label INTEGER,                 -- overrides images.label when not NULL
        labelled_at TEXT
    );
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        created_at TEXT NOT NULL,
        model TEXT NOT NULL,
        config_json TEXT NOT NULL,
        status TEXT NOT NULL,               -- running / finished / cancelled / failed / imported
        device TEXT,
        parameters INTEGER,
        best_epoch INTEGER,
        val_auc REAL,
        val_loss REAL,
        threshold REAL,
        escapes INTEGER,
        false_calls INTEGER,
        train_seconds REAL,
        checkpoint TEXT,                    -- path of the best checkpoint
        source TEXT,                        -- for a run imported from another dataset: DATA@ID
        message TEXT
    );
    CREATE TABLE epochs (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        epoch INTEGER NOT NULL,
        train_loss REAL, val_loss REAL, val_auc REAL,
        escapes INTEGER, false_calls INTEGER,
        images_per_s REAL, seconds REAL,
        PRIMARY KEY (run_id, epoch)
    );
    CREATE TABLE scores (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        image_id INTEGER NOT NULL,
        score REAL NOT NULL,                -- defect probability
        PRIMARY KEY (run_id, image_id)
    ) WITHOUT ROWID;
    """,
    # Lots (core.lots): extra image folders scored with this dataset's runs. Their images
    # live in ``images`` like the root's, with the absolute POSIX path as ``relpath``.
    2: """
    CREATE TABLE lots (
        name TEXT PRIMARY KEY,              -- shown as the split 'lot <name>'
        folder TEXT NOT NULL UNIQUE,        -- absolute path of the folder (never written to)
        added_at TEXT NOT NULL
    );
    """,
    # Honest numbers: each score's logit (float64, prior-corrected; probabilities saturate
    # to 1.0 and tie the most confident parts), the priors a run's scores are corrected
    # with, and the size of the holdout its reported figures come from. Rows stored
    # before keep logit NULL (core.score_store derives it from the score).
    3: """
    ALTER TABLE scores ADD COLUMN logit REAL;
    ALTER TABLE runs ADD COLUMN train_prior REAL;    -- bad share of the training draws
    ALTER TABLE runs ADD COLUMN defect_rate REAL;    -- bad share of the labelled images
    ALTER TABLE runs ADD COLUMN holdout_good INTEGER;
    ALTER TABLE runs ADD COLUMN holdout_bad INTEGER;
    """,
    # Content, not only size and mtime (core.dataset): the BLAKE2b-128 of each file's bytes
    # as decoded, and the change time a replacement cannot set back. A score and a flag
    # keep the hash of the picture they were made on, so one made on an earlier picture
    # is known as such. NULL hashes (rows from before) are filled in by the next open.
    4: """
    ALTER TABLE images ADD COLUMN ctime_ns INTEGER;       -- NULL: check the bytes next open
    ALTER TABLE images ADD COLUMN content_hash BLOB;
    ALTER TABLE scores ADD COLUMN content_hash BLOB;      -- the image's, when it was scored
    ALTER TABLE annotations ADD COLUMN flagged_hash BLOB; -- the image's, when it was flagged
    """,
    # A run with a golden weight (core.golden_score) stores its fused logit in ``logit``
    # and the two parts it was fused from, so the viewer can say which one spoke.
    5: """
    ALTER TABLE scores ADD COLUMN network_logit REAL;     -- NULL: the logit is the network's
    ALTER TABLE scores ADD COLUMN golden REAL;            -- the golden-reference score
    """,
}


def diesight_home() -> Path:
    """Root of DieSight's own data (settings aside): ``$DIESIGHT_HOME`` or XDG data dir."""
    env = os.environ.get("DIESIGHT_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(xdg) / "diesight"


def workspace_dir_for(dataset_root: str | os.PathLike) -> Path:
    """The workspace folder of a dataset folder (stable for the same absolute path)."""
    root = Path(dataset_root).expanduser().resolve()
    digest = hashlib.sha1(str(root).encode("utf-8")).hexdigest()[:10]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", root.name)[:40] or "dataset"
    return diesight_home() / "workspaces" / f"{slug}-{digest}"


class Workspace:
    """A dataset's workspace folder and its database.

    Use :meth:`connect` for short transactions; connections are cheap and each thread
    (GUI, workers) opens its own, as SQLite requires.
    """

    def __init__(self, path: str | os.PathLike, dataset_root: str | os.PathLike | None = None):
        self.path = Path(path)
        self.db_path = self.path / "diesight.sqlite"
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._migrate()
            if dataset_root is not None:
                self.set_meta("dataset_root", str(Path(dataset_root).expanduser().resolve()))
        except OSError as exc:  # DIESIGHT_HOME read-only, a file, full, ...
            from core.workspace_guard import WorkspaceError, folder_error_message

            raise WorkspaceError(folder_error_message(self.path, exc)) from None
        except sqlite3.DatabaseError as exc:  # damaged, read-only, full, locked
            from core.workspace_guard import WorkspaceError, database_error_message

            raise WorkspaceError(database_error_message(self.db_path, exc,
                                                        dataset_root)) from None

    @classmethod
    def for_dataset(cls, dataset_root: str | os.PathLike) -> Workspace:
        return cls(workspace_dir_for(dataset_root), dataset_root)

    # -- database ------------------------------------------------------------------
    def connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.db_path, timeout=30)
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA foreign_keys = ON")
        # WAL lets the GUI read while a worker writes scores or a run's epochs.
        con.execute("PRAGMA journal_mode = WAL")
        con.execute("PRAGMA synchronous = NORMAL")
        return con

    @contextmanager
    def transaction(self):
        """A connection whose work is committed on success and rolled back on error."""
        con = self.connect()
        try:
            with con:
                yield con
        finally:
            con.close()

    def schema_version(self) -> int:
        with self.transaction() as con:
            return con.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        with self.transaction() as con:
            current = con.execute("PRAGMA user_version").fetchone()[0]
            if current > SCHEMA_VERSION:
                raise RuntimeError(
                    f"Workspace {self.path} was written by a newer DieSight "
                    f"(schema {current} > {SCHEMA_VERSION}); please upgrade DieSight.")
            for version in range(current + 1, SCHEMA_VERSION + 1):
                con.executescript("BEGIN;" + _MIGRATIONS[version]
                                  + f"; PRAGMA user_version = {version}; COMMIT;")

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        with self.transaction() as con:
            row = con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as con:
            con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # -- files ---------------------------------------------------------------------
    def run_dir(self, run_id: int) -> Path:
        """Folder for one run's checkpoints, embeddings and projections."""
        path = self.path / "runs" / str(run_id)
        path.mkdir(parents=True, exist_ok=True)
        return path
