package telemetry

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/idempotency"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/outcome"
	pb "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

func byKind(spans []sdktrace.ReadOnlySpan) (call, server []sdktrace.ReadOnlySpan, attempts []sdktrace.ReadOnlySpan) {
	for _, s := range spans {
		switch {
		case s.SpanKind() == trace.SpanKindServer:
			server = append(server, s)
		case strings.HasPrefix(s.Name(), "Attempt."):
			attempts = append(attempts, s)
		default:
			call = append(call, s)
		}
	}
	return
}

func TestRetriedCallIsOneTrace(t *testing.T) {
	e := newEnv(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.plain.Plain(ctx, &pb.PingRequest{Payload: "x"}); err != nil {
		t.Fatal(err)
	}
	calls, servers, attempts := byKind(e.spans.Ended())
	if len(calls) != 1 || len(attempts) != 3 || len(servers) != 3 {
		t.Fatalf("spans: %d call, %d attempt, %d server; want 1, 3, 3", len(calls), len(attempts), len(servers))
	}
	call := calls[0]
	if call.Name() != "failsoft.policytest.v1.PlainService/Plain" || call.SpanKind() != trace.SpanKindClient {
		t.Errorf("call span %q kind %v", call.Name(), call.SpanKind())
	}
	ca := attrs(call)
	for k, want := range map[attribute.Key]string{
		RPCSystemName: "grpc", RPCMethod: "failsoft.policytest.v1.PlainService/Plain",
		RPCResponseStatusCode: "OK", ServerAddress: "127.0.0.1", Outcome: "success",
	} {
		if got := ca[k].AsString(); got != want {
			t.Errorf("call %s = %q, want %q", k, got, want)
		}
	}
	if ca[Attempts].AsInt64() != 3 || ca[ServerPort].AsInt64() == 0 {
		t.Errorf("call attempts %v port %v", ca[Attempts], ca[ServerPort])
	}
	var backoffs int
	for _, ev := range call.Events() {
		if ev.Name == EventBackoff {
			backoffs++
		}
	}
	if backoffs != 2 {
		t.Errorf("call span has %d backoff events, want 2", backoffs)
	}
	traceID := call.SpanContext().TraceID()
	attemptIDs := map[trace.SpanID]int64{}
	for _, a := range attempts {
		at := attrs(a)
		n := at[Attempt].AsInt64()
		attemptIDs[a.SpanContext().SpanID()] = n
		if a.SpanContext().TraceID() != traceID || a.Parent().SpanID() != call.SpanContext().SpanID() {
			t.Errorf("attempt %d not a child of the call span", n)
		}
		if at[PreviousAttempts].AsInt64() != n-1 {
			t.Errorf("attempt %d previous-rpc-attempts %v", n, at[PreviousAttempts])
		}
		wantCode, wantOutcome := "UNAVAILABLE", "failure"
		if n == 3 {
			wantCode, wantOutcome = "OK", "success"
		}
		if at[RPCResponseStatusCode].AsString() != wantCode || at[Outcome].AsString() != wantOutcome {
			t.Errorf("attempt %d: %v %v", n, at[RPCResponseStatusCode], at[Outcome])
		}
		if n > 1 && (at[BackoffMS].AsFloat64() != 7 || at[BackoffReason].AsString() != "policy") {
			t.Errorf("attempt %d backoff %v %v", n, at[BackoffMS], at[BackoffReason])
		}
		if _, ok := at[DeadlineRemainingMS]; !ok {
			t.Errorf("attempt %d lacks %s", n, DeadlineRemainingMS)
		}
	}
	for _, s := range servers {
		if s.SpanContext().TraceID() != traceID {
			t.Errorf("server span in trace %v, want %v", s.SpanContext().TraceID(), traceID)
		}
		if _, ok := attemptIDs[s.Parent().SpanID()]; !ok || !s.Parent().IsRemote() {
			t.Errorf("server span parent %v is not an attempt span", s.Parent().SpanID())
		}
	}

	m := e.metrics(t)
	if n := sum(m[MetricAttemptStarted]); n != 3 {
		t.Errorf("%s = %d, want 3", MetricAttemptStarted, n)
	}
	if n := sum(m[MetricRetries]); n != 2 {
		t.Errorf("%s = %d, want 2", MetricRetries, n)
	}
	for _, name := range []string{MetricCallRetries, MetricCallRetryDelay, MetricRetryDelay, MetricAttemptDuration} {
		if m[name] == nil {
			t.Errorf("metric %s not recorded", name)
		}
	}
}

func TestFailedCallStatus(t *testing.T) {
	e := newEnv(t, 100)
	_, err := e.plain.Plain(context.Background(), &pb.PingRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("err = %v", err)
	}
	calls, _, attempts := byKind(e.spans.Ended())
	if len(calls) != 1 || len(attempts) != 3 {
		t.Fatalf("%d calls %d attempts", len(calls), len(attempts))
	}
	if calls[0].Status().Code.String() != "Error" || calls[0].Status().Description != "flaky" {
		t.Errorf("call status %+v", calls[0].Status())
	}
	var stopped bool
	for _, ev := range calls[0].Events() {
		stopped = stopped || ev.Name == EventRetryStopped
	}
	if !stopped {
		t.Error("no retry stopped event")
	}
	if n := sum(e.metrics(t)[MetricRetryStopped]); n != 1 {
		t.Errorf("%s = %d", MetricRetryStopped, n)
	}
}

func TestServerStream(t *testing.T) {
	e := newEnv(t, 0)
	st, err := e.tuned.Watch(context.Background(), &pb.PingRequest{Payload: "w"})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := st.Recv(); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			break
		}
	}
	calls, servers, attempts := byKind(e.spans.Ended())
	if len(calls) != 1 || len(attempts) != 1 || len(servers) != 1 {
		t.Fatalf("%d calls %d attempts %d servers", len(calls), len(attempts), len(servers))
	}
	if got := attrs(calls[0])[RPCResponseStatusCode].AsString(); got != "OK" {
		t.Errorf("stream status %q", got)
	}
	if servers[0].SpanContext().TraceID() != calls[0].SpanContext().TraceID() {
		t.Error("server stream span not in the call's trace")
	}
}

