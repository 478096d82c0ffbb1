"""Scheduling messages, one or many at a time, with the same rules.

`message_schedule` is `messages_schedule_many` with one request. A batch
costs a fixed number of queries whatever its size: one advisory lock
statement (PostgreSQL, when the daily cap is on), one read each for existing
messages (dedup), opt-outs, templates and the cap counts, one INSERT of the
messages, one of their audit rows and one of their outbox events.
"""

from __future__ import annotations

import bisect
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connections, router, transaction
from django.db.models import Q
from django.utils import timezone

from messaging.errors import TemplateNotFound
from messaging.models import (
    CAP_STATES,
    CHANNEL_PREFERENCE,
    Message,
    MessageKind,
    MessageState,
    MessageTemplate,
    OptOut,
    SuppressionReason,
)
from messaging.rendering import build_variables
from messaging.scheduling import local_day_bounds, next_allowed, zone
from messaging.services.transitions import check_transition, message_payload, record_changes
from programs.actors import as_actor

logger = logging.getLogger(__name__)

# Namespaces the advisory lock keys of the per-participant cap (PostgreSQL).
CAP_LOCK_PREFIX = "baton.messaging.cap:"


def daily_cap() -> int:
    """Messages per participant per local day (all channels); 0 turns the cap off."""
    return int(getattr(settings, "BATON_MESSAGING_DAILY_CAP", 3))


@dataclass(frozen=True)
class ScheduleRequest:
    """One message to schedule: the keyword arguments of `message_schedule`
    without `actor`."""

    organization: Any
    program: Any
    enrollment_id: int
    participant_ref: str
    participant_timezone: str
    locale: str
    template_key: str
    channel: str | None = None
    step_instance_id: int | None = None
    step_title: str = ""
    due_at: datetime | None = None
    not_before: datetime | None = None
    dedup_key: str | None = None
    kind: str | None = None
    complete_on: str | None = None

    @property
    def organization_id(self) -> int:
        return getattr(self.organization, "pk", self.organization)


# --- templates ---------------------------------------------------------------------------


def _locales(locale: str) -> list[str]:
    out = []
    for candidate in (locale, (locale or "").split("-")[0], "en"):
        if candidate and candidate not in out:
            out.append(candidate)
    return out


def _pick_template(
    templates, *, program, key: str, locale: str, channel: str | None, avoid_channels=()
) -> MessageTemplate:
    """The best of `templates` (published versions of `key` in the program)."""
    locales = _locales(locale)
    candidates = [
        t for t in templates if t.locale in locales and (not channel or t.channel == channel)
    ]
    if not candidates:
        where = f" on {channel}" if channel else ""
        raise TemplateNotFound(
            f"no published template {key!r}{where} for locale {locale!r} in {program}; "
            "load templates (manage.py load_templates) or publish one in the admin"
        )

    def rank(t):
        channel_rank = (
            CHANNEL_PREFERENCE.index(t.channel) if t.channel in CHANNEL_PREFERENCE else 99
        )
        return (t.channel in avoid_channels, locales.index(t.locale), channel_rank, -t.version)

    return min(candidates, key=rank)


def template_for(
    *, program, key: str, locale: str, channel: str | None, avoid_channels=()
) -> MessageTemplate:
    """The latest published version for `key`, falling back from `es-US` to `es`
    to `en`. Without a channel, channels are tried in CHANNEL_PREFERENCE order,
    skipping `avoid_channels` (opted out) while another one has a template."""
    templates = MessageTemplate.objects.filter(
        program=program, key=key, locale__in=_locales(locale), published_at__isnull=False
    )
    return _pick_template(
        templates,
        program=program,
        key=key,
        locale=locale,
        channel=channel,
        avoid_channels=avoid_channels,
    )


# --- the per-participant lock -------------------------------------------------------------


def lock_participants(keys) -> None:
    """Serialize schedulers per participant until the end of the transaction,
    so the daily cap cannot be exceeded by two workers that each count below
    it. `keys` are (organization_id, participant_ref) pairs.

    PostgreSQL: transaction-level advisory locks on a hash of each key, taken
    in sorted order in one statement (no deadlock between two batches).
    SQLite: nothing to do; its write transactions (BEGIN IMMEDIATE) are
    already serialized. Must run inside `transaction.atomic()`."""
    connection = connections[router.db_for_write(Message)]
    if connection.vendor != "postgresql":
        return
    names = sorted({f"{CAP_LOCK_PREFIX}{org}:{ref}" for org, ref in keys})
    if not names:
        return
    with connection.cursor() as cursor:
        # Volatile functions in the target list run after the ORDER BY, so the
        # locks are taken in key order.
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) "
            "FROM unnest(%s::text[]) WITH ORDINALITY AS t(k, i) ORDER BY i",
            [names],
        )


