"""What an inbound JSON value must satisfy to be stored, whatever its schema.

PostgreSQL keeps no NUL character in text or jsonb (`\\u0000 cannot be
converted to text`): a payload carrying one, in a key or in a string, would
fail at the INSERT, a 500 for the partner and for a batch a "retry" that can
never succeed. Services check first and name the place (`require_storable`).
"""

from __future__ import annotations

from integrations.problems import join_path

NUL = "\x00"


class PayloadValueError(ValueError):
    """A value of an inbound payload that cannot be stored, with its JSON path
    (`$` is the value the check was given, e.g. `$.data.note`)."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def _nul_at(value) -> list | None:
    """The keys and indexes leading to the first key or string in `value`
    that holds a NUL character (outermost first), or None. Builds nothing
    while it finds nothing: the common case costs a walk, no path text."""
    if isinstance(value, str):
        return [] if NUL in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and NUL in key:
                return [key]
            if (inner := _nul_at(item)) is not None:
                return [key, *inner]
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            if (inner := _nul_at(item)) is not None:
                return [index, *inner]
    return None


def require_storable(value, path: str = "$") -> None:
    """Raise PayloadValueError naming the first NUL character in `value`."""
    steps = _nul_at(value)
    if steps is not None:
        for step in steps:
            path = join_path(path, step)
        raise PayloadValueError(
            path, "contains the NUL character (\\u0000), which Baton cannot store"
        )
