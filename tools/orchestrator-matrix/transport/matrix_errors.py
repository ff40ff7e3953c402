"""What a failed delivery means, by class (issue 13, docs/transport.md "Errors").

A homeserver's error reply carries a Matrix ``errcode`` and ``error`` (client-server API,
"Standard error response"). :func:`failure_from_reply` maps a reply to one class:

- :class:`RateLimited` — 429 / ``M_LIMIT_EXCEEDED``: wait ``retry_after_ms`` (or the
  ``Retry-After`` header), then go on;
- :class:`Unreachable` — network errors, 5xx, replies that are not HTTP or JSON: the round
  stops and the next one retries, with backoff;
- :class:`Rejected` — the *event* is refused (400, 413, ``M_TOO_LARGE``, ``M_BAD_JSON``,
  ``M_NOT_JSON``): it is shrunk or dead-lettered, the rest go on;
- :class:`Refused` — the *client* is refused (401 ``M_UNKNOWN_TOKEN``, 403 ``M_FORBIDDEN``,
  404 on the room): nothing can be delivered until a person fixes the token or the room, so
  delivery stops, reports the errcode and waits for a new token or ``mosaic macp deliver``.
"""

from __future__ import annotations

DEFAULT_RETRY_AFTER_SECONDS = 1.0  # a 429 without retry_after_ms or Retry-After


class DeliveryError(Exception):
    """A request that did not deliver; ``errcode``/``error`` as the homeserver sent them
    (``errcode`` is ``""`` for failures without a Matrix reply)."""

    def __init__(self, error: str, errcode: str = "", status: int | None = None) -> None:
        super().__init__(f"{errcode} {error}".strip() if errcode else error)
        self.errcode = errcode
        self.error = error
        self.status = status

    def describe(self) -> str:
        """One line for people: ``HTTP 403 M_FORBIDDEN: You are not in this room``."""
        head = " ".join(part for part in (f"HTTP {self.status}" if self.status else "", self.errcode) if part)
        return f"{head}: {self.error}" if head else self.error


class Unreachable(DeliveryError):
    """Transient: the homeserver could not be reached or failed (5xx); retry later."""


class RateLimited(DeliveryError):
    """429: ``retry_after`` seconds to wait before the same request may succeed."""

    def __init__(self, error: str, errcode: str, status: int, retry_after: float) -> None:
        super().__init__(error, errcode, status)
        self.retry_after = retry_after


class Rejected(DeliveryError):
    """Permanent for this event (too large, bad JSON): shrink it or set it aside."""


class Refused(DeliveryError):
    """Permanent for this token or room (unknown token, forbidden, no such room, an
    encrypted room): stop until a person acts."""


REJECTED_ERRCODES = frozenset({"M_TOO_LARGE", "M_BAD_JSON", "M_NOT_JSON", "M_INVALID_PARAM"})


def failure_from_reply(status: int, reply: object, retry_after_header: str | None) -> DeliveryError | None:
    """The failure a reply means, or ``None`` for a 2xx status.

    ``reply`` is the decoded JSON body (``None`` when it was not JSON); ``retry_after_header``
    is the ``Retry-After`` header in seconds, if any. Pure.
    """
    if 200 <= status < 300:
        return None
    body = reply if isinstance(reply, dict) else {}
    errcode = str(body.get("errcode") or "")
    error = str(body.get("error") or f"HTTP {status}")
    if status == 429 or errcode == "M_LIMIT_EXCEEDED":
        return RateLimited(error, errcode or "M_LIMIT_EXCEEDED", status, retry_after_seconds(body, retry_after_header))
    if status >= 500 or status in (408, 502, 503, 504):
        return Unreachable(error, errcode, status)
    if status == 413 or errcode in REJECTED_ERRCODES or (status == 400 and errcode != "M_UNKNOWN_TOKEN"):
        return Rejected(error, errcode or ("M_TOO_LARGE" if status == 413 else ""), status)
    return Refused(error, errcode, status)


def retry_after_seconds(body: dict, header: str | None) -> float:
    """How long a 429 asks to wait: ``retry_after_ms`` from the body, else the
    ``Retry-After`` header (seconds), else :data:`DEFAULT_RETRY_AFTER_SECONDS`."""
    millis = body.get("retry_after_ms")
    if isinstance(millis, (int, float)) and not isinstance(millis, bool) and millis >= 0:
        return millis / 1000
    try:
        return max(0.0, float(header)) if header else DEFAULT_RETRY_AFTER_SECONDS
    except ValueError:
        return DEFAULT_RETRY_AFTER_SECONDS
