package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/breaker"
	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/internal/testserver"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/outcome"
	"github.com/failsoft/failsoft/interceptors/policy"
	"github.com/failsoft/failsoft/internal/chain"
	brokenv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/broken/v1"
	_ "github.com/failsoft/failsoft/proto/failsoft/policytest/v1" // the test service's options
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	plainMethod = "/failsoft.policytest.v1.PlainService/Plain"
	otherMethod = "/failsoft.policytest.v1.PlainService/Idempotent"
	skipMethod  = "/failsoft.policytest.v1.TunedService/KeyedWrite"
	badMethod   = brokenv1.BrokenService_ZeroTimeout_FullMethodName
)

// harness drives a unary interceptor with a fake invoker and a fake clock.
type harness struct {
	t     testing.TB
	clk   *clock.Fake
	ic    *breaker.Interceptor
	unary grpc.UnaryClientInterceptor
	cc    *grpc.ClientConn
	sent  int
}

func newHarness(t testing.TB, opts ...breaker.Option) *harness {
	t.Helper()
	clk := clock.NewFake(time.Unix(1_000_000, 0))
	// Open periods last their whole length unless a test draws otherwise.
	ic, err := breaker.New(append([]breaker.Option{breaker.WithClock(clk), breaker.WithRand(func() float64 { return 0 })}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, clk: clk, ic: ic, unary: ic.UnaryClientInterceptor(), cc: testserver.Dial(t, "passthrough:///payments")}
}

// call makes a call whose invoker takes d on the fake clock and returns
// code. It returns the error the caller sees.
func (h *harness) call(code codes.Code, d time.Duration) error {
	return h.callMethod(plainMethod, code, d)
}

func (h *harness) callMethod(method string, code codes.Code, d time.Duration) error {
	return h.unary(context.Background(), method, nil, nil, h.cc, func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
		h.sent++
		h.clk.Advance(d)
		if code == codes.OK {
			return nil
		}
		return status.Error(code, "from server")
	})
}

func (h *harness) state() breaker.State {
	s, _ := h.ic.State(h.cc.Target(), plainMethod)
	return s
}

func (h *harness) wantState(want breaker.State) {
	h.t.Helper()
	if got := h.state(); got != want {
		h.t.Fatalf("state %v, want %v", got, want)
	}
}

