package retry_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/outcome"
	"github.com/failsoft/failsoft/interceptors/policy"
	"github.com/failsoft/failsoft/interceptors/retry"
	brokenv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/broken/v1"
	pb "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// TestWhoIsRetried: each code class, each idempotency, with the server
// failing every attempt with the given code.
func TestWhoIsRetried(t *testing.T) {
	tests := []struct {
		name     string
		method   string
		code     codes.Code
		key      bool
		attempts int
		stop     string
	}{
		{"unavailable is retried up to max attempts", mIdempotent, codes.Unavailable, false, 3, "attempts"},
		{"no side effects retried", mNoSide, codes.Unavailable, false, 3, "attempts"},
		{"internal is not in the default codes", mIdempotent, codes.Internal, false, 1, "code"},
		{"resource exhausted not in the default codes", mIdempotent, codes.ResourceExhausted, false, 1, "code"},
		{"server deadline exceeded never", mIdempotent, codes.DeadlineExceeded, false, 1, "code"},
		{"server canceled never", mIdempotent, codes.Canceled, false, 1, "code"},
		{"invalid argument never", mIdempotent, codes.InvalidArgument, false, 1, "code"},
		{"policy codes: resource exhausted retried", mOverride, codes.ResourceExhausted, false, 2, "attempts"},
		{"not idempotent: one attempt", mPlain, codes.Unavailable, false, 1, ""},
		{"service default, not idempotent", mInherit, codes.Unavailable, false, 1, ""},
		{"vetoed by failsoft option", mVetoed, codes.Unavailable, false, 1, ""},
		{"keyed write without key", mKeyed, codes.Unavailable, false, 1, ""},
		{"keyed write with key", mKeyed, codes.Unavailable, true, 4, "attempts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envOpts{})
			e.b.unary = func(*serverCall) (*pb.PingResponse, error) { return nil, fail(tt.code) }
			ctx := within(t, 10*time.Second)
			if tt.key {
				ctx = metadata.AppendToOutgoingContext(ctx, policy.KeyMetadata, "k-1")
			}
			_, err := e.invoke(ctx, tt.method, "x")
			if status.Code(err) != tt.code {
				t.Fatalf("err = %v, want code %v", err, tt.code)
			}
			if got := e.b.count(tt.method); got != tt.attempts {
				t.Errorf("server saw %d attempts, want %d", got, tt.attempts)
			}
			var wantStops []string
			if tt.stop != "" {
				wantStops = []string{tt.stop}
			}
			if got := e.obs.stopReasons(); !slices.Equal(got, wantStops) {
				t.Errorf("RetryStopped reasons = %q, want %q", got, wantStops)
			}
			if got := len(e.obs.of(observe.AttemptStart)); got != tt.attempts {
				t.Errorf("AttemptStart events = %d, want %d", got, tt.attempts)
			}
			// The error is the last attempt's, unchanged.
			if tt.code != codes.OK && status.Convert(err).Message() != "injected "+tt.code.String() {
				t.Errorf("message = %q", status.Convert(err).Message())
			}
		})
	}
}

func TestSuccessAfterFailuresAndAttemptMetadata(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.b.unary = func(c *serverCall) (*pb.PingResponse, error) {
		if c.n < 3 {
			return nil, fail(codes.Unavailable)
		}
		return &pb.PingResponse{Payload: "ok" + c.req.GetPayload()}, nil
	}
	out, err := e.invoke(within(t, 10*time.Second), mIdempotent, "!")
	if err != nil || out.GetPayload() != "ok!" {
		t.Fatalf("got %v, %v", out, err)
	}
	if got, want := e.b.attemptMD(), []string{"", "2", "3"}; !slices.Equal(got, want) {
		t.Errorf("attempt metadata = %q, want %q", got, want)
	}
	if got := e.obs.stopReasons(); len(got) != 0 {
		t.Errorf("RetryStopped on success: %q", got)
	}
	ends := e.obs.of(observe.AttemptEnd)
	if len(ends) != 3 || ends[2].Err != nil || status.Code(ends[0].Err) != codes.Unavailable {
		t.Errorf("AttemptEnd events = %+v", ends)
	}
}

