"""Reading Eddy model versions (docs/model_format.md) into numpy.

A model root holds numbered versions ``v<12 digits>/``, each a ``manifest.pb``
(``eddy.proto.Manifest``) and data files. A version is *full* or a *delta* of
an older one; reading version v means applying its chain (the full version,
then every delta up to v, tombstones before rows). Every file is checked as the
C++ reader checks it (size, header, header CRC, whole-file CRC32C, padding)
and a version that does not check out raises :class:`eddy.errors.DataLossError`.

    >>> import eddy
    >>> model = eddy.read_model("/data/models")          # the newest version
    >>> model.sparse["emb"].lookup([12, 34])              # (2, dim) float32, zeros if absent
    >>> model.dense["mlp"]                                # an ndarray of the table's shape

The same code reads versions from a version service (:mod:`eddy.version_service`):
both go through a :class:`VersionSource`.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Protocol

import numpy as np

from .errors import DataLossError, NotFoundError
# The format's pieces; some are re-exported here (see __all__).
from .format import (ENCODING_NAMES, DecodedFile, Manifest, decode_data_file, dense_elements,
                     parse_manifest, parse_version_dir_name, validate_manifest,
                     version_dir_name)

__all__ = [
    "Manifest", "Model", "ModelDir", "SparseTable", "VersionSource", "read_model",
    "version_dir_name", "parse_version_dir_name", "validate_manifest", "decode_data_file",
    "apply_version",
]


# ---------------------------------------------------------------------------
# The model in memory.

def _member(sorted_keys: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of `ids` in `sorted_keys` and whether each is present."""
    if sorted_keys.size == 0:
        return np.zeros(ids.shape, dtype=np.intp), np.zeros(ids.shape, dtype=bool)
    pos = np.searchsorted(sorted_keys, ids)
    pos = np.minimum(pos, sorted_keys.size - 1)
    return pos, sorted_keys[pos] == ids


def _as_ids(ids: Iterable[int] | np.ndarray | int) -> np.ndarray:
    """`ids` as uint64 (feature ids are unsigned 64-bit); refuses lossy conversions."""
    a = np.asarray(ids)
    if a.dtype.kind == "u":
        return a.astype(np.uint64, copy=False)
    if a.dtype.kind == "i":
        if a.size and a.min() < 0:
            raise ValueError("feature ids are unsigned 64-bit integers; got a negative id")
        return a.astype(np.uint64)
    if a.dtype.kind == "O":  # Python ints beyond int64
        return np.asarray([int(x) for x in a.ravel()], dtype=np.uint64).reshape(a.shape)
    raise TypeError(f"feature ids must be integers (uint64), not {a.dtype}: a float array "
                    "cannot hold every 64-bit id (note that mixing uint64 and int arrays in "
                    "numpy gives float64)")


class SparseTable(Mapping):
    """The rows of one sparse table: a read-only mapping feature id -> float32 row.

    `keys` is sorted (uint64), `values` is (len, dim) float32, `state` the optimizer
    state (len, S) when it was read (``state=True``), else None. Use :meth:`lookup`
    for many ids at once.
    """

    def __init__(self, schema: Manifest.TableSchema, keys: np.ndarray, values: np.ndarray,
                 state: np.ndarray | None):
        self.schema = schema
        self.name: str = schema.name
        self.dim: int = schema.dim
        self.keys = keys
        self.values = values
        self.state = state
        for a in (keys, values, state):
            if a is not None:
                a.flags.writeable = False

    @property
    def encoding(self) -> str:
        """How the values were stored: float32, float16 or int8."""
        return ENCODING_NAMES[self.schema.value_encoding]

    def __len__(self) -> int:
        return int(self.keys.size)

    def __iter__(self) -> Iterator[int]:
        return (int(k) for k in self.keys)

    def __contains__(self, key: object) -> bool:
        try:
            _, found = _member(self.keys, _as_ids([key]))  # type: ignore[list-item]
        except (TypeError, ValueError):
            return False
        return bool(found[0])

    def __getitem__(self, key: int) -> np.ndarray:
        pos, found = _member(self.keys, _as_ids([key]))
        if not found[0]:
            raise KeyError(key)
        return self.values[pos[0]]

    def index(self, ids: Iterable[int] | np.ndarray) -> np.ndarray:
        """Row index of each id in `keys`/`values`, -1 where absent."""
        a = _as_ids(ids)
        pos, found = _member(self.keys, a)
        return np.where(found, pos, -1)

    def lookup(self, ids: Iterable[int] | np.ndarray, return_mask: bool = False):
        """The rows of `ids` as a float32 array of shape ids.shape + (dim,).

        Absent ids read as zero rows (as the trainer and replicas read them); with
        ``return_mask=True`` also returns a boolean array, True where the id is present.
        """
        a = _as_ids(ids)
        pos, found = _member(self.keys, a)
        out = np.zeros(a.shape + (self.dim,), dtype=np.float32)
        if self.values.size:
            out[found] = self.values[pos[found]]
        return (out, found) if return_mask else out

    def lookup_state(self, ids: Iterable[int] | np.ndarray) -> np.ndarray:
        """Optimizer state of `ids` (zeros where absent); needs the model read with state=True."""
        if self.state is None:
            raise ValueError(f"table '{self.name}': optimizer state was not read (read the "
                             "model with state=True; serving versions have none)")
        a = _as_ids(ids)
        pos, found = _member(self.keys, a)
        out = np.zeros(a.shape + (self.state.shape[1],), dtype=np.float32)
        if self.state.size:
            out[found] = self.state[pos[found]]
        return out

    def to_dict(self) -> dict[int, np.ndarray]:
        """A plain dict id -> row (small tables only)."""
        return {int(k): self.values[i] for i, k in enumerate(self.keys)}

    def __repr__(self) -> str:
        return (f"SparseTable('{self.name}', rows={len(self)}, dim={self.dim}, "
                f"encoding={self.encoding}, state={'yes' if self.state is not None else 'no'})")


