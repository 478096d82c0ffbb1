"""The HTTP side of webhook delivery: one pooled httpx transport per process.

Every send connects to the address the SSRF check resolved (the URL's host
is replaced by the checked IP; `Host` and TLS SNI carry the real name, so
certificates are still verified against it). The caller passes the checked
target (the dispatcher checks once per endpoint and batch); without one,
`send_webhook` checks the URL itself.

Requests go straight to an `httpx.HTTPTransport` (httpx's pooled HTTP/1.1
connection layer) rather than through `httpx.Client`: a webhook POST needs
none of the client's per-request work (cookie jar, auth flow, redirect
handling, event hooks), which cost about 40% of the sender's CPU per
request. By construction redirects are never followed, no cookies are kept
and no proxy from the environment re-routes a request. The timeout is 15 s
(connect, read, write and pool).
"""

from __future__ import annotations

import email.utils
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import httpx

from integrations.ssrf import HostResolutionError, ResolvedTarget, UnsafeURLError, check_url

TIMEOUT_SECONDS = 15.0
SNIPPET_BYTES = 500
MAX_RETRY_AFTER_SECONDS = 24 * 3600

USER_AGENT = "Baton-Webhooks/1.0"

_transport_lock = threading.Lock()
_transport: httpx.HTTPTransport | None = None
_transport_pid: int | None = None


def new_transport(*, max_connections: int = 200) -> httpx.HTTPTransport:
    """A pool of keep-alive connections (no proxies from the environment, no
    retries: the dispatcher's schedule decides when to try again)."""
    return httpx.HTTPTransport(
        trust_env=False,
        retries=0,
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
    )


def http_transport() -> httpx.HTTPTransport:
    """The process-wide connection pool (re-created after a fork: a child
    must not share its parent's sockets)."""
    global _transport, _transport_pid
    pid = os.getpid()
    if _transport is not None and _transport_pid == pid:
        return _transport
    with _transport_lock:
        if _transport is None or _transport_pid != pid:
            _transport = new_transport()
            _transport_pid = pid
        return _transport


@dataclass
class SendResult:
    started_at: datetime
    status_code: int | None = None
    latency_ms: int = 0
    error_class: str = ""
    error: str = ""
    snippet: str = ""
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(tz=UTC))).total_seconds()
    return max(0.0, min(seconds, MAX_RETRY_AFTER_SECONDS))


@lru_cache(maxsize=1024)
def _pinned(url: str, host: str, port: int, scheme: str, address: str, timeout: float):
    """(URL with the checked IP as host, fixed headers, extensions) for one
    target address; cached, since every delivery to an endpoint shares them."""
    default_port = 443 if scheme == "https" else 80
    host_header = host if port == default_port else f"{host}:{port}"
    if ":" in host:  # an IPv6 literal host
        host_header = f"[{host}]" + ("" if port == default_port else f":{port}")
    extensions = {"timeout": {k: timeout for k in ("connect", "read", "write", "pool")}}
    if scheme == "https":
        extensions["sni_hostname"] = host
    fixed = {
        "host": host_header,
        "user-agent": USER_AGENT,
        "content-type": "application/json",
    }
    return httpx.URL(url).copy_with(host=address.split("%", 1)[0]), fixed, extensions


def _pinned_request(target: ResolvedTarget, address: str, headers: dict, body: bytes):
    url, fixed, extensions = _pinned(
        target.url, target.host, target.port, target.scheme, address, TIMEOUT_SECONDS
    )
    return httpx.Request(
        "POST",
        url,
        headers={**headers, **fixed},
        content=body,
        extensions=dict(extensions),  # the cached dict itself is never handed out
    )


def send_webhook(
    *, url: str, headers: dict, body: bytes, target=None, transport=None
) -> SendResult:
    """POST `body` to `url` once; classify the outcome (never raises).
    `transport` defaults to the process-wide pool (`http_transport()`)."""
    started = datetime.now(tz=UTC)
    t0 = time.perf_counter()
    result = SendResult(started_at=started)
    try:
        target = target or check_url(url, for_send=True)
    except HostResolutionError as exc:
        result.error_class, result.error = "dns_error", exc.message
        return result
    except UnsafeURLError as exc:
        result.error_class, result.error = "unsafe_url", exc.message
        return result
    transport = transport or http_transport()
    last_exc: Exception | None = None
    for address in target.addresses:
        request = _pinned_request(target, address, headers, body)
        try:
            response = transport.handle_request(request)
        except httpx.ConnectError as exc:
            last_exc = exc
            continue  # try the next checked address
        except httpx.TimeoutException as exc:
            last_exc = exc
            break
        except httpx.HTTPError as exc:
            last_exc = exc
            break
        try:
            snippet = b""
            try:
                for chunk in response.iter_bytes():
                    snippet += chunk
                    if len(snippet) >= SNIPPET_BYTES:
                        break
            except httpx.HTTPError:
                pass  # the status line arrived; a broken body does not change it
        finally:
            response.close()
        result.status_code = response.status_code
        result.snippet = snippet[:SNIPPET_BYTES].decode("utf-8", errors="replace")
        code = response.status_code
        if 200 <= code < 300:
            pass
        elif 300 <= code < 400:
            result.error_class = "redirect"
            result.error = f"HTTP {code} redirect (not followed)"
        elif code == 410:
            result.error_class = "gone"
            result.error = "HTTP 410 Gone: the partner retired this endpoint"
        else:
            result.error_class = f"http_{code}"
            result.error = f"HTTP {code}"
            if code in (429, 503):
                result.retry_after = parse_retry_after(response.headers.get("retry-after"))
        last_exc = None
        break
    if last_exc is not None:
        if isinstance(last_exc, httpx.TimeoutException):
            result.error_class = "timeout"
        elif isinstance(last_exc, httpx.ConnectError):
            result.error_class = "connect_error"
        elif isinstance(last_exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
            result.error_class = "connection_reset"
        else:
            result.error_class = "http_error"
        result.error = f"{type(last_exc).__name__}: {last_exc}"[:300]
    result.latency_ms = int((time.perf_counter() - t0) * 1000)
    return result
