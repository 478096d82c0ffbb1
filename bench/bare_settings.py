"""Settings for the bare-DRF baseline of bench/ingest.py: Baton's settings,
with a URLconf holding one endpoint that inserts one row."""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.bare_urls"
