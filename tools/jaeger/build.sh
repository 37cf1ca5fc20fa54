#!/usr/bin/env bash
# Prints the path of the Jaeger binary built from tools/jaeger/go.mod,
# building it first when it is not in the cache. make jaeger, make test-e2e
# and demo/run.sh all use it, so Jaeger is built once per go.sum, and a new
# clone reuses the cached binary (the key is the content of go.sum, not
# file times). Build output goes to stderr.
#   FAILSOFT_JAEGER_BIN  use this binary instead
#   FAILSOFT_CACHE_DIR   cache directory (default ~/.cache/failsoft)
#   GO                   go command (default go)
set -euo pipefail
if [[ -n "${FAILSOFT_JAEGER_BIN:-}" ]]; then echo "$FAILSOFT_JAEGER_BIN"; exit 0; fi
cd "$(dirname "$0")/../.."
GO=${GO:-go}
cache="${FAILSOFT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/failsoft}"
sum=$( { sha256sum 2>/dev/null || shasum -a 256; } < tools/jaeger/go.sum | cut -c1-12)
bin="$cache/jaeger-$sum-$("$GO" env GOOS)-$("$GO" env GOARCH)"
if [[ ! -x "$bin" ]]; then
	echo "building Jaeger into $bin (first run only; takes a few minutes)" >&2
	mkdir -p "$cache"
	tmp="$bin.tmp.$$"
	trap 'rm -f "$tmp"' EXIT
	"$GO" build -modfile=tools/jaeger/go.mod -o "$tmp" github.com/jaegertracing/jaeger/cmd/jaeger >&2
	mv "$tmp" "$bin"
fi
echo "$bin"
