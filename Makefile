# Two set-up commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: demo test lint fuzz system-deps screenshots bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Reinstall when the dependencies change.
$(VENV)/.installed-demo: pyproject.toml | $(PY)
	$(PIP) install -q -e ".[fastapi,starlette,flask,django]" uvicorn httpx requests python-multipart
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PIP) install -q -e ".[dev]"
	touch $@

# As root, install the system programs the browser, proxy and database tests drive.
system-deps:
	@if [ "$$(id -u)" = 0 ]; then \
	  missing=""; \
	  [ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	  [ -x /usr/sbin/nginx ] || missing="$$missing nginx-light"; \
	  [ -e /usr/lib/nginx/modules/ngx_http_brotli_static_module.so ] || missing="$$missing libnginx-mod-http-brotli-static"; \
	  [ -x /usr/sbin/haproxy ] || missing="$$missing haproxy"; \
	  [ -x /usr/sbin/apache2 ] || missing="$$missing apache2"; \
	  [ -x /usr/bin/caddy ] || missing="$$missing caddy"; \
	  command -v npm >/dev/null || missing="$$missing npm"; \
	  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	  command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	  if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  fi; \
	else \
	  echo "not root: skipping apt-get (install chromium, nginx-light, libnginx-mod-http-brotli-static, postgresql and npm yourself)"; \
	fi

demo: $(VENV)/.installed-demo
	$(PY) example_apps/run_demo.py --framework $${FRAMEWORK:-fastapi} --port $${PORT:-8000}

# axe-core for the browser suite's accessibility tests, from the npm registry (git-ignored).
AXE := tests/browser/.node/node_modules/axe-core/axe.min.js
$(AXE):
	@if command -v npm >/dev/null; then \
	  npm install --prefix tests/browser/.node --no-audit --no-fund --silent axe-core@4; \
	else \
	  echo "npm not found: the accessibility tests will be skipped (CI fails them)"; \
	fi

# The whole suite, then the framework version matrix (noxfile.py: lowest and latest
# Django, Flask, Starlette and FastAPI, each in its own uv-built virtualenv).
test: system-deps $(VENV)/.installed-test $(AXE)
	$(PY) -m pytest
	$(PY) -m nox

# PNGs of the page (desktop and mobile, 502 and 504, Spanish, dark) for README.md and docs/.
screenshots: system-deps $(VENV)/.installed-test
	$(PY) -m tests.browser.screenshots

# Overhead, end-to-end and retry-herd benchmarks -> docs/performance.md (method:
# benchmarks/README.md). As root, installs Debian's wrk if missing. Takes under 15 minutes.
$(VENV)/.installed-bench: pyproject.toml | $(PY)
	$(PIP) install -q -e ".[dev,bench]" uvloop httptools
	touch $@

bench: $(VENV)/.installed-bench
	@if ! command -v wrk >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing: wrk"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; \
	  else \
	    echo "not root: install wrk yourself (apt-get install wrk); end-to-end rows are skipped"; \
	  fi; \
	fi
	$(PY) -m benchmarks.run_all

# Property-based fuzzing with many more examples than make test runs (tests/test_fuzz.py).
fuzz: $(VENV)/.installed-test
	GRACEFAIL_FUZZ_EXAMPLES=$${EXAMPLES:-5000} $(PY) -m pytest -q tests/test_fuzz.py

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .nox build dist .pytest_cache .mypy_cache .ruff_cache
