#!/usr/bin/env bash
# Runs the failsoft demo: builds the payment server and the checkout client,
# starts the server on free ports of 127.0.0.1, plays the checkout story
# against it, prints the report, writes the HTML report (report.html in
# DEMO_DIR; its file:// path is printed last) and stops everything.
#
# Settings (environment variables):
#   DEMO_DURATION  length of the load (default 60s)
#   DEMO_RATE      operations per second (default 15)
#   DEMO_KEEP=1    leave the server running afterwards, for exploration
#   DEMO_DIR       directory for binaries, ledger, outbox and logs
#                  (default: a new temporary directory, so that runs and
#                  copies never share files or ports)
#   DEMO_JAEGER    auto (default), 1 or 0: trace export to Jaeger, when the
#                  telemetry tooling is available
set -euo pipefail
# Written for bash 3.2 too (macOS): no mapfile, no empty-array expansions.

cd "$(dirname "$0")/.."
GO=${GO:-go}
DURATION=${DEMO_DURATION:-60s}
RATE=${DEMO_RATE:-15}
KEEP=${DEMO_KEEP:-0}
DIR=${DEMO_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/failsoft-demo.XXXXXX")}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd) # the report's file:// URL needs an absolute path

if [[ -t 1 ]]; then
	say() { printf '\033[1m%s\033[0m\n' "$*"; }
else
	say() { printf '%s\n' "$*"; }
fi

say "building into $DIR"
"$GO" build -o "$DIR/server" ./demo/server
"$GO" build -o "$DIR/client" ./demo/client
"$GO" build -o "$DIR/demotool" ./demo/demotool

# --- Jaeger (optional) -------------------------------------------------------
jaeger_pid=""
otlp_flags=()
JAEGER=${DEMO_JAEGER:-auto}
jaeger_off() {
	if [[ "$JAEGER" == 1 ]]; then
		echo "Jaeger was asked for (DEMO_JAEGER=1) but $1"; exit 1
	fi
	echo "running without Jaeger: $1"
	JAEGER=0
}
start_jaeger() {
	[[ "$JAEGER" != 0 ]] || return 0
	if [[ ! -f tools/jaeger/go.mod || ! -f tools/jaeger/config.yaml ]]; then
		jaeger_off "tools/jaeger is not in this checkout"; return 0
	fi
	# The one Jaeger cache that make jaeger and the end-to-end test use too.
	local bin
	if [[ -z "${FAILSOFT_JAEGER_BIN:-}" ]]; then say "Jaeger: tools/jaeger/build.sh (builds it on the first run only; takes a few minutes)"; fi
	if ! bin=$(GO="$GO" tools/jaeger/build.sh 2>"$DIR/jaeger-build.log"); then
		jaeger_off "it did not build (see $DIR/jaeger-build.log)"; return 0
	fi
	local ports=() p
	while read -r p; do ports+=("$p"); done < <("$DIR/demotool" ports 4)
	if [[ ${#ports[@]} -ne 4 ]]; then jaeger_off "no free ports"; return 0; fi
	sed -e "s/127.0.0.1:4317/127.0.0.1:${ports[0]}/; s/127.0.0.1:4318/127.0.0.1:${ports[1]}/" \
		-e "s/127.0.0.1:16686/127.0.0.1:${ports[2]}/; s/127.0.0.1:16685/127.0.0.1:${ports[3]}/" \
		tools/jaeger/config.yaml >"$DIR/jaeger.yaml"
	"$bin" --config "$DIR/jaeger.yaml" >"$DIR/jaeger.log" 2>&1 &
	jaeger_pid=$!
	jaeger_query="http://127.0.0.1:${ports[2]}"
	for _ in $(seq 1 300); do
		if ! kill -0 "$jaeger_pid" 2>/dev/null; then
			jaeger_pid=""; jaeger_off "it exited at start (see $DIR/jaeger.log)"; return 0
		fi
		if "$DIR/demotool" ok "$jaeger_query/api/services" 2>/dev/null; then
			otlp_flags=(-otlp "127.0.0.1:${ports[0]}")
			say "Jaeger on $jaeger_query (pid $jaeger_pid)"
			return 0
		fi
		sleep 0.1
	done
	stop_pid "$jaeger_pid"; jaeger_pid=""
	jaeger_off "it did not answer within 30 s (see $DIR/jaeger.log)"
}

stop_pid() {
	local pid=$1
	[[ -n "$pid" ]] || return 0
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 1 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			echo "process $pid did not stop in time; killing it"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	wait "$pid" 2>/dev/null || true
}

server_pid=""
stop_server() {
	stop_pid "$server_pid"
	server_pid=""
}
cleanup() {
	if [[ "$KEEP" == 1 && -n "$server_pid" ]]; then
		return
	fi
	stop_server
	stop_pid "$jaeger_pid"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_jaeger

rm -f "$DIR/addr"
"$DIR/server" -addr 127.0.0.1:0 -admin-addr 127.0.0.1:0 -data "$DIR/ledger.db" \
	-addr-file "$DIR/addr" ${otlp_flags[@]+"${otlp_flags[@]}"} >"$DIR/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
	[[ -s "$DIR/addr" ]] && break
	if ! kill -0 "$server_pid" 2>/dev/null; then
		echo "server failed to start:"; cat "$DIR/server.log"; exit 1
	fi
	sleep 0.1
done
if [[ ! -s "$DIR/addr" ]]; then
	echo "server did not report its address within 10 s:"; cat "$DIR/server.log"; exit 1
fi
grpc_addr=$(sed -n 's/^grpc=//p' "$DIR/addr")
admin_addr=$(sed -n 's/^admin=//p' "$DIR/addr")
say "payment server on $grpc_addr (pid $server_pid), chaos at http://$admin_addr/chaos"

status=0
rm -f "$DIR/retried-trace" "$DIR/report.html"
jaeger_flags=()
if [[ -n "$jaeger_pid" ]]; then jaeger_flags=(-jaeger "$jaeger_query"); fi
"$DIR/client" -server "$grpc_addr" -admin "$admin_addr" -outbox "$DIR/outbox.db" \
	-duration "$DURATION" -rate "$RATE" -log "$DIR/client.log" -trace-file "$DIR/retried-trace" \
	-html "$DIR/report.html" \
	${otlp_flags[@]+"${otlp_flags[@]}"} ${jaeger_flags[@]+"${jaeger_flags[@]}"} || status=$?

if [[ -n "$jaeger_pid" && -s "$DIR/retried-trace" ]]; then
	trace_id=$(cat "$DIR/retried-trace")
	say "waterfall of retried charge $trace_id, from Jaeger"
	# Spans are exported in batches; give the last ones a moment to land.
	for _ in 1 2 3 4 5; do
		if "$GO" run ./cmd/tracewaterfall -jaeger "$jaeger_query" "$trace_id" 2>"$DIR/waterfall.err"; then
			break
		fi
		sleep 1
	done
	[[ -s "$DIR/waterfall.err" ]] && cat "$DIR/waterfall.err"
fi

if [[ "$KEEP" == 1 ]]; then
	if [[ -n "$jaeger_pid" ]]; then
		echo "  Jaeger   $jaeger_query (pid $jaeger_pid; stop with kill $jaeger_pid)"
		echo "  traces   go run ./cmd/tracewaterfall -jaeger $jaeger_query -service <name>"
	fi
	say "server left running (pid $server_pid):"
	echo "  gRPC     $grpc_addr"
	echo "  chaos    curl -s http://$admin_addr/chaos    (POST JSON to change, e.g. -d '{\"enabled\":true,\"rules\":[{\"match\":\"/payments.v1.PaymentService/*\",\"down\":true}]}'; '{\"enabled\":false}' stops every fault)"
	echo "  stats    curl -s http://$admin_addr/stats"
	echo "  again    $DIR/client -server $grpc_addr -admin $admin_addr -outbox $DIR/outbox.db -duration 30s"
	echo "  stop     kill $server_pid"
else
	stop_server
	stop_pid "$jaeger_pid"
	jaeger_pid=""
	say "stopped; logs in $DIR"
fi
if [[ -s "$DIR/report.html" ]]; then
	say "HTML report: file://$DIR/report.html"
	echo "  open it in a browser (xdg-open, open on macOS, or paste the path into the address bar)"
fi
exit "$status"