func TestTripRules(t *testing.T) {
	U, OK, RE, NF := codes.Unavailable, codes.OK, codes.ResourceExhausted, codes.NotFound
	type step struct {
		code    codes.Code
		advance time.Duration // before the call
		dur     time.Duration // of the call
	}
	steps := func(code codes.Code, n int, advance time.Duration) []step {
		out := make([]step, n)
		for i := range out {
			out[i] = step{code: code, advance: advance}
		}
		return out
	}
	cat := func(ss ...[]step) []step {
		var out []step
		for _, s := range ss {
			out = append(out, s...)
		}
		return out
	}
	tests := []struct {
		name  string
		opts  []breaker.Option
		steps []step
		want  breaker.State
	}{
		{"consecutive trips", []breaker.Option{breaker.ConsecutiveFailures(3)}, steps(U, 3, 0), breaker.Open},
		{"consecutive broken by success", []breaker.Option{breaker.ConsecutiveFailures(3)}, cat(steps(U, 2, 0), steps(OK, 1, 0), steps(U, 2, 0)), breaker.Closed},
		{"consecutive not broken by ignored", []breaker.Option{breaker.ConsecutiveFailures(3)}, cat(steps(U, 2, 0), steps(NF, 1, 0), steps(U, 1, 0)), breaker.Open},
		{"seed: 5 failures in 30s", []breaker.Option{breaker.FailuresWithin(5, 30*time.Second)}, steps(U, 5, 5*time.Second), breaker.Open},
		{"seed: 5 failures spread over 40s", []breaker.Option{breaker.FailuresWithin(5, 30*time.Second)}, steps(U, 5, 10*time.Second), breaker.Closed},
		{"seed: failures among successes are flakiness", []breaker.Option{breaker.FailuresWithin(5, 30*time.Second)}, cat(steps(U, 3, time.Second), steps(OK, 20, 0), steps(U, 2, time.Second)), breaker.Closed},
		{"seed: failures make 80% of the calls within 30s", []breaker.Option{breaker.FailuresWithin(5, 30*time.Second)}, cat(steps(OK, 20, 0), steps(U, 80, 100*time.Millisecond)), breaker.Open},
		{"seed: 79% is not enough", []breaker.Option{breaker.FailuresWithin(5, 30*time.Second), breaker.DeadAfter(0, 0)}, cat(steps(OK, 21, 0), steps(U, 79, 100*time.Millisecond)), breaker.Closed},
		{"seed: older successes are forgotten", []breaker.Option{breaker.FailuresWithin(5, 30*time.Second)}, cat(steps(OK, 20, 0), steps(U, 1, 30*time.Second), steps(U, 4, time.Second)), breaker.Open},
		{"seed: a lower minimum failure rate", []breaker.Option{breaker.FailuresWithin(5, 30*time.Second), breaker.MinFailureRate(0.2)}, cat(steps(OK, 20, 0), steps(U, 5, 0)), breaker.Open},
		{"default rate: 16 of 20", nil, cat(steps(OK, 4, 0), steps(U, 16, 0)), breaker.Open},
		{"default rate: below minimum calls", nil, steps(U, 19, 0), breaker.Closed},
		{"dead: 20 failures in a row after a healthy history", nil, cat(steps(OK, 100, 0), steps(U, 20, 10*time.Millisecond)), breaker.Open},
		{"dead: 19 are not enough", nil, cat(steps(OK, 100, 0), steps(U, 19, 10*time.Millisecond)), breaker.Closed},
		{"dead: an answer ends the run", nil, cat(steps(OK, 100, 0), steps(U, 10, 10*time.Millisecond), steps(NF, 1, 0), steps(U, 10, 10*time.Millisecond), steps(RE, 1, 0), steps(U, 10, 10*time.Millisecond)), breaker.Closed},
		{"dead: DeadAfter(5, 0)", []breaker.Option{breaker.DeadAfter(5, 0)}, cat(steps(OK, 100, 0), steps(U, 5, 0)), breaker.Open},
		{"dead: DeadAfter(0, 0) is off", []breaker.Option{breaker.DeadAfter(0, 0)}, cat(steps(OK, 100, 0), steps(U, 70, 10*time.Millisecond)), breaker.Closed},
		{"dead: with the README's rule", []breaker.Option{breaker.FailuresWithin(5, 30*time.Second)}, cat(steps(OK, 100, 0), steps(U, 20, 10*time.Millisecond)), breaker.Open},
		{"default rate: 15 of 20", nil, cat(steps(OK, 5, 0), steps(U, 15, 0)), breaker.Closed},
		{"count window forgets", []breaker.Option{breaker.FailureRate(0.5), breaker.CountWindow(10), breaker.MinimumCalls(10)}, cat(steps(U, 4, 0), steps(OK, 10, 0), steps(U, 4, 0)), breaker.Closed},
		{"time window", []breaker.Option{breaker.FailureRate(0.5), breaker.TimeWindow(10 * time.Second), breaker.MinimumCalls(4)}, cat(steps(OK, 2, 0), steps(U, 2, time.Second)), breaker.Open},
		{"time window forgets", []breaker.Option{breaker.FailureRate(0.5), breaker.TimeWindow(10 * time.Second), breaker.MinimumCalls(4)}, cat(steps(U, 3, 0), steps(OK, 1, 20*time.Second), steps(U, 2, 0)), breaker.Closed},
		{"slow calls", []breaker.Option{breaker.SlowCallRate(0.5, time.Second), breaker.MinimumCalls(4)}, []step{{OK, 0, 0}, {OK, 0, 0}, {OK, 0, 2 * time.Second}, {OK, 0, time.Second}}, breaker.Open},
		{"overload does not trip by default", []breaker.Option{breaker.ConsecutiveFailures(3)}, steps(RE, 50, 0), breaker.Closed},
		{"overload does not dilute the rate", []breaker.Option{breaker.FailureRate(0.5), breaker.MinimumCalls(4)}, cat(steps(RE, 50, 0), steps(U, 4, 0)), breaker.Open},
		{"overload trips with a custom classifier", []breaker.Option{breaker.ConsecutiveFailures(3), breaker.WithClassifier(outcome.Default.With(RE, outcome.Failure))}, steps(RE, 3, 0), breaker.Open},
		{"caller errors never trip", []breaker.Option{breaker.ConsecutiveFailures(1)}, cat(steps(NF, 5, 0), steps(codes.InvalidArgument, 5, 0), steps(codes.Canceled, 5, 0), steps(codes.PermissionDenied, 5, 0)), breaker.Closed},
		{"each failure code trips", []breaker.Option{breaker.ConsecutiveFailures(5)}, []step{{U, 0, 0}, {codes.Internal, 0, 0}, {codes.Unknown, 0, 0}, {codes.DeadlineExceeded, 0, 0}, {codes.DataLoss, 0, 0}}, breaker.Open},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.opts...)
			for _, s := range tc.steps {
				h.clk.Advance(s.advance)
				h.call(s.code, s.dur)
			}
			h.wantState(tc.want)
		})
	}
}

