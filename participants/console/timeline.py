"""The participant timeline: one enrollment's story in time order, a page at a time.

Rows come from the registry (programs.registries.registry.timeline_contributors:
participants adds transitions, steps and partner events; messaging and
integrations add messages and deliveries) plus the exception-queue items
about the enrollment or its steps and those items' audit rows. The page
never imports messaging or integrations.

Paging is by keyset, from the newest row backwards: a page is the PAGE_ROWS
newest rows at or before a cursor (a time, plus how many rows at exactly
that time the previous pages already showed). Every source is asked for at
most PAGE_ROWS + skip + 1 rows at or before the cursor, so a participant
with years of history costs a page's worth of rows, not their whole history.

Contributors come in two shapes:
- windowed: accepts the keyword arguments `until`, `limit`, `newest_first`
  and `kinds` (and `since`) and returns at most `limit` rows per source, the
  newest first within the window (participants.timeline.enrollment_timeline);
  its `timeline_kinds` attribute names the kinds it can return;
- plain: `func(enrollment)` returns all its rows; they are filtered and cut
  here. Fine for sources that are small per enrollment (messages,
  deliveries); a source that can grow without bound should be windowed.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.db.models import CharField, DateTimeField, Q, Subquery, Value
from django.db.models.functions import Cast, Coalesce
from django.urls import reverse
from django.utils.dateparse import parse_datetime

from messaging.models import Message
from participants.models import Enrollment, StepInstance
from programs.console.forms import parse_number
from programs.models import AuditEvent, OpsException
from programs.registries import registry
from programs.timeline import TimelineRow

logger = logging.getLogger(__name__)
PAGE_ROWS = 100
EXCEPTION_KIND = "exception"
WINDOW_KWARGS = {"until", "limit", "newest_first", "kinds"}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Cursor:
    """Where the next (older) page starts: rows at or before `at`, less the
    first `skip` rows at exactly `at` (the previous page showed them)."""

    at: datetime
    skip: int = 0

    def encode(self) -> str:
        return f"{self.at.isoformat()}~{self.skip}"

    @classmethod
    def decode(cls, value: str) -> Cursor | None:
        """The cursor in `value`, or None if it is missing or malformed."""
        at_text, _, skip_text = (value or "").partition("~")
        try:
            at = parse_datetime(at_text)
        except ValueError:
            return None
        if at is None or at.tzinfo is None:
            return None
        try:
            at = at.astimezone(UTC)  # 0001-01-01T00:00+14:00 lies before year 1 in UTC
        except OverflowError:
            return None
        skip = parse_number(skip_text) or 0
        return cls(at, min(skip, 10_000))


@dataclass
class TimelinePage:
    rows: list[TimelineRow]  # newest first
    next_cursor: Cursor | None  # None: this is the oldest page
    kinds: list[str]
    failed: list[str] = field(default_factory=list)
    page_rows: int = 0


def _order_key(row: TimelineRow):
    # A total order, so rows sharing a timestamp fall on the same side of a
    # cursor on every page.
    return (row.at, row.kind, row.title, row.detail, row.actor, row.url)


def is_windowed(contributor) -> bool:
    try:
        params = inspect.signature(contributor).parameters
    except (TypeError, ValueError):
        return False
    return set(params) >= WINDOW_KWARGS


# As exception_raise writes a subject's type (app label, model name).
MESSAGE_SUBJECT = f"{Message._meta.app_label}.{Message._meta.model_name}"


def _item_ids_about(enrollment: Enrollment):
    """Subquery: ids (as text, like AuditEvent.object_id) of the queue items
    whose subject is the enrollment, one of its steps or one of its messages."""
    step_ids = (
        StepInstance.objects.filter(enrollment=enrollment)
        .annotate(sid=Cast("pk", CharField()))
        .values("sid")
    )
    message_ids = (
        Message.objects.filter(enrollment_id=enrollment.pk)
        .annotate(sid=Cast("pk", CharField()))
        .values("sid")
    )
    return (
        OpsException.objects.filter(
            Q(subject_type="participants.enrollment", subject_id=str(enrollment.pk))
            | Q(subject_type="participants.stepinstance", subject_id__in=step_ids)
            | Q(subject_type=MESSAGE_SUBJECT, subject_id__in=message_ids),
            organization_id=enrollment.organization_id,
        )
        .order_by()
        .annotate(sid=Cast("pk", CharField()))
        .values("sid")
    )


def exception_rows(enrollment: Enrollment, *, until=None, limit=None) -> list[TimelineRow]:
    """Audit rows of the queue items about the enrollment, newest first: at
    most `limit` at or before `until` (two queries: the audit rows, then
    the items they name)."""
    audits = AuditEvent.objects.filter(
        object_type="programs.opsexception", object_id__in=_item_ids_about(enrollment)
    )
    if until is not None:
        audits = audits.filter(created_at__lte=until)
    if limit:
        # The `limit`-th newest time first, from the (object_type, object_id,
        # created_at) index alone, then only the rows from that time on:
        # a participant with thousands of item audit rows reads about
        # `limit` of them from the table, not all (one statement).
        edge = audits.order_by("-created_at").values("created_at")[limit - 1 : limit]
        audits = audits.filter(
            created_at__gte=Coalesce(Subquery(edge), Value(EPOCH, output_field=DateTimeField()))
        ).order_by("-created_at", "-id")[:limit]
    audits = list(audits)
    if not audits:
        return []
    ids = {int(a.object_id) for a in audits if a.object_id.isdigit()}
    items = {
        str(item.pk): item
        for item in OpsException.objects.filter(pk__in=ids).only("pk", "title", "severity")
    }
    rows = []
    for event in audits:
        item = items.get(event.object_id)
        if item is None:
            continue
        verb = event.action.removeprefix("exception.").replace("_", " ")
        detail = event.reason if event.action != "exception.opened" else item.get_severity_display()
        rows.append(
            TimelineRow(
                at=event.created_at,
                kind=EXCEPTION_KIND,
                title=f"#{item.pk} {verb}: {item.title}",
                detail=detail,
                actor=event.actor_label,
                url=reverse("console:item", args=[item.pk]),
            )
        )
    return rows


def timeline_page(
    enrollment: Enrollment, *, cursor: Cursor | None = None, kinds=None, page_rows=None
) -> TimelinePage:
    """One page of the enrollment's timeline: the `page_rows` newest rows at
    or before `cursor` (None: the newest), of `kinds` if given, newest first,
    and the cursor of the next, older page. A contributor that fails is
    named in `failed` (its rows are missing; the page says so)."""
    page_rows = page_rows or PAGE_ROWS
    wanted = set(kinds) if kinds else None
    skip = cursor.skip if cursor else 0
    until = cursor.at if cursor else None
    limit = page_rows + skip + 1
    rows: list[TimelineRow] = []
    known_kinds = {EXCEPTION_KIND}
    failed = []
    for contributor in registry.timeline_contributors:
        try:
            if is_windowed(contributor):
                known_kinds.update(getattr(contributor, "timeline_kinds", ()))
                got = contributor(
                    enrollment, until=until, limit=limit, newest_first=True, kinds=wanted
                )
            else:
                got = list(contributor(enrollment))
                known_kinds.update(r.kind for r in got)
            rows.extend(r for r in got if until is None or r.at <= until)
        except Exception:  # one broken contributor must not hide the rest
            logger.exception("timeline contributor %r failed", contributor)
            failed.append(getattr(contributor, "__qualname__", repr(contributor)))
    if wanted is None or EXCEPTION_KIND in wanted:
        rows.extend(exception_rows(enrollment, until=until, limit=limit))
    if wanted is not None:
        rows = [r for r in rows if r.kind in wanted]
    rows.sort(key=_order_key, reverse=True)
    if skip:
        at_cursor = [r for r in rows if r.at == until]
        rows = at_cursor[skip:] + [r for r in rows if r.at != until]
    page, more = rows[:page_rows], len(rows) > page_rows
    next_cursor = None
    if more and page:
        last = page[-1].at
        same = sum(1 for r in page if r.at == last)
        next_cursor = Cursor(last, same + (skip if last == until else 0))
    known_kinds.update(r.kind for r in page)
    return TimelinePage(
        rows=page,
        next_cursor=next_cursor,
        kinds=sorted(known_kinds),
        failed=failed,
        page_rows=page_rows,
    )


def step_rows(enrollment: Enrollment) -> list[StepInstance]:
    return list(enrollment.steps.order_by("created_at", "id"))
