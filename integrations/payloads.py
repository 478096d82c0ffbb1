"""What an inbound JSON value must satisfy to be stored, whatever its schema.

PostgreSQL keeps no NUL character in text or jsonb (`\\u0000 cannot be
converted to text`), and no lone UTF-16 surrogate (JSON's `"\\udc00"`, which
Python decodes into a string that is no valid Unicode: `Unicode low
surrogate must follow a high surrogate`). A payload carrying either, in a
key or in a string, would fail at the INSERT: a 500 for the partner, and
for a batch a "retry" that can never succeed. Services check first and name
the place (`require_storable`). DRF's CharField refuses both already
(ProhibitNullCharacters/SurrogateCharacters validators); free-form JSON
(`data`) has no such field.
"""

from __future__ import annotations

import re

from integrations.problems import join_path

NUL = "\x00"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class PayloadValueError(ValueError):
    """A value of an inbound payload that cannot be stored, with its JSON path
    (`$` is the value the check was given, e.g. `$.data.note`)."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def _unstorable(text: str) -> bool:
    # ASCII text (nearly all of it) can only hold a NUL: `in` is C speed.
    return NUL in text if text.isascii() else _UNSTORABLE.search(text) is not None


def _unstorable_at(value) -> tuple[list, str] | None:
    """(the keys and indexes leading to the first key or string in `value`
    that Baton cannot store, outermost first; that text), or None. Builds
    nothing while it finds nothing: the common case costs a walk."""
    if isinstance(value, str):
        return ([], value) if _unstorable(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and _unstorable(key):
                return [key], key
            if (inner := _unstorable_at(item)) is not None:
                return [key, *inner[0]], inner[1]
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            if (inner := _unstorable_at(item)) is not None:
                return [index, *inner[0]], inner[1]
    return None


def require_storable(value, path: str = "$") -> None:
    """Raise PayloadValueError naming the first NUL character or lone
    surrogate in `value`, in a key or in a string."""
    found = _unstorable_at(value)
    if found is None:
        return
    steps, text = found
    for step in steps:
        path = join_path(path, step)
    bad = _UNSTORABLE.search(text).group()
    if bad == NUL:
        what = "the NUL character (\\u0000)"
    else:
        what = f"a lone UTF-16 surrogate (\\u{ord(bad):04x}), which is not valid Unicode"
    raise PayloadValueError(path, f"contains {what}; Baton cannot store it")
