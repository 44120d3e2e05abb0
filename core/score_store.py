"""Stored scores: each run's defect probabilities and embeddings in a dataset's workspace.

Scores live in the ``scores`` table (one row per run, image id: the probability and the
logit it came from, both float64; for a run with a golden reference also the network's
logit and the golden score it was fused from, :class:`ScoreParts`), embeddings in the run's
folder as ``embeddings.npy`` (float32 (n, D)) + ``embedding_ids.npy`` (int64 (n,)). This
module only stores and reads them, without torch, so ranking, export and ``diesight runs``
stay quick to start; ``core.scoring`` computes them.

Rank and AUC by the logit (:func:`aligned_logits`): a probability carries less and, in
float32, ties every part above a logit of ~16.6. Rows stored before the logit was kept
(schema < 3) get it back from their probability.

Stale scores. Each row keeps the content hash of the image it scored (core.dataset); once
the file is replaced, that score belongs to the old picture. Readers here return only
current scores, so a changed image reads as not scored (NaN when aligned) everywhere, and
:func:`score_freshness` counts what a run has to score again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from core.annotations import now_iso
from core.atomic import atomic_write
from core.dbarrays import align_by_id, query_array
from core.metrics import logit
from core.runs import RunRecord, list_runs, resolve_run
from core.workspace import Workspace

EMBEDDINGS_FILE = "embeddings.npy"
EMBEDDING_IDS_FILE = "embedding_ids.npy"

# A score is current while its image holds the bytes it was scored on. NULL on either side
# (a row from before hashes were kept that no open has settled yet) counts as current.
_CURRENT = ("(s.content_hash IS NULL OR i.content_hash IS NULL "
            "OR s.content_hash = i.content_hash)")
_CURRENT_SCORES = (" FROM scores s LEFT JOIN images i ON i.id = s.image_id "
                   f"WHERE s.run_id = ? AND {_CURRENT} ORDER BY s.image_id")


@dataclass(frozen=True)
class ScoreParts:
    """What a fused logit was made of (core.golden_score), float64 arrays like the scores."""

    network_logits: np.ndarray
    golden: np.ndarray


class NoScoresError(LookupError):
    """A run has not scored this dataset yet (the message says which command does it)."""


def as_run(workspace: Workspace, run: RunRecord | int | str) -> RunRecord:
    """A run record from a record, an id, 'latest', or 'OTHER_DATA@ID' (imported)."""
    return run if isinstance(run, RunRecord) else resolve_run(workspace, run)


def store_scores(workspace: Workspace, run_id: int, image_ids: np.ndarray, scores: np.ndarray,
                 embeddings: np.ndarray, *, logits: np.ndarray | None = None,
                 parts: ScoreParts | None = None) -> None:
    """Replace a run's stored scores and embeddings.

    ``logits`` are the logits the scores came from (default: derived from the scores);
    ``parts`` what a fused logit was made of (a run with a golden weight).

    The two ``.npy`` files are both written to temporary files before either replaces
    its old version, and the table is replaced in one transaction, so readers see either
    the old or the new scores, never a mix of rows.
    """
    image_ids = _checked_lengths(image_ids, scores, embeddings)
    _write_together(workspace, run_id, image_ids, embeddings, image_ids, scores, logits,
                    parts, replace=True)


def merge_scores(workspace: Workspace, run_id: int, image_ids: np.ndarray, scores: np.ndarray,
                 embeddings: np.ndarray, *, logits: np.ndarray | None = None,
                 parts: ScoreParts | None = None) -> None:
    """Add or replace the scores and embeddings of some images, keeping the run's others.

    Used to score only new images (a new lot, core.lots) without scoring the rest again.
    Each file and the table change atomically, as in :func:`store_scores`.

    Raises:
        ValueError: lengths differ, or the embeddings' width differs from the stored ones.
    """
    image_ids = _checked_lengths(image_ids, scores, embeddings)
    embeddings = np.asarray(embeddings, dtype=np.float32)
    try:
        old_ids, old_embeddings = load_embeddings(workspace, run_id, current_only=False)
    except NoScoresError:
        old_ids, old_embeddings = np.zeros(0, np.int64), embeddings[:0]
    if old_embeddings.shape[1:] != embeddings.shape[1:]:
        raise ValueError(f"run {run_id}'s stored embeddings have width "
                         f"{old_embeddings.shape[1:]}, the new ones {embeddings.shape[1:]}")
    keep = ~np.isin(old_ids, image_ids)
    all_ids = np.concatenate([old_ids[keep], image_ids])
    order = np.argsort(all_ids, kind="stable")  # stored ascending by id, like a full pass
    _write_together(workspace, run_id, all_ids[order],
                    np.concatenate([old_embeddings[keep], embeddings])[order],
                    image_ids, scores, logits, parts, replace=False)


def _checked_lengths(image_ids, scores, embeddings) -> np.ndarray:
    image_ids = np.asarray(image_ids, dtype=np.int64)
    if not (len(image_ids) == len(scores) == len(embeddings)):
        raise ValueError("image_ids, scores and embeddings must have the same length")
    # Checked before anything is written: NaN would replace good embeddings, and the
    # table refuses it (a NULL score) only after the embeddings file was replaced.
    if not (np.isfinite(np.asarray(scores, dtype=np.float64)).all()
            and np.isfinite(np.asarray(embeddings, dtype=np.float32)).all()):
        raise ValueError("scores and embeddings must be finite numbers (NaN or inf given: "
                         "a diverged model?); nothing was stored")
    return image_ids


def _write_together(workspace: Workspace, run_id: int, embedding_ids: np.ndarray,
                    embeddings: np.ndarray, image_ids: np.ndarray, scores, logits,
                    parts: ScoreParts | None, *, replace: bool) -> None:
    """Both embedding files written whole (and synced) first, then the score rows in one
    transaction, then the files renamed into place: a full disk or any error before the
    commit leaves the old scores and the old embeddings, both."""
    run_dir = workspace.run_dir(run_id)
    with atomic_write(run_dir / EMBEDDINGS_FILE, "wb") as emb_file, \
            atomic_write(run_dir / EMBEDDING_IDS_FILE, "wb") as ids_file:
        np.save(emb_file, np.asarray(embeddings, dtype=np.float32))
        np.save(ids_file, embedding_ids)
        for fh in (emb_file, ids_file):
            fh.flush()
            os.fsync(fh.fileno())
        _write_scores(workspace, run_id, image_ids, scores, logits, parts, replace=replace)


def _write_scores(workspace: Workspace, run_id: int, image_ids: np.ndarray, scores, logits,
                  parts: ScoreParts | None, *, replace: bool) -> None:
    """Write score rows in one transaction; ``replace`` drops the run's other rows first."""
    scores = np.asarray(scores, dtype=np.float64)
    logits = logit(scores) if logits is None else np.asarray(logits, dtype=np.float64)
    if len(logits) != len(scores):
        raise ValueError("scores and logits must have the same length")
    # SQLite keeps +-inf but not NaN; NULL means "derive it from the score" when read.
    logit_values = [None if np.isnan(v) else v for v in logits.tolist()]
    network, golden = (parts.network_logits.tolist(), parts.golden.tolist()) if parts \
        else ([None] * len(scores),) * 2
    rows = zip([run_id] * len(image_ids), image_ids.tolist(), scores.tolist(), logit_values,
               network, golden, strict=True)
    with workspace.transaction() as con:
        if replace:
            con.execute("DELETE FROM scores WHERE run_id = ?", (run_id,))
        # Each score keeps the hash of the bytes its image holds, to know it stale later.
        con.executemany("INSERT OR REPLACE INTO scores (run_id, image_id, score, logit, "
                        "network_logit, golden, content_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, "
                        "(SELECT content_hash FROM images WHERE id = ?2))", rows)
        con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    (_scored_at_key(run_id), now_iso()))


