"""Predictions through a real eddy_serve replica, against its own client mode."""

import pytest

import eddy
from conftest import binary, run


@pytest.fixture(scope="module")
def rows(data_file):
    with open(data_file) as f:
        return [next(f).rstrip("\n") for _ in range(64)]


def test_predict_matches_eddy_serve_client(trained, rows, tmp_path, process):
    root = trained["models"]
    newest = eddy.ModelDir(root).newest()
    serve = process([binary("eddy_serve"), f"--model_dir={root}", "--port=0"])
    endpoint = serve.wait_for(r"predictions on (tcp://\S+)").group(1)
    with eddy.ReplicaClient(endpoint) as replica:
        status = replica.wait_ready(timeout_s=30, min_version=newest)
        assert status.current_version == newest and newest in status.cached_versions
        p = replica.predict(rows)
        assert p.version == newest and p.probabilities.shape == (len(rows),)
        assert ((p.probabilities > 0) & (p.probabilities < 1)).all()

        rows_file = tmp_path / "rows.tsv"
        rows_file.write_text("\n".join(rows) + "\n")
        out = run([binary("eddy_serve"), f"--replica={endpoint}", "--command=predict",
                   f"--rows={rows_file}"]).stdout.splitlines()
        assert out[-1] == f"# version {newest}"
        cpp = [float(x) for x in out[:-1]]
        assert [f"{x:.6f}" for x in p.probabilities] == [f"{x:.6f}" for x in cpp]

        # Without the label column.
        unlabelled = [r.split("\t", 1)[1] for r in rows[:4]]
        q = replica.predict(unlabelled, no_label=True)
        assert q.probabilities.tolist() == p.probabilities[:4].tolist()

        with pytest.raises(eddy.RemoteError, match="INVALID_ARGUMENT"):
            replica.predict(["not a criteo row"])
        with pytest.raises(eddy.NotFoundError):
            replica.predict(rows[:1], version=10**9)

        older = eddy.ModelDir(root).versions()[0]
        assert replica.pin(older).current_version == older
        assert replica.predict(rows[:1]).version == older
        assert replica.unpin().current_version == newest
        status = replica.status()
        assert status.predict_requests >= 4 and status.predict_errors >= 1


def test_replica_not_running():
    with eddy.ReplicaClient("tcp://127.0.0.1:1", timeout_s=0.2) as replica:
        with pytest.raises(eddy.DeadlineExceededError):
            replica.status()