# --- scheduling ---------------------------------------------------------------------------


def message_schedule(
    *,
    organization,
    program,
    enrollment_id: int,
    participant_ref: str,
    participant_timezone: str,
    locale: str,
    template_key: str,
    channel: str | None = None,
    step_instance_id: int | None = None,
    step_title: str = "",
    due_at: datetime | None = None,
    not_before: datetime | None = None,
    dedup_key: str | None = None,
    actor,
    kind: str | None = None,
    complete_on: str | None = None,
) -> tuple[Message, bool]:
    """Schedule one message; return (message, created).

    Rules, in order:
    - dedup: a message already exists for this step and template (or this
      `dedup_key`) -> it is returned with created=False. A unique constraint
      backs this under concurrency;
    - the template is the latest published version for the key, locale
      (with fallback) and channel (preferring one the participant has not
      opted out of when `channel` is None); TemplateNotFound otherwise;
    - `scheduled_for` is `not_before` (or now), moved out of the program's
      quiet hours in the participant's timezone;
    - suppressed at once (reason recorded) when the participant opted out of
      the channel, when quiet hours push it past the template's expiry, or
      when the participant's daily frequency cap is reached. Concurrent
      schedulers for one participant are serialized (`lock_participants`),
      so the cap holds under concurrency.
    Audited as `message.scheduled` (then `message.suppressed`), with outbox
    events `messaging.message.scheduled|suppressed` and `message_status_changed`.
    Safe inside the caller's transaction (participants schedules on step creation).
    """
    request = ScheduleRequest(
        organization=organization,
        program=program,
        enrollment_id=enrollment_id,
        participant_ref=participant_ref,
        participant_timezone=participant_timezone,
        locale=locale,
        template_key=template_key,
        channel=channel,
        step_instance_id=step_instance_id,
        step_title=step_title,
        due_at=due_at,
        not_before=not_before,
        dedup_key=dedup_key,
        kind=kind,
        complete_on=complete_on,
    )
    return messages_schedule_many(requests=[request], actor=actor)[0]


def messages_schedule_many(*, requests: list[ScheduleRequest], actor) -> list[tuple[Message, bool]]:
    """Schedule many messages set-based; return (message, created) per request,
    in order. The rules are `message_schedule`'s, applied as if the requests
    ran one after the other: a later request for the same step and template
    (or dedup key) gets the earlier one's message, and the daily cap counts
    the messages created earlier in the batch.

    All or nothing: TemplateNotFound for any request schedules none. If a
    concurrent scheduler inserts one of the same messages first (unique
    constraint), the batch is redone one request per savepoint. Audit rows
    (`message.scheduled`, `message.suppressed`), outbox events
    (`messaging.message.scheduled|suppressed`) and signals
    (`message_status_batch`, then `message_status_changed` per change) as for
    one message. The dispatcher is kicked after commit when one is due."""
    actor = as_actor(actor)
    requests = list(requests)
    if not requests:
        return []
    try:
        with transaction.atomic():
            results = _schedule_batch(requests, actor)
    except IntegrityError:
        if len(requests) == 1:
            results = [_existing_after_conflict(requests[0])]
        else:
            logger.info("a concurrent scheduler won a race; scheduling one by one")
            results = []
            for request in requests:
                try:
                    with transaction.atomic():
                        results.extend(_schedule_batch([request], actor))
                except IntegrityError:
                    results.append(_existing_after_conflict(request))
    now = timezone.now()
    if any(
        created and m.state == MessageState.SCHEDULED and m.scheduled_for <= now
        for m, created in results
    ):
        from messaging.services.messages import kick_dispatcher

        transaction.on_commit(kick_dispatcher)
    return results


def _existing_after_conflict(request: ScheduleRequest) -> tuple[Message, bool]:
    existing = _load_existing([request])
    found = existing.get(_step_key(request)) or existing.get(_dedup_key(request))
    if found is None:
        raise IntegrityError(f"could not schedule {request.template_key!r} and found no duplicate")
    return found, False


