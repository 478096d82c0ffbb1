"""WSGI entry of the bare-DRF baseline (bench/bare_settings.py)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.bare_settings")

from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()
