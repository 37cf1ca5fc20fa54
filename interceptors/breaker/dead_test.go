package breaker_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/breaker"
	"github.com/failsoft/failsoft/interceptors/observe"
)

// TestDeadRule: DeadAfter(n, span) trips on n failed attempts in a row
// whose first ended at least span before the last, and on nothing less.
func TestDeadRule(t *testing.T) {
	U, OK, RE := codes.Unavailable, codes.OK, codes.ResourceExhausted
	// run is n calls answered code, the clock moved by gap before each.
	type run struct {
		code codes.Code
		n    int
		gap  time.Duration
	}
	ms := time.Millisecond
	tests := []struct {
		name   string
		opts   []breaker.Option
		runs   []run
		want   breaker.State
		reason string // of the trip, when want is Open
	}{
		{name: "a burst of 50 at once", runs: []run{{U, 50, 0}}, want: breaker.Closed},
		{name: "20 over 49 ms", runs: []run{{U, 1, 0}, {U, 1, 49 * ms}, {U, 18, 0}}, want: breaker.Closed},
		{name: "20 over 50 ms", runs: []run{{U, 1, 0}, {U, 1, 50 * ms}, {U, 18, 0}},
			want: breaker.Open, reason: "20 attempts in a row failed over 50ms"},
		{name: "19 over a minute", runs: []run{{U, 19, 5 * time.Second}}, want: breaker.Closed},
		{name: "20 over 95 s", runs: []run{{U, 20, 5 * time.Second}},
			want: breaker.Open, reason: "20 attempts in a row failed over 1m35s"},
		{name: "a burst, then a failure 50 ms later", runs: []run{{U, 30, 0}, {U, 1, 50 * ms}},
			want: breaker.Open, reason: "31 attempts in a row failed over 50ms"},
		{name: "a burst, an answer, then failures", runs: []run{{U, 30, 0}, {OK, 1, 50 * ms}, {U, 19, 10 * ms}}, want: breaker.Closed},
		{name: "a refusal ends the run", runs: []run{{U, 10, 10 * ms}, {RE, 1, 0}, {U, 10, 10 * ms}}, want: breaker.Closed},
		{name: "bursts with answers between", runs: []run{{U, 25, 0}, {OK, 1, 30 * ms}, {U, 1, 30 * ms}, {U, 24, 0}, {OK, 1, 30 * ms}, {U, 1, 30 * ms}, {U, 24, 0}},
			want: breaker.Closed},
		{name: "a longer span", opts: []breaker.Option{breaker.DeadAfter(20, time.Second)}, runs: []run{{U, 1, 0}, {U, 40, 24 * ms}}, want: breaker.Closed},
		{name: "a longer span, reached", opts: []breaker.Option{breaker.DeadAfter(20, time.Second)}, runs: []run{{U, 1, 0}, {U, 40, 25 * ms}},
			want: breaker.Open, reason: "41 attempts in a row failed over 1s"},
		{name: "no span counts attempts only", opts: []breaker.Option{breaker.DeadAfter(5, 0)}, runs: []run{{U, 5, 0}},
			want: breaker.Open, reason: "5 attempts in a row failed over 0s"},
		{name: "off", opts: []breaker.Option{breaker.DeadAfter(0, time.Second)}, runs: []run{{U, 70, 100 * ms}}, want: breaker.Closed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var reasons []string
			h := newHarness(t, append(tc.opts, breaker.OnStateChange(func(c breaker.Change) { reasons = append(reasons, c.Reason) }))...)
			// A history that keeps the rate rule, which needs 80 of the
			// last 100 calls failed, out of the way.
			for range 100 {
				h.call(OK, 0)
			}
			for _, r := range tc.runs {
				for range r.n {
					h.clk.Advance(r.gap)
					h.call(r.code, 0)
				}
			}
			h.wantState(tc.want)
			if tc.want == breaker.Open && (len(reasons) != 1 || reasons[0] != tc.reason) {
				t.Fatalf("changes %q, want one for %q", reasons, tc.reason)
			}
		})
	}
}

