"""Automatic logoff bookkeeping kept in the session (epoch seconds)."""

from __future__ import annotations

import time

from django.conf import settings

AUTH_AT = "_baton_auth_at"  # when the user signed in
LAST_SEEN = "_baton_last_seen"  # last request that counts as activity
# Activity is written back at most this often (saves a session write per click).
TOUCH_EVERY_SECONDS = 10


def remaining(session, now: float | None = None) -> dict:
    """Seconds left before idle and absolute logoff."""
    now = time.time() if now is None else now
    idle = settings.SESSION_IDLE_TIMEOUT.total_seconds()
    absolute = settings.SESSION_ABSOLUTE_TIMEOUT.total_seconds()
    last = session.get(LAST_SEEN, now)
    started = session.get(AUTH_AT, now)
    return {
        "idle_seconds": max(0, int(last + idle - now)),
        "absolute_seconds": max(0, int(started + absolute - now)),
        "idle_timeout_seconds": int(idle),
    }


def expiry_reason(session, now: float) -> str | None:
    left = remaining(session, now)
    if left["absolute_seconds"] <= 0:
        return "absolute"
    if left["idle_seconds"] <= 0:
        return "idle"
    return None
