"""A real Synapse homeserver on 127.0.0.1 for the transport tests and the benchmark.

``make synapse`` installs matrix-synapse from PyPI into ``.cache/synapse`` (its own virtual
environment: its pins must not meet the test tools'). :class:`Synapse` writes a config for
one server (sqlite, a client listener on a free loopback port, no federation, a shared
registration secret, rate limits out of the way unless a test sets one per user), starts it,
and stops it by PID. The helpers speak the client-server and admin APIs with ``http.client``.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

PROJECT = Path(__file__).resolve().parents[1]
SYNAPSE_PYTHON = PROJECT / ".cache" / "synapse" / "bin" / "python"
SECRET = "macp-test-registration-secret"
START_SECONDS = 120
PASSWORD = "correct horse battery staple"

CONFIG = """\
server_name: "localhost"
pid_file: {dir}/homeserver.pid
listeners:
  - port: {port}
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
    resources:
      - names: [client]
        compress: false
database:
  name: sqlite3
  args:
    database: {dir}/homeserver.db
log_config: {dir}/log.config
media_store_path: {dir}/media
registration_shared_secret: "{secret}"
report_stats: false
macaroon_secret_key: "macaroon-{secret}"
form_secret: "form-{secret}"
signing_key_path: {dir}/signing.key
trusted_key_servers: []
suppress_key_server_warning: true
enable_metrics: false
url_preview_enabled: false
presence:
  enabled: false
rc_message: {{per_second: {message_rate}, burst_count: {message_burst}}}
rc_login:
  address: {{per_second: 10000, burst_count: 10000}}
  account: {{per_second: 10000, burst_count: 10000}}
  failed_attempts: {{per_second: 10000, burst_count: 10000}}
rc_registration: {{per_second: 10000, burst_count: 10000}}
rc_joins:
  local: {{per_second: 10000, burst_count: 10000}}
"""

LOG_CONFIG = """\
version: 1
formatters:
  precise:
    format: '%(asctime)s %(name)s %(levelname)s %(message)s'
handlers:
  file:
    class: logging.FileHandler
    filename: {dir}/homeserver.log
    formatter: precise
root:
  level: WARNING
  handlers: [file]
disable_existing_loggers: false
"""


def available() -> bool:
    """Whether ``make synapse`` installed the homeserver."""
    return SYNAPSE_PYTHON.exists()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Synapse:
    """One homeserver in ``folder``; :meth:`start`, :meth:`stop`, and the API helpers."""

    def __init__(self, folder: Path, message_rate: float = 10000, message_burst: int = 10000) -> None:
        """``message_rate``, ``message_burst``: the server's ``rc_message`` (messages a second
        per user, and the burst), out of the way unless a test sets them."""
        self.dir = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "homeserver.yaml").write_text(
            CONFIG.format(dir=folder, port=self.port, secret=SECRET, message_rate=message_rate, message_burst=message_burst)
        )
        (folder / "log.config").write_text(LOG_CONFIG.format(dir=folder))
        subprocess.run([str(SYNAPSE_PYTHON), "-m", "synapse.app.homeserver", "-c", str(folder / "homeserver.yaml"), "--generate-keys"],
                       check=True, capture_output=True, cwd=folder)

    def start(self) -> None:
        """Start the server and wait (bounded) until it answers ``/versions``."""
        output = (self.dir / "stdout.log").open("ab")
        self.process = subprocess.Popen([str(SYNAPSE_PYTHON), "-m", "synapse.app.homeserver", "-c", str(self.dir / "homeserver.yaml")],
                                        stdout=output, stderr=subprocess.STDOUT, cwd=self.dir, start_new_session=True)
        give_up = time.monotonic() + START_SECONDS
        while time.monotonic() < give_up:
            if self.process.poll() is not None:
                raise RuntimeError(f"synapse exited with {self.process.returncode}: {(self.dir / 'stdout.log').read_text()[-2000:]}")
            try:
                if self.call("GET", "/_matrix/client/versions")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("synapse did not answer within the start bound")

    def stop(self) -> None:
        """Stop the server this object started (TERM, then KILL after a bounded wait)."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    # -- API helpers ---------------------------------------------------------------------

    def call(self, method: str, path: str, body: object = None, token: str | None = None) -> tuple[int, dict]:
        """One request on a new connection; ``(status, JSON reply)``."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            headers = {"Content-Type": "application/json"}
            if token:
                headers["Authorization"] = f"Bearer {token}"
            connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
            response = connection.getresponse()
            return response.status, json.loads(response.read() or b"{}")
        finally:
            connection.close()

    def ok(self, method: str, path: str, body: object = None, token: str | None = None) -> dict:
        status, reply = self.call(method, path, body, token)
        if status != 200:
            raise AssertionError(f"{method} {path}: HTTP {status} {reply}")
        return reply

    def register(self, username: str, admin: bool = False) -> dict:
        """A new user through the shared-secret admin API: ``{"user_id", "access_token", …}``."""
        nonce = self.ok("GET", "/_synapse/admin/v1/register")["nonce"]
        mac = hmac.new(SECRET.encode(), digestmod=hashlib.sha1)
        mac.update(b"\x00".join([nonce.encode(), username.encode(), PASSWORD.encode(), b"admin" if admin else b"notadmin"]))
        return self.ok("POST", "/_synapse/admin/v1/register",
                       {"nonce": nonce, "username": username, "password": PASSWORD, "admin": admin, "mac": mac.hexdigest()})

    def login(self, username: str) -> str:
        """A new access token for ``username`` (a new device, as a re-login gives)."""
        return self.ok("POST", "/_matrix/client/v3/login",
                       {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": username}, "password": PASSWORD})["access_token"]

    def create_room(self, token: str, encrypted: bool = False, invite: tuple[str, ...] = ()) -> str:
        body: dict = {"preset": "private_chat", "invite": list(invite)}
        if encrypted:
            body["initial_state"] = [{"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}]
        return self.ok("POST", "/_matrix/client/v3/createRoom", body, token)["room_id"]

    def join(self, token: str, room_id: str) -> None:
        self.ok("POST", f"/_matrix/client/v3/join/{quote(room_id, safe='')}", {}, token)

    def messages(self, token: str, room_id: str) -> list[dict]:
        """Every ``m.room.message`` event of the room, oldest first."""
        found: list[dict] = []
        start = ""
        room_filter = quote(json.dumps({"types": ["m.room.message"]}), safe="")
        for _ in range(1000):
            page = self.ok("GET", f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/messages?dir=f&limit=500&filter={room_filter}{start}", token=token)
            found.extend(page.get("chunk") or [])
            if not page.get("chunk") or not page.get("end"):
                return found
            start = f"&from={quote(page['end'], safe='')}"
        raise AssertionError("room history did not end")

    def limit_messages(self, admin_token: str, user_id: str, per_second: float, burst: int) -> None:
        """Set ``user_id``'s own message rate limit (Synapse's admin API ``override_ratelimit``)."""
        self.ok("POST", f"/_synapse/admin/v1/users/{quote(user_id, safe='')}/override_ratelimit",
                {"messages_per_second": per_second, "burst_count": burst}, admin_token)