// TestDeadRuleConcurrentBurst: calls in flight together that fail
// together, in whatever order, span no time and leave the breaker closed;
// the calls that follow pass. DeadAfter(20, 0), which counts attempts
// only, opens on the same burst.
func TestDeadRuleConcurrentBurst(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []breaker.Option
		want breaker.State
	}{
		{"default", nil, breaker.Closed},
		{"no span", []breaker.Option{breaker.DeadAfter(20, 0)}, breaker.Open},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.opts...)
			for range 100 {
				h.call(codes.OK, 0)
			}
			failTogether(h.unary, h.cc, plainMethod, 50)
			h.wantState(tc.want)
			if tc.want == breaker.Open {
				return
			}
			for i := range 100 {
				h.clk.Advance(time.Millisecond)
				if err := h.call(codes.OK, 0); err != nil {
					t.Fatalf("call %d after the burst: %v", i, err)
				}
			}
			h.wantState(breaker.Closed)
		})
	}
}

// failTogether makes k calls to method through unary that are in flight
// together and fail together with UNAVAILABLE at one instant, as when a
// server restarts or a proxy sheds the calls it holds, and returns the
// errors the callers saw.
func failTogether(unary grpc.UnaryClientInterceptor, cc *grpc.ClientConn, method string, k int) []error {
	errs := make([]error, k)
	var sent, done sync.WaitGroup
	sent.Add(k)
	done.Add(k)
	release := make(chan struct{})
	for i := range k {
		go func() {
			defer done.Done()
			reached := false
			errs[i] = unary(context.Background(), method, nil, nil, cc, func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
				reached = true
				sent.Done()
				<-release
				return status.Error(codes.Unavailable, "connection reset")
			})
			if !reached {
				sent.Done()
			}
		}()
	}
	sent.Wait()
	close(release)
	done.Wait()
	return errs
}

// TestCutAttempts: an attempt with a timeout of its own (the retry layer
// gives one only when a retry can follow) that ends DEADLINE_EXCEEDED was
// cut by the caller's side while the target had not answered: it is no
// failure to any rule, and does not end a run of failures either. The
// same code on an attempt without its own timeout counts.
func TestCutAttempts(t *testing.T) {
	cut := observe.WithAttempt(context.Background(), observe.Attempt{N: 1, Timeout: 100 * time.Millisecond})
	uncut := observe.WithAttempt(context.Background(), observe.Attempt{N: 3})
	tests := []struct {
		name string
		opts []breaker.Option
		ctx  context.Context
		code codes.Code
		want breaker.State
	}{
		{"cut, one failure trips", []breaker.Option{breaker.ConsecutiveFailures(1)}, cut, codes.DeadlineExceeded, breaker.Closed},
		{"uncut, one failure trips", []breaker.Option{breaker.ConsecutiveFailures(1)}, uncut, codes.DeadlineExceeded, breaker.Open},
		{"cut, but another code", []breaker.Option{breaker.ConsecutiveFailures(1)}, cut, codes.Unavailable, breaker.Open},
		{"cut, dead rule", []breaker.Option{breaker.DeadAfter(5, 0)}, cut, codes.DeadlineExceeded, breaker.Closed},
		{"uncut, dead rule", []breaker.Option{breaker.DeadAfter(5, 0)}, uncut, codes.DeadlineExceeded, breaker.Open},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.opts...)
			for range 10 {
				_ = h.unary(tc.ctx, plainMethod, nil, nil, h.cc, func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
					h.clk.Advance(10 * time.Millisecond)
					return status.Error(tc.code, "from server")
				})
			}
			h.wantState(tc.want)
		})
	}
	t.Run("a cut attempt does not end a run", func(t *testing.T) {
		// As the retry layer cuts it: its context is done. (A server that
		// answers DEADLINE_EXCEEDED before that is alive, and ends it.)
		cut, cancel := context.WithCancel(cut)
		cancel()
		h := newHarness(t, breaker.DeadAfter(4, 0))
		for i := range 4 {
			if i == 2 {
				_ = h.unary(cut, plainMethod, nil, nil, h.cc, func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
					return status.Error(codes.DeadlineExceeded, "cut")
				})
			}
			h.call(codes.Unavailable, 0)
		}
		h.wantState(breaker.Open)
	})
}
