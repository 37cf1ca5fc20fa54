package deadline_test

import (
	"context"
	"errors"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/deadline"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/outcome"
	"github.com/failsoft/failsoft/interceptors/policy"
	brokenv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/broken/v1"
	_ "github.com/failsoft/failsoft/proto/failsoft/policytest/v1" // test descriptors
	failsoftv1 "github.com/failsoft/failsoft/proto/failsoft/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	mPlain    = "/failsoft.policytest.v1.PlainService/Plain"
	mInherit  = "/failsoft.policytest.v1.TunedService/Inherit"  // proto: timeout 5s, min_budget 50ms
	mOverride = "/failsoft.policytest.v1.TunedService/Override" // proto: timeout 2s, min_budget 50ms
	mBroken   = brokenv1.BrokenService_ZeroTimeout_FullMethodName
	mTimeout  = "/t.v1.S/Timeout"   // code: timeout 300ms
	mMin      = "/t.v1.S/MinBudget" // code: min_budget 100ms
	mTight    = "/t.v1.S/Tight"     // code: timeout 30ms, min_budget 100ms
	mLong     = "/t.v1.S/Long"      // code: timeout 2h
	mNoMin    = "/t.v1.S/NoMin"     // code: min_budget 0, the check disabled
)

func testResolver(t testing.TB) *policy.Resolver {
	t.Helper()
	r, err := policy.New(
		policy.WithMethod(mTimeout, &failsoftv1.MethodPolicy{Timeout: durationpb.New(300 * time.Millisecond)}),
		policy.WithMethod(mMin, &failsoftv1.MethodPolicy{MinBudget: durationpb.New(100 * time.Millisecond)}),
		policy.WithMethod(mLong, &failsoftv1.MethodPolicy{Timeout: durationpb.New(2 * time.Hour)}),
		policy.WithMethod(mNoMin, &failsoftv1.MethodPolicy{MinBudget: durationpb.New(0)}),
		policy.WithMethod(mTight, &failsoftv1.MethodPolicy{
			Timeout: durationpb.New(30 * time.Millisecond), MinBudget: durationpb.New(100 * time.Millisecond),
		}),
	)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// recorder is an Observer that keeps every event.
type recorder struct {
	mu     sync.Mutex
	events []observe.Event
}

func (r *recorder) Observe(_ context.Context, e observe.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) all() []observe.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]observe.Event(nil), r.events...)
}

type ctxKey struct{}

