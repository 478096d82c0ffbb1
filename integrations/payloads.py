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


def nul_character_path(value, path: str = "$") -> str | None:
    """The JSON path of the first key or string in `value` that holds a NUL
    character, or None."""
    if isinstance(value, str):
        return path if NUL in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            child = join_path(path, key)
            if isinstance(key, str) and NUL in key:
                return child
            if found := nul_character_path(item, child):
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            if found := nul_character_path(item, join_path(path, index)):
                return found
    return None


def _holds_nul(value) -> bool:
    # The common case, nothing found, without building a path per key.
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, dict):
        return any(
            (isinstance(key, str) and NUL in key) or _holds_nul(item) for key, item in value.items()
        )
    if isinstance(value, list | tuple):
        return any(_holds_nul(item) for item in value)
    return False


def require_storable(value, path: str = "$") -> None:
    """Raise PayloadValueError naming the first NUL character in `value`."""
    if _holds_nul(value) and (where := nul_character_path(value, path)) is not None:
        raise PayloadValueError(
            where, "contains the NUL character (\\u0000), which Baton cannot store"
        )
