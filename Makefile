# kiln — the two set-up commands are `make demo` and `make test` (see README.md).
CARGO ?= cargo
KILN := target/release/kiln
DEMO_STORE := target/demo-store
# What the integration tests talk to or check with (Debian package names).
TEST_PACKAGES := docker-registry skopeo umoci buildah podman runc uidmap busybox-static apache2-utils libcap2-bin \
	fuse-overlayfs openssl tar nodejs binutils

# Fuzz targets (fuzz/, cargo-fuzz + libFuzzer). The machine has one stable toolchain; RUSTC_BOOTSTRAP=1
# lets it accept the -Z flags cargo-fuzz passes (sanitizer, coverage instrumentation).
FUZZ_TARGETS := dockerfile_parse word_expand dockerignore layer_apply image_manifest
FUZZ_SECONDS ?= 120
FUZZ := RUSTC_BOOTSTRAP=1 $(CARGO) fuzz

.PHONY: build test test-deps test-validators bench bench-storm demo lint install fuzz fuzz-smoke fuzz-deps pod-image

# Validators for the manifests `kiln bake --emit` writes (PyPI and npm tools, not Debian packages);
# the tests look for them here (or on PATH).
VALIDATORS := /var/cache/kiln-test-tools

build:
	$(CARGO) build --release

# Benches are timings, not tests: they are compiled here (so they cannot rot) and run by `make bench`.
test: test-deps test-validators
	$(CARGO) test --lib --bins --tests
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

fuzz-deps:
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked

# Each target for FUZZ_SECONDS (default 120 s); new inputs go to fuzz/corpus/TARGET, crashes to fuzz/artifacts.
fuzz: fuzz-deps
	cd fuzz && $(FUZZ) build -O
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		mkdir -p corpus/$$t && echo "fuzzing $$t for $(FUZZ_SECONDS) s" && \
		$(FUZZ) run -O $$t corpus/$$t seeds/$$t -- -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
			|| exit 1; \
	done

# The short pass CI runs.
fuzz-smoke:
	$(MAKE) fuzz FUZZ_SECONDS=20

# criterion benches, then end-to-end timings beside buildah (bench/e2e.sh; ratios when buildah is installed).
bench: build
	$(CARGO) bench
	KILN=$(KILN) sh bench/e2e.sh

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