def _scored_at_key(run_id: int) -> str:
    return f"run:{run_id}:scored_at"


def scored_at(workspace: Workspace, run_id: int) -> str | None:
    """When the run last scored this dataset (ISO 8601 UTC), or None."""
    return workspace.get_meta(_scored_at_key(run_id))


def latest_scored_run(workspace: Workspace):
    """The newest run that has scored this dataset (what a reopened window shows), or None."""
    for run in reversed(list_runs(workspace)):
        if has_scores(workspace, run.id):
            return run
    return None


def has_scores(workspace: Workspace, run_id: int) -> bool:
    """True when the run has stored scores in this workspace."""
    with workspace.transaction() as con:
        return con.execute("SELECT 1 FROM scores WHERE run_id = ? LIMIT 1",
                           (run_id,)).fetchone() is not None


def no_scores_message(run_id: int, data: str = "DATA") -> str:
    """The message for a run without scores, naming the command that makes them."""
    return (f"Run {run_id} has no scores for this dataset yet: "
            f"run `diesight score {data} --run {run_id}` first.")


@dataclass(frozen=True)
class ScoreFreshness:
    """How a run's scores stand against the images the last open found.

    Attributes:
        current: present images scored on the bytes they hold now.
        changed: present images whose file changed since the run scored them.
        new: present images the run has not scored (added since it scored).
    """

    current: int
    changed: int
    new: int

    @property
    def stale(self) -> int:
        """Images whose score is missing or belongs to an earlier picture."""
        return self.changed + self.new