class Model:
    """One materialized model version.

    Attributes: `version`, `manifest` (the version's ``eddy.proto.Manifest``),
    `chain` (versions applied, full first), `sparse` (name -> :class:`SparseTable`),
    `dense` (name -> float32 ndarray of the table's shape), `dense_state` (name ->
    (*shape, S) float32 array, or None), `attributes`, `metrics`.
    """

    def __init__(self, manifest: Manifest, chain: list[int], sparse: dict[str, SparseTable],
                 dense: dict[str, np.ndarray], dense_state: dict[str, np.ndarray | None],
                 with_state: bool):
        self.manifest = manifest
        self.chain = list(chain)
        self.sparse = sparse
        self.dense = dense
        self.dense_state = dense_state
        self.with_state = with_state

    @property
    def version(self) -> int:
        return self.manifest.version

    @property
    def kind(self) -> str:
        """'full' or 'delta': the kind of the version itself (its chain was applied)."""
        return "full" if self.manifest.kind == Manifest.KIND_FULL else "delta"

    @property
    def parent_version(self) -> int:
        return self.manifest.parent_version

    @property
    def base_version(self) -> int:
        return self.manifest.base_version

    @property
    def serving(self) -> bool:
        return self.manifest.serving

    @property
    def created(self) -> _dt.datetime:
        return _dt.datetime.fromtimestamp(self.manifest.created_unix_ms / 1000, _dt.timezone.utc)

    @property
    def attributes(self) -> dict[str, str]:
        return dict(self.manifest.attributes)

    @property
    def metrics(self) -> dict[str, float]:
        return dict(self.manifest.metrics)

    @property
    def tables(self) -> dict[str, Manifest.TableSchema]:
        return {t.name: t for t in self.manifest.tables}

    def __repr__(self) -> str:
        parts = [f"{n}: {len(t)}x{t.dim}" for n, t in self.sparse.items()]
        parts += [f"{n}: {list(a.shape)}" for n, a in self.dense.items()]
        return (f"Model(version={self.version}, {self.kind}, chain={self.chain}, "
                f"{{{', '.join(parts)}}})")


def _empty_model() -> Model:
    return Model(Manifest(), [], {}, {}, {}, False)


def _apply_sparse(prev: SparseTable | None, schema: Manifest.TableSchema,
                  files: list[DecodedFile], with_state: bool) -> SparseTable:
    """`prev` with the files' tombstones erased and rows upserted, file by file in order."""
    s = schema.state_floats_per_value if with_state else 0
    if prev is None:
        keys = np.zeros(0, dtype=np.uint64)
        values = np.zeros((0, schema.dim), dtype=np.float32)
        state = np.zeros((0, s), dtype=np.float32) if with_state else None
    else:
        keys, values, state = prev.keys, prev.values, prev.state
    ev_keys, ev_seq, ev_row = [], [], []
    row_values, row_state = [], []
    n_rows = 0
    for i, f in enumerate(files):
        # Within a file tombstones come before rows: sequence 2i, then 2i+1.
        if f.tombstones.size:
            ev_keys.append(f.tombstones)
            ev_seq.append(np.full(f.tombstones.size, 2 * i, dtype=np.int64))
            ev_row.append(np.full(f.tombstones.size, -1, dtype=np.int64))
        if f.keys.size:
            ev_keys.append(f.keys)
            ev_seq.append(np.full(f.keys.size, 2 * i + 1, dtype=np.int64))
            ev_row.append(np.arange(n_rows, n_rows + f.keys.size, dtype=np.int64))
            row_values.append(f.values)
            if with_state:
                row_state.append(f.state if f.state is not None
                                 else np.zeros((f.keys.size, s), dtype=np.float32))
            n_rows += f.keys.size
    if not ev_keys:
        return SparseTable(schema, keys, values, state) if prev is None else \
            SparseTable(schema, prev.keys, prev.values, prev.state)
    k = np.concatenate(ev_keys)
    seq = np.concatenate(ev_seq)
    row = np.concatenate(ev_row)
    order = np.lexsort((np.arange(k.size), seq, k))  # by key, then file order
    k, row = k[order], row[order]
    last = np.ones(k.size, dtype=bool)
    last[:-1] = k[1:] != k[:-1]  # the last event of each key decides
    touched, row = k[last], row[last]
    _, hit = _member(touched, keys)
    keep = ~hit
    live = row >= 0
    new_keys = np.concatenate([keys[keep], touched[live]])
    all_values = np.concatenate(row_values) if row_values else values[:0]
    new_values = np.concatenate([values[keep], all_values[row[live]]])
    new_state = None
    if with_state:
        all_state = np.concatenate(row_state) if row_state else state[:0]
        new_state = np.concatenate([state[keep], all_state[row[live]]])
    order = np.argsort(new_keys, kind="stable")
    return SparseTable(schema, new_keys[order], new_values[order],
                       new_state[order] if new_state is not None else None)