func TestUnaryClientDeadlines(t *testing.T) {
	const none = time.Duration(-1 << 63) // no caller deadline
	tests := []struct {
		name   string
		method string
		caller time.Duration // caller's deadline from now, or none
		opts   []deadline.Option
		// want: the deadline the invoker sees, from now, and its source; or
		// a fail-fast rejection whose message holds every string in reject.
		want   time.Duration
		source string
		reject []string
	}{
		{name: "default", method: mPlain, caller: none, want: deadline.DefaultTimeout, source: "default"},
		{name: "configured default", method: mPlain, caller: none, opts: []deadline.Option{deadline.WithDefaultTimeout(3 * time.Second)}, want: 3 * time.Second, source: "default"},
		{name: "policy from proto", method: mInherit, caller: none, want: 5 * time.Second, source: "policy"},
		{name: "method over service in proto", method: mOverride, caller: none, want: 2 * time.Second, source: "policy"},
		{name: "policy from code", method: mTimeout, caller: none, want: 300 * time.Millisecond, source: "policy"},
		{name: "caller earlier than policy", method: mInherit, caller: time.Second, want: time.Second, source: "caller"},
		{name: "policy earlier than caller", method: mInherit, caller: 8 * time.Second, want: 5 * time.Second, source: "policy"},
		{name: "caller equal to policy", method: mInherit, caller: 5 * time.Second, want: 5 * time.Second, source: "caller"},
		{name: "caller later than default is kept", method: mPlain, caller: time.Minute, want: time.Minute, source: "caller"},
		{name: "above policy minimum", method: mMin, caller: 101 * time.Millisecond, want: 101 * time.Millisecond, source: "caller"},
		{name: "exactly the minimum is sent", method: mMin, caller: 100 * time.Millisecond, want: 100 * time.Millisecond, source: "caller"},
		{name: "below policy minimum", method: mMin, caller: 40 * time.Millisecond, reject: []string{"40ms of budget left", mMin, "the minimum is 100ms"}},
		{name: "below proto minimum", method: mInherit, caller: 30 * time.Millisecond, reject: []string{"30ms of budget left", "the minimum is 50ms"}},
		{name: "below interceptor minimum", method: mPlain, caller: 40 * time.Millisecond, opts: []deadline.Option{deadline.WithMinBudget(50 * time.Millisecond)}, reject: []string{"40ms of budget left", "the minimum is 50ms"}},
		{name: "policy minimum over interceptor minimum", method: mMin, caller: 500 * time.Millisecond, opts: []deadline.Option{deadline.WithMinBudget(time.Second)}, want: 500 * time.Millisecond, source: "caller"},
		{name: "policy min_budget 0 disables the interceptor minimum", method: mNoMin, caller: 40 * time.Millisecond, opts: []deadline.Option{deadline.WithMinBudget(50 * time.Millisecond)}, want: 40 * time.Millisecond, source: "caller"},
		{name: "deadline passed", method: mPlain, caller: -5 * time.Millisecond, reject: []string{"no budget left", "passed 5ms ago", "the minimum is 0s"}},
		{name: "no budget at all", method: mPlain, caller: 0, reject: []string{"0s of budget left"}},
		{name: "policy timeout below its own minimum", method: mTight, caller: none, reject: []string{"30ms of budget left", "the minimum is 100ms"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Now()
			rec := &recorder{}
			opts := append([]deadline.Option{
				deadline.WithClock(clock.NewFake(now)), deadline.WithResolver(testResolver(t)), deadline.WithObserver(rec),
			}, tt.opts...)
			dl, err := deadline.New(opts...)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.WithValue(context.Background(), ctxKey{}, "v")
			if tt.caller != none {
				var cancel context.CancelFunc
				ctx, cancel = context.WithDeadline(ctx, now.Add(tt.caller))
				defer cancel()
			}
			var sent context.Context
			invoker := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
				sent = ctx
				return nil
			}
			err = dl.UnaryClientInterceptor()(ctx, tt.method, nil, nil, nil, invoker)
			events := rec.all()
			if len(events) != 1 {
				t.Fatalf("events = %+v, want one", events)
			}
			e := events[0]
			if tt.reject != nil {
				if sent != nil {
					t.Fatal("a call without enough budget was sent")
				}
				rej, ok := outcome.AsRejection(err)
				if !ok || rej.Layer != "deadline" || rej.Code != codes.DeadlineExceeded {
					t.Fatalf("err = %#v, want a deadline Rejection with DEADLINE_EXCEEDED", err)
				}
				if status.Code(err) != codes.DeadlineExceeded || !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("err %v: status code %v, errors.Is(DeadlineExceeded) %v", err, status.Code(err), errors.Is(err, context.DeadlineExceeded))
				}
				for _, s := range tt.reject {
					if !strings.Contains(rej.Message, s) {
						t.Errorf("message %q lacks %q", rej.Message, s)
					}
				}
				if e.Kind != observe.DeadlineFailFast || e.Method != tt.method || e.Err != err {
					t.Errorf("event = %+v, want DeadlineFailFast for %s carrying the error", e, tt.method)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, ok := sent.Deadline()
			if !ok || got.Sub(now) != tt.want {
				t.Errorf("invoker saw deadline now%+v (%v), want now%+v", got.Sub(now), ok, tt.want)
			}
			if sent.Value(ctxKey{}) != "v" {
				t.Error("the caller's context values were lost")
			}
			if (tt.source == "caller") != (sent == ctx) {
				t.Errorf("context replaced = %v, want %v", sent != ctx, tt.source != "caller")
			}
			if tt.source != "caller" && sent.Err() != context.Canceled {
				t.Errorf("added deadline context not released after the call: %v", sent.Err())
			}
			if e.Kind != observe.DeadlineSet || e.Duration != tt.want || e.Reason != tt.source || e.Method != tt.method {
				t.Errorf("event = %+v, want DeadlineSet %v from %s", e, tt.want, tt.source)
			}
		})
	}
}

func TestUnaryClientPassesResult(t *testing.T) {
	dl, err := deadline.New()
	if err != nil {
		t.Fatal(err)
	}
	want := status.Error(codes.NotFound, "nope")
	err = dl.UnaryClientInterceptor()(context.Background(), mPlain, nil, nil, nil,
		func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return want })
	if err != want {
		t.Errorf("err = %v, want the invoker's error unchanged", err)
	}
}

