"""Registries the higher apps plug into; programs never imports them.

- exception kinds: what can appear in the exception queue;
- retry actions: how to re-run the failed operation behind a kind;
- schedules: periodic jobs each app declares in code (see sync_schedules);
- timeline contributors: rows for the participant timeline (console);
- subject contexts: how the console shows the thing an exception is about.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ExceptionKind:
    key: str
    label: str
    default_severity: str = "medium"
    description: str = ""


@dataclass(frozen=True)
class RetryAction:
    kind: str
    label: str
    func: Callable  # func(exception, actor) -> str (a human outcome line)
    description: str = ""  # what the button does, shown beside it in the console


@dataclass(frozen=True)
class ScheduledJob:
    name: str
    func: str  # dotted path; django-q2 imports it in the worker
    minutes: int | None = None
    cron: str | None = None
    description: str = ""


@dataclass
class Registry:
    exception_kinds: dict[str, ExceptionKind] = field(default_factory=dict)
    retry_actions: dict[str, list[RetryAction]] = field(default_factory=dict)
    schedules: dict[str, ScheduledJob] = field(default_factory=dict)
    timeline_contributors: list[Callable] = field(default_factory=list)
    subject_contexts: dict[str, Callable] = field(default_factory=dict)


@dataclass
class SubjectContext:
    """What the console item page shows about an exception's subject.

    `fields` are (label, value) pairs; `rows` are timeline rows (objects with
    at, kind, title, detail, actor, url), newest first; `links` are (label, url).
    """

    title: str
    fields: list = field(default_factory=list)
    rows: list = field(default_factory=list)
    links: list = field(default_factory=list)


registry = Registry()


def register_exception_kind(key, label, *, default_severity="medium", description=""):
    registry.exception_kinds[key] = ExceptionKind(key, label, default_severity, description)


def exception_kind(key) -> ExceptionKind:
    try:
        return registry.exception_kinds[key]
    except KeyError:
        known = ", ".join(sorted(registry.exception_kinds))
        raise ValueError(f"unknown exception kind {key!r}; registered kinds: {known}") from None


class RetryOutcome(str):
    """What a retry action did, as text for a coordinator; `changed` is False
    when it changed nothing (the console reports that as a warning, not a
    success). An action may return a plain str: that counts as changed."""

    changed: bool

    def __new__(cls, text: str, *, changed: bool = True):
        outcome = super().__new__(cls, text)
        outcome.changed = changed
        return outcome


def register_retry_action(kind, label, func, *, description=""):
    """Offer `label` as a recovery action on items of `kind`; `description`
    tells a coordinator what it does and when the item resolves itself."""
    actions = registry.retry_actions.setdefault(kind, [])
    action = RetryAction(kind, label, func, description)
    actions[:] = [a for a in actions if a.label != label] + [action]


def retry_actions_for(kind) -> list[RetryAction]:
    return list(registry.retry_actions.get(kind, []))


def register_schedule(name, func, *, minutes=None, cron=None, description=""):
    if (minutes is None) == (cron is None):
        raise ValueError(f"schedule {name!r}: give exactly one of minutes= or cron=")
    registry.schedules[name] = ScheduledJob(name, func, minutes, cron, description)


def register_timeline_contributor(func):
    """`func(enrollment) -> iterable of TimelineRow`; called by the console."""
    if func not in registry.timeline_contributors:
        registry.timeline_contributors.append(func)
    return func


def register_subject_context(subject_type, func):
    """`func(exception) -> SubjectContext | None` for items whose `subject_type`
    is `subject_type` (e.g. "messaging.message"); called by the console."""
    registry.subject_contexts[subject_type] = func
    return func


def subject_context_for(exception):
    """The registered context of `exception`'s subject, or None."""
    func = registry.subject_contexts.get(exception.subject_type)
    if func is None or not exception.subject_id:
        return None
    return func(exception)
