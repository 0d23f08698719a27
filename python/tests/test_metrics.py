"""--metrics_out of a real job into pandas."""

import json

import eddy.metrics as metrics


def test_load_job_metrics(trained):
    path = trained["metrics"]
    df = metrics.load(path)
    records, events = metrics.load_split(path)
    assert len(df) == len(records) + len(events)
    assert "event" not in records.columns
    for column in ("elapsed_s", "rows", "auc", "logloss", "recent_auc", "server_rows", "final"):
        assert column in records.columns, column
    assert records["final"].iloc[-1] == True  # noqa: E712 (numpy bool)
    assert records["rows"].iloc[-1] == 20000
    assert records["rows"].is_monotonic_increasing
    versions = metrics.events(df, "version")
    assert len(versions) >= 2 and versions["ok"].all()
    assert set(versions["kind"]) == {"full", "delta"}
    assert "auc" not in versions.columns


def test_events_and_a_line_being_written(tmp_path):
    path = tmp_path / "m.jsonl"
    lines = [
        {"elapsed_s": 1.0, "rows": 10, "auc": None, "final": False},
        {"event": "recovery", "phase": "start", "lost": "server 1", "version": 3, "epoch": 1,
         "seconds_down": 0, "rows_replayed": 0},
        {"event": "recovery", "phase": "done", "lost": "server 1", "version": 3, "epoch": 1,
         "seconds_down": 1.5, "rows_replayed": 100},
        {"elapsed_s": 2.0, "rows": 30, "auc": 0.7, "final": True},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + '\n{"elapsed_s": 3.0, "ro')
    records = metrics.records(path)
    assert records["rows"].tolist() == [10, 30]
    assert records["auc"].isna().tolist() == [True, False]
    recoveries = metrics.events(path, "recovery")
    assert recoveries["phase"].tolist() == ["start", "done"]
    assert recoveries["seconds_down"].tolist() == [0, 1.5]
    assert len(metrics.read_lines(path)) == 4
