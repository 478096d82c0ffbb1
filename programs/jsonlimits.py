"""How deep JSON may nest, wherever Baton reads it (partner API bodies,
vendor callbacks, admin JSON fields): deep enough for any real payload,
shallow enough that nothing walking it recursively runs out of stack: the
PHI guard, the NUL check and the serializers recurse once per level, and
900 levels of `[` (1.8 KB) exhausted Python's stack, a 500."""

from __future__ import annotations

MAX_JSON_DEPTH = 64


def json_deeper_than(value, limit: int) -> bool:
    """Whether objects and lists in `value` nest deeper than `limit` levels
    (the value itself, if one, is level 1). Iterative: any depth is safe."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
