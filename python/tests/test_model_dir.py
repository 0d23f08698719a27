"""Reading model versions from a directory, checked against the C++ tools.

The job of the `trained` fixture writes full versions and deltas (with
tombstones: --evict_after_versions=1) with optimizer state. The C++ side:
`eddy_models list --json` (versions, kinds, rows per file), `eddy_models verify
--materialize` (rows of the materialized chain) and `eddy_models export`, which
materializes a chain with the C++ materializer and writes it as one full
version: the Python reader must give exactly the same rows and tensors.
"""

import json
import re
import shutil

import numpy as np
import pytest

import eddy
from conftest import binary, run
from eddy.model import Manifest, version_dir_name


def models_cli(*args):
    return run([binary("eddy_models"), *args]).stdout


@pytest.fixture(scope="module")
def root(trained):
    return trained["models"]


@pytest.fixture(scope="module")
def listing(root):
    return json.loads(models_cli("list", f"--model_dir={root}", "--json"))


def test_versions_match_eddy_models_list(root, listing):
    d = eddy.ModelDir(root)
    assert d.versions() == [e["version"] for e in listing]
    kinds = {e["kind"] for e in listing}
    assert kinds == {"full", "delta"}, "the job should write full versions and deltas"
    assert any(t["tombstones"] > 0 for e in listing for t in e["tables"].values()), \
        "the job should write tombstones (eviction)"
    for e in listing:
        m = d.manifest(e["version"])
        assert ("full" if m.kind == Manifest.KIND_FULL else "delta") == e["kind"]
        assert m.parent_version == e["parent"] and m.base_version == e["base"]
        for name, t in e["tables"].items():
            files = [f for f in m.files if f.table == name]
            assert sum(f.rows for f in files) == t["rows"]
            assert sum(f.tombstones for f in files) == t["tombstones"]


def test_rows_match_cpp_materializer(root, listing):
    d = eddy.ModelDir(root)
    for e in listing:
        v = e["version"]
        out = models_cli("verify", f"--model_dir={root}", f"--version={v}", "--materialize")
        cpp = dict(re.findall(r"(\w+)=(\d+) (?:rows|values)", out.split("materialized")[1]))
        model = d.read(v)
        assert model.chain == d.chain(v)
        for name, n in cpp.items():
            got = len(model.sparse[name]) if name in model.sparse else model.dense[name].size
            assert got == int(n), f"version {v} table {name}"


@pytest.mark.parametrize("encoding", ["float32", "fp16", "int8"])
def test_values_match_cpp_export(root, listing, tmp_path, encoding):
    """Each version's chain, materialized by C++ and exported, equals the Python chain."""
    d = eddy.ModelDir(root)
    versions = [e["version"] for e in listing]
    # Every delta (chains of length 2 and 3) and a full version; a few to stay quick.
    picked = [v for v in versions if d.manifest(v).kind == Manifest.KIND_DELTA][:3] + [versions[0]]
    for v in picked:
        models_cli("export", f"--model_dir={root}", f"--version={v}", f"--to={tmp_path}",
                   f"--encoding={encoding}")
        exported = eddy.read_model(tmp_path, v)
        assert exported.serving and exported.chain == [v]
        ours = d.read(v, state=True)
        assert exported.attributes == ours.attributes
        assert set(exported.sparse) == set(ours.sparse)
        for name, table in ours.sparse.items():
            cpp = exported.sparse[name]
            assert cpp.encoding == ("float32" if encoding == "float32" else
                                    "float16" if encoding == "fp16" else "int8")
            np.testing.assert_array_equal(cpp.keys, table.keys)
            if encoding == "float32":
                np.testing.assert_array_equal(cpp.values, table.values)  # bit for bit
            elif encoding == "fp16":
                np.testing.assert_array_equal(cpp.values,
                                              table.values.astype(np.float16).astype(np.float32))
            else:
                scale = np.abs(table.values).max(axis=1, keepdims=True) / 127
                assert np.all(np.abs(cpp.values - table.values) <= scale / 2 * 1.001 + 1e-12)
            assert table.state is not None and table.state.shape == (len(table), 10)
            assert cpp.state is None
            # Lookups: present ids give their rows, absent ones zeros and a False mask.
            ids = np.concatenate([table.keys[::97], np.array([1, 2, 3], dtype=np.uint64)])
            rows, mask = table.lookup(ids, return_mask=True)
            assert mask.tolist() == [True] * (len(ids) - 3) + [False] * 3
            np.testing.assert_array_equal(rows[:-3], table.values[::97])
            assert not rows[-3:].any()
            k = int(table.keys[0])
            assert k in table and 1 not in table
            np.testing.assert_array_equal(table[k], table.values[0])
        for name, tensor in ours.dense.items():
            np.testing.assert_array_equal(exported.dense[name], tensor)
            assert ours.dense_state[name] is not None
        shutil.rmtree(tmp_path / version_dir_name(v))


