#!/usr/bin/env bash
# Runs the failsoft demo: builds the payment server and the checkout client,
# starts the server on free ports of 127.0.0.1, plays the checkout story
# against it, prints the report and stops everything.
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

cd "$(dirname "$0")/.."
GO=${GO:-go}
DURATION=${DEMO_DURATION:-60s}
RATE=${DEMO_RATE:-15}
KEEP=${DEMO_KEEP:-0}
DIR=${DEMO_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/failsoft-demo.XXXXXX")}
mkdir -p "$DIR"

say() { printf '\033[1m%s\033[0m\n' "$*"; }

say "building into $DIR"
"$GO" build -o "$DIR/server" ./demo/server
"$GO" build -o "$DIR/client" ./demo/client

server_pid=""
stop_server() {
	[[ -n "$server_pid" ]] || return 0
	if kill -0 "$server_pid" 2>/dev/null; then
		kill -TERM "$server_pid" 2>/dev/null || true
		# Graceful shutdown takes at most the server's -grace (5 s).
		for _ in $(seq 1 100); do
			kill -0 "$server_pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$server_pid" 2>/dev/null; then
			echo "server did not stop in time; killing it"
			kill -KILL "$server_pid" 2>/dev/null || true
		fi
	fi
	wait "$server_pid" 2>/dev/null || true
	server_pid=""
}
cleanup() {
	if [[ "$KEEP" == 1 && -n "$server_pid" ]]; then
		return
	fi
	stop_server
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -f "$DIR/addr"
"$DIR/server" -addr 127.0.0.1:0 -admin-addr 127.0.0.1:0 -data "$DIR/ledger.db" \
	-addr-file "$DIR/addr" 2>"$DIR/server.log" &
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
"$DIR/client" -server "$grpc_addr" -admin "$admin_addr" -outbox "$DIR/outbox.db" \
	-duration "$DURATION" -rate "$RATE" -log "$DIR/client.log" || status=$?

if [[ "$KEEP" == 1 ]]; then
	say "server left running (pid $server_pid):"
	echo "  gRPC     $grpc_addr"
	echo "  chaos    curl -s http://$admin_addr/chaos    (POST JSON to change, e.g. -d '{\"down\":true}')"
	echo "  stats    curl -s http://$admin_addr/stats"
	echo "  again    $DIR/client -server $grpc_addr -admin $admin_addr -outbox $DIR/outbox.db -duration 30s"
	echo "  stop     kill $server_pid"
else
	stop_server
	say "server stopped; logs in $DIR"
fi
exit "$status"
