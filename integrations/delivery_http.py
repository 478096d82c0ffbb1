"""The HTTP side of webhook delivery: one pooled httpx client per process.

Every send re-runs the SSRF check and connects to the address that check
resolved (the URL's host is replaced by the checked IP; `Host` and TLS SNI
carry the real name, so certificates are still verified against it).
Redirects are never followed; the timeout is 15 s; proxies from the
environment are ignored (trust_env=False) so nothing re-routes a request.
"""

from __future__ import annotations

import email.utils
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from integrations.ssrf import HostResolutionError, ResolvedTarget, UnsafeURLError, check_url

TIMEOUT_SECONDS = 15.0
SNIPPET_BYTES = 500
MAX_RETRY_AFTER_SECONDS = 24 * 3600

_client_lock = threading.Lock()
_client: httpx.Client | None = None
_client_pid: int | None = None


def http_client() -> httpx.Client:
    """The process-wide pooled client (re-created after a fork)."""
    global _client, _client_pid
    with _client_lock:
        if _client is None or _client_pid != os.getpid():
            _client = httpx.Client(
                timeout=httpx.Timeout(TIMEOUT_SECONDS),
                follow_redirects=False,
                trust_env=False,
                limits=httpx.Limits(max_connections=200, max_keepalive_connections=100),
                headers={"user-agent": "Baton-Webhooks/1.0"},
            )
            _client_pid = os.getpid()
        return _client


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


def _pinned_request(target: ResolvedTarget, address: str, headers: dict, body: bytes):
    url = httpx.URL(target.url)
    default_port = 443 if target.scheme == "https" else 80
    host_header = target.host if target.port == default_port else f"{target.host}:{target.port}"
    if ":" in target.host:  # an IPv6 literal host
        host_header = f"[{target.host}]" + (
            "" if target.port == default_port else f":{target.port}"
        )
    extensions = {"timeout": {k: TIMEOUT_SECONDS for k in ("connect", "read", "write", "pool")}}
    if target.scheme == "https":
        extensions["sni_hostname"] = target.host
    return httpx.Request(
        "POST",
        url.copy_with(host=address.split("%", 1)[0]),
        headers={**headers, "host": host_header, "content-type": "application/json"},
        content=body,
        extensions=extensions,
    )


def send_webhook(*, url: str, headers: dict, body: bytes, target=None) -> SendResult:
    """POST `body` to `url` once; classify the outcome (never raises)."""
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
    client = http_client()
    last_exc: Exception | None = None
    for address in target.addresses:
        request = _pinned_request(target, address, headers, body)
        try:
            response = client.send(request, stream=True)
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
