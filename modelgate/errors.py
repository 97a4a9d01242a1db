"""Errors modelgate reports to a person: one line, saying what and where."""

from __future__ import annotations


class ModelgateError(Exception):
    """Base class: an expected failure with a one-line, actionable message.

    The CLI prints ``<label>: <message>`` and exits ``exit_code``: 2 (error) for every failure, but
    for a subclass that is the negative verdict of its command (a refused pull: ``refused``, 1).
    """

    label = "error"
    exit_code = 2


class FetchError(ModelgateError):
    """A source could not be fetched safely (missing, too large, traversal, ...)."""


class PolicyError(ModelgateError):
    """A policy or waiver document is invalid; the message names file, line and field."""


class SignatureError(ModelgateError):
    """A signature or key could not be read (not a verdict: verdicts are evidence)."""


class ServiceError(ModelgateError):
    """An embedded service could not be started, stopped or reached."""


class SettingError(ModelgateError):
    """An environment setting has a value modelgate cannot use; the message names it."""