def apply_version(model: Model, manifest: Manifest, files: list[DecodedFile],
                  with_state: bool) -> Model:
    """A new Model: `model` with one version applied (`files` decoded in manifest order).

    A full version replaces the model; a delta needs model.version == its parent.
    `model` itself is left unchanged (a reader may keep serving it).
    """
    v = f"version {manifest.version}"
    if manifest.kind == Manifest.KIND_FULL:
        model = _empty_model()
    elif model.version != manifest.parent_version:
        raise NotFoundError(f"{v} is a delta of version {manifest.parent_version} but the model "
                            f"is at version {model.version}")
    by_table: dict[str, list[tuple[Manifest.FileEntry, DecodedFile]]] = {}
    for entry, f in zip(manifest.files, files):
        by_table.setdefault(entry.table, []).append((entry, f))
    sparse: dict[str, SparseTable] = {}
    dense: dict[str, np.ndarray] = {}
    dense_state: dict[str, np.ndarray | None] = {}
    for t in manifest.tables:
        tn = f"{v}: table '{t.name}'"
        own = [f for _, f in by_table.get(t.name, [])]
        if not t.dense:
            prev = model.sparse.get(t.name)
            if prev is not None and (prev.dim != t.dim or prev.schema.state_floats_per_value
                                     != t.state_floats_per_value):
                raise DataLossError(f"{tn} changes dim or state floats from its parent")
            if t.name in model.dense:
                raise DataLossError(f"{tn} changes from dense to sparse")
            sparse[t.name] = _apply_sparse(prev, t, own, with_state)
            continue
        n = dense_elements(t)
        s = t.state_floats_per_value
        prev_values = model.dense.get(t.name)
        if t.name in model.sparse:
            raise DataLossError(f"{tn} changes from sparse to dense")
        if prev_values is None:
            values = np.zeros(n, dtype=np.float32)
            state = np.zeros(n * s, dtype=np.float32) if with_state else None
        else:
            prev_state = model.dense_state.get(t.name)
            prev_schema = model.tables[t.name]
            if prev_values.size != n or prev_schema.state_floats_per_value != s:
                raise DataLossError(f"{tn} changes shape or state floats from its parent")
            values = prev_values.reshape(-1)
            state = prev_state.reshape(-1) if prev_state is not None else None
            if own:  # copy on write: the previous model stays as it was
                values = values.copy()
                state = state.copy() if state is not None else None
        for f in own:
            values[f.offset:f.offset + f.values.size] = f.values
            if state is not None and f.state is not None:
                state[f.offset * s:(f.offset + f.values.size) * s] = f.state.reshape(-1)
        shape = tuple(int(d) for d in t.shape)
        values = values.reshape(shape)
        values.flags.writeable = False
        dense[t.name] = values
        if state is not None:
            state = state.reshape(shape + (s,))
            state.flags.writeable = False
        dense_state[t.name] = state
    chain = [] if manifest.kind == Manifest.KIND_FULL else model.chain
    return Model(manifest, chain + [manifest.version], sparse, dense, dense_state, with_state)


# ---------------------------------------------------------------------------
# Where versions come from: a directory or a version service.

class VersionSource(Protocol):
    """Committed versions and their files (a model root, or a version service)."""

    def describe(self) -> str:
        """Where the versions are, for error messages."""

    def versions(self) -> list[int]:
        """Committed versions, ascending."""

    def manifest(self, version: int) -> Manifest:
        """The validated manifest of a committed version (NotFoundError if not committed)."""

    def read_file(self, version: int, entry: Manifest.FileEntry) -> np.ndarray:
        """All bytes of a data file of `version` as a uint8 array."""

    def file_name(self, version: int, entry: Manifest.FileEntry) -> str:
        """How to name the file in errors."""


