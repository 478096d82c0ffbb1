# Baton: two commands for a fresh machine.
#   make demo   build .venv, migrate, seed a demo program, serve web + worker on 127.0.0.1:8000
#   make test   the whole suite (SQLite unless DATABASE_URL is set)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000

.PHONY: demo test lint format venv lock serve migrate clean bench-quick

$(VENV)/.installed: requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	touch $@

venv: $(VENV)/.installed

migrate: venv
	$(PY) manage.py migrate --noinput

demo: venv migrate
	$(PY) manage.py sync_schedules
	$(PY) manage.py seed_demo
	$(MAKE) --no-print-directory serve

# Web (gunicorn + whitenoise) and one qcluster worker, until Ctrl-C.
serve: venv
	$(PY) manage.py collectstatic --noinput -v0
	@echo "Baton is serving on http://127.0.0.1:$(PORT)/ (Ctrl-C stops web and worker)"
	@trap 'kill 0' INT TERM EXIT; \
	$(PY) manage.py qcluster & \
	$(VENV)/bin/gunicorn config.wsgi --bind 127.0.0.1:$(PORT) --workers 2 --access-logfile - ; \
	wait

# Two xdist workers (the machines have 2 cores); PYTEST_WORKERS=0 runs serially.
PYTEST_WORKERS ?= 2
test: venv
	$(PY) -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

# Every benchmark at its small size, so none of them rots (CI runs this).
# bench/bare_*.py are the bare-DRF baseline app that bench/ingest.py serves.
BENCHMARKS := sla_sweep ingest outbox_drain messaging queue_pages scale_curve
bench-quick: venv
	@for b in $(BENCHMARKS); do \
		echo "--- bench/$$b.py --quick"; $(PY) bench/$$b.py --quick || exit 1; \
	done

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Regenerate the pinned set from pyproject.toml's ranges.
lock:
	rm -rf .lockvenv && $(PYTHON) -m venv .lockvenv
	.lockvenv/bin/pip install --quiet '.[dev]'
	.lockvenv/bin/pip freeze --exclude baton > requirements.lock
	rm -rf .lockvenv

clean:
	rm -rf $(VENV) staticfiles db.sqlite3*