func TestAbandonedStreamEndsOnCancel(t *testing.T) {
	e := newEnv(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	st, err := e.tuned.Watch(ctx, &pb.PingRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		calls, _, attempts := byKind(e.spans.Ended())
		if len(calls) == 1 && len(attempts) == 1 {
			if got := attrs(calls[0])[RPCResponseStatusCode].AsString(); got != "CANCELLED" {
				t.Errorf("status %q, want CANCELLED", got)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("spans of an abandoned stream never ended")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestObserverEvents(t *testing.T) {
	target := "dns:///svc:443"
	tests := []struct {
		ev     observe.Event
		event  string             // span event expected, "" for none
		attr   attribute.KeyValue // attribute expected on the event or span
		metric string
	}{
		{observe.Event{Kind: observe.BreakerRejected, Target: target}, EventBreakerRejected, Target.String(target), MetricBreakerRejections},
		{observe.Event{Kind: observe.BreakerState, Target: target, From: "closed", To: "open"}, EventBreakerState, BreakerTo.String("open"), MetricBreakerTransitions},
		{observe.Event{Kind: observe.BudgetExhausted, Target: target}, EventBudgetExhausted, Target.String(target), MetricBudgetExhausted},
		{observe.Event{Kind: observe.Fallback, Reason: "cache"}, EventFallback, FallbackLevel.String("cache"), MetricFallbacks},
		{observe.Event{Kind: observe.DeadlineFailFast, Duration: 3 * time.Millisecond}, EventDeadlineFailFast, DeadlineRemainingMS.Float64(3), MetricDeadlineFailFast},
		{observe.Event{Kind: observe.KeyAttached, Reason: "abcd"}, EventKeyAttached, KeyHash.String("abcd"), MetricKeysAttached},
		{observe.Event{Kind: observe.Replay, Reason: "abcd"}, EventReplay, KeyHash.String("abcd"), MetricReplays},
		{observe.Event{Kind: observe.KeyConflict, Reason: "in_flight"}, EventKeyConflict, Reason.String("in_flight"), MetricConflicts},
		{observe.Event{Kind: observe.KeyStoreError, Reason: "complete", Err: errors.New("redis: connection refused")}, EventKeyStoreError, ExceptionMessage.String("redis: connection refused"), MetricStoreErrors},
		{observe.Event{Kind: observe.KeyStoreError, Reason: "claim_fail_open"}, EventKeyStoreError, Reason.String("claim_fail_open"), MetricStoreErrors},
		{observe.Event{Kind: observe.Hedge, Attempt: 2, Duration: time.Millisecond}, EventHedge, Attempt.Int(2), MetricHedges},
		{observe.Event{Kind: observe.BulkheadRejected, Target: target}, EventBulkheadRejected, Target.String(target), MetricBulkheadRejections},
		{observe.Event{Kind: observe.Throttled, Target: target, Value: 0.5}, EventThrottled, Probability.Float64(0.5), MetricThrottleRejections},
		{observe.Event{Kind: observe.DeadlineSet, Duration: time.Second}, "", DeadlineRemainingMS.Float64(1000), ""},
	}
	for _, tc := range tests {
		t.Run(tc.ev.Kind.String(), func(t *testing.T) {
			e := newEnv(t, 0)
			tr := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(e.spans)).Tracer("t")
			ctx, span := tr.Start(context.Background(), "s")
			tc.ev.Method = "/p.S/M"
			e.tel.Observe(ctx, tc.ev)
			span.End()
			got := e.spans.Ended()[0]
			found := false
			if tc.event == "" {
				found = attrs(got)[tc.attr.Key] == tc.attr.Value
			}
			for _, ev := range got.Events() {
				if ev.Name != tc.event {
					continue
				}
				for _, kv := range ev.Attributes {
					found = found || kv == tc.attr
				}
			}
			if !found {
				t.Errorf("no %q with %v on span: events %v attrs %v", tc.event, tc.attr, got.Events(), got.Attributes())
			}
			if tc.metric != "" {
				if a := e.metrics(t)[tc.metric]; a == nil || sum(a) == 0 {
					t.Errorf("metric %s not recorded", tc.metric)
				}
			}
		})
	}
}

func TestBreakerGauge(t *testing.T) {
	e := newEnv(t, 0)
	e.tel.Observe(context.Background(), observe.Event{Kind: observe.BreakerState, Target: "t", From: "closed", To: "open"})
	e.tel.Observe(context.Background(), observe.Event{Kind: observe.BreakerState, Target: "t", From: "open", To: "half-open"})
	m := e.metrics(t)
	g, ok := m[MetricBreakerState].(metricdata.Gauge[int64])
	if !ok || len(g.DataPoints) != 1 || g.DataPoints[0].Value != 1 {
		t.Fatalf("breaker gauge %+v, want one point at 1 (half-open)", m[MetricBreakerState])
	}
	if n := sum(m[MetricBreakerTransitions]); n != 2 {
		t.Errorf("transitions %d, want 2", n)
	}
}

func TestRawKeyOnlyWhenConfigured(t *testing.T) {
	for _, raw := range []bool{false, true} {
		var opts []Option
		if raw {
			opts = append(opts, WithRawIdempotencyKey())
		}
		e := newEnv(t, 0, opts...)
		ctx := metadata.AppendToOutgoingContext(context.Background(), "idempotency-key", "secret-key")
		if _, err := e.plain.Plain(ctx, &pb.PingRequest{}); err != nil {
			t.Fatal(err)
		}
		_, servers, attempts := byKind(e.spans.Ended())
		sa, aa := attrs(servers[0]), attrs(attempts[0])
		if raw {
			if sa[Key].AsString() != "secret-key" || aa[Key].AsString() != "secret-key" {
				t.Errorf("raw key not recorded: %v %v", sa, aa)
			}
			continue
		}
		if _, ok := aa[Key]; ok {
			t.Error("attempt span carries the raw key")
		}
		if _, ok := sa[Key]; ok {
			t.Error("server span carries the raw key")
		}
		if sa[KeyHash].AsString() != idempotency.KeyHash("secret-key") {
			t.Errorf("server key hash %v", sa[KeyHash])
		}
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name string
		opt  Option
		err  string
	}{
		{"tracer", WithTracerProvider(nil), "WithTracerProvider"},
		{"meter", WithMeterProvider(nil), "WithMeterProvider"},
		{"propagator", WithPropagator(nil), "WithPropagator"},
		{"clock", WithClock(nil), "WithClock"},
		{"nil option", nil, "nil Option"},
		{"ok", WithClock(clock.System()), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.opt)
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err = %v, want one naming %s", err, tc.err)
			}
		})
	}
}

func TestServerAttrs(t *testing.T) {
	tests := []struct {
		target, addr string
		port         int
	}{
		{"127.0.0.1:8080", "127.0.0.1", 8080},
		{"dns:///svc.example:443", "svc.example", 443},
		{"dns://8.8.8.8/svc.example:443", "svc.example", 443},
		{"passthrough:///[::1]:50051", "::1", 50051},
		{"svc.example", "svc.example", 0},
		{"unix:///tmp/s.sock", "/tmp/s.sock", 0},
		{"unix:s.sock", "s.sock", 0},
		{"host:http", "host", 0},
	}
	for _, tc := range tests {
		addr, port, ok := serverAttrs(tc.target)
		if addr.Value.AsString() != tc.addr || (ok && port.Value.AsInt64() != int64(tc.port)) || ok != (tc.port != 0) {
			t.Errorf("serverAttrs(%q) = %v %v %v", tc.target, addr.Value.AsString(), port.Value.AsInt64(), ok)
		}
	}
}

func FuzzServerAttrs(f *testing.F) {
	for _, s := range []string{"127.0.0.1:1", "dns:///a:1", "unix:///x", "::::", "a://b/c/d:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		addr, _, _ := serverAttrs(target)
		if addr.Key != ServerAddress {
			t.Fatal("no server.address")
		}
	})
}