func TestResolveErrorFailsCall(t *testing.T) {
	e := newEnv(t, envOpts{})
	_, err := e.invoke(within(t, 10*time.Second), brokenv1.BrokenService_TooManyAttempts_FullMethodName, "x")
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "retry.max_attempts") {
		t.Fatalf("err = %v, want FailedPrecondition naming the field", err)
	}
	if _, err := e.cc.NewStream(within(t, 10*time.Second), watchDesc, brokenv1.BrokenService_ZeroTimeout_FullMethodName); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("stream err = %v, want FailedPrecondition", err)
	}
}

// TestRejectionNotRetried: an inner layer that answers locally (an open
// breaker) is not asked again.
func TestRejectionNotRetried(t *testing.T) {
	var calls int
	breaker := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		calls++
		return &outcome.Rejection{Layer: "breaker", Target: cc.Target(), Code: codes.Unavailable, Message: "circuit open"}
	}
	e := newEnv(t, envOpts{unary: []grpc.UnaryClientInterceptor{breaker}})
	_, err := e.invoke(within(t, 10*time.Second), mIdempotent, "x")
	if _, ok := outcome.AsRejection(err); !ok || calls != 1 {
		t.Fatalf("err = %v after %d calls, want the rejection after 1", err, calls)
	}
	if got := e.obs.stopReasons(); !slices.Equal(got, []string{"rejected"}) {
		t.Errorf("stop reasons = %q", got)
	}
}

func TestCallOptions(t *testing.T) {
	tests := []struct {
		name     string
		opts     []grpc.CallOption
		code     codes.Code
		attempts int
	}{
		{"WithMax(1)", []grpc.CallOption{retry.WithMax(1)}, codes.Unavailable, 1},
		{"WithMax(5)", []grpc.CallOption{retry.WithMax(5)}, codes.Unavailable, 5},
		{"Disable", []grpc.CallOption{retry.Disable()}, codes.Unavailable, 1},
		{"WithMax(0) invalid", []grpc.CallOption{retry.WithMax(0)}, codes.InvalidArgument, 0},
		{"WithMax(11) invalid", []grpc.CallOption{retry.WithMax(11)}, codes.InvalidArgument, 0},
		{"WithAttemptTimeout(0) invalid", []grpc.CallOption{retry.WithAttemptTimeout(0)}, codes.InvalidArgument, 0},
		{"WithBackoff invalid", []grpc.CallOption{retry.WithBackoff(time.Second, time.Millisecond, 2)}, codes.InvalidArgument, 0},
		{"WithBackoff valid", []grpc.CallOption{retry.WithBackoff(time.Millisecond, time.Second, 2)}, codes.Unavailable, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envOpts{retry: []retry.Option{retry.WithoutBudget()}})
			e.b.unary = func(*serverCall) (*pb.PingResponse, error) { return nil, fail(codes.Unavailable) }
			_, err := e.invoke(within(t, 10*time.Second), mIdempotent, "x", tt.opts...)
			if status.Code(err) != tt.code {
				t.Fatalf("err = %v, want %v", err, tt.code)
			}
			if got := e.b.count(mIdempotent); got != tt.attempts {
				t.Errorf("attempts = %d, want %d", got, tt.attempts)
			}
		})
	}
	// WithMax never makes an unsafe method retryable.
	e := newEnv(t, envOpts{})
	e.b.unary = func(*serverCall) (*pb.PingResponse, error) { return nil, fail(codes.Unavailable) }
	_, _ = e.invoke(within(t, 10*time.Second), mPlain, "x", retry.WithMax(5))
	if got := e.b.count(mPlain); got != 1 {
		t.Errorf("non-idempotent method with WithMax(5): %d attempts, want 1", got)
	}
}

