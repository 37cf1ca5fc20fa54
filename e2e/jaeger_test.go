//go:build unix

package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/failsoft/failsoft"
	"github.com/failsoft/failsoft/cmd/tracewaterfall/waterfall"
	"github.com/failsoft/failsoft/interceptors/idempotency"
	"github.com/failsoft/failsoft/interceptors/retry"
	"github.com/failsoft/failsoft/interceptors/telemetry"
	pb "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

const (
	clientService = "failsoft-e2e-client"
	serverService = "failsoft-e2e-server"
	// KeyedWrite is not idempotent but requires an idempotency key: the
	// suite attaches one and may then retry it.
	callName     = "failsoft.policytest.v1.TunedService/KeyedWrite"
	logicalCalls = 3
	failuresEach = 2 // the server fails the first two attempts of every call
)

// TestJaeger sends retried calls through the telemetry interceptors, with
// client and server exporting OTLP to a real Jaeger, and checks what Jaeger
// stored: one trace per logical call, holding the call span, an attempt span
// per try and the server's span for each attempt.
func TestJaeger(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Jaeger")
	}
	j := startJaeger(t, jaegerBinary(t))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	clientTP := newProvider(t, ctx, clientService, func(ctx context.Context) (sdktrace.SpanExporter, error) {
		return otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(j.otlpGRPC), otlptracegrpc.WithInsecure())
	})
	serverTP := newProvider(t, ctx, serverService, func(ctx context.Context) (sdktrace.SpanExporter, error) {
		return otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(j.otlpHTTP), otlptracehttp.WithInsecure())
	})

	addr := startServer(t, serverTP)
	var mu sync.Mutex
	var traceIDs []string
	recordTrace := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		mu.Lock()
		traceIDs = append(traceIDs, trace.SpanContextFromContext(ctx).TraceID().String())
		mu.Unlock()
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	// The whole client suite, as users install it. Jitter is fixed at half
	// the backoff ceiling so every retry visibly waits.
	suite, err := failsoft.DialOptions(
		failsoft.WithTelemetry(telemetry.WithTracerProvider(clientTP)),
		failsoft.WithRetry(retry.WithRand(func() float64 { return 0.5 })),
	)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, append(suite, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(recordTrace))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := pb.NewTunedServiceClient(conn)
	for i := range logicalCalls {
		key := fmt.Sprintf("order-%d", i)
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := client.KeyedWrite(cctx, &pb.PingRequest{Payload: key})
		ccancel()
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	// Every attempt of a logical call ran in that call's trace.
	mu.Lock()
	traceIDs = slices.Compact(traceIDs)
	mu.Unlock()
	for _, tp := range []*sdktrace.TracerProvider{clientTP, serverTP} {
		if err := tp.ForceFlush(ctx); err != nil {
			t.Fatal(err)
		}
	}

	wantSpans := 1 + 2*(failuresEach+1)
	traces := waitForTraces(t, ctx, j.query, func(ts []waterfall.Trace) bool {
		if len(ts) < logicalCalls {
			return false
		}
		for _, tr := range ts {
			if len(tr.Spans) < wantSpans {
				return false
			}
		}
		return true
	})
	if len(traces) != logicalCalls {
		t.Fatalf("Jaeger has %d traces for %s, want one per logical call (%d)", len(traces), clientService, logicalCalls)
	}
	want := map[string]bool{}
	for _, id := range traceIDs {
		want[id] = true
	}
	for i := range traces {
		tr := &traces[i]
		if !want[tr.TraceID] {
			t.Errorf("trace %s is not one the client started", tr.TraceID)
		}
		checkTrace(t, tr)
	}

	// The waterfall command's path: fetch one trace by ID and draw it.
	wc := &waterfall.Client{Base: "http://" + j.query}
	one, err := wc.Trace(ctx, traces[0].TraceID)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := waterfall.Render(&b, one, waterfall.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Logf("trace as drawn by tracewaterfall:\n%s", b.String())
	if path := os.Getenv("FAILSOFT_E2E_SAVE_TRACE"); path != "" {
		res, err := http.Get("http://" + j.query + "/api/traces/" + one.TraceID)
		if err == nil {
			f, _ := os.Create(path)
			_, _ = f.ReadFrom(res.Body)
			_ = f.Close()
			_ = res.Body.Close()
		}
	}
}

func checkTrace(t *testing.T, tr *waterfall.Trace) {
	t.Helper()
	service := func(s *waterfall.Span) string { return tr.Processes[s.ProcessID].ServiceName }
	var calls, attempts, servers []*waterfall.Span
	for i := range tr.Spans {
		s := &tr.Spans[i]
		switch {
		case service(s) == serverService:
			servers = append(servers, s)
		case s.OperationName == callName:
			calls = append(calls, s)
		case s.OperationName == "Attempt."+callName:
			attempts = append(attempts, s)
		}
	}
	if len(calls) != 1 {
		t.Fatalf("trace %s: %d call spans, want 1", tr.TraceID, len(calls))
	}
	call := calls[0]
	for k, v := range map[string]string{"span.kind": "client", "rpc.system.name": "grpc", "rpc.method": callName,
		"rpc.response.status_code": "OK", "server.address": "127.0.0.1", "failsoft.attempts": "3"} {
		if got, _ := call.Tag(k); got != v {
			t.Errorf("trace %s: call span %s = %q, want %q", tr.TraceID, k, got, v)
		}
	}
	if len(attempts) < 2 || len(attempts) != failuresEach+1 {
		t.Fatalf("trace %s: %d attempt spans, want %d", tr.TraceID, len(attempts), failuresEach+1)
	}
	attemptIDs := map[string]bool{}
	for _, a := range attempts {
		attemptIDs[a.SpanID] = true
		if a.Parent() != call.SpanID {
			t.Errorf("attempt span %s is not a child of the call span", a.SpanID)
		}
		n, _ := a.Tag("failsoft.attempt")
		prev, _ := a.Tag("previous-rpc-attempts")
		code, _ := a.Tag("rpc.response.status_code")
		outcome, _ := a.Tag("failsoft.outcome")
		wantCode, wantOutcome := "UNAVAILABLE", "failure"
		if n == "3" {
			wantCode, wantOutcome = "OK", "success"
		}
		if code != wantCode || outcome != wantOutcome {
			t.Errorf("attempt %s: status %q outcome %q, want %q %q", n, code, outcome, wantCode, wantOutcome)
		}
		if n != "1" {
			bo, ok := a.Tag("failsoft.attempt.backoff_ms")
			reason, _ := a.Tag("failsoft.attempt.backoff_reason")
			if !ok || bo == "0" || reason != "policy" {
				t.Errorf("attempt %s: backoff %q reason %q", n, bo, reason)
			}
		}
		if want := fmt.Sprint(int(n[0]-'0') - 1); prev != want {
			t.Errorf("attempt %s: previous-rpc-attempts %q, want %s", n, prev, want)
		}
		if _, ok := a.Tag("failsoft.deadline.remaining_ms"); !ok {
			t.Errorf("attempt %s lacks the remaining deadline", n)
		}
		if _, ok := a.Tag("failsoft.attempt.hedge"); !ok {
			t.Errorf("attempt %s lacks the hedge flag", n)
		}
	}
	if len(servers) != len(attempts) {
		t.Errorf("trace %s: %d server spans, want one per attempt (%d)", tr.TraceID, len(servers), len(attempts))
	}
	for _, s := range servers {
		if !attemptIDs[s.Parent()] {
			t.Errorf("server span %s has parent %s, not an attempt span", s.SpanID, s.Parent())
		}
		if kind, _ := s.Tag("span.kind"); kind != "server" {
			t.Errorf("server span kind %q", kind)
		}
		if h, _ := s.Tag("failsoft.idempotency_key.hash"); h == "" {
			t.Errorf("server span lacks the key hash")
		}
	}
	var backoffs int
	for _, l := range call.Logs {
		if l.Event() == telemetry.EventBackoff {
			backoffs++
		}
	}
	if backoffs != failuresEach {
		t.Errorf("call span has %d backoff events, want %d", backoffs, failuresEach)
	}
}

type flakyServer struct {
	pb.UnimplementedTunedServiceServer
	mu    sync.Mutex
	tries map[string]int
}

func (s *flakyServer) KeyedWrite(ctx context.Context, req *pb.PingRequest) (*pb.PingResponse, error) {
	s.mu.Lock()
	s.tries[req.GetPayload()]++
	n := s.tries[req.GetPayload()]
	s.mu.Unlock()
	if n <= failuresEach {
		return nil, status.Errorf(codes.Unavailable, "try %d fails", n)
	}
	return &pb.PingResponse{Payload: req.GetPayload()}, nil
}

func startServer(t *testing.T, tp *sdktrace.TracerProvider) string {
	t.Helper()
	opts, err := failsoft.ServerOptions(failsoft.WithServerTelemetry(telemetry.WithTracerProvider(tp)),
		failsoft.WithServerIdempotency(idempotency.WithIdentity(idempotency.Unauthenticated)))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(opts...)
	pb.RegisterTunedServiceServer(s, &flakyServer{tries: map[string]int{}})
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

func newProvider(t *testing.T, ctx context.Context, service string, exporter func(context.Context) (sdktrace.SpanExporter, error)) *sdktrace.TracerProvider {
	t.Helper()
	exp, err := exporter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(50*time.Millisecond)),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", service))),
	)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = tp.Shutdown(ctx)
	})
	return tp
}