func TestOpenRejectsAtOnce(t *testing.T) {
	h := newHarness(t, breaker.ConsecutiveFailures(2), breaker.OpenFor(10*time.Second, time.Minute))
	h.call(codes.Unavailable, 0)
	h.call(codes.Unavailable, 0)
	h.clk.Advance(4 * time.Second)
	sent := h.sent
	err := h.call(codes.OK, 0)
	if h.sent != sent {
		t.Fatal("an open breaker sent the call")
	}
	if !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("errors.Is(%v, ErrOpen) = false", err)
	}
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("code %v", status.Code(err))
	}
	r, ok := outcome.AsRejection(err)
	if !ok || r.Layer != "breaker" || r.Target != "passthrough:///payments" ||
		r.RetryAfter < 6*time.Second || r.RetryAfter > 6*time.Second+10*time.Second/64 {
		t.Fatalf("rejection %+v", r)
	}
	msg := status.Convert(err).Message()
	for _, want := range []string{"passthrough:///payments", "2 consecutive failures", "probes again at", "13:46:50.000Z", "10s"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
}

func TestHalfOpen(t *testing.T) {
	var changes []breaker.Change
	h := newHarness(t, breaker.ConsecutiveFailures(1), breaker.HalfOpenProbes(2), breaker.OpenFor(time.Second, 3*time.Second),
		breaker.OnStateChange(func(c breaker.Change) { changes = append(changes, c) }))
	h.call(codes.Unavailable, 0)
	h.wantState(breaker.Open)

	// Each failed probe doubles the open period, up to the cap.
	for _, d := range []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 3 * time.Second} {
		h.clk.Advance(d - time.Millisecond)
		if err := h.call(codes.OK, 0); !errors.Is(err, breaker.ErrOpen) {
			t.Fatalf("open for %v: call passed early: %v", d, err)
		}
		h.clk.Advance(time.Millisecond)
		if err := h.call(codes.Unavailable, 0); errors.Is(err, breaker.ErrOpen) {
			t.Fatalf("open for %v: probe was rejected", d)
		}
		h.wantState(breaker.Open)
	}
	// A neutral probe frees its slot; two successes close.
	h.clk.Advance(3 * time.Second)
	h.call(codes.NotFound, 0)
	h.wantState(breaker.HalfOpen)
	h.call(codes.OK, 0)
	h.wantState(breaker.HalfOpen)
	h.call(codes.OK, 0)
	h.wantState(breaker.Closed)

	var got []string
	for _, c := range changes {
		got = append(got, c.From.String()+">"+c.To.String())
	}
	if strings.Join(got, " ") != "closed>open open>half-open half-open>open open>half-open half-open>open open>half-open half-open>open open>half-open half-open>open open>half-open half-open>closed" {
		t.Fatalf("changes: %v", got)
	}
	if c := changes[0]; c.Counts.ConsecutiveFailures != 1 || c.OpenFor != time.Second || c.Reason != "1 consecutive failures" {
		t.Fatalf("trip change %+v", c)
	}
	if c := changes[len(changes)-1]; c.Counts.Successes != 2 || c.Counts.Requests != 2 {
		t.Fatalf("close change %+v", c)
	}
	if c := changes[len(changes)-3]; c.OpenFor != 3*time.Second || c.Counts.Failures != 1 {
		t.Fatalf("last reopen %+v", c)
	}
	// Closed again: counts start over.
	h.call(codes.Unavailable, 0)
	h.wantState(breaker.Open)
	if c := changes[len(changes)-1]; c.OpenFor != time.Second {
		t.Fatalf("after closing, the open period starts over: %+v", c)
	}
}