func TestDeadlineRemainingUsesClock(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	fake := clock.NewFake(start)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tel, err := New(WithTracerProvider(tp), WithClock(fake), WithMeterProvider(noop.NewMeterProvider()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithDeadline(context.Background(), start.Add(1500*time.Millisecond))
	defer cancel()
	ctx = observe.WithAttempt(ctx, observe.Attempt{N: 2, Hedge: true, Timeout: 200 * time.Millisecond})
	invoker := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
		return &outcome.Rejection{Layer: "breaker", Code: codes.Unavailable, Message: "open"}
	}
	cc := newIdleConn(t)
	err = tel.UnaryAttemptInterceptor()(ctx, "/p.S/M", nil, nil, cc, invoker)
	if err == nil {
		t.Fatal("want the rejection")
	}
	a := attrs(rec.Ended()[0])
	if a[DeadlineRemainingMS].AsFloat64() != 1500 || a[TimeoutMS].AsFloat64() != 200 || !a[Hedge].AsBool() ||
		a[RejectedBy].AsString() != "breaker" || a[Outcome].AsString() != "ignored" {
		t.Errorf("attempt attributes %v", a)
	}
}

func newIdleConn(t testing.TB) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///127.0.0.1:9", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

func TestPropagation(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	cc := newIdleConn(t)
	var md metadata.MD
	invoker := func(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
		md, _ = metadata.FromOutgoingContext(ctx)
		return nil
	}
	t.Run("default falls back to W3C", func(t *testing.T) {
		tel, _ := New(WithTracerProvider(tp))
		// A stale traceparent from the caller is replaced, not duplicated.
		ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", "stale")
		if err := tel.UnaryAttemptInterceptor()(ctx, "/p.S/M", nil, nil, cc, invoker); err != nil {
			t.Fatal(err)
		}
		if v := md.Get("traceparent"); len(v) != 1 || !strings.HasPrefix(v[0], "00-") {
			t.Fatalf("traceparent %v", v)
		}
	})
	t.Run("configured", func(t *testing.T) {
		tel, _ := New(WithTracerProvider(tp), WithPropagator(propagation.Baggage{}))
		if err := tel.UnaryAttemptInterceptor()(context.Background(), "/p.S/M", nil, nil, cc, invoker); err != nil {
			t.Fatal(err)
		}
		if v := md.Get("traceparent"); len(v) != 0 {
			t.Fatalf("traceparent %v injected with a baggage-only propagator", v)
		}
	})
}

// Runs before any test installs a global provider: it measures the
// placeholder every program starts with.
func TestNoopAddsNoAllocations(t *testing.T) {
	if !isNoopProvider(otel.GetTracerProvider()) {
		t.Fatalf("global provider %T not recognised as a no-op", otel.GetTracerProvider())
	}
	tel, err := New()
	if err != nil {
		t.Fatal(err)
	}
	cc := newIdleConn(t)
	call, attempt := tel.UnaryClientInterceptor(), tel.UnaryAttemptInterceptor()
	invoker := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
		return attempt(ctx, method, req, reply, cc, func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil })
	}
	ctx := observe.WithAttempt(context.Background(), observe.Attempt{N: 2})
	ev := observe.Event{Kind: observe.Backoff, Method: "/p.S/M", Target: "t", Duration: time.Millisecond}
	allocs := testing.AllocsPerRun(200, func() {
		_ = call(ctx, "/p.S/M", nil, nil, cc, invoker)
		tel.Observe(ctx, ev)
		tel.Observe(ctx, observe.Event{Kind: observe.BreakerRejected, Target: "t"})
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per call with no-op providers, want 0", allocs)
	}
}

