"""Liveness and readiness probes for load balancers and orchestrators."""

from django.db import connection
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from programs.selectors import queue_backlog, sweep_heartbeats


@require_GET
def healthz(request):
    """The process is alive and answering; touches nothing else."""
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request):
    """Ready to serve: the database answers; reports queue backlog and sweeps."""
    checks = {}
    ready = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = {"ok": True}
    except Exception as exc:  # any driver error means "not ready"
        checks["database"] = {"ok": False, "error": exc.__class__.__name__}
        ready = False
    if ready:
        checks["queue"] = queue_backlog()
        checks["jobs"] = sweep_heartbeats()
    return JsonResponse(
        {"status": "ready" if ready else "unavailable", "time": timezone.now(), "checks": checks},
        status=200 if ready else 503,
    )