def score_freshness(workspace: Workspace, run_id: int) -> ScoreFreshness:
    """Count the run's current, changed and unscored images among the present ones."""
    with workspace.transaction() as con:
        row = con.execute(
            f"SELECT TOTAL(s.image_id IS NOT NULL AND {_CURRENT}), "
            f"TOTAL(s.image_id IS NOT NULL AND NOT {_CURRENT}), TOTAL(s.image_id IS NULL) "
            "FROM images i LEFT JOIN scores s ON s.image_id = i.id AND s.run_id = ? "
            "WHERE i.present = 1", (int(run_id),)).fetchone()
    return ScoreFreshness(*(int(value) for value in row))


def scored_summary(workspace: Workspace, run_id: int) -> str:
    """'yes', 'no', or 'partly (N stale)' when images changed or came since the run scored
    (as the last open of the folder found them)."""
    if not has_scores(workspace, run_id):
        return "no"
    stale = score_freshness(workspace, run_id).stale
    return f"partly ({stale:,} stale)" if stale else "yes"


def stale_scores_message(freshness: ScoreFreshness, run_id: int, data: str = "DATA") -> str:
    """One line saying how many images a run must score again, and the command."""
    return (f"{freshness.stale:,} image(s) changed or new since run {run_id} scored them "
            f"({freshness.changed:,} changed, {freshness.new:,} new); re-score with "
            f"`diesight score {data} --run {run_id}`")


def changed_since_scored(dataset, run_id: int) -> np.ndarray:
    """Boolean array aligned with the dataset: the run's score is of an earlier picture."""
    return np.isin(dataset.image_ids, _stale_ids(dataset.workspace, run_id))


def _stale_ids(workspace: Workspace, run_id: int) -> np.ndarray:
    """Ids of the images whose file changed since the run scored them."""
    table = query_array(workspace,
                        "SELECT s.image_id FROM scores s JOIN images i ON i.id = s.image_id "
                        f"WHERE s.run_id = ? AND NOT {_CURRENT}", (int(run_id),), columns=1,
                        dtype=np.int64)
    return table[:, 0]


def load_scores(workspace: Workspace, run_id: int) -> tuple[np.ndarray, np.ndarray]:
    """A run's current scores (none for an image whose file changed since it scored).

    Returns:
        (image_ids int64 ascending, scores float64), empty when the run has none.
    """
    table = query_array(workspace, "SELECT s.image_id, s.score" + _CURRENT_SCORES,
                        (int(run_id),), columns=2)
    return table[:, 0].astype(np.int64), table[:, 1].copy()


