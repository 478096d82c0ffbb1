"""A recording local HTTP sink for webhook tests and benchmarks (127.0.0.1).

    sink = RecordingSink().start()
    sink.script("500", "timeout", "ok")   # next responses, then `default`
    ... sink.requests -> [RecordedRequest(path, headers, body, at)]
    sink.stop()

Modes: "ok" (200), "<code>" (e.g. "500", "410"), "429:<retry-after>",
"503:<retry-after>", "redirect" (302 to the metadata address), "timeout"
(answers after `slow_seconds`), "reset" (closes the connection abruptly).
`latency` delays every answer (to keep requests in flight in R1).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class RecordedRequest:
    path: str
    headers: dict
    body: bytes
    at: float
    mode: str
    complete: bool = True  # False: the sender vanished mid-body (not a delivery)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out in separate writes: without TCP_NODELAY each
    # keep-alive response waits ~40 ms for the peer's delayed ACK
    disable_nagle_algorithm = True

    def log_message(self, *args):  # keep test output clean
        pass

    def do_POST(self):
        sink: RecordingSink = self.server.sink  # type: ignore[attr-defined]
        length = int(self.headers.get("content-length") or 0)
        try:
            body = self.rfile.read(length) if length else b""
        except OSError:
            body = b""
        complete = len(body) == length
        mode = sink.next_mode() if complete else "aborted"
        sink.record(
            RecordedRequest(
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                at=time.time(),
                mode=mode,
                complete=complete,
            )
        )
        if not complete:
            self.close_connection = True
            return
        if mode == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        if sink.latency:
            time.sleep(sink.latency)
        if mode == "timeout":
            time.sleep(sink.slow_seconds)
            mode = "ok"
        headers = {}
        if mode == "ok":
            status = 200
        elif mode == "redirect":
            status = 302
            headers["Location"] = "http://169.254.169.254/latest/meta-data/"
        elif ":" in mode:
            code, retry_after = mode.split(":", 1)
            status = int(code)
            headers["Retry-After"] = retry_after
        else:
            status = int(mode)
        payload = b"ok" if status < 300 else f"status {status}".encode()
        try:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            pass


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512

    def handle_error(self, request, client_address):
        pass  # senders killed mid-request (R1) reset connections; that is expected


class RecordingSink:
    def __init__(
        self,
        *,
        default: str = "ok",
        slow_seconds: float = 2.0,
        record: bool = True,
        latency: float = 0.0,
    ):
        self.default = default
        self.latency = latency
        self.slow_seconds = slow_seconds
        self._record = record
        self._script: deque[str] = deque()
        self._lock = threading.Lock()
        self.requests: list[RecordedRequest] = []
        self.count = 0
        self._server: ThreadingHTTPServer | None = None

    # -- control --
    def start(self) -> RecordingSink:
        server = _QuietServer(("127.0.0.1", 0), _Handler)
        server.sink = self  # type: ignore[attr-defined]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, *modes: str) -> None:
        with self._lock:
            self._script.extend(modes)

    def next_mode(self) -> str:
        with self._lock:
            return self._script.popleft() if self._script else self.default

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.count += 1
            if self._record:
                self.requests.append(request)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
