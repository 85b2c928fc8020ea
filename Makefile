# One command per task. Every target creates .venv (with the dev extras) when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
JS_STAMP := tests/js/node_modules/.installed  # third-party JS clients the tests run (tests/js/package.json)

.PHONY: serve serve-compiled chat test test-compiled compiled bench lint proto clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(JS_STAMP): tests/js/package.json tests/js/package-lock.json
	bash scripts/system-packages.sh
	cd tests/js && npm ci --silent --no-audit --no-fund
	touch $(JS_STAMP)

serve: $(STAMP)  ## start the server on embedded defaults (127.0.0.1:8000 public, :8001 API)
	$(BIN)/hubbub serve

chat: $(STAMP)  ## the server with development sign-in: open http://127.0.0.1:8000/chat
	$(BIN)/hubbub serve --dev

test: $(STAMP) $(JS_STAMP)  ## system packages, lint and format check, types, then the whole test suite (warnings are errors)
	bash scripts/system-packages.sh
	$(BIN)/ruff check src tests bench examples build_support setup.py
	$(BIN)/ruff format --check src tests bench examples build_support setup.py
	$(BIN)/mypy --strict src/hubbub
	$(BIN)/mypy
	$(BIN)/pytest -q --cov --cov-report=term
	$(MAKE) test-compiled

COMPILED := build/compiled
COMPILED_STAMP := $(COMPILED)/.built
COMPILED_SOURCES := setup.py build_support/backend.py $(shell find src/hubbub -name '*.py')
# The tests that drive the compiled modules (hubbub.compiled.MODULES), run again against the wheel
COMPILED_TESTS := tests/test_compiled.py tests/core tests/transports tests/hostile tests/centrifugo

compiled: $(COMPILED_STAMP)  ## the mypyc-compiled wheel in dist/, unpacked into build/compiled (docs/compiled.md)

$(COMPILED_STAMP): $(STAMP) $(COMPILED_SOURCES)
	# build/lib.* too: setuptools packs what it finds there, so a module taken out of MODULES would stay compiled
	rm -rf $(COMPILED) dist/hubbub-*.whl build/lib.*
	COMPILE_HUBBUB=1 $(BIN)/python -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir dist .
	$(BIN)/python -m pip install --quiet --no-deps --target $(COMPILED) dist/hubbub-*.whl
	touch $@

serve-compiled: $(COMPILED_STAMP)  ## make serve, on the compiled build
	PYTHONPATH=$(CURDIR)/$(COMPILED) $(BIN)/hubbub serve

test-compiled: $(COMPILED_STAMP)  ## the tests of the compiled modules, against the compiled wheel, on uvloop
	PYTEST_HUBBUB_LOOP=uvloop EXPECT_COMPILED_HUBBUB=1 PYTHONPATH=$(CURDIR)/$(COMPILED) $(BIN)/pytest -q -p no:cacheprovider $(COMPILED_TESTS)

bench: $(STAMP)  ## benchmark scenarios against a real server (docs/benchmarks.md)
	$(BIN)/python -m bench suite --out bench-results

proto: $(STAMP)  ## regenerate src/hubbub/wire/centrifugo_pb2.py from centrifugo.proto (a test fails when it is stale)
	$(BIN)/python -m grpc_tools.protoc -Isrc --python_out=src src/hubbub/wire/centrifugo.proto

lint: $(STAMP)  ## ruff check and format check
	$(BIN)/ruff check src tests bench examples build_support setup.py
	$(BIN)/ruff format --check src tests bench examples build_support setup.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
