"""Domain errors of the programs app. Views turn them into clear responses."""


class BatonError(Exception):
    """Base class of Baton's domain errors."""


class AppendOnlyError(BatonError):
    """An attempt to change or delete an audit row."""


class ImmutableVersionError(BatonError):
    """An attempt to change a published program version."""


class DefinitionError(BatonError):
    """A workflow definition failed validation; `errors` lists (path, message)."""

    def __init__(self, errors):
        self.errors = list(errors)
        super().__init__("; ".join(f"{path}: {message}" for path, message in self.errors))


class TransitionNotAllowed(BatonError):
    """A state change that the current state does not allow."""

    def __init__(self, *, obj_label, transition, current_state, allowed):
        self.transition = transition
        self.current_state = current_state
        self.allowed = sorted(allowed)
        allowed_text = ", ".join(self.allowed) or "none (terminal state)"
        super().__init__(
            f"cannot {transition} {obj_label}: it is {current_state}; allowed: {allowed_text}"
        )


class ConcurrentUpdate(BatonError):
    """Another writer changed the row first; the caller may re-read and retry."""


class PermissionDenied(BatonError):
    """The actor lacks the role for this action."""
