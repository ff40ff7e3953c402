"""One keep-alive connection to a Matrix homeserver, with a total deadline per request.

:class:`MatrixClient` sends client-server API requests over one ``http.client`` connection
that stays open between requests and rounds (keep-alive), and turns every way a request can
go wrong into one of the failure classes of :mod:`transport.matrix_errors`. The deadline is
an absolute ``time.monotonic()`` value that bounds connecting, sending *and* reading the
whole reply: a server that answers one byte every few seconds is cut off when the deadline
passes, not only when one read stalls (issue 13). Proxies are taken from the environment
as ``urllib`` takes them (``https_proxy`` with a ``CONNECT`` tunnel, ``http_proxy``,
``no_proxy``).
"""

from __future__ import annotations

import http.client
import io
import json
import socket
import time
from typing import Any
from urllib.parse import SplitResult, quote, unquote, urlsplit

from macp.jsontext import loads
from transport.matrix_errors import DeliveryError, Unreachable, failure_from_reply


class DeadlineExceeded(Unreachable):
    """The round's deadline passed while a request was on the wire."""


class _DeadlineReader(io.RawIOBase):
    """A socket's reading side whose every ``recv`` waits at most until ``deadline()``."""

    def __init__(self, sock: socket.socket, deadline) -> None:
        self.sock = sock
        self.deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        self.sock.settimeout(_remaining(self.deadline()))
        return self.sock.recv_into(buffer)


class _DeadlineSocket:
    """What ``http.client`` needs of a socket (``sendall``, ``makefile``, ``close``), with the
    request's deadline applied to every send and receive."""

    def __init__(self, sock: socket.socket, deadline) -> None:
        self.sock = sock
        self.deadline = deadline

    def sendall(self, data: bytes) -> None:
        self.sock.settimeout(_remaining(self.deadline()))
        self.sock.sendall(data)

    def makefile(self, mode: str, *args: Any, **kwargs: Any) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self.sock, self.deadline))

    def close(self) -> None:
        self.sock.close()

    def setsockopt(self, *args: Any) -> None:
        self.sock.setsockopt(*args)


def _remaining(deadline: float) -> float:
    """Seconds left until ``deadline`` (monotonic); raises :class:`DeadlineExceeded` at 0."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded("no answer before the delivery round's deadline")
    return left


class MatrixClient:
    """Requests to ``homeserver`` (``https://host[:port][/prefix]`` or ``http://…``) with
    ``token`` as the bearer token, over one connection kept open between calls."""

    def __init__(self, homeserver: str, token: str) -> None:
        parts = urlsplit(homeserver)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"matrix.homeserver is not an http(s) URL: {homeserver!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        self.token = token
        self.proxy = proxy_for(parts.scheme, self.host)
        self.connection: http.client.HTTPConnection | None = None
        self._deadline = 0.0

    def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def _connect(self) -> http.client.HTTPConnection:
        left = _remaining(self._deadline)
        host, port = (self.proxy.hostname or "", self.proxy.port or 80) if self.proxy else (self.host, self.port)
        if self.scheme == "https":
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(host, port, timeout=left)
            if self.proxy:
                connection.set_tunnel(self.host, self.port, headers=proxy_headers(self.proxy))
        else:
            connection = http.client.HTTPConnection(host, port, timeout=left)
        connection.connect()
        assert connection.sock is not None
        connection.sock = _DeadlineSocket(connection.sock, lambda: self._deadline)
        return connection

    def request(self, method: str, path: str, body: dict | None, deadline: float) -> dict:
        """Send one request and return its JSON reply (a dict) for a 2xx status.

        ``path`` is below the homeserver URL (``/_matrix/client/v3/…``), already quoted;
        ``deadline`` is a ``time.monotonic()`` value. A connection kept open from before that
        the server has meanwhile closed is reopened once (every request MACP sends is
        idempotent). Raises a :class:`~transport.matrix_errors.DeliveryError`: ``RateLimited``,
        ``Refused``, ``Rejected`` from the reply (:func:`failure_from_reply`), ``Unreachable``
        for network errors, 5xx and replies that are not HTTP or not JSON, ``DeadlineExceeded``.
        """
        self._deadline = deadline
        payload = json.dumps(body).encode("ascii") if body is not None else None  # \u escapes: any str encodes
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        target = self.prefix + path
        if self.proxy and self.scheme == "http":  # a plain-HTTP proxy takes the absolute URL
            target = f"http://{self.host}:{self.port}{target}"
            headers.update(proxy_headers(self.proxy))
        for reused in (self.connection is not None, False):
            try:
                if self.connection is None:
                    self.connection = self._connect()
                self.connection.request(method, target, body=payload, headers=headers)
                response = self.connection.getresponse()
                status, raw = response.status, response.read()
                retry_after = response.getheader("Retry-After")
                if response.will_close:
                    self.close()
                break
            except DeadlineExceeded:
                self.close()
                raise
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                self.close()
                if not reused:
                    raise Unreachable(f"{type(exc).__name__}: {exc}") from exc
            except TimeoutError as exc:
                self.close()
                raise DeadlineExceeded("no answer before the delivery round's deadline") from exc
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                reason = "the reply is not HTTP" if isinstance(exc, http.client.HTTPException) else str(exc) or type(exc).__name__
                raise Unreachable(f"{type(exc).__name__}: {reason}") from exc
        try:
            reply = loads(raw or b"{}")
        except ValueError:
            reply = None
        failure = failure_from_reply(status, reply, retry_after)
        if failure is not None:
            raise failure
        if not isinstance(reply, dict):
            raise Unreachable(f"HTTP {status}: the reply is not a JSON object")
        return reply


def proxy_for(scheme: str, host: str) -> SplitResult | None:
    """The proxy the environment names for ``scheme`` (``https_proxy``/``http_proxy``,
    bypassed by ``no_proxy``), as ``urllib`` finds it; ``None`` for a direct connection."""
    from urllib.request import getproxies, proxy_bypass  # here: it costs ~20 ms to import

    if proxy_bypass(host):
        return None
    proxy = getproxies().get(scheme)
    if not proxy:
        return None
    return urlsplit(proxy if "://" in proxy else f"http://{proxy}")


def proxy_headers(proxy: SplitResult) -> dict[str, str]:
    """``Proxy-Authorization`` (basic) for a proxy URL with a user name, else nothing."""
    if not proxy.username:
        return {}
    import base64

    credentials = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}".encode()
    return {"Proxy-Authorization": "Basic " + base64.b64encode(credentials).decode()}


def room_path(room_id: str, tail: str) -> str:
    """``/_matrix/client/v3/rooms/{roomId}/{tail}`` with the room id quoted."""
    return f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/{tail}"


def send_path(room_id: str, txn_id: str) -> str:
    """The path of ``PUT …/send/m.room.message/{txnId}`` (client-server API, "Sending events")."""
    return room_path(room_id, f"send/m.room.message/{quote(txn_id, safe='')}")


__all__ = ["DeadlineExceeded", "DeliveryError", "MatrixClient", "room_path", "send_path"]
