package pending_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/idempotency"
	"github.com/failsoft/failsoft/interceptors/outcome"
	"github.com/failsoft/failsoft/interceptors/pending"
	"github.com/failsoft/failsoft/interceptors/policy"
	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

const (
	keyedWrite = policytestv1.TunedService_KeyedWrite_FullMethodName
	plain      = policytestv1.PlainService_Plain_FullMethodName
)

var start = time.Unix(1_800_000_000, 0)

func newQueue(t *testing.T, store pending.Store, opts ...pending.Option) *pending.Queue {
	t.Helper()
	q, err := pending.New(store, append([]pending.Option{pending.ForMethods(keyedWrite), pending.WithRand(func() float64 { return 0.5 })}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() })
	return q
}

func newStore(t *testing.T, max int) *pending.MemoryStore {
	t.Helper()
	s, err := pending.NewMemoryStore(max)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func waiting(t *testing.T, s pending.Store) []pending.Entry {
	t.Helper()
	es, err := s.Claim(context.Background(), start.Add(1000*time.Hour), time.Nanosecond, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func TestInterceptorQueuesWhatCannotBeSentNow(t *testing.T) {
	rej := func(layer string, code codes.Code) error {
		return &outcome.Rejection{Layer: layer, Code: code, Message: layer + " says no"}
	}
	tests := []struct {
		name   string
		method string
		err    error
		cancel bool
		queued bool
	}{
		{"breaker open", keyedWrite, rej("breaker", codes.Unavailable), false, true},
		{"throttled", keyedWrite, rej("throttle", codes.ResourceExhausted), false, true},
		{"deadline too short", keyedWrite, rej("deadline", codes.DeadlineExceeded), false, true},
		{"retries exhausted on UNAVAILABLE", keyedWrite, status.Error(codes.Unavailable, "down"), false, true},
		{"key in flight", keyedWrite, status.Error(codes.Aborted, "in flight"), false, true},
		{"success", keyedWrite, nil, false, false},
		{"refused", keyedWrite, status.Error(codes.InvalidArgument, "bad amount"), false, false},
		{"key conflict", keyedWrite, status.Error(codes.FailedPrecondition, "key reused"), false, false},
		{"caller cancelled", keyedWrite, status.Error(codes.Unavailable, "down"), true, false},
		{"method not opted in", plain, status.Error(codes.Unavailable, "down"), false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			store := newStore(t, 10)
			q := newQueue(t, store, pending.WithMetadata("tenant"))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ctx = metadata.AppendToOutgoingContext(ctx, "tenant", "acme", "other", "dropped")
			ctx = trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
				TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled}))
			var sentKey []string
			invoker := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
				sentKey = metadata.ValueFromOutgoingContext(ctx, policy.KeyMetadata)
				if tc.cancel {
					cancel()
				}
				return tc.err
			}
			req := &policytestv1.PingRequest{Payload: "charge 10"}
			err := q.UnaryClientInterceptor()(ctx, tc.method, req, &policytestv1.PingResponse{}, nil, invoker)
			es := waiting(t, store)
			var d *pending.Deferred
			if !tc.queued {
				if err != tc.err || errors.As(err, &d) || len(es) != 0 {
					t.Fatalf("err = %v (want %v unchanged), %d entries queued (want 0)", err, tc.err, len(es))
				}
				return
			}
			if !errors.As(err, &d) || len(es) != 1 {
				t.Fatalf("err = %v, %d entries; want a Deferred error and one entry", err, len(es))
			}
			e := es[0]
			if len(sentKey) != 1 || d.Key != sentKey[0] || e.Key != d.Key || d.Method != keyedWrite || !errors.Is(err, tc.err) {
				t.Fatalf("keys: sent %v, Deferred %q, entry %q; cause kept: %v", sentKey, d.Key, e.Key, errors.Is(err, tc.err))
			}
			var got policytestv1.PingRequest
			if err := proto.Unmarshal(e.Request, &got); err != nil || got.Payload != "charge 10" {
				t.Fatalf("stored request %q, %v", got.Payload, err)
			}
			if len(e.Metadata) != 1 || e.Metadata["tenant"][0] != "acme" {
				t.Fatalf("stored metadata %v, want only tenant", e.Metadata)
			}
			sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier(e.Trace)))
			if sc.TraceID() != (trace.TraceID{1}) {
				t.Fatalf("stored trace %v", e.Trace)
			}
			st := status.Convert(err)
			if st.Code() != codes.Unavailable || !pending.IsPending(st) {
				t.Fatalf("status of a Deferred: %v, pending detail %v", st.Code(), pending.IsPending(st))
			}
		})
	}
}

