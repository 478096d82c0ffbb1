"""The catalogue of domain event types: a public contract with partners.

Names are stable: never rename or reuse one once shipped. Higher apps
register theirs at import (AppConfig.ready); writing an unregistered type to
the outbox is an error, so a typo cannot ship silently.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EventType:
    name: str
    description: str


_catalogue: dict[str, EventType] = {}


def register_event_type(name: str, description: str) -> None:
    _catalogue[name] = EventType(name, description)


def event_type(name: str) -> EventType:
    try:
        return _catalogue[name]
    except KeyError:
        raise ValueError(f"unknown event type {name!r}: register it in the catalogue") from None


def catalogue() -> list[EventType]:
    return sorted(_catalogue.values(), key=lambda e: e.name)


register_event_type("programs.exception.opened", "An exception-queue item was opened.")
register_event_type(
    "programs.exception.resolved", "An exception-queue item was resolved or dismissed."
)
register_event_type("integrations.endpoint.test", "A test event sent from the admin or API.")
