"""Test settings: the production-shaped settings plus a synchronous task queue.

django-q2 reads `Q_CLUSTER["sync"]` when it is first imported, so it must be
set here, before any test imports django_q (override_settings is too late).
"""

import os

os.environ.setdefault("DJANGO_ENV", "test")

from config.settings import *  # noqa: F403
from config.settings import Q_CLUSTER

Q_CLUSTER = {**Q_CLUSTER, "sync": True}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