def load_logits(workspace: Workspace, run_id: int) -> tuple[np.ndarray, np.ndarray]:
    """A run's current logits (prior-corrected; derived from the score for older rows).

    Returns:
        (image_ids int64 ascending, logits float64), empty when the run has none.
    """
    table = query_array(workspace, "SELECT s.image_id, s.score, IFNULL(s.logit, 0), "
                                   "s.logit IS NULL" + _CURRENT_SCORES,
                        (int(run_id),), columns=4)
    logits, missing = table[:, 2].copy(), table[:, 3] == 1
    logits[missing] = logit(table[missing, 1])
    return table[:, 0].astype(np.int64), logits


def aligned_scores(dataset, run_id: int) -> np.ndarray:
    """The run's scores aligned with the dataset's positions (NaN where an image has none).

    Images that appeared, or whose file changed, after the run scored have no score
    until it scores again.

    Raises:
        NoScoresError: the run has not scored this dataset.
    """
    return _aligned(dataset, run_id, load_scores)


def aligned_logits(dataset, run_id: int) -> np.ndarray:
    """The run's logits aligned with the dataset's positions (NaN where an image has none).

    Raises:
        NoScoresError: the run has not scored this dataset.
    """
    return _aligned(dataset, run_id, load_logits)


def _aligned(dataset, run_id: int, load) -> np.ndarray:
    """``load(workspace, run_id)`` -> (ids, values), aligned with the dataset's positions."""
    ids, values = load(dataset.workspace, run_id)
    if len(ids) == 0 and not has_scores(dataset.workspace, run_id):
        raise NoScoresError(no_scores_message(run_id))
    return align_by_id(dataset.image_ids, ids, values, np.nan)


def aligned_parts(dataset, run_id: int) -> ScoreParts | None:
    """The parts of a run's fused logits aligned with the dataset's positions (NaN where an
    image has none); None when the run's scores are the network's alone."""
    fused_only = _CURRENT_SCORES.replace("ORDER BY", "AND s.golden IS NOT NULL ORDER BY")
    table = query_array(dataset.workspace, "SELECT s.image_id, IFNULL(s.network_logit, s.logit), "
                        "s.golden" + fused_only, (int(run_id),), columns=3)
    if len(table) == 0:
        return None
    ids = table[:, 0].astype(np.int64)
    return ScoreParts(*(align_by_id(dataset.image_ids, ids, table[:, c], np.nan)
                        for c in (1, 2)))


def load_embeddings(workspace: Workspace, run_id: int, *,
                    current_only: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A run's stored embeddings (by default without those of images changed since it
    scored them: they place the earlier picture).

    Returns:
        (image_ids int64 (n,), embeddings float32 (n, D)).

    Raises:
        NoScoresError: the run has not scored this dataset.
        ValueError: the two files disagree (written by an interrupted older version).
    """
    run_dir = workspace.path / "runs" / str(run_id)
    emb_path, ids_path = run_dir / EMBEDDINGS_FILE, run_dir / EMBEDDING_IDS_FILE
    if not (emb_path.is_file() and ids_path.is_file()):
        raise NoScoresError(no_scores_message(run_id))
    embeddings = np.load(emb_path, allow_pickle=False)
    ids = np.load(ids_path, allow_pickle=False)
    if embeddings.ndim != 2 or len(embeddings) != len(ids):
        raise ValueError(f"The embeddings of run {run_id} in {run_dir} are inconsistent "
                         f"({embeddings.shape} for {len(ids)} ids); score the run again.")
    ids = ids.astype(np.int64, copy=False)
    if current_only:
        current = ~np.isin(ids, _stale_ids(workspace, run_id))
        if not current.all():
            ids, embeddings = ids[current], embeddings[current]
    return ids, embeddings
