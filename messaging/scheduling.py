"""Pure time arithmetic for messages: quiet hours in the participant's timezone
and the bounds of a participant's local day (for the frequency cap)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def zone(name: str | None, fallback: str = "UTC") -> ZoneInfo:
    for candidate in (name, fallback, "UTC"):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def in_quiet_hours(local_time: time, start: time | None, end: time | None) -> bool:
    if start is None or end is None or start == end:
        return False
    if start < end:  # e.g. 12:00-14:00
        return start <= local_time < end
    return local_time >= start or local_time < end  # wraps midnight, e.g. 21:00-08:00


def _local_wall(day, at: time, tz: ZoneInfo) -> datetime:
    """`day` at wall time `at` in `tz`, as UTC. A wall time that does not exist
    (DST spring-forward gap) moves forward by the length of the gap, e.g.
    02:30 on a New York spring-forward day is 03:30 EDT."""
    naive = datetime.combine(day, at)
    candidate = naive.replace(tzinfo=tz)
    as_utc = candidate.astimezone(UTC)
    # Round-trip check: inside a gap the round trip lands on another wall time.
    back = as_utc.astimezone(tz).replace(tzinfo=None)
    if back != naive:
        # fold=1 picks the post-transition offset; take the later of the two readings
        as_utc = max(as_utc, naive.replace(tzinfo=tz, fold=1).astimezone(UTC))
    return as_utc


def next_allowed(at: datetime, tz: ZoneInfo, start: time | None, end: time | None) -> datetime:
    """`at` if it falls outside quiet hours, else the end of the quiet window
    (the next allowed local time), computed in `tz` so it survives DST."""
    local = at.astimezone(tz)
    if not in_quiet_hours(local.time().replace(tzinfo=None), start, end):
        return at
    day = local.date()
    if start > end and local.time().replace(tzinfo=None) >= start:
        day = day + timedelta(days=1)  # evening part of a window that ends tomorrow
    result = _local_wall(day, end, tz)
    return max(result, at)


def local_day_bounds(at: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) in UTC of the local calendar day containing `at` (23 or 25 h on DST days)."""
    day = at.astimezone(tz).date()
    return _local_wall(day, time(0, 0), tz), _local_wall(day + timedelta(days=1), time(0, 0), tz)
