# failsoft build entry points. Every tool runs from tools/go.mod, so a fresh
# machine needs only Go (and, for the Redis tests, redis-server, which
# .ci/run installs).
SHELL := /bin/bash
GO ?= go
TOOL := $(GO) tool -modfile=tools/go.mod
export BUF_CACHE_DIR ?= $(HOME)/.cache/buf
# Go modules of the repository besides the library itself; each is linted
# and tested like the library.
SUBMODULES := e2e bench examples/quickstart
STATICCHECK = $(shell $(TOOL) -n staticcheck)
# Jaeger v2 built from source (tools/jaeger/go.mod, its own module because
# its dependencies clash with buf's), cached by the hash of its go.sum:
# tools/jaeger/build.sh prints the binary's path, building it when missing.
JAEGER := GO=$(GO) tools/jaeger/build.sh

.PHONY: all generate check-generated lint vet staticcheck test test-go test-e2e test-examples bench bench-go demo tools jaeger jaeger-bin

all: test

tools:
	$(GO) build -modfile=tools/go.mod -o /dev/null tool

generate:
	$(TOOL) buf generate

# Fails when the committed generated code differs from what buf generates.
check-generated: generate
	@if [ -n "$$(git status --porcelain -- proto)" ]; then \
		echo "generated code is stale: run 'make generate' and commit the result"; \
		git status --porcelain -- proto; git --no-pager diff --stat -- proto; exit 1; \
	fi

lint:
	$(TOOL) buf lint
	$(GO) vet ./...
	$(TOOL) staticcheck ./...
	for m in $(SUBMODULES); do (cd $$m && $(GO) vet ./... && $(STATICCHECK) ./...) || exit 1; done

test-go:
	$(GO) test -race -count=1 ./...
	cd bench && $(GO) test -race -count=1 ./...
	# Allocation counts are pinned by tests that the race detector would
	# skew (build tag !race): run them without it.
	$(GO) test -count=1 -run 'Allocs' ./...
	cd bench && $(GO) test -count=1 -run 'Allocs' ./...

jaeger-bin:
	$(JAEGER) >/dev/null

# End-to-end tests against a real Jaeger on free loopback ports.
test-e2e:
	bin=$$($(JAEGER)) && cd e2e && FAILSOFT_JAEGER_BIN=$$bin $(GO) test -race -count=1 -timeout 10m ./...

# The example project (examples/quickstart, its own module) from its own
# steps: write failsoft's options proto, lint, generate (its generated code
# is committed and must not change), vet and test.
test-examples:
	cd examples/quickstart && $(GO) run ../../cmd/failsoft-proto -check third_party \
		&& $(GO) tool buf lint && $(GO) tool buf generate \
		&& git diff --exit-code -- . && test -z "$$(git status --porcelain -- .)" \
		&& $(GO) vet ./... && $(GO) test -race -count=1 ./...

test: check-generated lint test-go test-examples test-e2e

# A local Jaeger for exploring traces: OTLP on 127.0.0.1:4317 (gRPC) and
# 4318 (HTTP), query API on 127.0.0.1:16686 (no web UI in source builds;
# see README for the container with its UI, or go run ./cmd/tracewaterfall).
jaeger:
	bin=$$($(JAEGER)) && $$bin --config tools/jaeger/config.yaml

# Three tables comparing failsoft with its peers (bench/, its own module,
# so the library never depends on them): the cost of a call (and a slow
# tail), the failure modes of issue #18 with failsoft's goals, and the
# throughput of the pending stores. About six minutes on 2 cores; the
# Redis rows need redis-server.
bench:
	cd bench && $(GO) run ./cmd/report -quiet

# The library's own Go benchmarks, with -benchmem.
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# The demo (demo/README.md): Jaeger when it can start, the payment server
# with chaos and the checkout client, on free ports of 127.0.0.1.
# DEMO_DURATION=60s, DEMO_RATE=15, DEMO_KEEP=1 keeps the server and Jaeger
# running afterwards, DEMO_JAEGER=0 runs without Jaeger (1: require it).
demo:
	DEMO_DURATION=$(DEMO_DURATION) DEMO_RATE=$(DEMO_RATE) DEMO_KEEP=$(DEMO_KEEP) DEMO_JAEGER=$(DEMO_JAEGER) GO=$(GO) demo/run.sh
