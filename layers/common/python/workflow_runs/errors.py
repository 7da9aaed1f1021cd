"""Typed domain errors. The HTTP layer maps each to one status code in one place."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a caller may see. `details` is safe to show to the caller."""

    code = "InternalError"

    def __init__(self, details: str | list[str]):
        super().__init__(details if isinstance(details, str) else "; ".join(details))
        self.details = details


class ValidationFailed(DomainError):
    code = "ValidationError"


class Unauthorized(DomainError):
    code = "Unauthorized"


class Forbidden(DomainError):
    code = "Forbidden"


class NotFound(DomainError):
    code = "NotFound"


class Conflict(DomainError):
    code = "Conflict"


class PayloadTooLarge(DomainError):
    code = "PayloadTooLarge"


class Unavailable(DomainError):
    """DynamoDB stayed throttled or contended through every retry; nothing was changed.

    Retryable by the caller: the API answers 503 with `Retry-After`, the step runner lets
    the state machine's Retry take it (its class name is what the ASL matches), the
    projector fails the batch so the event source mapping retries it."""

    code = "Unavailable"
    retry_after_seconds = 1


class TooManyRequests(DomainError):
    """A limit was reached (a tenant's open streams): try again after `retry_after_seconds`."""

    code = "TooManyRequests"

    def __init__(self, details: str | list[str], retry_after_seconds: int = 10):
        super().__init__(details)
        self.retry_after_seconds = retry_after_seconds


class TransitionRejected(Exception):
    """A status write whose condition (the old status) no longer held: someone else won.
    Never raised for a conflict or a throttle: those are retried, then `Unavailable`."""
