# failsoft build entry points. Every tool runs from tools/go.mod, so a fresh
# machine needs only Go (and, for the Redis tests, redis-server, which
# .ci/run installs).
SHELL := /bin/bash
GO ?= go
TOOL := $(GO) tool -modfile=tools/go.mod
export BUF_CACHE_DIR ?= $(HOME)/.cache/buf
# Go modules of the repository besides the library itself.
SUBMODULES :=

.PHONY: all generate check-generated lint vet staticcheck test test-go bench demo tools

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

test-go:
	$(GO) test -race -count=1 ./...

test: check-generated lint test-go

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# The demo (demo/README.md): Jaeger when it can start, the payment server
# with chaos and the checkout client, on free ports of 127.0.0.1.
# DEMO_DURATION=60s, DEMO_RATE=15, DEMO_KEEP=1 keeps the server and Jaeger
# running afterwards, DEMO_JAEGER=0 runs without Jaeger (1: require it).
demo:
	DEMO_DURATION=$(DEMO_DURATION) DEMO_RATE=$(DEMO_RATE) DEMO_KEEP=$(DEMO_KEEP) DEMO_JAEGER=$(DEMO_JAEGER) GO=$(GO) demo/run.sh