func TestHalfOpenBoundsProbes(t *testing.T) {
	h := newHarness(t, breaker.ConsecutiveFailures(1), breaker.HalfOpenProbes(2), breaker.OpenFor(time.Second, time.Second))
	h.call(codes.Unavailable, 0)
	h.clk.Advance(time.Second)
	// Two probes in flight, a third call is rejected while they run.
	release := make(chan struct{})
	var wg sync.WaitGroup
	started := make(chan struct{}, 2)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.unary(context.Background(), plainMethod, nil, nil, h.cc, func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
				started <- struct{}{}
				<-release
				return nil
			})
		}()
	}
	<-started
	<-started
	err := h.call(codes.OK, 0)
	if !errors.Is(err, breaker.ErrOpen) || !strings.Contains(err.Error(), "half-open") {
		t.Fatalf("third call during probing: %v", err)
	}
	close(release)
	wg.Wait()
	h.wantState(breaker.Closed)
}

func TestSkipAndPolicyErrors(t *testing.T) {
	h := newHarness(t, breaker.ConsecutiveFailures(1))
	for range 3 {
		h.callMethod(skipMethod, codes.Unavailable, 0)
	}
	h.wantState(breaker.Closed)
	if _, ok := h.ic.State(h.cc.Target(), skipMethod); ok {
		t.Fatal("a skipped method created a breaker")
	}
	h.call(codes.Unavailable, 0)
	h.wantState(breaker.Open)
	if err := h.callMethod(skipMethod, codes.OK, 0); err != nil {
		t.Fatalf("a method that skips the breaker was rejected: %v", err)
	}
	err := h.callMethod(badMethod, codes.OK, 0)
	var pe *policy.Error
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "timeout") || !errors.As(err, &pe) {
		t.Fatalf("invalid policy: %v, want the *policy.Error", err)
	}
}

func TestPerMethod(t *testing.T) {
	h := newHarness(t, breaker.ConsecutiveFailures(1), breaker.PerMethod())
	h.callMethod(plainMethod, codes.Unavailable, 0)
	if s, _ := h.ic.State(h.cc.Target(), plainMethod); s != breaker.Open {
		t.Fatalf("plain: %v", s)
	}
	if err := h.callMethod(otherMethod, codes.OK, 0); err != nil {
		t.Fatalf("another method of the same target: %v", err)
	}
	snaps := h.ic.Snapshots()
	if len(snaps) != 2 || snaps[0].Method != otherMethod || snaps[1].State != breaker.Open || snaps[1].ProbeAt.IsZero() {
		t.Fatalf("snapshots %+v", snaps)
	}
}

