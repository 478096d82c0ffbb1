"""Rows of the participant timeline. Higher apps contribute rows through
`programs.registries.register_timeline_contributor`; the console renders them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class TimelineRow:
    at: datetime
    kind: str
    title: str
    detail: str = ""
    actor: str = ""
    url: str = ""
