"""Who did something: a user, a partner's API client, or a system job.

Every service takes an `actor`; audit rows record its kind, id and label so
the trail stays readable even after the user or key is gone.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    kind: str  # "user" | "api_client" | "system"
    id: str
    label: str
    user: object | None = None  # the User, when kind == "user"

    USER = "user"
    API_CLIENT = "api_client"
    SYSTEM = "system"

    @classmethod
    def system(cls, job: str) -> Actor:
        return cls(kind=cls.SYSTEM, id=job, label=f"system:{job}")

    @classmethod
    def for_user(cls, user) -> Actor:
        return cls(kind=cls.USER, id=str(user.pk), label=user.get_username(), user=user)

    @classmethod
    def for_api_client(cls, client) -> Actor:
        return cls(kind=cls.API_CLIENT, id=str(client.pk), label=f"api:{client}")

    @property
    def is_system(self) -> bool:
        return self.kind == self.SYSTEM


def as_actor(value) -> Actor:
    """Accept an Actor, a User, or an API client and return an Actor."""
    if isinstance(value, Actor):
        return value
    if value is None:
        raise ValueError("an actor is required: pass Actor.system('<job>') for system work")
    if hasattr(value, "get_username"):
        return Actor.for_user(value)
    if getattr(value, "is_api_client", False):
        return Actor.for_api_client(value)
    raise TypeError(f"cannot derive an actor from {value!r}")