func TestInterceptorKeepsTheCallersKey(t *testing.T) {
	tests := []struct {
		name string
		ctx  func(context.Context) context.Context
		want string
		bad  bool
	}{
		{"WithKey", func(ctx context.Context) context.Context { return idempotency.WithKey(ctx, "order-1") }, "order-1", false},
		{"metadata", func(ctx context.Context) context.Context {
			return metadata.AppendToOutgoingContext(ctx, policy.KeyMetadata, "order-2")
		}, "order-2", false},
		{"both agree", func(ctx context.Context) context.Context {
			return metadata.AppendToOutgoingContext(idempotency.WithKey(ctx, "order-3"), policy.KeyMetadata, "order-3")
		}, "order-3", false},
		{"both disagree", func(ctx context.Context) context.Context {
			return metadata.AppendToOutgoingContext(idempotency.WithKey(ctx, "a"), policy.KeyMetadata, "b")
		}, "", true},
		{"two in metadata", func(ctx context.Context) context.Context {
			return metadata.AppendToOutgoingContext(ctx, policy.KeyMetadata, "a", policy.KeyMetadata, "b")
		}, "", true},
		{"invalid", func(ctx context.Context) context.Context { return idempotency.WithKey(ctx, " padded ") }, "", true},
		{"invalid in metadata", func(ctx context.Context) context.Context {
			return metadata.AppendToOutgoingContext(ctx, policy.KeyMetadata, "tab\there")
		}, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			store := newStore(t, 10)
			q := newQueue(t, store)
			sent := 0
			invoker := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
				sent++
				if got := metadata.ValueFromOutgoingContext(ctx, policy.KeyMetadata); len(got) != 1 || got[0] != tc.want {
					t.Errorf("sent with keys %v, want [%s]", got, tc.want)
				}
				return status.Error(codes.Unavailable, "down")
			}
			err := q.UnaryClientInterceptor()(tc.ctx(context.Background()), keyedWrite, &policytestv1.PingRequest{}, &policytestv1.PingResponse{}, nil, invoker)
			if tc.bad {
				if status.Code(err) != codes.InvalidArgument || sent != 0 || len(waiting(t, store)) != 0 {
					t.Fatalf("err = %v, sent %d; want INVALID_ARGUMENT, nothing sent or queued", err, sent)
				}
				return
			}
			var d *pending.Deferred
			if !errors.As(err, &d) || d.Key != tc.want {
				t.Fatalf("err = %v, want Deferred with key %s", err, tc.want)
			}
		})
	}
}

