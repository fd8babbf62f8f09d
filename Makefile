# Two commands on a fresh machine:
#   make lab             set up, copy the student versions of the labs into workspace/ (your edits are kept),
#                        open JupyterLab there
#   make test            set up and run every test (unit, magics, labs via nbmake, browser)
# and for authors and instructors:
#   make lab-instructor  set up and open JupyterLab on labs/ (the instructor versions, solutions filled in)
SHELL  := /bin/bash
VENV   ?= .venv
WORKSPACE ?= workspace
PY     := $(VENV)/bin/python
# the JupyterLab extension's sources count too: a change rebuilds it and reinstalls (pip copies it into the venv)
LABEXT_SRC := labextension/package.json labextension/yarn.lock $(sort $(wildcard labextension/src/*.ts labextension/style/*))
STAMP  := $(VENV)/.labkit-$(shell cat pyproject.toml constraints.txt requirements.lock $(LABEXT_SRC) | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: setup lab lab-instructor test test-fast bench clean lock upgrade

$(STAMP):
	test -x $(PY) || python3 -m venv $(VENV)
	deploy/build-labextension.sh $(PY)
	deploy/install.sh $(PY) dev
	rm -f $(VENV)/.labkit-* && touch $(STAMP)

setup: $(STAMP)

JUPYTER_LAB = $(VENV)/bin/jupyter lab --ServerApp.ip=127.0.0.1 $(if $(filter 0,$(shell id -u)),--allow-root)

lab: setup
	$(VENV)/bin/labkit labs copy $(WORKSPACE)
	$(JUPYTER_LAB) --notebook-dir=$(WORKSPACE)

lab-instructor: setup
	$(JUPYTER_LAB) --notebook-dir=labs

test: setup
	deploy/lock.sh check
	deploy/install-test-deps.sh
	HF_HUB_OFFLINE=1 LABKIT_REQUIRE_BROWSER=1 LABKIT_REQUIRE_HUB=1 LABKIT_STRICT_EXERCISES=1 $(PY) -m pytest -p no:cacheprovider --nbmake --nbmake-timeout=300 -rs --durations=40 --ignore=tests/test_langchain_standard.py tests labs $(PYTEST_ARGS)
	# LangChain's standard suites in a process of their own: their async tests need an event loop that no earlier
	# test (IPython shells, kernels) has left running
	HF_HUB_OFFLINE=1 $(PY) -m pytest -p no:cacheprovider -rs tests/test_langchain_standard.py $(PYTEST_ARGS)
	# every lab once more with no network at all (a namespace with only loopback), each held to the memory
	# budget it declares; the figures go to test-artifacts/lab-memory.json
	deploy/offline.sh $(PY) deploy/check-labs.py

test-fast: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -p no:cacheprovider -m "not browser and not slow and not hub" tests $(PYTEST_ARGS)

# The lock (requirements.lock): every version, for Python 3.11 on Linux. `make lock` after editing pyproject.toml;
# `make upgrade` re-resolves everything to the newest versions, installs them, runs the whole suite and shows what
# changed (keep it with a commit if the suite passes; `git checkout requirements.lock` otherwise).
lock: setup
	deploy/lock.sh compile

upgrade: setup
	cp requirements.lock $(VENV)/requirements.lock.before
	deploy/lock.sh upgrade
	@echo "== versions changed by the upgrade:"
	@diff <(grep '==' $(VENV)/requirements.lock.before) <(grep '==' requirements.lock) | grep '^[<>]' || echo "(none)"
	$(MAKE) test
	@echo "== make upgrade: the suite passed on the new lock; the versions that changed:"
	@diff <(grep '==' $(VENV)/requirements.lock.before) <(grep '==' requirements.lock) | grep '^[<>]' || echo "(none)"

bench: setup
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build dist *.egg-info labkit/labextension labextension/lib labextension/node_modules labextension/tsconfig.tsbuildinfo
