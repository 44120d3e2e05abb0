"""Numpy arrays from workspace tables, and lookups by image id.

Per-image values (scores, labels, flags) are stored by image id; views need them as
arrays aligned with a dataset's positions. Reading 30,000 rows one ``sqlite3.Row`` at a
time and converting them element by element costs a tenth of a second; plain tuples
flattened straight into numpy cost a few milliseconds.
"""

from __future__ import annotations

import itertools

import numpy as np

from core.workspace import Workspace


def query_array(workspace: Workspace, sql: str, params: tuple = (), *, columns: int,
                dtype=np.float64) -> np.ndarray:
    """The rows of a query as a ``(rows, columns)`` array (NULLs must be mapped in SQL).

    Args:
        workspace: the workspace to read.
        sql: a SELECT returning exactly ``columns`` numeric columns.
        params: the query's parameters.
        columns: how many columns the query returns.
        dtype: the array's dtype (float64 holds ids up to 2**53 exactly).
    """
    with workspace.transaction() as con:
        con.row_factory = None  # plain tuples: far faster than sqlite3.Row for bulk reads
        rows = con.execute(sql, params).fetchall()
    flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=dtype,
                       count=len(rows) * columns)
    return flat.reshape(len(rows), columns)


def align_by_id(wanted: np.ndarray, ids: np.ndarray, values: np.ndarray,
                fill: float | int) -> np.ndarray:
    """``values`` keyed by ascending ``ids``, looked up at ``wanted`` ids (vectorised).

    Args:
        wanted: the ids to look up (any order).
        ids: ascending, unique ids.
        values: one value per entry of ``ids``.
        fill: the value for ids not in ``ids``.

    Returns:
        Array aligned with ``wanted``, of a dtype holding both ``values`` and ``fill``.
    """
    wanted = np.asarray(wanted, dtype=np.int64)
    values = np.asarray(values)
    out = np.full(len(wanted), fill, dtype=np.result_type(values.dtype, np.asarray(fill).dtype))
    if len(ids) == 0:
        return out
    where = np.clip(np.searchsorted(ids, wanted), 0, len(ids) - 1)
    found = ids[where] == wanted
    out[found] = values[where[found]]
    return out
