# kiln — the two set-up commands are `make demo` and `make test` (see README.md).
CARGO ?= cargo

.PHONY: build test test-deps bench demo lint install

build:
	$(CARGO) build --release

test: test-deps
	$(CARGO) test --all-targets

test-deps:
	@echo "no test dependencies yet"

bench:
	$(CARGO) bench

demo: build
	@echo "demo: not yet"

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

install: build
	install -D -m 0755 target/release/kiln $(DESTDIR)/usr/local/bin/kiln