func TestTargetsAreSeparate(t *testing.T) {
	h := newHarness(t, breaker.ConsecutiveFailures(1))
	h.call(codes.Unavailable, 0)
	other := testserver.Dial(t, "passthrough:///notifications")
	err := h.unary(context.Background(), plainMethod, nil, nil, other, func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil })
	if err != nil {
		t.Fatalf("another target: %v", err)
	}
}

// TestRegistryBound: when the registry is full, a closed breaker not used
// lately makes room; open breakers are never dropped, and a new target is
// never left unguarded.
func TestRegistryBound(t *testing.T) {
	h := newHarness(t, breaker.ConsecutiveFailures(1), breaker.WithMaxTargets(2))
	invoke := func(cc *grpc.ClientConn, code codes.Code) error {
		return h.unary(context.Background(), plainMethod, nil, nil, cc, func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
			if code == codes.OK {
				return nil
			}
			return status.Error(code, "x")
		})
	}
	a, b, c := testserver.Dial(t, "passthrough:///a"), testserver.Dial(t, "passthrough:///b"), testserver.Dial(t, "passthrough:///c")
	invoke(a, codes.Unavailable)
	invoke(b, codes.OK)
	invoke(c, codes.OK) // takes the place of b, the only closed breaker
	if _, ok := h.ic.State("passthrough:///b", plainMethod); ok {
		t.Fatal("b was not dropped")
	}
	if len(h.ic.Snapshots()) != 2 {
		t.Fatal("registry grew past its bound")
	}
	invoke(c, codes.Unavailable)
	// Both open: a new target gets a breaker all the same.
	invoke(b, codes.Unavailable)
	if err := invoke(b, codes.Unavailable); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("a new target while the registry is full of open breakers: %v, want it guarded", err)
	}
	for _, cc := range []*grpc.ClientConn{a, c} {
		if s, _ := h.ic.State(cc.Target(), plainMethod); s != breaker.Open {
			t.Fatalf("%s: %v, want still open", cc.Target(), s)
		}
	}
}

// TestRegistryFullOfOpenBreakers: calls to a new dead target are cut off
// after the default rule's 20 calls, although every breaker is open.
func TestRegistryFullOfOpenBreakers(t *testing.T) {
	const n = 8
	h := newHarness(t, breaker.WithMaxTargets(n))
	dead := func(cc *grpc.ClientConn) (sent int) {
		for range 100 {
			h.unary(context.Background(), plainMethod, nil, nil, cc, func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
				sent++
				return status.Error(codes.Unavailable, "down")
			})
		}
		return sent
	}
	for i := range n {
		dead(testserver.Dial(t, fmt.Sprintf("passthrough:///dead%d", i)))
	}
	if sent := dead(testserver.Dial(t, "passthrough:///new")); sent != breaker.DefaultMinimumCalls {
		t.Fatalf("%d of 100 calls to a new dead target sent, want %d", sent, breaker.DefaultMinimumCalls)
	}
}

// TestRegistryChurn: while many healthy targets come and go, a dead
// target's breaker keeps its count and opens after the default rule's 20
// calls.
func TestRegistryChurn(t *testing.T) {
	h := newHarness(t, breaker.WithMaxTargets(16))
	ok := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil }
	deadCC := testserver.Dial(t, "passthrough:///dead")
	sent := 0
	for round := 0; round < 100; round++ {
		for i := range 5 {
			cc := testserver.Dial(t, fmt.Sprintf("passthrough:///churn%d", round*5+i))
			h.unary(context.Background(), plainMethod, nil, nil, cc, ok)
		}
		h.unary(context.Background(), plainMethod, nil, nil, deadCC, func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
			sent++
			return status.Error(codes.Unavailable, "down")
		})
	}
	if sent != breaker.DefaultMinimumCalls {
		t.Fatalf("the dead target's breaker opened after %d calls, want %d", sent, breaker.DefaultMinimumCalls)
	}
}

