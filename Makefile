# One command per task. Every target creates .venv (with the dev extras) when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
JS_STAMP := tests/js/node_modules/.installed  # third-party JS clients the tests run (tests/js/package.json)

.PHONY: serve chat test bench lint proto clean

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
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy --strict src/hubbub
	$(BIN)/mypy
	$(BIN)/pytest -q --cov --cov-report=term

bench: $(STAMP)  ## benchmark scenarios against a real server (docs/benchmarks.md)
	$(BIN)/python -m bench suite --out bench-results

proto: $(STAMP)  ## regenerate src/hubbub/wire/centrifugo_pb2.py from centrifugo.proto (a test fails when it is stale)
	$(BIN)/python -m grpc_tools.protoc -Isrc --python_out=src src/hubbub/wire/centrifugo.proto

lint: $(STAMP)  ## ruff check and format check
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
