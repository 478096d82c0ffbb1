"""The outside world of a simulation: a real local HTTP server on 127.0.0.1.

Two receivers on one server:
- `/baton-webhooks`: the partner's webhook receiver. Inside an outage window
  (`fake.down`) it answers 503 with `Retry-After`; a `slow` share of answers
  take `slow_seconds` and a fifth of those end in 504 (the partner's gateway
  timing out), which Baton retries.
- `/messages`: the customer's messaging tool behind Baton's `webhook`
  channel connector. It answers `{"status": "delivered"}`, or 422
  (undeliverable) for a `msgfail` share of (participant, template, channel).

Decisions are a hash of the seed and what was received, never the order in
which threads arrive, so a run is deterministic for a given seed. Only the
far side of the network is fake; Baton's delivery code is real.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def share(seed: int, *parts) -> float:
    """A stable pseudo-random number in [0, 1) for `parts`."""
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class PartnerFake:
    def __init__(
        self,
        *,
        seed: int,
        slow_share: float = 0.0,
        slow_seconds: float = 0.25,
        msgfail_share: float = 0.0,
    ):
        self.seed = seed
        self.slow_share = slow_share
        self.slow_seconds = slow_seconds
        self.msgfail_share = msgfail_share
        self.down = False
        self.received = Counter()
        self.webhook_ids: set[str] = set()
        self._seen = Counter()
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if self.path.startswith("/messages"):
                    status, answer = fake._message(body)
                else:
                    status, answer = fake._webhook(self.headers.get("webhook-id", ""))
                data = json.dumps(answer).encode() if answer is not None else b""
                self.send_response(status)
                if status == 503:
                    self.send_header("Retry-After", "60")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _webhook(self, webhook_id: str):
        with self._lock:
            self._seen[webhook_id] += 1
            attempt = self._seen[webhook_id]
            if self.down:
                self.received["webhook_down"] += 1
                return 503, None
        roll = share(self.seed, "slow", webhook_id, attempt)
        if roll < self.slow_share:
            time.sleep(self.slow_seconds)
            if roll < self.slow_share / 5:
                with self._lock:
                    self.received["webhook_timeout"] += 1
                return 504, None
        with self._lock:
            self.received["webhook_ok"] += 1
            self.webhook_ids.add(webhook_id)
        return 204, None

    def _message(self, body: bytes):
        try:
            payload = json.loads(body)
        except ValueError:
            payload = {}
        key = (payload.get("participant_ref"), payload.get("template_key"), payload.get("channel"))
        failed = share(self.seed, "msg", *key) < self.msgfail_share
        with self._lock:
            self.received["message_failed" if failed else "message_ok"] += 1
        if failed:
            return 422, {"error": "unreachable"}
        return 200, {"status": "delivered"}

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/baton-webhooks"

    @property
    def messages_url(self) -> str:
        return f"{self.base_url}/messages"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
