"""Tasks of the integrations app (webhooks). Tasks take ids and may run twice."""

from __future__ import annotations

from integrations import dispatch
from integrations.inbound import inbound_receipts_purge
from programs.jobs import periodic_job


def webhooks_drain(max_seconds: float = 50.0) -> dict:
    """Claim and send due deliveries until none are due (enqueued after commit
    by the outbox hook and by replays). Safe to run concurrently and twice:
    claims use skip_locked and each delivery is leased."""
    return dispatch.drain(max_seconds=max_seconds)


@periodic_job("integrations.webhooks_dispatch")
def webhooks_dispatch_tick() -> dict:
    """Every minute: fan out outbox events left behind (the after-commit hook
    did not run, e.g. a crash) and send due retries and breaker probes."""
    events, created = dispatch.sweep_outbox()
    result = dispatch.drain(max_seconds=45.0)
    return {"swept_events": events, "deliveries_created": created, **result}


@periodic_job("integrations.inbound_receipts_purge")
def inbound_receipts_purge_job() -> dict:
    """Hourly: delete inbound webhook receipts older than the retention window."""
    return {"deleted": inbound_receipts_purge()}
