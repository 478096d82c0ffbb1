"""The `--faults` spec of `manage.py simulate`.

A comma-separated list of `name=value` items, e.g.

    outage=2@9h+6h,slow=0.1,msgfail=0.05,late=0.1,dup=0.05,dropout=0.15

- `outage=D@H+L`: the partner's webhook receiver answers 503 from day D, hour H
  for L hours (repeatable: `outage=1@10h+2h;3@0h+12h`).
- `slow=P`: share of partner webhook answers that are slow (0.25 s); a fifth
  of those end in 504 (the partner's gateway timing out) and are retried.
- `msgfail=P`: share of messages the messaging vendor reports failed.
- `late=P`: share of partner events that arrive late (out of order).
- `dup=P`: share of partner events sent twice.
- `dropout=P`: share of participants who stop responding during onboarding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta

_OUTAGE = re.compile(r"^(\d+)@(\d+)h\+(\d+)h$")


class FaultSpecError(ValueError):
    pass


@dataclass(frozen=True)
class Outage:
    start: timedelta  # from the simulation start
    length: timedelta

    def covers(self, offset: timedelta) -> bool:
        return self.start <= offset < self.start + self.length


@dataclass(frozen=True)
class Faults:
    outages: tuple[Outage, ...] = field(default_factory=tuple)
    slow: float = 0.0
    msgfail: float = 0.0
    late: float = 0.0
    dup: float = 0.0
    dropout: float = 0.10

    def partner_down(self, offset: timedelta) -> bool:
        return any(o.covers(offset) for o in self.outages)

    def describe(self) -> str:
        """The spec back, in canonical form (parse_faults(f.describe()) == f)."""
        items = []
        if self.outages:
            windows = ";".join(
                f"{o.start.days}@{o.start.seconds // 3600}h+{o.length // timedelta(hours=1)}h"
                for o in self.outages
            )
            items.append(f"outage={windows}")
        for name in ("slow", "msgfail", "late", "dup", "dropout"):
            items.append(f"{name}={getattr(self, name):g}")
        return ",".join(items)


DEFAULT_DEMO_FAULTS = "outage=1@10h+5h,msgfail=0.04,late=0.1,dup=0.05,dropout=0.12"


def parse_faults(spec: str | None) -> Faults:
    """Parse a spec; errors name the item and what was expected."""
    if not spec:
        return Faults()
    values: dict = {}
    outages: list[Outage] = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, value = item.partition("=")
        if not sep:
            raise FaultSpecError(f"fault {item!r}: expected name=value")
        if name == "outage":
            for window in value.split(";"):
                match = _OUTAGE.match(window.strip())
                if not match:
                    raise FaultSpecError(
                        f"fault outage={window!r}: expected DAY@HOURh+LENGTHh, e.g. 2@9h+6h"
                    )
                day, hour, length = map(int, match.groups())
                outages.append(Outage(timedelta(days=day, hours=hour), timedelta(hours=length)))
        elif name in ("slow", "msgfail", "late", "dup", "dropout"):
            try:
                share = float(value)
            except ValueError:
                raise FaultSpecError(f"fault {name}={value!r}: expected a share 0..1") from None
            if not 0 <= share <= 1:
                raise FaultSpecError(f"fault {name}={value!r}: expected a share 0..1")
            values[name] = share
        else:
            raise FaultSpecError(
                f"unknown fault {name!r}; known: outage, slow, msgfail, late, dup, dropout"
            )
    return Faults(outages=tuple(outages), **values)
