"""Who is on the other end of a request: client IP, user agent, request id.

The same client IP feeds the audit trail and django-axes (AXES_CLIENT_IP_CALLABLE),
so a lockout and its audit row always name the same address. Behind
TRUSTED_PROXY_COUNT reverse proxies the client is the entry that many places
from the right of X-Forwarded-For (entries further left are client-supplied
and could be forged).
"""

from __future__ import annotations

import contextvars
import ipaddress
from dataclasses import dataclass

from django.conf import settings

from config.request_id import get_request_id

_current_request: contextvars.ContextVar = contextvars.ContextVar(
    "baton_current_request", default=None
)


def _valid_ip(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def client_ip(request) -> str | None:
    if request is None:
        return None
    proxies = getattr(settings, "TRUSTED_PROXY_COUNT", 0)
    if proxies > 0:
        forwarded = [p for p in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if p]
        if len(forwarded) >= proxies:
            found = _valid_ip(forwarded[-proxies])
            if found:
                return found
    return _valid_ip(request.META.get("REMOTE_ADDR", ""))


@dataclass(frozen=True)
class RequestMeta:
    ip_address: str | None
    user_agent: str
    request_id: str

    def as_audit_kwargs(self) -> dict:
        return {
            "ip_address": self.ip_address,
            "user_agent": self.user_agent,
            "request_id": self.request_id,
        }


def request_meta(request=None) -> RequestMeta:
    """Meta of `request`, else of the request being served in this context."""
    request = request if request is not None else _current_request.get()
    if request is None:
        return RequestMeta(None, "", get_request_id())
    return RequestMeta(
        ip_address=client_ip(request),
        user_agent=request.META.get("HTTP_USER_AGENT", "")[:300],
        request_id=getattr(request, "request_id", "") or get_request_id(),
    )


def set_current_request(request) -> contextvars.Token:
    return _current_request.set(request)


def reset_current_request(token: contextvars.Token) -> None:
    _current_request.reset(token)


def current_request():
    return _current_request.get()
