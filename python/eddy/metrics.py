"""``eddy_train --metrics_out`` JSON lines into pandas.

The file holds one JSON object per line (job/train_progress.cc, tools/eddy_train.cc):

* progress **records**, about once per ``--progress_interval_ms``: ``elapsed_s``,
  ``rows``, ``rows_per_s``, ``auc``, ``logloss``, ``calibration``, ``ctr``,
  ``recent_*``, ``replayed_rows``, ``skipped_rows``, ``batches``, ``bad_rows``,
  ``dropped_features``, ``wait_s``, ``compute_s``, ``data_wait_s``, ``eval_*``
  (with ``--eval_from_rows``), ``staleness_*``, ``age_*`` and their histograms,
  ``server_rows``, ``server_memory_bytes``, ``admitted_ids``, ``waiting_ids``,
  ``pending_pushes``, Kafka's ``stream_lag``, ``freshness_s``, ``partitions``,
  ``workers`` and ``final`` (true on the last record, written at the end);
* **events**, with an ``event`` key: ``{"event":"version", "version", "ok",
  "kind", "rows", "bytes", "pause_ms", "cut_window_ms", "write_s", "total_s"}``
  for each model version, ``{"event":"recovery", "phase":"start"|"done",
  "lost", "version", "epoch", "seconds_down", "rows_replayed"}`` for recoveries.

Metrics that are not defined yet (e.g. AUC before any click) are ``null`` (NaN
in pandas). A last line cut short by a job still writing is skipped.

    >>> from eddy import metrics
    >>> records, events = metrics.load_split("metrics.jsonl")
    >>> records.plot(x="rows", y="recent_auc")
    >>> events[events.event == "version"]
"""

from __future__ import annotations

import json
import os
from typing import Any

__all__ = ["read_lines", "load", "load_split", "records", "events"]


def read_lines(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every JSON object of the file, in order (no pandas needed).

    A malformed line raises ValueError naming it, except the last one, which a
    running job may be writing.
    """
    out: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            if i == last:
                break  # cut short by a job still writing it
            raise ValueError(f"{path}:{i + 1}: not a JSON object: {e}") from e
        if not isinstance(obj, dict):
            raise ValueError(f"{path}:{i + 1}: not a JSON object")
        out.append(obj)
    return out


def _pandas():
    try:
        import pandas as pd
    except ImportError as e:  # pragma: no cover - depends on the installation
        raise ImportError("eddy.metrics needs pandas (apt-get install python3-pandas or "
                          "pip install pandas); eddy.metrics.read_lines works without it") from e
    return pd


def load(path: str | os.PathLike):
    """All lines as one DataFrame, in file order.

    Column ``event`` is NaN for progress records and the event's name ("version",
    "recovery") for events; :func:`records` and :func:`events` split them.
    """
    pd = _pandas()
    rows = read_lines(path)
    df = pd.DataFrame(rows)
    if "event" not in df.columns:
        df["event"] = pd.Series([None] * len(df), dtype=object)
    return df


def records(df_or_path) -> Any:
    """The progress records (lines without ``event``), with the event-only columns dropped."""
    pd = _pandas()
    df = df_or_path if isinstance(df_or_path, pd.DataFrame) else load(df_or_path)
    out = df[df["event"].isna()].dropna(axis=1, how="all")
    return out.drop(columns=["event"], errors="ignore").reset_index(drop=True)


def events(df_or_path, name: str | None = None) -> Any:
    """The events (all, or those named `name`), with the record-only columns dropped."""
    pd = _pandas()
    df = df_or_path if isinstance(df_or_path, pd.DataFrame) else load(df_or_path)
    out = df[df["event"].notna()]
    if name is not None:
        out = out[out["event"] == name]
    return out.dropna(axis=1, how="all").reset_index(drop=True)


def load_split(path: str | os.PathLike):
    """(records, events) DataFrames of a ``--metrics_out`` file."""
    df = load(path)
    return records(df), events(df)
