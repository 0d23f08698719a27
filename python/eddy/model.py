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
import re
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from .crc32c import crc32c
from .errors import DataLossError, FormatVersionError, NotFoundError
from .proto import model_pb2

__all__ = [
    "Manifest", "Model", "ModelDir", "SparseTable", "VersionSource", "read_model",
    "version_dir_name", "parse_version_dir_name", "validate_manifest", "decode_data_file",
    "apply_version",
]

Manifest = model_pb2.Manifest

FORMAT_VERSION = 1
MAGIC = b"EDDYSHRD"
HEADER = struct.Struct("<8sIBBHIIIIQQQII")  # 64 bytes, see docs/model_format.md
HEADER_BYTES = 64
LAYOUT_SPARSE, LAYOUT_DENSE = 1, 2
F32, F16, INT8 = (Manifest.ENCODING_FLOAT32, Manifest.ENCODING_FLOAT16,
                  Manifest.ENCODING_INT8_ROW_SCALE)
ENCODING_NAMES = {F32: "float32", F16: "float16", INT8: "int8"}
MAX_DIM = 1 << 20
MAX_STATE_FLOATS = 2 * (1 << 20) + 64
MAX_DENSE_ELEMENTS = 1 << 40
MAX_MANIFEST_BYTES = 256 << 20
_VERSION_DIR = re.compile(r"v([0-9]{12,})")


def version_dir_name(version: int) -> str:
    """``v`` and the version zero-padded to 12 digits: 42 -> ``v000000000042``."""
    return f"v{version:012d}"


def parse_version_dir_name(name: str) -> int | None:
    """The version of a canonical version directory name, else None (not a version)."""
    m = _VERSION_DIR.fullmatch(name)
    if m is None:
        return None
    v = int(m.group(1))
    return v if v > 0 and version_dir_name(v) == name else None


def _pad8(n: int) -> int:
    return (n + 7) & ~7


def dense_elements(table: Manifest.TableSchema) -> int:
    """Elements of a dense table (product of its shape); 0 for an invalid shape."""
    if not table.shape:
        return 0
    n = 1
    for d in table.shape:
        if d == 0:
            return 0
        n *= d
        if n > MAX_DENSE_ELEMENTS:
            return 0
    return n


def validate_manifest(m: Manifest, where: str = "manifest") -> None:
    """The checks of docs/model_format.md ("Rules a reader checks").

    Raises FormatVersionError for a newer format, DataLossError for anything else.
    """
    if m.format_version == 0:
        raise DataLossError(f"{where}: format_version is missing")
    if m.format_version > FORMAT_VERSION:
        raise FormatVersionError(
            f"{where}: format_version {m.format_version} is newer than this reader supports "
            f"({FORMAT_VERSION}); upgrade the eddy Python package")
    v = f"{where}: version {m.version}"

    def bad(what: str) -> DataLossError:
        return DataLossError(f"{v}: {what}")

    if m.version == 0:
        raise DataLossError(f"{where}: version is 0")
    if m.kind == Manifest.KIND_FULL:
        if m.parent_version != 0:
            raise bad("a full version has a parent")
        if m.base_version != m.version:
            raise bad("a full version's base_version must be itself")
    elif m.kind == Manifest.KIND_DELTA:
        if m.parent_version == 0 or m.parent_version >= m.version:
            raise bad(f"a delta's parent_version {m.parent_version} must be an older version")
        if m.base_version == 0 or m.base_version > m.parent_version:
            raise bad(f"base_version {m.base_version} is not at or below parent_version "
                      f"{m.parent_version}")
    else:
        raise bad(f"unknown kind {m.kind}")
    if not m.tables:
        raise bad("no tables")
    tables: dict[str, Manifest.TableSchema] = {}
    for t in m.tables:
        if not t.name:
            raise bad("a table has an empty name")
        if t.name in tables:
            raise bad(f"table '{t.name}' is listed twice")
        tables[t.name] = t
        if t.value_encoding not in ENCODING_NAMES:
            raise bad(f"table '{t.name}' has no valid value_encoding")
        if t.state_floats_per_value > MAX_STATE_FLOATS:
            raise bad(f"table '{t.name}': state_floats_per_value is too large")
        if m.serving and t.state_floats_per_value != 0:
            raise bad(f"table '{t.name}': a serving version has no optimizer state")
        if t.dense:
            if dense_elements(t) == 0:
                raise bad(f"table '{t.name}': invalid dense shape {list(t.shape)}")
            if t.value_encoding != F32:
                raise bad(f"table '{t.name}': dense tables are stored as float32")
        else:
            if not 1 <= t.dim <= MAX_DIM:
                raise bad(f"table '{t.name}': dim {t.dim} is invalid")
            if t.shape:
                raise bad(f"table '{t.name}': a sparse table has a shape")
    paths: set[str] = set()
    shards: set[tuple[str, int]] = set()
    slices: dict[str, list[tuple[int, int]]] = {}
    for f in m.files:
        fn = f"file '{f.path}'"
        if not _safe_relative_path(f.path):
            raise bad(f"{fn} is not a safe relative path")
        if f.path == "manifest.pb":
            raise bad(f"{fn} is the manifest")
        if f.path in paths:
            raise bad(f"{fn} is listed twice")
        paths.add(f.path)
        t = tables.get(f.table)
        if t is None:
            raise bad(f"{fn} belongs to unknown table '{f.table}'")
        if (f.table, f.shard) in shards:
            raise bad(f"{fn}: table '{f.table}' has two files for shard {f.shard}")
        shards.add((f.table, f.shard))
        if f.bytes < HEADER_BYTES:
            raise bad(f"{fn} is shorter than a header")
        if t.dense:
            if f.tombstones != 0:
                raise bad(f"{fn}: dense file with tombstones")
            if f.offset + f.rows > dense_elements(t):
                raise bad(f"{fn}: slice [{f.offset}, +{f.rows}) is outside the tensor")
            slices.setdefault(f.table, []).append((f.offset, f.offset + f.rows))
        else:
            if f.offset != 0:
                raise bad(f"{fn}: sparse file with an offset")
            if f.tombstones != 0 and m.kind != Manifest.KIND_DELTA:
                raise bad(f"{fn}: tombstones in a full version")
    for name, t in tables.items():
        if not t.dense:
            continue
        covered = 0
        for begin, end in sorted(slices.get(name, [])):
            if begin == end:
                continue  # a server that holds no part of the tensor
            if begin < covered:
                raise bad(f"dense table '{name}' has overlapping slices at {begin}")
            if begin > covered and m.kind == Manifest.KIND_FULL:
                break
            covered = end
        if m.kind == Manifest.KIND_FULL and covered != dense_elements(t):
            raise bad(f"dense table '{name}' is not fully covered ({covered} of "
                      f"{dense_elements(t)} values from offset 0) in a full version")
    workers: set[int] = set()
    for p in m.positions:
        if p.worker in workers:
            raise bad(f"two stream positions for worker {p.worker}")
        workers.add(p.worker)