// TestBackoffWaits: full jitter from the policy, waited on the clock.
func TestBackoffWaits(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.rand.set(0.5)
	e.b.unary = func(*serverCall) (*pb.PingResponse, error) { return nil, fail(codes.Unavailable) }
	done := make(chan error, 1)
	go func() {
		_, err := e.invoke(within(t, 10*time.Second), mIdempotent, "x")
		done <- err
	}()
	// Suite defaults: 3 attempts, 50 ms initial, multiplier 2: waits 25 ms
	// and 50 ms.
	for _, d := range []time.Duration{25 * time.Millisecond, 50 * time.Millisecond} {
		e.clock.BlockUntil(1)
		e.clock.Advance(d - time.Nanosecond)
		if e.clock.Timers() != 1 {
			t.Fatalf("backoff of %v ended early", d)
		}
		e.clock.Advance(time.Nanosecond)
	}
	if err := <-done; status.Code(err) != codes.Unavailable {
		t.Fatalf("err = %v", err)
	}
	var waits []time.Duration
	for _, ev := range e.obs.of(observe.Backoff) {
		if ev.Reason != "policy" {
			t.Errorf("backoff reason %q", ev.Reason)
		}
		waits = append(waits, ev.Duration)
	}
	if want := []time.Duration{25 * time.Millisecond, 50 * time.Millisecond}; !slices.Equal(waits, want) {
		t.Errorf("waits = %v, want %v", waits, want)
	}
}

// TestInnerLayersSeeAttempt: inner interceptors read the attempt from the
// context.
func TestInnerLayersSeeAttempt(t *testing.T) {
	var seen []observe.Attempt
	spy := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		seen = append(seen, observe.AttemptFrom(ctx))
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	e := newEnv(t, envOpts{unary: []grpc.UnaryClientInterceptor{spy}})
	e.rand.set(0)
	e.b.unary = func(c *serverCall) (*pb.PingResponse, error) {
		if c.n == 1 {
			return nil, fail(codes.Unavailable)
		}
		return &pb.PingResponse{}, nil
	}
	if _, err := e.invoke(within(t, 10*time.Second), mIdempotent, "x"); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 || seen[0].N != 1 || seen[1].N != 2 || seen[1].BackoffReason != "policy" {
		t.Fatalf("attempts seen = %+v", seen)
	}
}

func pushbackServer(e *env, trailer []string, err error) {
	e.b.unary = func(c *serverCall) (*pb.PingResponse, error) {
		if c.n > 1 {
			return &pb.PingResponse{}, nil
		}
		if trailer != nil {
			md := metadata.MD{}
			for _, v := range trailer {
				md.Append(retry.PushbackMetadata, v)
			}
			_ = grpc.SetTrailer(c.ctx, md)
		}
		return nil, err
	}
}

func retryInfo(d *durationpb.Duration) error {
	st, _ := status.New(codes.Unavailable, "busy").WithDetails(&errdetails.RetryInfo{RetryDelay: d})
	return st.Err()
}

func TestPushback(t *testing.T) {
	tests := []struct {
		name    string
		trailer []string
		err     error
		wait    time.Duration // exact wait; -1: no retry
	}{
		{"valid trailer", []string{"250"}, fail(codes.Unavailable), 250 * time.Millisecond},
		{"zero trailer", []string{"0"}, fail(codes.Unavailable), 0},
		{"negative trailer", []string{"-1"}, fail(codes.Unavailable), -1},
		{"malformed trailer", []string{"soon"}, fail(codes.Unavailable), -1},
		{"repeated trailer", []string{"10", "10"}, fail(codes.Unavailable), -1},
		{"trailer does not make a code retryable", []string{"10"}, fail(codes.Internal), -1},
		{"retry info", nil, retryInfo(durationpb.New(1500 * time.Millisecond)), 1500 * time.Millisecond},
		{"retry info negative", nil, retryInfo(durationpb.New(-time.Second)), -1},
		{"trailer wins over retry info", []string{"7"}, retryInfo(durationpb.New(time.Hour)), 7 * time.Millisecond},
	}
	// Each case runs without call options (the marking takes a trailer
	// holder from its pool), with an attempt timeout (the attempt carries
	// the trailer option), and with more options than an attempt holds
	// besides that one.
	timeout := []grpc.CallOption{retry.WithAttemptTimeout(time.Hour)}
	more := []grpc.CallOption{grpc.StaticMethod(), grpc.WaitForReady(false), grpc.MaxCallRecvMsgSize(1 << 20), retry.WithAttemptTimeout(time.Hour)}
	for _, opts := range [][]grpc.CallOption{nil, timeout, more} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s, %d call options", tt.name, len(opts)), func(t *testing.T) {
				testPushback(t, tt.trailer, tt.err, tt.wait, opts)
			})
		}
	}
}

