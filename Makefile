# The two commands of the README:
#   make run   - create .venv, install wasmlet, serve the demo app on 127.0.0.1:8080
#   make test  - install everything the tests need (Debian packages included), run every check
VENV        ?= .venv
PYTHON      ?= python3
BIN         := $(VENV)/bin
LISTEN      ?= 127.0.0.1:8080
# Debian packages: a C-to-wasm toolchain for the guests, openssl for the TLS test,
# promtool (package prometheus) for the alert rules, a real OCI registry and skopeo.
APT_PACKAGES := clang lld wasi-libc libclang-rt-dev-wasm32 openssl procps prometheus docker-registry skopeo

.PHONY: run test venv system-deps lint typecheck pytest guests bench clean

$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || scripts/install-system-deps.sh python3-venv python3-pip
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

venv: $(BIN)/.installed

run: venv
	$(BIN)/wasmlet serve examples/demo/app.yaml --listen $(LISTEN) --state-dir .state

system-deps:
	scripts/install-system-deps.sh $(APT_PACKAGES)

lint: venv
	$(BIN)/ruff check src tests bench

typecheck: venv
	$(BIN)/mypy

pytest: venv system-deps
	$(BIN)/pytest

test: lint typecheck pytest

guests: venv system-deps
	PYTHON=$(BIN)/python examples/build.sh

bench: venv
	bench/run_all.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