def _step_key(r: ScheduleRequest):
    if r.step_instance_id is None:
        return None
    return ("step", r.organization_id, r.step_instance_id, r.template_key)


def _dedup_key(r: ScheduleRequest):
    return ("dedup", r.organization_id, r.dedup_key) if r.dedup_key else None


def _load_existing(requests) -> dict:
    """Existing messages by their dedup identities (step+template, dedup key)."""
    step_q, dedup_q = defaultdict(set), defaultdict(set)
    for r in requests:
        if r.step_instance_id is not None:
            step_q[r.organization_id].add(r.step_instance_id)
        if r.dedup_key:
            dedup_q[r.organization_id].add(r.dedup_key)
    q = Q()
    for org_id, ids in step_q.items():
        q |= Q(organization_id=org_id, step_instance_id__in=ids)
    for org_id, keys in dedup_q.items():
        q |= Q(organization_id=org_id, dedup_key__in=keys)
    if not q:
        return {}
    found = {}
    for m in Message.objects.filter(q):
        if m.step_instance_id is not None:
            found[("step", m.organization_id, m.step_instance_id, m.template_key)] = m
        if m.dedup_key:
            found[("dedup", m.organization_id, m.dedup_key)] = m
    return found


class _CapCounter:
    """Messages counting against the cap, per participant: the stored ones
    (one query) plus the ones this batch creates."""

    def __init__(self, requests, cap: int):
        self.cap = cap
        self.times: dict[tuple, list[datetime]] = defaultdict(list)
        if cap <= 0:
            return
        refs = defaultdict(set)
        for r in requests:
            refs[r.organization_id].add(r.participant_ref)
        now = timezone.now()
        lows = [min(now, r.not_before or now) for r in requests]
        highs = [max(now, r.not_before or now) for r in requests]
        # Quiet hours move a message by < 1 day; a local day spans <= 26 h either side.
        low, high = min(lows) - timedelta(days=2), max(highs) + timedelta(days=3)
        q = Q()
        for org_id, participant_refs in refs.items():
            q |= Q(organization_id=org_id, participant_ref__in=participant_refs)
        rows = Message.objects.filter(
            q, state__in=CAP_STATES, scheduled_for__gte=low, scheduled_for__lt=high
        ).values_list("organization_id", "participant_ref", "scheduled_for")
        for org_id, ref, at in rows:
            self.times[(org_id, ref)].append(at)
        for times in self.times.values():
            times.sort()

    def reached(self, key: tuple, at: datetime, tz) -> bool:
        if self.cap <= 0:
            return False
        start, end = local_day_bounds(at, tz)
        times = self.times.get(key, ())
        return bisect.bisect_left(times, end) - bisect.bisect_left(times, start) >= self.cap

    def add(self, key: tuple, at: datetime) -> None:
        if self.cap > 0:
            bisect.insort(self.times[key], at)


