"""Client of a job's version service (the scheduler's ``--serve_port``).

The version service exports the committed versions of a model root over ZeroMQ
(docs/protocol.md, "Serving"): ``VERSION_LIST`` (versions with their manifests),
``VERSION_FETCH`` (checksummed chunks of one file) and ``VERSION_WATCH`` (a long
poll answered as soon as a newer version is committed). No shared filesystem is
needed.

    >>> import eddy
    >>> with eddy.VersionServiceClient("tcp://127.0.0.1:7100") as service:
    ...     model = service.read_model()              # the newest version
    ...     for model in service.follow():            # then each new one
    ...         print(model.version, model.metrics)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import zmq

from .crc32c import crc32c
from .errors import DataLossError, NotFoundError
from .model import (Manifest, Model, _empty_model, load_version, materialize, parse_manifest,
                    resolve_chain)
from .proto import eddy_pb2, serving_pb2
from .wire import RpcConnection

__all__ = ["VersionEntry", "VersionServiceClient"]

MAX_WATCH_MS = 60_000  # the service caps a watch at 60 s
DEFAULT_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class VersionEntry:
    """A committed version as the service lists it."""
    version: int
    manifest: Manifest = field(repr=False)
    manifest_bytes: bytes = field(repr=False)

    @property
    def kind(self) -> str:
        return "full" if self.manifest.kind == Manifest.KIND_FULL else "delta"


class VersionServiceClient:
    """Lists, fetches and follows the versions of a version service.

    Also a :class:`eddy.model.VersionSource`, so versions fetched from it are checked
    and materialized exactly like versions read from a directory. Files are fetched
    into memory (nothing is written to disk). Not thread-safe.
    """

    def __init__(self, endpoint: str, timeout_s: float = 10.0,
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES, context: zmq.Context | None = None):
        self.endpoint = endpoint
        self.chunk_bytes = chunk_bytes
        self._rpc = RpcConnection(endpoint, timeout_s, context, what="version service")
        self._entries: dict[int, VersionEntry] = {}

    def close(self) -> None:
        self._rpc.close()

    def __enter__(self) -> "VersionServiceClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- protocol ------------------------------------------------------------

    def _entries_of(self, payload: bytes) -> tuple[list[VersionEntry], int]:
        body = serving_pb2.VersionListReply()
        try:
            body.ParseFromString(payload)
        except Exception as e:
            raise DataLossError(f"version service {self.endpoint}: version list reply does "
                                f"not parse: {e}") from e
        out = []
        for e in body.versions:
            m = parse_manifest(e.manifest, f"of version {e.version} from {self.endpoint}",
                               expect_version=e.version)
            entry = VersionEntry(e.version, m, bytes(e.manifest))
            self._entries[e.version] = entry
            out.append(entry)
        return out, body.newest_version

    def list(self, after_version: int = 0) -> list[VersionEntry]:
        """Committed versions newer than `after_version` (0: all), ascending."""
        body = serving_pb2.VersionListRequest(after_version=after_version)
        reply = self._rpc.call(eddy_pb2.VERSION_LIST, body.SerializeToString())
        entries, _ = self._entries_of(reply.header.payload)
        if after_version == 0:  # a full listing: forget versions deleted since
            self._entries = {e.version: e for e in entries}
        return entries

    def watch(self, after_version: int, timeout_s: float = 10.0) -> list[VersionEntry]:
        """Waits until a version newer than `after_version` is committed (long poll).

        Returns the newer versions, ascending, or [] if none came within `timeout_s`
        (at most 60 s per call, a limit of the service).
        """
        timeout_ms = max(1, min(int(timeout_s * 1000), MAX_WATCH_MS))
        body = serving_pb2.VersionWatchRequest(after_version=after_version,
                                               timeout_ms=timeout_ms)
        reply = self._rpc.call(eddy_pb2.VERSION_WATCH, body.SerializeToString(),
                               timeout_s=timeout_ms / 1000 + self._rpc.timeout_s)
        entries, _ = self._entries_of(reply.header.payload)
        return [e for e in entries if e.version > after_version]

    def fetch(self, version: int, path: str, size: int | None = None) -> bytes:
        """All bytes of file `path` ("manifest.pb" or a manifest's file) of `version`.

        Every chunk's CRC32C is checked (DataLossError: corrupted in transit).
        """
        out = bytearray()
        while size is None or len(out) < size:
            length = self.chunk_bytes if size is None else min(self.chunk_bytes,
                                                               size - len(out))
            body = serving_pb2.VersionFetchRequest(version=version, path=path,
                                                   offset=len(out), length=length)
            reply = self._rpc.call(eddy_pb2.VERSION_FETCH, body.SerializeToString())
            info = serving_pb2.VersionFetchReply()
            info.ParseFromString(reply.header.payload)
            where = f"version {version} file {path} at {len(out)} from {self.endpoint}"
            chunk = reply.values
            if size is None:
                size = info.file_bytes
            elif info.file_bytes != size:
                raise DataLossError(f"{where}: the service has {info.file_bytes} bytes, the "
                                    f"manifest says {size}")
            if info.offset != len(out) or len(chunk) > length or (not chunk and len(out) < size):
                raise DataLossError(f"{where}: unexpected chunk of {len(chunk)} bytes at "
                                    f"{info.offset}")
            if crc32c(chunk) != info.crc32c:
                raise DataLossError(f"{where}: chunk checksum mismatch (corrupted in transit)")
            out += chunk
        return bytes(out)

    # -- VersionSource ---------------------------------------------------------

    def describe(self) -> str:
        return f"version service {self.endpoint}"

    def versions(self) -> list[int]:
        return [e.version for e in self.list()]

    def manifest(self, version: int) -> Manifest:
        entry = self._entries.get(version)
        if entry is None:
            self.list()
            entry = self._entries.get(version)
        if entry is None:
            raise NotFoundError(f"version {version} is not committed at {self.describe()}")
        return entry.manifest

    def read_file(self, version: int, entry: Manifest.FileEntry) -> np.ndarray:
        return np.frombuffer(self.fetch(version, entry.path, entry.bytes), dtype=np.uint8)

    def file_name(self, version: int, entry: Manifest.FileEntry) -> str:
        return f"{entry.path} of version {version} (from {self.endpoint})"

    # -- models ----------------------------------------------------------------

    def chain(self, version: int) -> list[int]:
        """The versions `version` is built from, full version first."""
        return resolve_chain(self, version)

    def read_model(self, version: int | None = None, state: bool = False) -> Model:
        """Fetches and materializes `version` (None: the newest) with its chain."""
        return materialize(self, version, state)

    def follow(self, after_version: int | None = 0, state: bool = False,
               poll_timeout_s: float = 10.0, timeout_s: float | None = None,
               materialize_models: bool = True) -> Iterator[Model | VersionEntry]:
        """Yields each committed version newer than `after_version`, in order, forever.

        `after_version`: 0 starts with every version the service has (the first one
        yielded is materialized from its chain); None starts after the newest one.
        Each new delta is applied to the previous model (a new Model; the old one
        is unchanged); when a version cannot be built from the previous one (a gap:
        versions deleted meanwhile) its chain is read afresh. With
        ``materialize_models=False`` yields :class:`VersionEntry` (manifests only).
        `timeout_s`: stop (StopIteration) when no new version comes for that long.
        Versions are waited for with VERSION_WATCH long polls of `poll_timeout_s`.
        """
        after = after_version
        if after is None:
            committed = self.versions()
            after = committed[-1] if committed else 0
        model: Model = _empty_model()
        idle_since = time.monotonic()
        while True:
            entries = self.watch(after, poll_timeout_s)
            if not entries:
                if timeout_s is not None and time.monotonic() - idle_since > timeout_s:
                    return
                continue
            idle_since = time.monotonic()
            for entry in entries:
                after = entry.version
                if not materialize_models:
                    yield entry
                    continue
                m = entry.manifest
                if m.kind == Manifest.KIND_FULL or (model.version == m.parent_version
                                                    and model.version != 0):
                    model = load_version(self, model, entry.version, state)
                else:
                    model = materialize(self, entry.version, state)
                yield model