def _safe_relative_path(path: str) -> bool:
    if not path or path.startswith("/") or "\0" in path:
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


def parse_manifest(data: bytes, where: str, expect_version: int | None = None) -> Manifest:
    """Parses and validates manifest bytes; `where` names them in errors."""
    if not data:
        raise DataLossError(f"manifest {where} is empty")
    if len(data) > MAX_MANIFEST_BYTES:
        raise DataLossError(f"manifest {where} is implausibly large ({len(data)} bytes)")
    m = Manifest()
    try:
        m.ParseFromString(bytes(data))
    except Exception as e:  # google.protobuf.message.DecodeError
        raise DataLossError(f"manifest {where} does not parse: {e}") from e
    validate_manifest(m, f"manifest {where}")
    if expect_version is not None and m.version != expect_version:
        raise DataLossError(f"manifest {where} describes version {m.version}, not "
                            f"{expect_version}")
    return m


# ---------------------------------------------------------------------------
# Data files.

@dataclass
class DecodedFile:
    """One data file: sparse keys/values/state/tombstones or a dense slice."""
    keys: np.ndarray         # uint64 (N,); empty for dense
    values: np.ndarray       # float32 (N, dim) sparse, (N,) dense
    state: np.ndarray | None  # float32 (N, S), or None when not asked for / S = 0
    tombstones: np.ndarray   # uint64 (T,)
    offset: int = 0          # dense: first element


def _check_zero(data: np.ndarray, begin: int, end: int, path: str) -> None:
    if end > begin and data[begin:end].any():
        raise DataLossError(f"model file {path}: non-zero padding at byte {begin}")