func TestFullStoreIsAnError(t *testing.T) {
	store := newStore(t, 1)
	q := newQueue(t, store)
	down := status.Error(codes.Unavailable, "down")
	invoker := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return down }
	call := func() error {
		return q.UnaryClientInterceptor()(context.Background(), keyedWrite, &policytestv1.PingRequest{}, &policytestv1.PingResponse{}, nil, invoker)
	}
	var d *pending.Deferred
	if err := call(); !errors.As(err, &d) {
		t.Fatalf("first call: %v, want Deferred", err)
	}
	err := call()
	var nq *pending.NotQueuedError
	if !errors.As(err, &nq) || !errors.Is(err, pending.ErrFull) || !errors.Is(err, down) || errors.As(err, &d) {
		t.Fatalf("call into a full store: %v; want a NotQueuedError wrapping ErrFull and the cause", err)
	}
	if st := status.Convert(err); st.Code() != codes.Unavailable || pending.IsPending(st) {
		t.Fatalf("status %v, pending %v; want the cause's code and no pending detail", st.Code(), pending.IsPending(st))
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	store := newStore(t, 1)
	tests := []struct {
		name string
		opts []pending.Option
		want string
	}{
		{"no methods", nil, "ForMethods"},
		{"not a full name", []pending.Option{pending.ForMethods("Charge")}, "pending.ForMethods"},
		{"unknown service", []pending.Option{pending.ForMethods("/nope.v1.S/M")}, "pending.ForMethods"},
		{"streaming", []pending.Option{pending.ForMethods(policytestv1.TunedService_Watch_FullMethodName)}, "streaming"},
		{"key as metadata", []pending.Option{pending.ForMethods(keyedWrite), pending.WithMetadata(policy.KeyMetadata)}, "pending.WithMetadata"},
		{"OK code", []pending.Option{pending.ForMethods(keyedWrite), pending.WithCodes(codes.OK)}, "pending.WithCodes"},
		{"limits", []pending.Option{pending.ForMethods(keyedWrite), pending.WithLimits(0, time.Hour)}, "pending.WithLimits"},
		{"backoff", []pending.Option{pending.ForMethods(keyedWrite), pending.WithBackoff(time.Minute, time.Second)}, "pending.WithBackoff"},
		{"drain", []pending.Option{pending.ForMethods(keyedWrite), pending.WithDrain(time.Second, 0, time.Second)}, "pending.WithDrain"},
		{"nil clock", []pending.Option{pending.ForMethods(keyedWrite), pending.WithClock(nil)}, "pending.WithClock"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pending.New(store, tc.opts...)
			if err == nil || !contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error naming %s", err, tc.want)
			}
		})
	}
	if _, err := pending.New(nil, pending.ForMethods(keyedWrite)); err == nil {
		t.Fatal("New(nil store) succeeded")
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || len(s) >= len(sub) && (s[:len(sub)] == sub || contains(s[1:], sub))
}

// fakeConn answers redeliveries with what answer says about each request.
type fakeConn struct {
	answer func(key string, req *policytestv1.PingRequest) error
	sent   []string // keys, in order
	md     []metadata.MD
	ctxs   []context.Context
}

func (c *fakeConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	md, _ := metadata.FromOutgoingContext(ctx)
	key := md.Get(policy.KeyMetadata)[0]
	c.sent = append(c.sent, key)
	c.md = append(c.md, md)
	c.ctxs = append(c.ctxs, ctx)
	err := c.answer(key, args.(*policytestv1.PingRequest))
	if err == nil {
		reply.(*policytestv1.PingResponse).Payload = "ok " + key
	}
	return err
}

func (c *fakeConn) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, errors.New("no streams")
}

func add(t *testing.T, s pending.Store, key string, enq time.Time) {
	t.Helper()
	b, _ := proto.Marshal(&policytestv1.PingRequest{Payload: key})
	if err := s.Add(context.Background(), pending.Entry{Key: key, Method: keyedWrite, Request: b, Enqueued: enq, NotBefore: enq,
		Metadata: map[string][]string{"tenant": {"acme"}}}); err != nil {
		t.Fatal(err)
	}
}

