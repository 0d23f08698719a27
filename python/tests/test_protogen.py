"""The protobuf modules are generated, never committed, and work with this protobuf."""

import subprocess

import google.protobuf

from conftest import REPO
from eddy import _protogen
from eddy.proto import eddy_pb2, model_pb2, serving_pb2


def test_no_generated_files_in_git():
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    assert not [f for f in files if f.endswith("_pb2.py")]


def test_generate_into_a_build_directory(tmp_path):
    written = _protogen.generate(tmp_path / "gen")
    assert sorted(p.name for p in written) == ["eddy_pb2.py", "model_pb2.py", "serving_pb2.py"]
    assert "from . import model_pb2" in (tmp_path / "gen" / "eddy_pb2.py").read_text()
    assert not _protogen.is_stale()


def test_messages_round_trip():
    h = eddy_pb2.Header(protocol_version=1, type=eddy_pb2.VERSION_LIST, payload=b"x")
    assert eddy_pb2.Header.FromString(h.SerializeToString()) == h
    m = model_pb2.Manifest(version=3, kind=model_pb2.Manifest.KIND_DELTA)
    assert serving_pb2.VersionEntry(version=3, manifest=m.SerializeToString()).version == 3
    assert int(google.protobuf.__version__.split(".")[0]) >= 3