def decode_data_file(data: np.ndarray | bytes, entry: Manifest.FileEntry,
                     schema: Manifest.TableSchema, path: str,
                     with_state: bool = False) -> DecodedFile:
    """Checks and decodes one data file (all of its bytes) against its manifest entry.

    Raises DataLossError (naming `path`) for any corruption, FormatVersionError for a
    newer file format. The whole-file CRC32C is checked before any value is used.
    """
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data

    def bad(what: str) -> DataLossError:
        return DataLossError(f"model file {path}: {what}; skip this version (never use part "
                             f"of it) and pick another one")

    size = buf.size
    if size != entry.bytes:
        raise bad(f"has {size} bytes, the manifest says {entry.bytes}")
    if size < HEADER_BYTES:
        raise bad("is shorter than its 64-byte header")
    head = buf[:HEADER_BYTES].tobytes()
    (magic, fmt, layout, encoding, res0, shard, dim, state_floats, res1, rows, tombstones,
     offset, res2, header_crc) = HEADER.unpack(head)
    if magic != MAGIC:
        raise bad("bad magic (not an EDDYSHRD file)")
    if header_crc != crc32c(head[:60]):
        raise bad("header checksum mismatch")
    if fmt > FORMAT_VERSION:
        raise FormatVersionError(f"model file {path} has format version {fmt}, newer than this "
                                 f"reader supports ({FORMAT_VERSION}); upgrade the eddy package")
    if fmt == 0:
        raise bad("format version 0")
    if res0 or res1 or res2:
        raise bad("reserved header bytes are not zero")
    if layout not in (LAYOUT_SPARSE, LAYOUT_DENSE):
        raise bad(f"unknown layout {layout}")
    if encoding not in ENCODING_NAMES:
        raise bad(f"unknown encoding {encoding}")
    if state_floats > MAX_STATE_FLOATS:
        raise bad(f"state_floats {state_floats} is out of range")
    sparse = layout == LAYOUT_SPARSE
    if sparse:
        if not 1 <= dim <= MAX_DIM:
            raise bad(f"dim {dim} is invalid")
        if offset != 0:
            raise bad("sparse file with a dense offset")
    else:
        if dim != 1:
            raise bad(f"dense file with dim {dim} (must be 1)")
        if tombstones != 0:
            raise bad("dense file with tombstones")
        if encoding != F32:
            raise bad("dense file not in float32")
    # The header against the manifest.
    if (not sparse) != schema.dense:
        raise bad(f"is {'sparse' if sparse else 'dense'} but table '{schema.name}' is not")
    if encoding != schema.value_encoding:
        raise bad(f"is {ENCODING_NAMES[encoding]}, the manifest says "
                  f"{ENCODING_NAMES.get(schema.value_encoding, schema.value_encoding)}")
    if sparse and dim != schema.dim:
        raise bad(f"dim {dim}, table says {schema.dim}")
    if state_floats != schema.state_floats_per_value:
        raise bad(f"{state_floats} state floats per value, table says "
                  f"{schema.state_floats_per_value}")
    if (shard, rows, tombstones, offset) != (entry.shard, entry.rows, entry.tombstones,
                                             entry.offset):
        raise bad(f"header (shard {shard}, rows {rows}, tombstones {tombstones}, offset "
                  f"{offset}) disagrees with the manifest")
    # Section sizes (Python ints: no overflow), compared with the size before any allocation.
    n_values = rows * (dim if sparse else 1)
    keys_bytes = 8 * rows if sparse else 0
    scales_bytes = _pad8(4 * rows) if encoding == INT8 else 0
    value_bytes = {F32: 4 * n_values, F16: 2 * n_values, INT8: n_values}[encoding]
    state_bytes = 4 * rows * state_floats
    total = (HEADER_BYTES + keys_bytes + scales_bytes + _pad8(value_bytes) + _pad8(state_bytes)
             + 8 * tombstones)
    if total != size:
        raise bad(f"header describes {total} bytes, file has {size}")
    if crc32c(buf) != entry.crc32c:
        raise bad("is corrupt: CRC32C mismatch")

    pos = HEADER_BYTES
    keys = buf[pos:pos + keys_bytes].view("<u8").astype(np.uint64)
    pos += keys_bytes
    if encoding == INT8:
        scales = buf[pos:pos + 4 * rows].view("<f4").astype(np.float32)
        _check_zero(buf, pos + 4 * rows, pos + scales_bytes, path)
        if not np.all(np.isfinite(scales)) or np.any(scales < 0):
            r = int(np.flatnonzero(~(np.isfinite(scales) & (scales >= 0)))[0])
            raise bad(f"invalid int8 scale in row {r}")
        pos += scales_bytes
        codes = buf[pos:pos + n_values].view(np.int8).reshape(rows, dim)
        values = codes.astype(np.float32) * scales[:, None]  # float32 product, as in C++
    elif encoding == F16:
        values = buf[pos:pos + value_bytes].view("<f2").astype(np.float32)
    else:
        values = buf[pos:pos + value_bytes].view("<f4").astype(np.float32)
    _check_zero(buf, pos + value_bytes, pos + _pad8(value_bytes), path)
    pos += _pad8(value_bytes)
    values = values.reshape(rows, dim) if sparse else values.reshape(rows)
    state = None
    if with_state and state_floats > 0:
        state = buf[pos:pos + state_bytes].view("<f4").astype(np.float32)
        state = state.reshape(rows, state_floats)
    _check_zero(buf, pos + state_bytes, pos + _pad8(state_bytes), path)
    pos += _pad8(state_bytes)
    dead = buf[pos:pos + 8 * tombstones].view("<u8").astype(np.uint64)
    return DecodedFile(keys=keys, values=values, state=state, tombstones=dead, offset=offset)


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