// testPushback makes a call with options opts whose first attempt ends
// with trailer and attemptErr, and checks that it is retried after wait exactly (-1: not retried).
func testPushback(t *testing.T, trailer []string, attemptErr error, wait time.Duration, opts []grpc.CallOption) {
	e := newEnv(t, envOpts{})
	e.rand.set(0.99)
	pushbackServer(e, trailer, attemptErr)
	done := make(chan error, 1)
	go func() {
		_, err := e.invoke(within(t, 10*time.Second), mIdempotent, "x", opts...)
		done <- err
	}()
	if wait > 0 {
		e.clock.BlockUntil(1)
		e.clock.Advance(wait - time.Nanosecond)
		if e.clock.Timers() != 1 {
			t.Fatal("pushback wait ended early")
		}
		e.clock.Advance(time.Nanosecond)
	}
	err := <-done
	if wait < 0 {
		if err == nil || e.b.count(mIdempotent) != 1 {
			t.Fatalf("err = %v after %d attempts, want a failure after 1", err, e.b.count(mIdempotent))
		}
		return
	}
	if err != nil || e.b.count(mIdempotent) != 2 {
		t.Fatalf("err = %v after %d attempts", err, e.b.count(mIdempotent))
	}
	bo := e.obs.of(observe.Backoff)
	if len(bo) != 1 || bo[0].Duration != wait || bo[0].Reason != "pushback" {
		t.Errorf("backoff events = %+v", bo)
	}
}

// TestDeadlineCutsRetriesShort: a wait that would outlive the deadline is
// not started; the error says why.
func TestDeadlineCutsRetriesShort(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.rand.set(0.9)
	e.b.unary = func(*serverCall) (*pb.PingResponse, error) { return nil, fail(codes.Unavailable) }
	ctx, cancel := context.WithDeadline(context.Background(), e.clock.Now().Add(30*time.Second))
	defer cancel()
	_, err := e.invoke(ctx, mIdempotent, "x", retry.WithBackoff(time.Minute, time.Minute, 1))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("err = %v, want the last attempt's code", err)
	}
	if !strings.Contains(err.Error(), "retries cut short by the deadline") {
		t.Errorf("message = %q", err.Error())
	}
	var se *retry.StopError
	if !errors.As(err, &se) || se.Reason != "deadline" || se.Attempts != 1 {
		t.Errorf("StopError = %+v", se)
	}
	if info := errorInfo(err); info == nil || info.GetReason() != retry.ReasonDeadline || info.GetDomain() != retry.ErrorDomain {
		t.Errorf("ErrorInfo = %v", info)
	}
	if e.b.count(mIdempotent) != 1 || e.clock.Timers() != 0 {
		t.Errorf("attempts = %d, timers = %d", e.b.count(mIdempotent), e.clock.Timers())
	}
	if got := e.obs.stopReasons(); !slices.Equal(got, []string{"deadline"}) {
		t.Errorf("stop reasons = %q", got)
	}
}

func errorInfo(err error) *errdetails.ErrorInfo {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	return nil
}

// TestDeadlineExpiresDuringBackoff: the caller's deadline ends the wait.
func TestDeadlineExpiresDuringBackoff(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.rand.set(0.5) // waits 25 ms on the fake clock, which never moves
	e.b.unary = func(*serverCall) (*pb.PingResponse, error) { return nil, fail(codes.Unavailable) }
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := e.invoke(ctx, mIdempotent, "x")
	if status.Code(err) != codes.DeadlineExceeded || !strings.Contains(err.Error(), "while waiting to retry") {
		t.Fatalf("err = %v", err)
	}
	if e.b.count(mIdempotent) != 1 {
		t.Errorf("attempts = %d", e.b.count(mIdempotent))
	}
}

