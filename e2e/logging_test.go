//go:build unix

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/failsoft/failsoft"
	"github.com/failsoft/failsoft/cmd/tracewaterfall/waterfall"
	"github.com/failsoft/failsoft/interceptors/breaker"
	"github.com/failsoft/failsoft/interceptors/idempotency"
	"github.com/failsoft/failsoft/interceptors/logging"
	"github.com/failsoft/failsoft/interceptors/retry"
	"github.com/failsoft/failsoft/interceptors/telemetry"
	pb "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// syncBuffer is a log destination safe for the calls' goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// breakingServer is flakyServer with a method that always fails.
type breakingServer struct{ *flakyServer }

func (breakingServer) Inherit(context.Context, *pb.PingRequest) (*pb.PingResponse, error) {
	return nil, status.Error(codes.Unavailable, "down")
}

func startBreakingServer(t *testing.T, tp *sdktrace.TracerProvider) string {
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
	pb.RegisterTunedServiceServer(s, breakingServer{&flakyServer{tries: map[string]int{}}})
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

// TestLogsLeadToJaeger writes the suite's decisions to slog and finds the
// trace ID of each warning among the traces Jaeger stored: a call that
// succeeded at its third attempt, and the call that opened the breaker.
func TestLogsLeadToJaeger(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Jaeger")
	}
	j := startJaeger(t, jaegerBinary(t))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tp := newProvider(t, ctx, clientService, func(ctx context.Context) (sdktrace.SpanExporter, error) {
		return otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(j.otlpGRPC), otlptracegrpc.WithInsecure())
	})
	addr := startBreakingServer(t, tp)

	var logs syncBuffer
	obs, err := logging.New(slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	suite, err := failsoft.DialOptions(
		failsoft.WithObserver(obs),
		failsoft.WithTelemetry(telemetry.WithTracerProvider(tp)),
		failsoft.WithRetry(retry.WithoutBudget(), retry.WithRand(func() float64 { return 0 })),
		failsoft.WithBreaker(breaker.ConsecutiveFailures(3)),
		failsoft.WithoutThrottle(),
	)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, append(suite, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := pb.NewTunedServiceClient(conn)

	// The server fails the first two tries of each KeyedWrite (a method
	// outside the breaker): retried, it succeeds at its third attempt.
	// Inherit always fails and is not retried: the third call in a row
	// opens the breaker.
	if _, err := client.KeyedWrite(ctx, &pb.PingRequest{Payload: "retried"}); err != nil {
		t.Fatalf("retried call: %v", err)
	}
	for range 3 {
		if _, err := client.Inherit(ctx, &pb.PingRequest{}); err == nil {
			t.Fatal("Inherit succeeded")
		}
	}
	if err := tp.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}

	found := map[string]string{} // message -> trace ID
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		msg, _ := r["msg"].(string)
		id, _ := r[logging.KeyTraceID].(string)
		found[msg] = id
	}
	want := []string{"failsoft: call needed 3 attempts", "failsoft: breaker opened"}
	for _, msg := range want {
		if found[msg] == "" {
			t.Fatalf("no %q record with a trace ID in the log:\n%s", msg, logs.String())
		}
	}
	traces := waitForTraces(t, ctx, j.query, func(ts []waterfall.Trace) bool {
		have := map[string]bool{}
		for _, tr := range ts {
			have[tr.TraceID] = true
		}
		return have[found[want[0]]] && have[found[want[1]]]
	})
	stored := map[string]bool{}
	for _, tr := range traces {
		stored[tr.TraceID] = true
	}
	for _, msg := range want {
		if !stored[found[msg]] {
			t.Errorf("%q names trace %s, which Jaeger does not hold (%d traces)", msg, found[msg], len(traces))
		}
	}
	if found[want[0]] == found[want[1]] {
		t.Errorf("both records name trace %s; they come from different calls", found[want[0]])
	}
	t.Logf("log:\n%s", logs.String())
}