def _schedule_batch(requests: list[ScheduleRequest], actor) -> list[tuple[Message, bool]]:
    """The batch, inside the caller's atomic block (see messages_schedule_many)."""
    cap = daily_cap()
    if cap > 0:
        lock_participants({(r.organization_id, r.participant_ref) for r in requests})
    existing = _load_existing(requests)

    opted_out = defaultdict(set)
    refs = defaultdict(set)
    for r in requests:
        refs[r.organization_id].add(r.participant_ref)
    q = Q()
    for org_id, participant_refs in refs.items():
        q |= Q(organization_id=org_id, participant_ref__in=participant_refs)
    for org_id, ref, channel in OptOut.objects.filter(q).values_list(
        "organization_id", "participant_ref", "channel"
    ):
        opted_out[(org_id, ref)].add(channel)

    templates = defaultdict(list)
    program_ids = {getattr(r.program, "pk", r.program) for r in requests}
    for t in MessageTemplate.objects.filter(
        program_id__in=program_ids,
        key__in={r.template_key for r in requests},
        published_at__isnull=False,
    ):
        templates[(t.program_id, t.key)].append(t)

    caps = _CapCounter(requests, cap)
    now = timezone.now()
    picked, zones, org_names, variables_cache = {}, {}, {}, {}
    results: list = []  # (message, created) or an index into `results` (in-batch duplicate)
    new, seen = [], {}
    for r in requests:
        identities = [k for k in (_step_key(r), _dedup_key(r)) if k is not None]
        found = next((existing[k] for k in identities if k in existing), None)
        if found is not None:
            results.append((found, False))
            continue
        earlier = next((seen[k] for k in identities if k in seen), None)
        if earlier is not None:
            results.append(earlier)
            continue
        program = r.program
        participant = (r.organization_id, r.participant_ref)
        avoid = frozenset(opted_out.get(participant, ()))
        pick_key = (program.pk, r.template_key, r.locale, r.channel, avoid)
        if pick_key not in picked:
            picked[pick_key] = _pick_template(
                templates.get((program.pk, r.template_key), ()),
                program=program,
                key=r.template_key,
                locale=r.locale,
                channel=r.channel,
                avoid_channels=avoid,
            )
        template = picked[pick_key]
        zone_key = (r.participant_timezone, program.timezone)
        if zone_key not in zones:
            zones[zone_key] = zone(r.participant_timezone, program.timezone)
        tz = zones[zone_key]
        candidate = max(now, r.not_before) if r.not_before else now
        scheduled_for = next_allowed(
            candidate, tz, program.quiet_hours_start, program.quiet_hours_end
        )
        expires_at = candidate + template.expires_after if template.expires_after else None

        suppression = ""
        if template.channel in avoid:
            suppression = SuppressionReason.OPTED_OUT
        elif expires_at is not None and scheduled_for > expires_at:
            suppression = SuppressionReason.QUIET_HOURS
        elif caps.reached(participant, scheduled_for, tz):
            suppression = SuppressionReason.FREQUENCY_CAP

        if program.pk not in org_names:
            org_names[program.pk] = getattr(r.organization, "name", "") or program.organization.name
        variables_key = (program.pk, r.step_title, r.due_at, tz.key, template.pk)
        if variables_key not in variables_cache:
            variables_cache[variables_key] = build_variables(
                program_name=program.name,
                organization_name=org_names[program.pk],
                step_title=r.step_title,
                due_at=r.due_at,
                timezone_name=tz.key,
                links=template.links,
            )
        message = Message(
            organization_id=r.organization_id,
            program=program,
            enrollment_id=r.enrollment_id,
            step_instance_id=r.step_instance_id,
            step_title=r.step_title[:200],
            kind=r.kind
            or (MessageKind.STEP if r.step_instance_id is not None else MessageKind.OTHER),
            participant_ref=r.participant_ref,
            participant_timezone=tz.key,
            locale=r.locale or "en",
            template=template,
            template_key=r.template_key,
            template_version=template.version,
            channel=template.channel,
            complete_on=r.complete_on or template.complete_on,
            variables=dict(variables_cache[variables_key]),
            due_at=r.due_at,
            scheduled_for=scheduled_for,
            expires_at=expires_at,
            dedup_key=r.dedup_key or None,
            created_at=now,
        )
        if suppression:
            check_transition(message, "suppress")
            message.suppress(reason_code=suppression)
        else:
            caps.add(participant, scheduled_for)
        quiet_reason = (
            f"moved out of quiet hours to {scheduled_for.isoformat()}"
            if scheduled_for != candidate
            else ""
        )
        new.append((message, suppression, quiet_reason))
        entry = (message, True)
        results.append(entry)
        for k in identities:
            seen[k] = (message, False)

    if new:
        _insert(new, actor)
    return results


def _insert(new, actor) -> None:
    """One INSERT for the messages, then their audit rows, outbox events and
    signals in bulk (record_changes)."""
    messages = [m for m, _s, _r in new]
    connection = connections[router.db_for_write(Message)]
    if connection.features.can_return_rows_from_bulk_insert:
        Message.objects.bulk_create(messages, batch_size=1000)
    else:  # pragma: no cover - every supported backend returns ids
        for m in messages:
            m.save(force_insert=True)
    changes = []
    for message, suppression, quiet_reason in new:
        payload = message_payload(message, from_state="", reason=quiet_reason)
        payload["state"] = MessageState.SCHEDULED
        payload["suppression_reason"] = ""
        changes.append((message, "", MessageState.SCHEDULED, payload, quiet_reason, None))
        if suppression:
            label = SuppressionReason(suppression).label
            changes.append(
                (
                    message,
                    MessageState.SCHEDULED,
                    MessageState.SUPPRESSED,
                    message_payload(message, from_state=MessageState.SCHEDULED, reason=label),
                    label,
                    {"suppression_reason": suppression},
                )
            )
    record_changes(changes, actor=actor)