def test_incremental_delta_equals_fresh_chain(root, listing):
    """Applying a delta to the parent's Model gives the same as reading its chain."""
    from eddy.model import load_version
    d = eddy.ModelDir(root)
    for e in listing:
        if e["kind"] != "delta":
            continue
        parent = d.read(e["parent"])
        before = {n: t.values.copy() for n, t in parent.sparse.items()}
        step = load_version(d, parent, e["version"], with_state=False)
        fresh = d.read(e["version"])
        for name in fresh.sparse:
            np.testing.assert_array_equal(step.sparse[name].keys, fresh.sparse[name].keys)
            np.testing.assert_array_equal(step.sparse[name].values, fresh.sparse[name].values)
            np.testing.assert_array_equal(parent.sparse[name].values, before[name])  # unchanged


@pytest.fixture
def copy_root(root, tmp_path):
    dst = tmp_path / "models"
    shutil.copytree(root, dst)
    return dst


def newest_delta(d):
    return next(v for v in reversed(d.versions()) if d.manifest(v).kind == Manifest.KIND_DELTA)


def test_corrupt_file_is_refused(copy_root):
    d = eddy.ModelDir(copy_root)
    v = newest_delta(d)
    entry = max(d.manifest(v).files, key=lambda f: f.bytes)
    path = d.version_dir(v) / entry.path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(eddy.DataLossError, match=r"CRC32C mismatch") as e:
        d.read(v)
    assert entry.path in str(e.value) and "skip this version" in str(e.value)
    # The C++ tool agrees.
    p = run([binary("eddy_models"), "verify", f"--model_dir={copy_root}", f"--version={v}"],
            check=False)
    assert p.returncode != 0 and "CRC32C" in p.stdout + p.stderr
    # A truncated file: its size disagrees with the manifest.
    path.write_bytes(bytes(data[:-8]))
    with pytest.raises(eddy.DataLossError, match=r"bytes, the manifest says"):
        d.read(v)


def test_newer_format_and_broken_chain(copy_root):
    d = eddy.ModelDir(copy_root)
    v = newest_delta(d)
    m = d.manifest(v)
    manifest_path = d.version_dir(v) / "manifest.pb"
    original = manifest_path.read_bytes()
    m.format_version = 2
    manifest_path.write_bytes(m.SerializeToString())
    with pytest.raises(eddy.FormatVersionError, match="upgrade"):
        d.read(v)
    manifest_path.write_bytes(original)
    shutil.rmtree(d.version_dir(m.parent_version))
    with pytest.raises(eddy.NotFoundError, match=f"needs (delta|full version) {m.parent_version}"):
        d.read(v)
    with pytest.raises(eddy.NotFoundError, match="is not committed"):
        d.read(10**9)
    with pytest.raises(eddy.NotFoundError, match="does not exist"):
        eddy.ModelDir(copy_root / "nope").versions()


def test_ignores_names_that_are_not_versions(copy_root):
    d = eddy.ModelDir(copy_root)
    before = d.versions()
    for name in (".v000000000099.tmp-0123", "v99", "v0000000000099", "v000000000000", "pins"):
        (copy_root / name).mkdir(exist_ok=True)
    assert d.versions() == before
    assert eddy.read_model(d.version_dir(before[-1])).version == before[-1]
