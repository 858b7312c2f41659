# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
# `make run` without SLACK_BOT_TOKEN (environment or .env) starts the local sandbox instead of the real app.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SANDBOX_STAMP := $(VENV)/.installed-sandbox
TEST_STAMP := $(VENV)/.installed-test
DOCS_STAMP := $(VENV)/.installed-docs
# Set when SLACK_BOT_TOKEN is in the environment or in .env with a non-empty value, read as the app reads .env
# (python-dotenv): `export ` before the name, quotes around the value, and the last assignment wins.
HAVE_SLACK := $(or $(SLACK_BOT_TOKEN),$(shell test -f .env && sed -n "s/^[[:space:]]*\(export[[:space:]]\{1,\}\)\{0,1\}SLACK_BOT_TOKEN[[:space:]]*=[[:space:]]*[\"']\{0,1\}\([^[:space:]\#\"']*\).*/\2/p" .env | tail -1))

.PHONY: run sandbox worker test bench install clean chromium chaos serving-image-test docs image-test

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Production dependencies only: what `python -m bot` and `python -m jobs` need.
$(STAMP): pyproject.toml constraints.txt | $(VENV)/bin/python
	@echo "Installing modelbot's dependencies into $(VENV) ..."
	$(PY) -m pip install --quiet -c constraints.txt -e '.[app]'
	touch $(STAMP)

$(SANDBOX_STAMP): $(STAMP)
	@echo "Installing the sandbox's extra dependencies (moto server) ..."
	$(PY) -m pip install --quiet -c constraints.txt -e '.[app,sandbox]'
	touch $(SANDBOX_STAMP)

$(TEST_STAMP): $(STAMP)
	@echo "Installing the test dependencies ..."
	$(PY) -m pip install --quiet -c constraints.txt -e '.[app,test,sandbox,docs]'
	touch $(TEST_STAMP)

$(DOCS_STAMP): $(STAMP)
	@echo "Installing the docs' dependencies (MkDocs, Material) ..."
	$(PY) -m pip install --quiet -c constraints.txt -e '.[app,docs]'
	touch $(DOCS_STAMP)

install: $(STAMP)

ifeq ($(HAVE_SLACK),)
run: $(SANDBOX_STAMP)
	@echo "No SLACK_BOT_TOKEN in the environment or .env: starting the local sandbox (Ctrl-C stops it)."
	$(PY) -m sandbox
else
run: $(STAMP)
	$(PY) -m bot
endif

sandbox: $(SANDBOX_STAMP)
	$(PY) -m sandbox

worker: $(STAMP)
	$(PY) -m jobs

# Debian's Chromium for the browser tests (tests/sandbox); installed when missing and we are root.
chromium:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing Chromium and fonts for the browser tests (apt-get) ..."; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-color-emoji fonts-lato >/dev/null) \
			|| echo "Chromium could not be installed: the browser tests will be skipped"; \
	fi

test: $(TEST_STAMP) chromium
	$(PY) -m pytest $(PYTEST_ARGS)

# The chaos test at full length: 50 bad-candidate rollouts, two workers, SIGKILLs, a flaky Slack; PostgreSQL
# (TEST_DATABASE_URL) required. It watches 130 s more at the end for the page resend window.
chaos: $(TEST_STAMP)
	MODELBOT_CHAOS_ITERATIONS=50 MODELBOT_CHAOS_SETTLE_SECONDS=130 $(PY) -m pytest -s -p no:cacheprovider tests/faults/test_chaos.py $(PYTEST_ARGS)

# modelbot-serve's real image: serving/Dockerfile built (offline, from a wheel of this checkout) and run, and the
# serving extra installed into a fresh venv. Needs a Docker daemon (skipped, saying so, without one); minutes. The
# base image is made from Debian's packages (mmdebstrap) unless MODELBOT_IMAGE_BASE names one, e.g. python:3.11-slim.
serving-image-test: $(TEST_STAMP)
	MODELBOT_IMAGE_TEST=1 $(PY) -m pytest -rs -p no:cacheprovider tests/serving/test_image.py $(PYTEST_ARGS)

# modelbot's own image (the root Dockerfile) built offline and run with compose.yaml: web, worker and PostgreSQL, then a
# signed /model help through it. Needs a Docker daemon and Compose (skipped, saying so, without them); minutes.
image-test: $(TEST_STAMP)
	MODELBOT_IMAGE_TEST=1 $(PY) -m pytest -rs -p no:cacheprovider tests/deploy $(PYTEST_ARGS)

# The documentation site into site/ (open site/index.html); the references are generated from the code (docs/hooks.py).
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site
	@echo "The site is in site/: open site/index.html"

bench: $(TEST_STAMP)
	for b in bench/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .airflow-venv .pytest_cache .sandbox site