func TestDrainOnce(t *testing.T) {
	breakerOpen := &outcome.Rejection{Layer: "breaker", Code: codes.Unavailable, Message: "open", RetryAfter: 30 * time.Second}
	tests := []struct {
		name     string
		attempts int // earlier failed attempts of every entry
		age      time.Duration
		answer   error
		want     pending.Report
		sent     int
		wantNext time.Duration // when the entries are due again (waiting ones)
		dead     string        // reason prefix of dead entries
	}{
		{"healthy", 0, 0, nil, pending.Report{Settled: 3}, 3, 0, ""},
		{"refused", 0, 0, status.Error(codes.InvalidArgument, "bad amount"), pending.Report{Dead: 3}, 3, 0, "refused with InvalidArgument: bad amount"},
		{"key conflict", 0, 0, status.Error(codes.FailedPrecondition, "key reused"), pending.Report{Dead: 3}, 3, 0, "refused with FailedPrecondition"},
		{"still down", 0, 0, status.Error(codes.Unavailable, "down"), pending.Report{Retry: 3}, 3, time.Second, ""},
		{"still down, backoff doubles", 3, 0, status.Error(codes.Unavailable, "down"), pending.Report{Retry: 3}, 3, 8 * time.Second, ""},
		{"out of attempts", 4, 0, status.Error(codes.Unavailable, "down"), pending.Report{Dead: 3}, 3, 0, "gave up after 5 attempts"},
		{"too old", 0, 2 * time.Hour, nil, pending.Report{Dead: 3}, 0, 0, "older than 1h0m0s"},
		{"breaker open stops the pass", 0, 0, breakerOpen, pending.Report{Retry: 3}, 1, 30 * time.Second, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewFake(start)
			store := newStore(t, 10)
			var settled, dead []string
			q := newQueue(t, store, pending.WithClock(clk), pending.WithLimits(5, time.Hour), pending.WithBackoff(time.Second, time.Minute),
				pending.OnSettled(func(_ context.Context, s pending.Settled) {
					settled = append(settled, s.Key)
					if got := s.Reply.(*policytestv1.PingResponse).Payload; got != "ok "+s.Key {
						t.Errorf("settled reply %q", got)
					}
				}),
				pending.OnDead(func(_ context.Context, d pending.Dead) { dead = append(dead, d.Key+": "+d.Reason) }))
			for i, k := range []string{"a", "b", "c"} {
				add(t, store, k, start.Add(time.Duration(i-3)*time.Millisecond))
			}
			if tc.attempts > 0 {
				for _, e := range waiting(t, store) {
					e.Attempts, e.NotBefore = tc.attempts, start
					_ = store.Reschedule(context.Background(), e)
				}
			}
			clk.Advance(tc.age)
			conn := &fakeConn{answer: func(key string, req *policytestv1.PingRequest) error {
				if req.Payload != key {
					t.Errorf("request of %s is %q", key, req.Payload)
				}
				return tc.answer
			}}
			r, err := q.DrainOnce(context.Background(), conn)
			if err != nil || r != tc.want || len(conn.sent) != tc.sent {
				t.Fatalf("DrainOnce = %+v, %v, sent %d; want %+v, %d sent", r, err, len(conn.sent), tc.want, tc.sent)
			}
			for _, md := range conn.md {
				if md.Get("tenant")[0] != "acme" {
					t.Fatalf("redelivery metadata %v lacks the stored entries", md)
				}
			}
			if len(settled) != tc.want.Settled || len(dead) != tc.want.Dead {
				t.Fatalf("hooks: settled %v, dead %v", settled, dead)
			}
			for _, d := range dead {
				if !contains(d, tc.dead) {
					t.Fatalf("dead reason %q, want %q", d, tc.dead)
				}
			}
			st, _ := store.Stats(context.Background())
			if st.Depth != tc.want.Retry || st.Dead != tc.want.Dead {
				t.Fatalf("store %+v after %+v", st, r)
			}
			if tc.want.Retry > 0 {
				// Not due a moment before the backoff, all due at it.
				next := clk.Now().Add(tc.wantNext)
				if es, _ := store.Claim(context.Background(), next.Add(-time.Millisecond), time.Minute, 10); len(es) != 0 {
					t.Fatalf("%d entries due before the backoff of %v", len(es), tc.wantNext)
				}
				es, _ := store.Claim(context.Background(), next, time.Minute, 10)
				if len(es) != 3 {
					t.Fatalf("%d entries due after the backoff, want 3", len(es))
				}
				for _, e := range es {
					if e.Key == conn.sent[0] && !contains(e.LastError, tc.answer.Error()) {
						t.Fatalf("%s kept last error %q, want %q", e.Key, e.LastError, tc.answer)
					}
				}
			}
		})
	}
}

