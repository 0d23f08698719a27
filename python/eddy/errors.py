"""Exceptions of the Eddy Python client.

They mirror the C++ status codes a reader must expect (docs/model_format.md,
"Errors a reader must expect") so that callers can react the same way: skip a
corrupt version (:class:`DataLossError`), pick another one
(:class:`NotFoundError`), upgrade (:class:`FormatVersionError`) or retry
(:class:`UnavailableError`, :class:`DeadlineExceededError`).
"""

from __future__ import annotations

# eddy::StatusCode (common/status.h) -> name.
STATUS_NAMES = {
    0: "OK", 1: "INVALID_ARGUMENT", 2: "NOT_FOUND", 3: "ALREADY_EXISTS",
    4: "FAILED_PRECONDITION", 5: "OUT_OF_RANGE", 6: "UNAVAILABLE", 7: "DEADLINE_EXCEEDED",
    8: "ABORTED", 9: "DATA_LOSS", 10: "RESOURCE_EXHAUSTED", 11: "INTERNAL",
    12: "UNIMPLEMENTED", 13: "CANCELLED",
}


class EddyError(Exception):
    """Base class of every error raised by this package."""


class DataLossError(EddyError):
    """A version or file is corrupt (checksum, size, header, inconsistent manifest).

    Skip this version; never use part of it.
    """


class NotFoundError(EddyError):
    """A version, a delta of its chain or its full version is not committed (or was deleted)."""


class FormatVersionError(EddyError):
    """The data was written in a newer format version than this reader supports: upgrade."""


class UnavailableError(EddyError):
    """The peer cannot answer now (no version loaded yet, socket closed): retry later."""


class DeadlineExceededError(EddyError, TimeoutError):
    """No answer within the timeout: is the endpoint right and the process running?"""


class RemoteError(EddyError):
    """An error REPLY from a replica or version service: `code` is the eddy::StatusCode."""

    def __init__(self, code: int, message: str, what: str = ""):
        self.code = code
        self.code_name = STATUS_NAMES.get(code, f"CODE_{code}")
        self.remote_message = message
        super().__init__(f"{what}{': ' if what else ''}{self.code_name}: {message}")


class RemoteNotFoundError(RemoteError, NotFoundError):
    """The remote side answered NOT_FOUND."""


class RemoteUnavailableError(RemoteError, UnavailableError):
    """The remote side answered UNAVAILABLE (e.g. a replica before its first version)."""


class RemoteDataLossError(RemoteError, DataLossError):
    """The remote side answered DATA_LOSS."""


def remote_error(code: int, message: str, what: str = "") -> RemoteError:
    """The RemoteError subclass for `code`."""
    cls = {2: RemoteNotFoundError, 6: RemoteUnavailableError, 9: RemoteDataLossError}.get(
        code, RemoteError)
    return cls(code, message, what)
