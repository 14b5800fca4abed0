# kiln — the two set-up commands are `make demo` and `make test` (see README.md).
CARGO ?= cargo
KILN := target/release/kiln
DEMO_STORE := target/demo-store
# What the integration tests talk to or check with (Debian package names).
TEST_PACKAGES := docker-registry skopeo umoci buildah podman runc uidmap busybox-static apache2-utils libcap2-bin \
	fuse-overlayfs openssl tar nodejs debootstrap apt-cacher-ng python3-venv openjdk-17-jre-headless
# Heavy fixtures kept between runs (the tests read the same variable).
KILN_TEST_CACHE ?= /var/cache/kiln-test
export KILN_TEST_CACHE
# PyPI tools the supply-chain tests run: a real package index over HTTPS.
PY_TEST_TOOLS := pypiserver==2.4.2 gunicorn==27.0.1

.PHONY: build test test-deps test-validators test-tools test-fixtures bench bench-storm demo lint install

# Validators for the manifests `kiln bake --emit` writes (PyPI and npm tools, not Debian packages);
# the tests look for them here (or on PATH).
VALIDATORS := /var/cache/kiln-test-tools

build:
	$(CARGO) build --release

test: test-deps test-validators test-tools test-fixtures
	$(CARGO) test --all-targets

test-validators:
	@if [ -x $(VALIDATORS)/venv/bin/kubernetes-validate ]; then echo "kubernetes-validate: present"; else \
		python3 -m venv $(VALIDATORS)/venv && $(VALIDATORS)/venv/bin/pip install -q kubernetes-validate; fi
	@if [ -x $(VALIDATORS)/npm/node_modules/.bin/tekton-lint ]; then echo "tekton-lint: present"; else \
		npm install --silent --no-audit --no-fund --prefix $(VALIDATORS)/npm @ibm/tekton-lint; fi

# pypiserver and gunicorn in a venv under the test cache.
test-tools:
	@if [ -x $(KILN_TEST_CACHE)/venv/bin/gunicorn ] && [ -x $(KILN_TEST_CACHE)/venv/bin/pypi-server ]; then \
		echo "test tools: present"; \
	elif mkdir -p $(KILN_TEST_CACHE) 2>/dev/null && [ -w $(KILN_TEST_CACHE) ]; then \
		python3 -m venv $(KILN_TEST_CACHE)/venv && $(KILN_TEST_CACHE)/venv/bin/pip install -q $(PY_TEST_TOOLS); \
	else echo "cannot write $(KILN_TEST_CACHE); run: sudo make test-tools"; fi

# The Debian python3 + pip image's rootfs, made with debootstrap from the mirror apt uses (minutes, once).
test-fixtures:
	@if [ -s $(KILN_TEST_CACHE)/debian-bookworm-python.tar ]; then echo "test fixtures: present"; \
	elif [ "$$(id -u)" = 0 ]; then sh tests/fixtures/debian-python.sh $(KILN_TEST_CACHE)/debian-bookworm-python.tar; \
	else echo "the Debian test image needs root (debootstrap); run: sudo make test-fixtures"; fi

# Installs the test dependencies when run as root; otherwise says what to install.
test-deps:
	@missing=""; for p in $(TEST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then echo "test dependencies: all present"; \
	elif [ "$$(id -u)" = 0 ]; then echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "missing test dependencies; run: sudo apt-get install -y$$missing"; fi

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

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

install: build
	install -D -m 0755 $(KILN) $(DESTDIR)/usr/local/bin/kiln
