"""The on-disk format of Eddy model versions (docs/model_format.md): version
directory names, manifest checks and data-file decoding, as the C++ reader
(model_store/) does them. :mod:`eddy.model` builds models from these pieces.
"""


from __future__ import annotations

import re
import struct
from dataclasses import dataclass

import numpy as np

from .crc32c import crc32c
from .errors import DataLossError, FormatVersionError
from .proto import model_pb2


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
