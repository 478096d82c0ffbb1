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


# --- a cheap sink for benchmarks ---------------------------------------------------


class _FastProtocol:
    """One HTTP/1.1 keep-alive connection of `FastSink` (asyncio protocol).

    Parses just enough HTTP/1.1 for webhook POSTs: the request line, headers
    (split on the first colon, names lower-cased), `Content-Length` bodies and
    `Connection: close`. Requests on one connection are answered in order."""

    def __init__(self, sink: FastSink):
        self.sink = sink
        self.buffer = b""
        self.transport = None
        self.busy = False  # an answer is scheduled (latency/timeout modes)

    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc):
        self.transport = None

    def eof_received(self):
        return False

    def pause_writing(self):
        pass

    def resume_writing(self):
        pass

    def data_received(self, data: bytes):
        self.buffer += data
        self._process()

    def _process(self):
        while self.transport is not None and not self.busy:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1").split("\r\n")
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length") or 0)
            if len(self.buffer) < end + 4 + length:
                return  # the rest of the body is still on its way
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            parts = head[0].split(" ")
            path = parts[1] if len(parts) > 1 else "/"
            self._answer(path, headers, body)

    def _answer(self, path, headers, body):
        sink = self.sink
        mode = sink.next_mode()
        sink.record(
            RecordedRequest(path=path, headers=headers, body=body, at=time.time(), mode=mode)
        )
        if mode == "reset":
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.transport.abort()
            return
        close = headers.get("connection", "").lower() == "close"
        delay = sink.latency + (sink.slow_seconds if mode == "timeout" else 0.0)
        response = _fast_response("ok" if mode == "timeout" else mode, close)
        if delay:
            self.busy = True
            sink._loop.call_later(delay, self._send_later, response, close)
        else:
            self._send(response, close)

    def _send_later(self, response, close):
        self.busy = False
        self._send(response, close)
        self._process()

    def _send(self, response, close):
        if self.transport is None:
            return
        self.transport.write(response)
        if close:
            self.transport.close()


_FAST_RESPONSES: dict[tuple[str, bool], bytes] = {}


def _fast_response(mode: str, close: bool) -> bytes:
    """The response bytes for `mode` (cached: a bench answers `ok` 100,000 times)."""
    cached = _FAST_RESPONSES.get((mode, close))
    if cached is not None:
        return cached
    extra = ""
    if mode == "ok":
        status = 200
    elif mode == "redirect":
        status = 302
        extra = "Location: http://169.254.169.254/latest/meta-data/\r\n"
    elif ":" in mode:
        code, retry_after = mode.split(":", 1)
        status = int(code)
        extra = f"Retry-After: {retry_after}\r\n"
    else:
        status = int(mode)
    payload = b"ok" if status < 300 else f"status {status}".encode()
    head = (
        f"HTTP/1.1 {status} {'OK' if status == 200 else 'Status'}\r\n"
        f"Content-Type: text/plain\r\nContent-Length: {len(payload)}\r\n{extra}"
        + ("Connection: close\r\n" if close else "")
        + "\r\n"
    )
    response = head.encode("latin-1") + payload
    _FAST_RESPONSES[(mode, close)] = response
    return response


class FastSink(RecordingSink):
    """`RecordingSink` on one asyncio event loop thread instead of a thread per
    connection and `http.server`'s header parsing: a few tens of microseconds
    of CPU per request, so a benchmark measures the sender, not the sink.
    Same modes, script, `latency` and recording; bodies are read in full
    (a sender cut off mid-body is simply never answered)."""

    def start(self) -> FastSink:
        import asyncio

        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def serve():
            asyncio.set_event_loop(self._loop)
            server = self._loop.run_until_complete(
                self._loop.create_server(lambda: _FastProtocol(self), "127.0.0.1", 0, backlog=512)
            )
            self._fast_server = server
            self._port = server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()
            server.close()
            self._loop.run_until_complete(server.wait_closed())
            self._loop.close()

        self._thread = threading.Thread(target=serve, daemon=True, name="fast-sink")
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        loop = getattr(self, "_loop", None)
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(5)

    @property
    def port(self) -> int:
        return self._port

    def next_mode(self) -> str:
        # Only the loop thread answers; the lock still guards `script()`.
        if not self._script:
            return self.default
        return super().next_mode()