func TestGlobalProviderInstalledLater(t *testing.T) {
	tel, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if tel.tracer() != nil {
		t.Fatal("tracing on before a provider was installed")
	}
	rec := tracetest.NewSpanRecorder()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	t.Cleanup(func() { otel.SetTracerProvider(tracenoop.NewTracerProvider()) })
	cc := newIdleConn(t)
	invoker := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil }
	if err := tel.UnaryClientInterceptor()(context.Background(), "/p.S/M", nil, nil, cc, invoker); err != nil {
		t.Fatal(err)
	}
	if len(rec.Ended()) != 1 {
		t.Fatalf("%d spans after installing the SDK, want 1", len(rec.Ended()))
	}
	otel.SetTracerProvider(tracenoop.NewTracerProvider())
	if tel.tracer() != nil {
		t.Fatal("tracing on with a no-op provider")
	}
}

type fakeStream struct {
	grpc.ClientStream
	recv      []error
	headerErr error
}

func (f *fakeStream) RecvMsg(any) error {
	err := f.recv[0]
	f.recv = f.recv[1:]
	return err
}

func (f *fakeStream) Header() (metadata.MD, error) { return nil, f.headerErr }

func TestStreamEndsOnce(t *testing.T) {
	tests := []struct {
		name    string
		desc    grpc.StreamDesc
		recv    []error
		header  error
		wantErr error
	}{
		{"client streaming ends at the response", grpc.StreamDesc{ClientStreams: true}, []error{nil}, nil, nil},
		{"server streaming ends at EOF", grpc.StreamDesc{ServerStreams: true}, []error{nil, nil, io.EOF}, nil, nil},
		{"error", grpc.StreamDesc{ServerStreams: true}, []error{nil, status.Error(codes.Internal, "x")}, nil, status.Error(codes.Internal, "x")},
		{"header error", grpc.StreamDesc{ServerStreams: true}, nil, status.Error(codes.Unavailable, "h"), status.Error(codes.Unavailable, "h")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var ends []error
			fs := &fakeStream{recv: tc.recv, headerErr: tc.header}
			s := newStream(context.Background(), fs, &tc.desc, func(err error) { ends = append(ends, err) })
			if tc.header != nil {
				_, _ = s.Header()
			}
			for range tc.recv {
				_ = s.RecvMsg(nil)
			}
			if len(ends) != 1 || status.Code(ends[0]) != status.Code(tc.wantErr) {
				t.Fatalf("span ended %d times with %v, want once with %v", len(ends), ends, tc.wantErr)
			}
		})
	}
}