// waitForTraces polls Jaeger until done accepts the client service's traces
// or a bounded wait runs out, and returns the last answer.
func waitForTraces(t *testing.T, ctx context.Context, query string, done func([]waterfall.Trace) bool) []waterfall.Trace {
	t.Helper()
	c := &waterfall.Client{Base: "http://" + query}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ts, err := c.Traces(ctx, clientService, 100)
		if err == nil && done(ts) {
			return ts
		}
		if time.Now().After(deadline) {
			if err != nil {
				t.Fatalf("querying Jaeger: %v", err)
			}
			return ts
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type jaeger struct{ otlpGRPC, otlpHTTP, query string }

const jaegerConfig = `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    traces:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    enable_tracing: false # else it exports its own spans to localhost:4317 and stalls on shutdown
    storage:
      traces: memstore
    http:
      endpoint: %[3]s
    grpc:
      endpoint: %[4]s
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %[1]s
      http:
        endpoint: %[2]s
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`

// startJaeger runs Jaeger with in-memory storage on free loopback ports,
// in its own process group, and stops it (the whole group) when the test
// ends, whether it passed or not.
func startJaeger(t *testing.T, bin string) jaeger {
	t.Helper()
	ports := freePorts(t, 4)
	j := jaeger{otlpGRPC: ports[0], otlpHTTP: ports[1], query: ports[2]}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, jaegerConfig, ports[0], ports[1], ports[2], ports[3]), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "jaeger.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		pgid := cmd.Process.Pid
		http.DefaultClient.CloseIdleConnections()
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-exited
		}
		_ = logf.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				t.Logf("Jaeger log:\n%s", tail(b, 4000))
			}
		}
	})

	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := http.Get("http://" + j.query + "/api/services")
		if err == nil {
			_ = res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return j
			}
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(logPath)
			t.Fatalf("Jaeger exited during start-up:\n%s", tail(b, 4000))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("Jaeger not ready after 60s: %v", err)
		}
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// freePorts reserves n distinct loopback ports and releases them for Jaeger.
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().String())
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return out
}

