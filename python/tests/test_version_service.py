"""Following a running job through its version service (eddy_train --serve_port=0).

The job reads its rows from stdin, which a feeder thread keeps writing (the
pipe's back-pressure paces it) until the test has seen enough new versions, so
the job is certainly running while they are followed. Every model yielded over
ZeroMQ must then equal the same version read from the job's directory.
"""

import subprocess
import threading

import numpy as np
import pytest

import eddy
from conftest import TRAIN_FLAGS, binary


def feed(stdin, rows: list[str], stop: threading.Event) -> None:
    try:
        while not stop.is_set():
            for i in range(0, len(rows), 500):
                stdin.write("".join(rows[i:i + 500]))
                if stop.is_set():
                    break
        stdin.close()
    except (BrokenPipeError, ValueError, OSError):
        pass  # the job ended


def test_follow_running_job(bin_dir, data_file, tmp_path, process):
    models = tmp_path / "models"
    job = process([binary("eddy_train"), *TRAIN_FLAGS, "--num_workers=1", "--data=-",
                   f"--model_dir={models}", "--snapshot_every=30ms", "--serve_port=0"],
                  stdin=subprocess.PIPE)
    endpoint = job.wait_for(r"serving model versions to replicas at (tcp://\S+)").group(1)
    rows = data_file.read_text().splitlines(keepends=True)
    stop = threading.Event()
    feeder = threading.Thread(target=feed, args=(job.proc.stdin, rows, stop), daemon=True)
    followed = []
    with eddy.VersionServiceClient(endpoint, timeout_s=10) as service:
        before = service.versions()  # rows not fed yet: at most an empty first version
        feeder.start()
        for model in service.follow(after_version=0, timeout_s=30):
            followed.append(model)
            if len(followed) == 5:
                break
        # Reading over the wire directly, and manifests only.
        newest = service.versions()[-1]
        direct = service.read_model(newest)
        entries = service.list(after_version=followed[0].version)
        assert [e.version for e in entries][:4] == [m.version for m in followed[1:]]
        with pytest.raises(eddy.NotFoundError, match="not committed"):
            service.read_model(10**9)
        with pytest.raises(eddy.errors.RemoteError, match="NOT_FOUND"):
            service.fetch(10**9, "manifest.pb")
    stop.set()
    assert job.proc.wait(60) == 0, job.output()
    feeder.join(10)

    versions = [m.version for m in followed]
    assert versions == sorted(versions) and len(set(versions)) == 5
    assert {m.kind for m in followed} == {"full", "delta"}
    assert len([v for v in versions if v > max(before, default=0)]) >= 4  # committed live
    local = eddy.ModelDir(models)
    for m in followed + [direct]:
        ref = local.read(m.version)
        assert m.chain == ref.chain
        for name, t in ref.sparse.items():
            np.testing.assert_array_equal(m.sparse[name].keys, t.keys)
            np.testing.assert_array_equal(m.sparse[name].values, t.values)
        for name, a in ref.dense.items():
            np.testing.assert_array_equal(m.dense[name], a)


def test_unreachable_service_times_out():
    with eddy.VersionServiceClient("tcp://127.0.0.1:1", timeout_s=0.2) as service:
        with pytest.raises(eddy.DeadlineExceededError, match="is the process running"):
            service.list()