func TestObserverEvents(t *testing.T) {
	var mu sync.Mutex
	var events []observe.Event
	obs := observe.Func(func(_ context.Context, e observe.Event) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, e)
	})
	h := newHarness(t, breaker.WithObserver(obs), breaker.FailuresWithin(2, time.Minute))
	h.call(codes.Unavailable, 0)
	h.call(codes.Unavailable, 0)
	h.call(codes.OK, 0)
	if len(events) != 2 {
		t.Fatalf("events %+v", events)
	}
	if e := events[0]; e.Kind != observe.BreakerState || e.From != "closed" || e.To != "open" || e.Counts.Failures != 2 || e.Counts.ConsecutiveFailures != 2 || e.Target != "passthrough:///payments" || e.Method != plainMethod {
		t.Fatalf("state event %+v", e)
	}
	if e := events[1]; e.Kind != observe.BreakerRejected || e.Duration != DefaultOpen || e.Counts.Failures != 2 || !errors.Is(e.Err, breaker.ErrOpen) {
		t.Fatalf("rejected event %+v", e)
	}
}

const DefaultOpen = breaker.DefaultOpenFor

func TestOptionErrors(t *testing.T) {
	tests := []struct {
		opt  breaker.Option
		want string
	}{
		{breaker.ConsecutiveFailures(0), "breaker.ConsecutiveFailures(0)"},
		{breaker.FailuresWithin(0, time.Second), "breaker.FailuresWithin(0, 1s)"},
		{breaker.FailuresWithin(5, 0), "interval must be positive"},
		{breaker.FailureRate(0), "breaker.FailureRate(0)"},
		{breaker.FailureRate(1.5), "breaker.FailureRate(1.5)"},
		{breaker.SlowCallRate(0.5, 0), "threshold must be positive"},
		{breaker.CountWindow(0), "breaker.CountWindow(0)"},
		{breaker.TimeWindow(0), "breaker.TimeWindow(0s)"},
		{breaker.MinimumCalls(0), "breaker.MinimumCalls(0)"},
		{breaker.OpenFor(time.Minute, time.Second), "breaker.OpenFor(1m0s, 1s)"},
		{breaker.HalfOpenProbes(0), "breaker.HalfOpenProbes(0)"},
		{breaker.DeadAfter(-1, time.Second), "breaker.DeadAfter(-1, 1s): n must be"},
		{breaker.DeadAfter(20, -time.Second), "breaker.DeadAfter(20, -1s): the span must not be negative"},
		{breaker.WithMaxTargets(0), "breaker.WithMaxTargets(0)"},
		{breaker.MinFailureRate(0), "breaker.MinFailureRate(0)"},
		{breaker.MinFailureRate(0.5), "breaker.MinFailureRate(0.5): applies to FailuresWithin"},
		{breaker.WithRand(nil), "breaker.WithRand(nil)"},
		{breaker.WithResolver(nil), "breaker.WithResolver"},
		{breaker.WithClock(nil), "breaker.WithClock"},
		{breaker.OnStateChange(nil), "breaker.OnStateChange"},
	}
	for _, tc := range tests {
		_, err := breaker.New(tc.opt)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want an error with %q", err, tc.want)
		}
	}
	if _, err := breaker.New(breaker.CountWindow(5), breaker.TimeWindow(time.Second)); err == nil {
		t.Error("two windows accepted")
	}
	if _, err := breaker.New(breaker.CountWindow(5), breaker.MinimumCalls(10)); err == nil || !strings.Contains(err.Error(), "could never trip") {
		t.Errorf("minimum calls above the window: %v", err)
	}
}