func TestCancelDuringBackoff(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.rand.set(0.5)
	e.b.unary = func(*serverCall) (*pb.PingResponse, error) { return nil, fail(codes.Unavailable) }
	ctx, cancel := context.WithCancel(within(t, 10*time.Second))
	done := make(chan error, 1)
	go func() {
		_, err := e.invoke(ctx, mIdempotent, "x")
		done <- err
	}()
	e.clock.BlockUntil(1)
	cancel()
	if err := <-done; status.Code(err) != codes.Canceled {
		t.Fatalf("err = %v", err)
	}
	if e.b.count(mIdempotent) != 1 || e.clock.Timers() != 0 {
		t.Errorf("attempts = %d, timers = %d", e.b.count(mIdempotent), e.clock.Timers())
	}
	if got := e.obs.stopReasons(); !slices.Equal(got, []string{"canceled"}) {
		t.Errorf("stop reasons = %q", got)
	}
}

// TestCallerDeadlineNotRetried: DEADLINE_EXCEEDED from the caller's own
// deadline ends the call.
func TestCallerDeadlineNotRetried(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.b.unary = func(c *serverCall) (*pb.PingResponse, error) {
		<-c.ctx.Done()
		return nil, c.ctx.Err()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := e.invoke(ctx, mIdempotent, "x")
	if status.Code(err) != codes.DeadlineExceeded || e.b.count(mIdempotent) != 1 {
		t.Fatalf("err = %v after %d attempts", err, e.b.count(mIdempotent))
	}
}

// TestPerAttemptTimeout: Override has a 500 ms per-attempt timeout; the
// first attempt hangs, the timeout (on the fake clock) fires, the second
// answers.
func TestPerAttemptTimeout(t *testing.T) {
	e := newEnv(t, envOpts{})
	arrived := make(chan struct{}, 2)
	e.b.unary = func(c *serverCall) (*pb.PingResponse, error) {
		if c.n == 1 {
			arrived <- struct{}{}
			<-c.ctx.Done()
			return nil, status.Error(codes.Canceled, "gone")
		}
		return &pb.PingResponse{Payload: "second"}, nil
	}
	done := make(chan error, 1)
	go func() {
		out, err := e.invoke(within(t, 10*time.Second), mOverride, "x")
		if err == nil && out.GetPayload() != "second" {
			err = errors.New("wrong reply " + out.GetPayload())
		}
		done <- err
	}()
	<-arrived
	e.clock.BlockUntil(1)
	e.clock.Advance(500 * time.Millisecond)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ends := e.obs.of(observe.AttemptEnd)
	if len(ends) != 2 || status.Code(ends[0].Err) != codes.DeadlineExceeded || !strings.Contains(ends[0].Err.Error(), "per-attempt timeout") {
		t.Errorf("attempt ends = %+v", ends)
	}
}

// TestPerAttemptTimeoutUnobserved: the same when no observer wants attempt
// events, so that the first attempt is sent before the call's state is
// built. The last attempt (Override has two) gets no timeout of its own:
// nothing would follow it, so cutting it would only turn a slow answer
// into a failure. It runs until the caller gives up.
func TestPerAttemptTimeoutUnobserved(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.obs.skipAttempts.Store(true)
	arrived := make(chan int, 2)
	e.b.unary = func(c *serverCall) (*pb.PingResponse, error) {
		if c.n == 1 || c.req.GetPayload() == "hang" {
			arrived <- c.n
			<-c.ctx.Done()
			return nil, status.Error(codes.Canceled, "gone")
		}
		return &pb.PingResponse{Payload: "second"}, nil
	}
	for _, tc := range []struct {
		payload string
		// hangs is true when the second attempt hangs too, until the
		// caller cancels the call.
		hangs bool
	}{
		{payload: "x"},
		{payload: "hang", hangs: true},
	} {
		ctx, cancel := context.WithCancel(within(t, 10*time.Second))
		done := make(chan error, 1)
		go func() {
			out, err := e.invoke(ctx, mOverride, tc.payload)
			if err == nil && out.GetPayload() != "second" {
				err = errors.New("wrong reply " + out.GetPayload())
			}
			done <- err
		}()
		<-arrived
		e.clock.BlockUntil(1)
		e.clock.Advance(500 * time.Millisecond)
		if tc.hangs {
			<-arrived
			if n := e.clock.Timers(); n != 0 {
				t.Errorf("%s: the last attempt has %d timers, want none", tc.payload, n)
			}
			e.clock.Advance(time.Hour)
			select {
			case err := <-done:
				t.Fatalf("%s: the last attempt was cut: %v", tc.payload, err)
			default:
			}
			cancel()
		}
		err := <-done
		cancel()
		switch {
		case !tc.hangs && err != nil:
			t.Errorf("%s: %v", tc.payload, err)
		case tc.hangs && status.Code(err) != codes.Canceled:
			t.Errorf("%s: %v, want the caller's CANCELED", tc.payload, err)
		}
	}
	if n := len(e.obs.of(observe.AttemptEnd)); n != 0 {
		t.Errorf("%d attempt events reported to an observer that wants none", n)
	}
}

// TestPerAttemptTimeoutSystemClock: on the system clock the timeout is a
// context deadline, which the server sees. The last attempt has none of
// its own: the server sees the caller's deadline, and a hang ends there
// with the caller's DEADLINE_EXCEEDED.
func TestPerAttemptTimeoutSystemClock(t *testing.T) {
	e := newEnv(t, envOpts{system: true})
	var sawDeadline atomic.Bool
	left := make(chan time.Duration, 4) // time each attempt had, as the server saw it
	e.b.unary = func(c *serverCall) (*pb.PingResponse, error) {
		if d, ok := c.ctx.Deadline(); ok {
			sawDeadline.Store(true)
			left <- time.Until(d)
		}
		if c.n == 1 || c.req.GetPayload() == "hang" {
			<-c.ctx.Done()
			return nil, status.Error(codes.Canceled, "gone")
		}
		return &pb.PingResponse{}, nil
	}
	if _, err := e.invoke(within(t, 10*time.Second), mIdempotent, "x", retry.WithAttemptTimeout(50*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if !sawDeadline.Load() || e.b.count(mIdempotent) != 2 {
		t.Fatalf("server saw deadline %v, %d attempts", sawDeadline.Load(), e.b.count(mIdempotent))
	}
	if first := <-left; first > 50*time.Millisecond {
		t.Errorf("the first attempt had %v, want its own 50ms", first)
	}
	<-left
	_, err := e.invoke(within(t, time.Second), mIdempotent, "hang", retry.WithAttemptTimeout(20*time.Millisecond), retry.WithMax(2))
	if status.Code(err) != codes.DeadlineExceeded || strings.Contains(err.Error(), "per-attempt timeout") {
		t.Fatalf("err = %v, want the caller's DEADLINE_EXCEEDED", err)
	}
	if e.b.count(mIdempotent) != 4 {
		t.Errorf("attempts = %d, want 4", e.b.count(mIdempotent))
	}
	if first, last := <-left, <-left; first > 20*time.Millisecond || last < 500*time.Millisecond {
		t.Errorf("the attempts had %v and %v, want 20ms and the rest of the caller's second", first, last)
	}
}

// TestServerDeadlineWithAttemptTimeout: a DEADLINE_EXCEEDED the server
// returns is not retried even when a per-attempt timeout is set.
func TestServerDeadlineWithAttemptTimeout(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.b.unary = func(*serverCall) (*pb.PingResponse, error) { return nil, fail(codes.DeadlineExceeded) }
	_, err := e.invoke(within(t, 10*time.Second), mOverride, "x")
	if status.Code(err) != codes.DeadlineExceeded || e.b.count(mOverride) != 1 {
		t.Fatalf("err = %v after %d attempts", err, e.b.count(mOverride))
	}
}