func TestRedeliveryIsASpanLinkedToTheCall(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	store := newStore(t, 10)
	q := newQueue(t, store, pending.WithTracerProvider(tp))
	ctx, call := tp.Tracer("test").Start(context.Background(), "checkout")
	invoker := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
		return status.Error(codes.Unavailable, "down")
	}
	_ = q.UnaryClientInterceptor()(ctx, keyedWrite, &policytestv1.PingRequest{}, &policytestv1.PingResponse{}, nil, invoker)
	call.End()
	conn := &fakeConn{answer: func(string, *policytestv1.PingRequest) error { return nil }}
	if r, err := q.DrainOnce(context.Background(), conn); err != nil || r.Settled != 1 {
		t.Fatalf("DrainOnce = %+v, %v", r, err)
	}
	spans := rec.Ended()
	if len(spans) != 2 || spans[1].Name() != pending.SpanRedeliver {
		t.Fatalf("spans %d", len(spans))
	}
	re := spans[1]
	if len(re.Links()) != 1 || re.Links()[0].SpanContext.SpanID() != call.SpanContext().SpanID() ||
		re.SpanContext().TraceID() == call.SpanContext().TraceID() {
		t.Fatalf("redelivery span links %v; want a new trace linked to the call's span", re.Links())
	}
	if got := trace.SpanContextFromContext(conn.ctxs[0]); got.SpanID() != re.SpanContext().SpanID() {
		t.Fatal("the redelivery was not sent under its span")
	}
}

func TestEnqueue(t *testing.T) {
	store := newStore(t, 10)
	q := newQueue(t, store)
	ctx := context.Background()
	cause := status.Error(codes.Internal, "stream broke")
	var d *pending.Deferred
	if err := q.Enqueue(ctx, keyedWrite, "batch-1/0", &policytestv1.PingRequest{Payload: "x"}, cause); !errors.As(err, &d) || d.Key != "batch-1/0" || !errors.Is(err, cause) {
		t.Fatalf("Enqueue = %v, want Deferred for batch-1/0", err)
	}
	var nq *pending.NotQueuedError
	for _, tc := range []struct{ method, key string }{{plain, "k"}, {keyedWrite, ""}} {
		if err := q.Enqueue(ctx, tc.method, tc.key, &policytestv1.PingRequest{}, cause); !errors.As(err, &nq) {
			t.Fatalf("Enqueue(%s, %q) = %v, want NotQueuedError", tc.method, tc.key, err)
		}
	}
	if es := waiting(t, store); len(es) != 1 || es[0].LastError != cause.Error() {
		t.Fatalf("waiting %+v", es)
	}
}

// Redeliveries slow enough to use up half the lease: the pass gives the
// rest of its batch back, due at once, instead of holding claims that
// another drainer would take over while this one sends them.
func TestDrainOnceGivesBackWhatItCannotSendInTime(t *testing.T) {
	clk := clock.NewFake(start)
	store := newStore(t, 10)
	q := newQueue(t, store, pending.WithClock(clk), pending.WithDrain(time.Second, 10, time.Minute))
	for i, k := range []string{"a", "b", "c"} {
		add(t, store, k, start.Add(time.Duration(i-3)*time.Millisecond))
	}
	conn := &fakeConn{answer: func(string, *policytestv1.PingRequest) error {
		clk.Advance(40 * time.Second)
		return nil
	}}
	r, err := q.DrainOnce(context.Background(), conn)
	if err != nil || r != (pending.Report{Settled: 1, Retry: 2}) || len(conn.sent) != 1 {
		t.Fatalf("DrainOnce = %+v, %v, sent %v; want a settled, b and c given back", r, err, conn.sent)
	}
	if es, _ := store.Claim(context.Background(), clk.Now(), time.Minute, 10); len(es) != 2 {
		t.Fatalf("%d entries due after the pass, want b and c at once", len(es))
	}
}
