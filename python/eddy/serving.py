"""Client of an ``eddy_serve`` replica (docs/protocol.md, "Serving").

``PREDICT`` sends rows in the model's text format (manifest attribute
``format``: criteo TSV, libsvm or libffm; with the label column unless
``no_label``) and gets one probability per row and the version that answered.
``SERVE_CONTROL`` reads the replica's status, pins a version, unpins, rolls back.

    >>> import eddy
    >>> with eddy.ReplicaClient("tcp://127.0.0.1:7000") as replica:
    ...     replica.wait_ready()
    ...     p = replica.predict(rows)
    ...     p.probabilities, p.version
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, fields

import numpy as np
import zmq

from .errors import DataLossError, DeadlineExceededError, UnavailableError
from .proto import eddy_pb2, serving_pb2
from .wire import RpcConnection

__all__ = ["Prediction", "ReplicaClient", "ServeStatus"]

_Action = serving_pb2.ServeControlRequest


@dataclass(frozen=True)
class Prediction:
    """The answer to PREDICT: float32 probabilities (one per row) and the version used."""
    version: int
    probabilities: np.ndarray


@dataclass(frozen=True)
class ServeStatus:
    """A replica's state (``eddy.proto.ServeStatus``)."""
    current_version: int = 0   # answering predictions (0: none yet)
    pinned_version: int = 0    # 0: not pinned
    newest_version: int = 0    # newest version loaded from the chain
    cached_versions: tuple[int, ...] = ()
    predict_requests: int = 0
    predicted_rows: int = 0
    predict_errors: int = 0
    versions_loaded: int = 0
    versions_refused: int = 0
    last_error: str = ""       # why the last version was refused
    last_load_seconds: float = 0.0

    @classmethod
    def from_proto(cls, p: serving_pb2.ServeStatus) -> "ServeStatus":
        values = {f.name: getattr(p, f.name) for f in fields(cls)}
        values["cached_versions"] = tuple(p.cached_versions)
        return cls(**values)


class ReplicaClient:
    """A synchronous client of one replica's prediction socket. Not thread-safe."""

    def __init__(self, endpoint: str, timeout_s: float = 10.0,
                 context: zmq.Context | None = None):
        self.endpoint = endpoint
        self._rpc = RpcConnection(endpoint, timeout_s, context, what="replica")

    def close(self) -> None:
        self._rpc.close()

    def __enter__(self) -> "ReplicaClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def predict(self, rows: Iterable[str], version: int = 0, no_label: bool = False) -> Prediction:
        """Click probabilities of `rows` (text lines in the model's training format).

        `version` 0: the version being served; another must be cached by the replica
        (RemoteNotFoundError otherwise). Errors: RemoteError INVALID_ARGUMENT naming a
        malformed row, RemoteUnavailableError before the replica loaded a version.
        """
        rows = [r.rstrip("\n") for r in ([rows] if isinstance(rows, str) else rows)]
        body = serving_pb2.PredictRequest(rows=rows, version=version, no_label=no_label)
        reply = self._rpc.call(eddy_pb2.PREDICT, body.SerializeToString())
        probabilities = np.frombuffer(reply.values, dtype="<f4").astype(np.float32)
        if probabilities.size != len(rows):
            raise DataLossError(f"replica {self.endpoint}: {probabilities.size} probabilities "
                                f"for {len(rows)} rows")
        return Prediction(int(reply.header.version), probabilities)

    def _control(self, action: int, version: int = 0) -> ServeStatus:
        body = serving_pb2.ServeControlRequest(action=action, version=version)
        reply = self._rpc.call(eddy_pb2.SERVE_CONTROL, body.SerializeToString())
        status = serving_pb2.ServeStatus()
        status.ParseFromString(reply.header.payload)
        return ServeStatus.from_proto(status)

    def status(self) -> ServeStatus:
        """The replica's state and counters."""
        return self._control(_Action.STATUS)

    def pin(self, version: int) -> ServeStatus:
        """Serve `version` until :meth:`unpin` (loaded from its chain if needed)."""
        return self._control(_Action.PIN, version)

    def unpin(self) -> ServeStatus:
        """Follow the newest version again."""
        return self._control(_Action.UNPIN)

    def rollback(self, version: int) -> ServeStatus:
        """Pin an older version the replica still holds in memory."""
        return self._control(_Action.ROLLBACK, version)

    def wait_ready(self, timeout_s: float = 30.0, min_version: int = 1) -> ServeStatus:
        """Waits until the replica serves a version >= `min_version`; returns its status.

        Asks STATUS repeatedly (each call waits for the replica's answer, then backs off
        a little). Raises DeadlineExceededError with the replica's last error.
        """
        deadline = time.monotonic() + timeout_s
        backoff = 0.01
        status = None
        while time.monotonic() < deadline:
            try:
                status = self.status()
            except UnavailableError:
                status = None
            if status is not None and status.current_version >= min_version:
                return status
            backoff = min(backoff * 2, 0.2)  # a status poll with a deadline, backing off
            time.sleep(min(backoff, max(0.0, deadline - time.monotonic())))
        raise DeadlineExceededError(
            f"replica {self.endpoint} serves no version >= {min_version} after {timeout_s:g} s"
            + (f" (last error: {status.last_error})" if status and status.last_error else ""))
