"""SSRF guard for partner URLs (RELIABILITY S4).

`check_url` is called when an endpoint is registered and again at send time
(once per endpoint and dispatch batch). It resolves the host once and
refuses the URL unless every address is public; the sender then connects
to exactly those checked addresses (see `integrations.delivery_http`), so a
DNS answer cannot change between check and connect.

Rules:
- https only; plain http is allowed for loopback hosts only when
  `settings.BATON_ALLOW_INSECURE_WEBHOOKS` is True (development and tests);
- no credentials in the URL, no non-canonical numeric hosts
  (`2130706433`, `0177.0.0.1`, `0x7f.1`);
- every resolved address must be public: private (RFC 1918, fc00::/7),
  loopback, link-local (169.254/16, fe80::/10), CGNAT (100.64/10),
  multicast, reserved, unspecified, site-local, IPv4-mapped/compatible
  IPv6, 6to4/Teredo/NAT64 wrappers are refused. Loopback is only accepted
  when the insecure development setting is on.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

CGNAT = ipaddress.ip_network("100.64.0.0/10")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
TEREDO = ipaddress.ip_network("2001::/32")
BENCHMARKING = ipaddress.ip_network("198.18.0.0/15")


class UnsafeURLError(ValueError):
    """The URL may not be called: the message says why (safe to show a user)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class HostResolutionError(UnsafeURLError):
    """The host did not resolve; at send time this is a retryable failure."""


@dataclass(frozen=True)
class ResolvedTarget:
    url: str
    host: str
    port: int
    addresses: tuple[str, ...]
    scheme: str = "https"


def insecure_allowed() -> bool:
    return bool(getattr(settings, "BATON_ALLOW_INSECURE_WEBHOOKS", False))


def address_problem(address: str, *, allow_loopback: bool) -> str | None:
    """Why `address` may not be contacted, or None when it is public."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{address!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"{ip} is an IPv4-mapped IPv6 address"
        if ip in NAT64 or ip in NAT64_LOCAL or ip in SIX_TO_FOUR or ip in TEREDO:
            return f"{ip} wraps an IPv4 address (NAT64/6to4/Teredo)"
        if ip.is_site_local:
            return f"{ip} is a site-local address"
        # ::a.b.c.d (IPv4-compatible, deprecated)
        if int(ip) >> 32 == 0 and int(ip) > 1:
            return f"{ip} is an IPv4-compatible IPv6 address"
    if ip.is_loopback:
        return None if allow_loopback else f"{ip} is a loopback address"
    if ip.is_unspecified:
        return f"{ip} is the unspecified address"
    if ip.is_link_local:
        return f"{ip} is a link-local address"
    if ip.is_multicast:
        return f"{ip} is a multicast address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in CGNAT:
        return f"{ip} is a carrier-grade NAT (100.64.0.0/10) address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in BENCHMARKING:
        return f"{ip} is a reserved benchmarking address"
    if ip.is_private:
        return f"{ip} is a private address"
    if ip.is_reserved or not ip.is_global:
        return f"{ip} is a reserved address"
    return None


def _canonical_ip_literal(host: str) -> str | None:
    """Return the IP when `host` is a literal; refuse legacy numeric forms."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        socket.inet_aton(host)
    except (OSError, ValueError):
        return None
    # inet_aton accepted something ipaddress did not: decimal, octal, hex or
    # short forms such as 2130706433, 0177.0.0.1, 0x7f.1, 127.1.
    raise UnsafeURLError(f"host {host!r} is a non-canonical numeric IP address")


def _resolve(host: str, port: int) -> tuple[str, ...]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise HostResolutionError(f"host {host!r} does not resolve ({exc})") from exc
    addresses: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = sockaddr[0]
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise HostResolutionError(f"host {host!r} does not resolve")
    return tuple(addresses)


def check_url(url: str, *, for_send: bool = False) -> ResolvedTarget:
    """Validate `url` and resolve its host; raise `UnsafeURLError` if unsafe.

    Called at registration (`for_send=False`) and at send time, once per
    endpoint and dispatch batch (`for_send=True`, where an unresolvable host
    is a `HostResolutionError`, which the dispatcher treats as a retryable
    failure). The returned
    addresses are the only ones the sender may connect to.
    """
    if not isinstance(url, str) or not url.strip():
        raise UnsafeURLError("a URL is required")
    if len(url) > 2000:
        raise UnsafeURLError("the URL is longer than 2000 characters")
    if any(ch in url for ch in "\r\n\t\x00 \\"):
        raise UnsafeURLError("the URL contains whitespace, backslashes or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURLError(f"the URL is malformed ({exc})") from None
    scheme = (parts.scheme or "").lower()
    if scheme not in ("https", "http"):
        raise UnsafeURLError("the URL must start with https://")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise UnsafeURLError("the URL must not contain credentials")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise UnsafeURLError("the URL has no host")
    if parts.fragment:
        raise UnsafeURLError("the URL must not contain a fragment")
    port = port or (443 if scheme == "https" else 80)
    allow_loopback = insecure_allowed()

    literal = _canonical_ip_literal(host)
    addresses = (literal,) if literal else _resolve(host, port)
    for address in addresses:
        problem = address_problem(address, allow_loopback=allow_loopback)
        if problem:
            raise UnsafeURLError(f"host {host!r} is not allowed: {problem}")
    if scheme == "http":
        all_loopback = all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)
        if not (allow_loopback and all_loopback):
            raise UnsafeURLError(
                "the URL must use https (plain http is allowed only to loopback, "
                "and only when BATON_ALLOW_INSECURE_WEBHOOKS is on)"
            )
    return ResolvedTarget(url=url, host=host, port=port, addresses=addresses, scheme=scheme)
