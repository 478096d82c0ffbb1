"""Domain errors of the participants app (the shared ones live in programs.errors)."""

from programs.errors import BatonError


class EnrollmentNotOpen(BatonError):
    """The program does not take new enrollments (not active, or nothing published)."""
