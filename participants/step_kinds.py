"""What happens when a step is created, per step kind.

`register_step_kind_handler(kind, func)` lets a caller plug in the real side
effect (e.g. messaging sends the invitation for `message` steps). A handler is
called as `func(step=..., enrollment=..., definition=..., actor=...)` inside
the transaction that creates the step: it may write rows (outbox events,
message rows) but must do no I/O. Until an app plugs in, the default handler
records the request as the domain event `participants.step.action_requested`,
so nothing is ever a silent no-op.
"""

from __future__ import annotations

from collections.abc import Callable

from programs.definitions import STEP_KINDS

_handlers: dict[str, Callable] = {}


def register_step_kind_handler(kind: str, func: Callable) -> None:
    """Make `func` the side effect of creating a step of `kind` (replaces the default)."""
    if kind not in STEP_KINDS:
        raise ValueError(f"unknown step kind {kind!r}; known: {', '.join(STEP_KINDS)}")
    _handlers[kind] = func


def step_kind_handler(kind: str) -> Callable:
    try:
        return _handlers[kind]
    except KeyError:
        raise ValueError(f"no handler for step kind {kind!r}") from None


def record_action_requested(*, step, enrollment, definition, actor):
    """Default: write `participants.step.action_requested` naming kind and key."""
    from participants.services.common import emit

    payload = {
        "step_id": step.pk,
        "step_key": step.step_key,
        "kind": step.kind,
        "due_at": step.due_at.isoformat() if step.due_at else None,
    }
    if step.kind == "message":
        payload["template"] = (definition.get("message") or {}).get("template")
    if definition.get("partner"):
        payload["partner"] = definition["partner"]
    if step.completes_on:
        payload["completes_on"] = step.completes_on
    emit(enrollment, "participants.step.action_requested", payload)


def register_defaults():
    for kind in STEP_KINDS:
        _handlers.setdefault(kind, record_action_requested)
