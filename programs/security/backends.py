"""django-axes backend that tolerates request-less authenticate() calls.

Every login form in Baton passes the request, so axes counts and blocks it.
`authenticate()` without a request only happens in-process (Django's test
client `login()`, shell use); upstream axes raises there. This subclass
returns None instead, so the next backend decides; nothing reachable over HTTP
takes this path (tested in test_security_login).
"""

from axes.backends import AxesStandaloneBackend


class AxesBackend(AxesStandaloneBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
