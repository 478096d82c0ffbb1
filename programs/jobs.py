"""Helpers for periodic jobs: heartbeats and a request id per run."""

from __future__ import annotations

import functools
import logging
import traceback

from django.utils import timezone

from config.request_id import new_request_id, reset_request_id, set_request_id
from programs.models import JobHeartbeat

logger = logging.getLogger(__name__)


def periodic_job(name: str):
    """Decorate a task: record start/finish in JobHeartbeat and give the run a
    request id (`job:<name>:<hex>`) so its audit rows can be traced."""

    def decorate(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            token = set_request_id(f"job:{new_request_id()[:16]}")
            JobHeartbeat.objects.update_or_create(
                name=name, defaults={"last_started_at": timezone.now()}
            )
            try:
                result = func(*args, **kwargs)
            except Exception:
                JobHeartbeat.objects.filter(name=name).update(
                    last_finished_at=timezone.now(),
                    last_ok=False,
                    last_error=traceback.format_exc()[-4000:],
                )
                logger.exception("periodic job %s failed", name)
                raise
            else:
                JobHeartbeat.objects.filter(name=name).update(
                    last_finished_at=timezone.now(),
                    last_ok=True,
                    last_error="",
                    last_result=result if isinstance(result, dict) else {"result": str(result)},
                )
                return result
            finally:
                reset_request_id(token)

        return wrapper

    return decorate