func TestInvalidPolicyFailsCall(t *testing.T) {
	dl, err := deadline.New()
	if err != nil {
		t.Fatal(err)
	}
	called := false
	err = dl.UnaryClientInterceptor()(context.Background(), mBroken, nil, nil, nil,
		func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
			called = true
			return nil
		})
	if called || status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "timeout") {
		t.Errorf("unary: called=%v err=%v, want FailedPrecondition naming the field", called, err)
	}
	_, err = dl.StreamClientInterceptor()(context.Background(), &grpc.StreamDesc{ServerStreams: true}, nil, mBroken,
		func(context.Context, *grpc.StreamDesc, *grpc.ClientConn, string, ...grpc.CallOption) (grpc.ClientStream, error) {
			called = true
			return nil, nil
		})
	if called || status.Code(err) != codes.FailedPrecondition {
		t.Errorf("stream: called=%v err=%v, want FailedPrecondition", called, err)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	_, err := deadline.New(
		deadline.WithDefaultTimeout(0),
		deadline.WithMinBudget(-time.Second),
		deadline.WithSafetyMargin(-time.Millisecond),
		deadline.WithResolver(nil),
		deadline.WithClock(nil),
	)
	if err == nil {
		t.Fatal("New accepted invalid options")
	}
	for _, name := range []string{"WithDefaultTimeout", "WithMinBudget", "WithSafetyMargin", "WithResolver", "WithClock"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name %s", err, name)
		}
	}
	if _, err := deadline.New(nil, deadline.WithObserver(nil), deadline.WithMinBudget(0), deadline.WithSafetyMargin(0)); err != nil {
		t.Errorf("valid options refused: %v", err)
	}
}

// fakeStream stands in for grpc-go's client stream: its context is a child
// of the one it was opened with, cancelled when it finishes, and RecvMsg
// returns the queued results.
type fakeStream struct {
	grpc.ClientStream
	ctx    context.Context
	finish context.CancelFunc
	recv   []error
}

func (s *fakeStream) Context() context.Context { return s.ctx }

func (s *fakeStream) RecvMsg(any) error {
	if len(s.recv) == 0 {
		return io.EOF
	}
	err := s.recv[0]
	s.recv = s.recv[1:]
	return err
}

// openFake opens a stream through the interceptor over a fake streamer and
// returns the client stream, the fake, and the context the streamer saw.
func openFake(t *testing.T, dl *deadline.Interceptor, ctx context.Context, desc *grpc.StreamDesc, method string, recv ...error) (grpc.ClientStream, *fakeStream, context.Context) {
	t.Helper()
	var fs *fakeStream
	var seen context.Context
	streamer := func(ctx context.Context, _ *grpc.StreamDesc, _ *grpc.ClientConn, _ string, _ ...grpc.CallOption) (grpc.ClientStream, error) {
		seen = ctx
		sctx, finish := context.WithCancel(ctx)
		fs = &fakeStream{ctx: sctx, finish: finish, recv: recv}
		return fs, nil
	}
	cs, err := dl.StreamClientInterceptor()(ctx, desc, nil, method, streamer)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fs.finish)
	return cs, fs, seen
}

var (
	serverStreaming = &grpc.StreamDesc{StreamName: "S", ServerStreams: true}
	clientStreaming = &grpc.StreamDesc{StreamName: "C", ClientStreams: true}
	bidiStreaming   = &grpc.StreamDesc{StreamName: "B", ClientStreams: true, ServerStreams: true}
)

