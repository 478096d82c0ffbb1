"""Shared helpers of the webhook tests (sink fixture, endpoint factory)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from integrations.delivery_sink import RecordingSink
from integrations.models import Delivery
from integrations.outbox import outbox_write
from integrations.services.webhooks import webhook_endpoint_create
from programs.actors import Actor

ACTOR = Actor.system("test")


@pytest.fixture
def sink():
    with RecordingSink(slow_seconds=1.5) as running:
        yield running


@pytest.fixture
def fast_timeout(monkeypatch):
    from integrations import delivery_http

    monkeypatch.setattr(delivery_http, "TIMEOUT_SECONDS", 0.5)


def make_endpoint(org, url, **kwargs):
    endpoint, secret = webhook_endpoint_create(
        organization=org,
        partner_name=kwargs.pop("partner_name", "Partner"),
        url=url,
        actor=ACTOR,
        **kwargs,
    )
    return endpoint, secret


def write_event(org, event_type="programs.exception.opened", payload=None, **kwargs):
    with transaction.atomic():
        return outbox_write(
            organization=org,
            event_type_name=event_type,
            payload=payload or {"exception_id": 1, "state": "open"},
            **kwargs,
        )


def make_due(*deliveries):
    """Move the backoff time of retrying deliveries to the past (the test's
    stand-in for waiting; only the time field changes)."""
    Delivery.objects.filter(pk__in=[d.pk for d in deliveries]).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )
