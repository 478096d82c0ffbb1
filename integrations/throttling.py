"""Per-key throttling: one bucket per API client (429 with Retry-After).

The rate is `REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["api_client"]` (env
`API_THROTTLE_RATE`, e.g. `1200/min`). Read on every request, so tests can
override it. Counters live in the Django cache: shared across workers and
machines with Redis (`REDIS_URL`/`CACHE_URL`, what production should use),
per process with the default local-memory cache (each gunicorn worker then
counts on its own). Two cache round trips per request (get, set); if the
cache is unreachable the request is let through and a warning logged: an
outage of the counter store must not take the API down.

The bucket is a GCRA (generic cell rate algorithm): one float per key, the
"theoretical arrival time", instead of DRF's list of every request time in
the window (which is unpickled, trimmed and pickled again on each request,
so its cost grows with the rate). A key may send `N` requests at once, then
one every `duration / N` seconds; the long-run rate is the same N per
duration.
"""

import logging

from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

logger = logging.getLogger(__name__)


class ApiClientRateThrottle(SimpleRateThrottle):
    scope = "api_client"

    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def get_cache_key(self, request, view):
        client = request.auth
        if client is None or not getattr(client, "is_api_client", False):
            return None  # unauthenticated requests fail before reaching here
        return f"throttle_api_client_{client.pk}"

    def allow_request(self, request, view):
        self.rate = self.get_rate()  # re-read: settings may be overridden per test
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        now = self.timer()
        interval = self.duration / self.num_requests
        try:
            tat = max(self.cache.get(self.key) or now, now)
            new_tat = tat + interval
            if new_tat - now > self.duration:
                self._wait = new_tat - now - self.duration
                return False
            self.cache.set(self.key, new_tat, self.duration + 1)
        except Exception:  # the cache backend's connection errors
            logger.warning("throttle cache unavailable; request let through", exc_info=True)
        return True

    def wait(self):
        return getattr(self, "_wait", None)