def resolve_chain(source: VersionSource, version: int) -> list[int]:
    """The versions to apply for `version`, full version first (NotFoundError naming
    whether `version` itself, a delta or the full version is missing)."""
    committed = source.versions()
    where = source.describe()
    if version not in set(committed):
        below = [v for v in committed if v < version]
        above = [v for v in committed if v > version]
        around = ", ".join(([f"newest below: {below[-1]}"] if below else []) +
                           ([f"oldest above: {above[0]}"] if above else [])) or "no versions"
        raise NotFoundError(f"version {version} is not committed under {where} ({around})")
    committed_set = set(committed)
    chain: list[int] = []
    v, base = version, 0
    while True:
        m = source.manifest(v)
        if base and m.base_version != base:
            raise DataLossError(f"version {v} has base {m.base_version} but its delta "
                                f"{chain[-1]} expects base {base}")
        base = m.base_version
        chain.append(v)
        if m.kind == Manifest.KIND_FULL:
            break
        p = m.parent_version
        if p not in committed_set:
            if p == m.base_version:
                raise NotFoundError(f"version {version} needs full version {p} (the root of its "
                                    f"chain), which is missing under {where}")
            raise NotFoundError(f"version {version} needs delta {p} (parent of {v}), which is "
                                f"missing under {where}: the chain to full version "
                                f"{m.base_version} is broken")
        v = p
    return chain[::-1]


def load_version(source: VersionSource, model: Model, version: int, with_state: bool) -> Model:
    """Applies one version of `source` to `model` (reading and checking its files)."""
    m = source.manifest(version)
    tables = {t.name: t for t in m.tables}
    files = [decode_data_file(source.read_file(version, e), e, tables[e.table],
                              source.file_name(version, e), with_state) for e in m.files]
    return apply_version(model, m, files, with_state)


def materialize(source: VersionSource, version: int | None = None,
                state: bool = False) -> Model:
    """Reads `version` (None: the newest) of `source` with its whole chain."""
    if version is None:
        committed = source.versions()
        if not committed:
            raise NotFoundError(f"no committed versions under {source.describe()}")
        version = committed[-1]
    model = _empty_model()
    for v in resolve_chain(source, version):
        model = load_version(source, model, v, state)
    return model


class ModelDir:
    """A model root directory: ``v<12 digits>/`` version directories (docs/model_format.md)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def describe(self) -> str:
        return str(self.root)

    def versions(self) -> list[int]:
        """Committed versions, ascending (dot-directories and other names are ignored)."""
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            raise NotFoundError(f"model root {self.root} does not exist") from None
        out = []
        for name in names:
            v = parse_version_dir_name(name)
            if v is not None and (self.root / name).is_dir():
                out.append(v)
        return sorted(out)

    def newest(self) -> int | None:
        """The newest committed version, None if there is none."""
        v = self.versions()
        return v[-1] if v else None

    def version_dir(self, version: int) -> Path:
        return self.root / version_dir_name(version)

    def manifest(self, version: int) -> Manifest:
        d = self.version_dir(version)
        path = d / "manifest.pb"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            if not d.is_dir():
                raise NotFoundError(f"model version directory {d} does not exist") from None
            raise DataLossError(f"manifest {path} is missing") from None
        return parse_manifest(data, str(path), expect_version=version)

    def read_file(self, version: int, entry: Manifest.FileEntry) -> np.ndarray:
        path = self.version_dir(version) / entry.path
        try:
            return np.fromfile(path, dtype=np.uint8)
        except FileNotFoundError:
            raise DataLossError(f"model file {path} is missing; skip this version") from None

    def file_name(self, version: int, entry: Manifest.FileEntry) -> str:
        return str(self.version_dir(version) / entry.path)

    def chain(self, version: int) -> list[int]:
        """The versions `version` is built from, full version first."""
        return resolve_chain(self, version)

    def read(self, version: int | None = None, state: bool = False) -> Model:
        """Materializes `version` (None: the newest); `state`: also the optimizer state."""
        return materialize(self, version, state)


def read_model(root: str | os.PathLike, version: int | None = None,
               state: bool = False) -> Model:
    """Reads version `version` (None: the newest) of the model root `root` into numpy.

    Accepts a version directory too (``.../v000000000042``): its root and version.
    """
    p = Path(root)
    v = parse_version_dir_name(p.name)
    if v is not None and (p / "manifest.pb").exists() and version is None:
        return ModelDir(p.parent).read(v, state)
    return ModelDir(p).read(version, state)