func TestStreamReleasedWhenRecvFails(t *testing.T) {
	for _, desc := range []*grpc.StreamDesc{serverStreaming, bidiStreaming} {
		t.Run(desc.StreamName, func(t *testing.T) {
			dl, _ := deadline.New()
			cs, _, ctx := openFake(t, dl, context.Background(), desc, mPlain, nil, nil, io.EOF)
			if _, ok := ctx.Deadline(); !ok {
				t.Fatal("stream opened without a deadline")
			}
			for i := 0; i < 2; i++ {
				if ctx.Err() != nil {
					t.Fatalf("stream context ended before the stream did (message %d): %v", i, ctx.Err())
				}
				if err := cs.RecvMsg(nil); err != nil {
					t.Fatal(err)
				}
			}
			if ctx.Err() != nil {
				t.Fatalf("stream context ended before the stream did: %v", ctx.Err())
			}
			if err := cs.RecvMsg(nil); err != io.EOF {
				t.Fatalf("RecvMsg = %v, want io.EOF unchanged", err)
			}
			if ctx.Err() != context.Canceled {
				t.Errorf("after io.EOF the deadline context is %v, want released", ctx.Err())
			}
		})
	}
	t.Run("error", func(t *testing.T) {
		dl, _ := deadline.New()
		want := status.Error(codes.Unavailable, "gone")
		cs, _, ctx := openFake(t, dl, context.Background(), serverStreaming, mPlain, want)
		if err := cs.RecvMsg(nil); err != want {
			t.Fatalf("RecvMsg = %v, want %v", err, want)
		}
		if ctx.Err() != context.Canceled {
			t.Errorf("after an error the deadline context is %v, want released", ctx.Err())
		}
	})
}

func TestClientStreamReleasedWithItsResponse(t *testing.T) {
	dl, _ := deadline.New()
	cs, _, ctx := openFake(t, dl, context.Background(), clientStreaming, mPlain, nil)
	if ctx.Err() != nil {
		t.Fatal("released before the response")
	}
	if err := cs.RecvMsg(nil); err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != context.Canceled {
		t.Errorf("after the one response the deadline context is %v, want released", ctx.Err())
	}
}

func TestStreamReleasedWhenItsContextEnds(t *testing.T) {
	dl, _ := deadline.New()
	_, fs, ctx := openFake(t, dl, context.Background(), bidiStreaming, mPlain)
	fs.finish() // as grpc-go does when a stream finishes without RecvMsg seeing it
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("deadline context not released after the stream's context ended")
	}
}

func TestStreamCallerDeadlineUntouched(t *testing.T) {
	dl, _ := deadline.New()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	cs, fs, seen := openFake(t, dl, ctx, serverStreaming, mInherit)
	if seen != ctx || cs != grpc.ClientStream(fs) {
		t.Error("a caller's deadline that is already the earliest should pass through untouched")
	}
}

func TestStreamOpenErrorReleases(t *testing.T) {
	dl, _ := deadline.New()
	want := status.Error(codes.Unavailable, "no")
	var seen context.Context
	_, err := dl.StreamClientInterceptor()(context.Background(), serverStreaming, nil, mPlain,
		func(ctx context.Context, _ *grpc.StreamDesc, _ *grpc.ClientConn, _ string, _ ...grpc.CallOption) (grpc.ClientStream, error) {
			seen = ctx
			return nil, want
		})
	if err != want {
		t.Fatalf("err = %v, want %v", err, want)
	}
	if seen.Err() != context.Canceled {
		t.Errorf("deadline context %v after a failed open, want released", seen.Err())
	}
}

func TestStreamFailFast(t *testing.T) {
	rec := &recorder{}
	dl, _ := deadline.New(deadline.WithResolver(testResolver(t)), deadline.WithObserver(rec))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	called := false
	_, err := dl.StreamClientInterceptor()(ctx, serverStreaming, nil, mMin,
		func(context.Context, *grpc.StreamDesc, *grpc.ClientConn, string, ...grpc.CallOption) (grpc.ClientStream, error) {
			called = true
			return nil, nil
		})
	if called {
		t.Fatal("a stream without enough budget was opened")
	}
	if rej, ok := outcome.AsRejection(err); !ok || rej.Code != codes.DeadlineExceeded {
		t.Fatalf("err = %v, want a DEADLINE_EXCEEDED Rejection", err)
	}
	if ev := rec.all(); len(ev) != 1 || ev[0].Kind != observe.DeadlineFailFast {
		t.Errorf("events = %+v, want one DeadlineFailFast", ev)
	}
}

func TestNoGoroutinePerStream(t *testing.T) {
	dl, _ := deadline.New()
	before := runtime.NumGoroutine()
	streams := make([]grpc.ClientStream, 100)
	for i := range streams {
		streams[i], _, _ = openFake(t, dl, context.Background(), bidiStreaming, mPlain)
	}
	if after := runtime.NumGoroutine(); after > before+5 {
		t.Errorf("%d goroutines for 100 open streams, %d before", after, before)
	}
	for _, s := range streams {
		if err := s.RecvMsg(nil); err != io.EOF {
			t.Fatal(err)
		}
	}
}
