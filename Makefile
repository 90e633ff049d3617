# Mathset: `make run` brings the platform up with demo data; `make test` runs the suite.
# DATABASE_URL / REDIS_URL switch both from SQLite + a file broker to PostgreSQL + Redis.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
HOST   ?= 127.0.0.1

.PHONY: run serve test venv lint demo worker web clean

$(BIN)/.installed: requirements.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is required"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/python manage.py migrate --noinput -v0
	$(BIN)/python manage.py collectstatic --noinput -v0
	$(BIN)/python manage.py load_demo

serve: demo
	@echo "gunicorn (config/gunicorn.conf.py) on $${WEB_BIND:-127.0.0.1:8000}; start a worker beside it: $(BIN)/celery -A config worker -B"
	$(BIN)/gunicorn -c config/gunicorn.conf.py config.wsgi

run: demo
	@echo "Starting a Celery worker and the web server (Ctrl-C stops both)..."
	@trap 'kill 0' INT TERM EXIT; \
	$(BIN)/celery -A config worker -B --loglevel INFO -c 2 >var/worker.log 2>&1 & \
	echo "Worker log: var/worker.log"; \
	echo "Open http://$(HOST):$(PORT)/ (API docs: http://$(HOST):$(PORT)/api/docs/)"; \
	$(BIN)/python manage.py runserver --noreload $(HOST):$(PORT)

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .

clean:
	rm -rf var/celery-broker var/test-media
