"""Eddy's wire framing over ZeroMQ (docs/protocol.md, common/message.cc).

Every message is three frames: the ``eddy.proto.Header`` protobuf, the keys
(raw little-endian uint64, or empty) and the values (raw bytes of ``dtype``, or
empty). Requests carry their body in ``Header.payload``; every request is
answered by one ``REPLY`` with the same ``request_id`` and an error in
``status_code`` / ``status_message``.

:class:`RpcConnection` is a synchronous DEALER client: it sends one request,
waits for the reply with the same request id (dropping late replies to
requests that timed out) and raises on an error status.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import zmq

from .errors import DeadlineExceededError, EddyError, UnavailableError, remote_error
from .proto import eddy_pb2

PROTOCOL_VERSION = 1  # eddy::kProtocolVersion

__all__ = ["PROTOCOL_VERSION", "Reply", "RpcConnection"]


@dataclass
class Reply:
    """A decoded REPLY: its header and raw key / value frames."""
    header: eddy_pb2.Header
    keys: bytes
    values: bytes


class RpcConnection:
    """A DEALER socket connected to one Eddy endpoint (a version service or a replica).

    Not thread-safe: use one per thread. Close it (or use it as a context manager)
    when done; it owns its socket, and its ZeroMQ context unless one is given.
    """

    def __init__(self, endpoint: str, timeout_s: float = 10.0,
                 context: zmq.Context | None = None, what: str = "eddy"):
        if not endpoint.startswith(("tcp://", "ipc://", "inproc://")):
            raise ValueError(f"{what}: endpoint '{endpoint}' is not a ZeroMQ endpoint "
                             "(tcp://host:port)")
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.what = what
        self._own_context = context is None
        self._context = context or zmq.Context()
        self._socket = self._context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.connect(endpoint)
        self._ids = itertools.count(1)

    def close(self) -> None:
        """Closes the socket (and the context this object created)."""
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None
            if self._own_context:
                self._context.term()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def call(self, msg_type: int, payload: bytes = b"", timeout_s: float | None = None,
             **header_fields) -> Reply:
        """Sends one request of `msg_type` and returns its REPLY.

        Raises DeadlineExceededError after `timeout_s` (default: the connection's),
        a RemoteError subclass for an error reply, UnavailableError if the socket fails.
        """
        if self._socket is None:
            raise UnavailableError(f"{self.what}: connection to {self.endpoint} is closed")
        timeout = self.timeout_s if timeout_s is None else timeout_s
        header = eddy_pb2.Header(protocol_version=PROTOCOL_VERSION, type=msg_type,
                                 request_id=next(self._ids), payload=payload, **header_fields)
        try:
            self._socket.send_multipart([header.SerializeToString(), b"", b""])
        except zmq.ZMQError as e:
            raise UnavailableError(f"{self.what}: cannot send to {self.endpoint}: {e}") from e
        deadline = time.monotonic() + timeout
        type_name = eddy_pb2.MsgType.Name(msg_type)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self._socket.poll(int(left * 1000) + 1, zmq.POLLIN):
                raise DeadlineExceededError(
                    f"{self.what}: no answer to {type_name} from {self.endpoint} within "
                    f"{timeout:g} s; is the process running and the endpoint right?")
            frames = self._socket.recv_multipart(copy=True)
            if len(frames) != 3:
                continue  # not an Eddy message: ignore, as the C++ client does
            reply = eddy_pb2.Header()
            try:
                reply.ParseFromString(frames[0])
            except Exception:
                continue
            if reply.request_id != header.request_id:
                continue  # the late reply of a request that timed out
            if reply.protocol_version != PROTOCOL_VERSION:
                raise EddyError(f"{self.what}: {self.endpoint} speaks Eddy protocol version "
                                f"{reply.protocol_version}, this client speaks "
                                f"{PROTOCOL_VERSION}; use the matching eddy package")
            if reply.status_code != 0:
                raise remote_error(reply.status_code, reply.status_message,
                                   f"{self.what}: {type_name} to {self.endpoint}")
            return Reply(reply, frames[1], frames[2])
