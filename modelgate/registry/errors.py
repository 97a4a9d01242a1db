"""Registry errors: one line each, saying what was refused and why."""

from __future__ import annotations

from modelgate.errors import ModelgateError


class RegistryError(ModelgateError):
    """The registry could not be read or written (configuration, access, unreachable server)."""


class RegistryUnavailable(RegistryError):
    """A transient failure talking to the S3 server: retrying may succeed."""


class NotFound(RegistryError):
    """The model, version or alias is not in the registry (or not committed yet)."""


class VersionExists(RegistryError):
    """A version is write-once: it is already published, or another publish holds it."""


class PublishRefused(RegistryError):
    """The publish request itself is not acceptable (not approved, digests disagree, unsafe path)."""


class PullRefused(RegistryError):
    """Pull found something it must not hand to a consumer; ``reason`` is the short cause.

    The verdict of ``pull`` (and of ``registry ls/show`` on a refused index): exit 1, ``refused:``.
    """

    label = "refused"
    exit_code = 1

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class IndexRefused(PullRefused):
    """The model's index is not one a consumer may trust: unsigned, badly signed, rolled back or forked."""