// TestSnapshotCountsFailures: Snapshots reports the counts the trip rules
// use, whichever rule is configured.
func TestSnapshotCountsFailures(t *testing.T) {
	tests := []struct {
		name     string
		opts     []breaker.Option
		failures uint32 // in the counts; a run alone keeps no window
	}{
		{"failures within", []breaker.Option{breaker.FailuresWithin(5, 30*time.Second)}, 3},
		{"consecutive", []breaker.Option{breaker.ConsecutiveFailures(5)}, 0},
		{"failure rate", []breaker.Option{breaker.FailureRate(0.9), breaker.CountWindow(10)}, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.opts...)
			for range 3 {
				h.call(codes.Unavailable, 0)
				h.clk.Advance(time.Second)
			}
			h.wantState(breaker.Closed)
			snaps := h.ic.Snapshots()
			if len(snaps) != 1 {
				t.Fatalf("%d snapshots, want 1", len(snaps))
			}
			if n := snaps[0].Counts; n.Failures != tc.failures || n.ConsecutiveFailures != 3 {
				t.Fatalf("counts %+v, want %d failures, 3 consecutive", n, tc.failures)
			}
		})
	}
}

// TestAbsorbedFailures: a failed attempt that the retry layer would retry
// (State.MayRetry) with a retryable code is not counted by the trip rules,
// unless CountEveryAttempt; a failed probe is counted all the same.
func TestAbsorbedFailures(t *testing.T) {
	tests := []struct {
		name     string
		opts     []breaker.Option
		mayRetry bool
		code     codes.Code
		want     breaker.State
	}{
		{"retried UNAVAILABLE is absorbed", nil, true, codes.Unavailable, breaker.Closed},
		{"last attempt counts", nil, false, codes.Unavailable, breaker.Open},
		{"a code the policy does not retry counts", nil, true, codes.Internal, breaker.Open},
		{"CountEveryAttempt", []breaker.Option{breaker.CountEveryAttempt()}, true, codes.Unavailable, breaker.Open},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, append([]breaker.Option{breaker.ConsecutiveFailures(1)}, tc.opts...)...)
			h.callWith(tc.mayRetry, tc.code)
			h.wantState(tc.want)
		})
	}
	t.Run("a dead target trips however many failures retries absorb", func(t *testing.T) {
		h := newHarness(t)
		for range breaker.DefaultDeadAfter - 1 {
			h.callWith(true, codes.Unavailable)
			h.clk.Advance(10 * time.Millisecond)
		}
		h.wantState(breaker.Closed)
		h.callWith(true, codes.Unavailable)
		h.wantState(breaker.Open)
	})
	t.Run("probe", func(t *testing.T) {
		h := newHarness(t, breaker.ConsecutiveFailures(1))
		h.callWith(false, codes.Unavailable)
		h.clk.Advance(breaker.DefaultOpenFor)
		h.callWith(true, codes.Unavailable)
		h.wantState(breaker.Open)
	})
}

// callWith makes a call through the breaker as the retry layer does, with
// State.MayRetry set.
func (h *harness) callWith(mayRetry bool, code codes.Code) error {
	l, err := chain.Lookup(chain.Breaker, h.ic)
	if err != nil {
		h.t.Fatal(err)
	}
	final := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
		h.sent++
		return status.Error(code, "from server")
	}
	return chain.NewUnaries(retryStandIn{&mayRetry}, l.Unary).Start(final).Invoke(context.Background(), plainMethod, nil, nil, h.cc)
}

// TestPerMethodByDefault: a method that fails does not cut off the
// target's other methods, unless PerTarget.
func TestPerMethodByDefault(t *testing.T) {
	for _, perTarget := range []bool{false, true} {
		var opts []breaker.Option
		if perTarget {
			opts = append(opts, breaker.PerTarget())
		}
		h := newHarness(t, append(opts, breaker.ConsecutiveFailures(1))...)
		h.callMethod(plainMethod, codes.Internal, 0)
		err := h.callMethod(otherMethod, codes.OK, 0)
		if cutOff := errors.Is(err, breaker.ErrOpen); cutOff != perTarget {
			t.Fatalf("PerTarget %v: another method cut off: %v", perTarget, cutOff)
		}
	}
}