// jaegerBinary returns a Jaeger built from tools/jaeger/go.mod. It uses
// $FAILSOFT_JAEGER_BIN when set; otherwise it builds Jaeger once into the
// user cache directory, keyed by tools/jaeger/go.sum, so later runs start
// at once. The first build takes a few minutes.
func jaegerBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("FAILSOFT_JAEGER_BIN"); bin != "" {
		return bin
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	modfile := filepath.Join(root, "tools", "jaeger", "go.mod")
	sum, err := os.ReadFile(filepath.Join(root, "tools", "jaeger", "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(sum)
	cache := os.Getenv("FAILSOFT_CACHE_DIR")
	if cache == "" {
		if cache, err = os.UserCacheDir(); err != nil {
			cache = os.TempDir()
		}
		cache = filepath.Join(cache, "failsoft")
	}
	bin := filepath.Join(cache, "jaeger-"+hex.EncodeToString(h[:6])+"-"+runtime.GOOS+"-"+runtime.GOARCH)
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.CreateTemp(cache, "jaeger-build-*")
	if err != nil {
		t.Fatal(err)
	}
	_ = tmp.Close()
	defer os.Remove(tmp.Name())
	// go test puts the go command that runs it first on PATH.
	goTool := "go"
	t.Logf("building Jaeger into %s (first run only; up to ~10 minutes on 2 cores)", bin)
	start := time.Now()
	// Stop the build before the test binary's -timeout would kill it, to
	// fail with advice rather than a goroutine dump.
	ctx := context.Background()
	if d, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Add(-30*time.Second))
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, goTool, "build", "-modfile="+modfile, "-o", tmp.Name(), "github.com/jaegertracing/jaeger/cmd/jaeger")
	cmd.Dir = root
	// Stopping the build stops the compilers it started too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if out, err := cmd.CombinedOutput(); err != nil {
		if ctx.Err() != nil {
			t.Fatalf("building Jaeger did not finish within the test timeout; run with -timeout 30m, " +
				"or build it first and set FAILSOFT_JAEGER_BIN (the Makefile does both)")
		}
		t.Fatalf("building Jaeger: %v\n%s", err, tail(out, 4000))
	}
	if err := os.Rename(tmp.Name(), bin); err != nil && !errors.Is(err, os.ErrExist) {
		t.Fatal(err)
	}
	t.Logf("built Jaeger in %s", time.Since(start).Round(time.Second))
	return bin
}
