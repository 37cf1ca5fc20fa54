package logging_test

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft"
	"github.com/failsoft/failsoft/interceptors/breaker"
	"github.com/failsoft/failsoft/interceptors/internal/testserver"
	"github.com/failsoft/failsoft/interceptors/logging"
	"github.com/failsoft/failsoft/interceptors/retry"
	"github.com/failsoft/failsoft/interceptors/telemetry"
	pb "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// flaky fails its first failures calls with UNAVAILABLE.
type flaky struct {
	pb.UnimplementedPlainServiceServer
	pb.UnimplementedTunedServiceServer
	failures atomic.Int64
}

func (s *flaky) answer() (*pb.PingResponse, error) {
	if s.failures.Add(-1) >= 0 {
		return nil, status.Error(codes.Unavailable, "try again")
	}
	return &pb.PingResponse{}, nil
}

func (s *flaky) Plain(context.Context, *pb.PingRequest) (*pb.PingResponse, error) { return s.answer() }
func (s *flaky) Idempotent(context.Context, *pb.PingRequest) (*pb.PingResponse, error) {
	return s.answer()
}

// Through the whole suite: a call retried to success and a breaker that
// opens are written at WARN with the trace ID the call's spans carry, and
// successful calls write nothing.
func TestThroughTheSuite(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	var c capture
	obs := mustNew(t, c.logger(slog.LevelInfo))
	srv := &flaky{}
	addr := testserver.Serve(t, testserver.Policytest(srv))
	suite, err := failsoft.DialOptions(
		failsoft.WithObserver(obs),
		failsoft.WithTelemetry(telemetry.WithTracerProvider(tp)),
		failsoft.WithRetry(retry.WithoutBudget()),
		failsoft.WithBreaker(breaker.ConsecutiveFailures(3)),
		failsoft.WithoutThrottle(),
	)
	if err != nil {
		t.Fatal(err)
	}
	api := pb.NewPlainServiceClient(testserver.Dial(t, addr, suite...))
	tracer := tp.Tracer("checkout")
	call := func(f func(context.Context, *pb.PingRequest, ...grpc.CallOption) (*pb.PingResponse, error)) (string, error) {
		ctx, span := tracer.Start(context.Background(), "checkout")
		defer span.End()
		_, err := f(ctx, &pb.PingRequest{})
		return span.SpanContext().TraceID().String(), err
	}

	for range 3 {
		if _, err := call(api.Plain); err != nil {
			t.Fatal(err)
		}
	}
	if recs := c.records(t); len(recs) != 0 {
		t.Fatalf("successful calls logged %v", recs)
	}

	srv.failures.Store(2)
	retried, err := call(api.Idempotent)
	if err != nil {
		t.Fatalf("retried call: %v", err)
	}
	srv.failures.Store(100)
	_, _ = call(api.Plain)
	_, _ = call(api.Plain)
	tripped, _ := call(api.Plain)
	rejected, err := call(api.Plain)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("call through an open breaker: %v", err)
	}

	traced := map[string]bool{} // trace IDs of the suite's own spans
	for _, s := range spans.Ended() {
		if s.Name() != "checkout" {
			traced[s.SpanContext().TraceID().String()] = true
		}
	}
	want := []struct{ msg, trace string }{
		{"failsoft: call needed 3 attempts", retried},
		{"failsoft: breaker opened", tripped},
		{"failsoft: rejected by an open breaker", rejected},
	}
	recs := c.records(t)
	if len(recs) != len(want) {
		t.Fatalf("records %v, want %d", recs, len(want))
	}
	for i, w := range want {
		r := recs[i]
		if r["msg"] != w.msg || r["level"] != "WARN" || r[logging.KeyTraceID] != w.trace || !traced[w.trace] {
			t.Errorf("record %d = %v; want %q at WARN with trace %s, which the suite's spans carry (%v)", i, r, w.msg, w.trace, traced[w.trace])
		}
		if r[logging.KeyMethod] == nil || r[logging.KeyTarget] != addr {
			t.Errorf("record %d lacks the method or target: %v", i, r)
		}
	}
}
