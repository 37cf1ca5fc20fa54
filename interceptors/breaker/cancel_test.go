package breaker_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/breaker"
)

// TestCancelledCallers: a call its caller cancelled says nothing about the
// target. It counts in no rule, and it does not end DeadAfter's run of
// failed attempts either: it is no answer. An answer the caller caused
// (NOT_FOUND) does end the run.
func TestCancelledCallers(t *testing.T) {
	U, NF := codes.Unavailable, codes.NotFound
	const cancelled = codes.Canceled // the caller cancels during the call
	ms := time.Millisecond
	type run struct {
		code codes.Code
		n    int
	}
	tests := []struct {
		name string
		runs []run
		want breaker.State
		// clean: no failure may be counted at all.
		clean bool
	}{
		{name: "cancelled calls amid a dead target's failures", runs: []run{{U, 10}, {cancelled, 1}, {U, 5}, {cancelled, 3}, {U, 5}}, want: breaker.Open},
		{name: "an answer amid them ends the run", runs: []run{{U, 10}, {NF, 1}, {U, 10}}, want: breaker.Closed},
		{name: "only cancelled calls", runs: []run{{cancelled, 300}}, want: breaker.Closed, clean: true},
		{name: "cancelled calls amid a healthy target's answers", runs: []run{{cancelled, 50}, {codes.OK, 1}, {cancelled, 50}}, want: breaker.Closed, clean: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			// A history that keeps the rate rule out of the way.
			for range 100 {
				h.call(codes.OK, 0)
			}
			for _, r := range tc.runs {
				for range r.n {
					h.clk.Advance(10 * ms)
					if r.code == cancelled {
						h.cancelledCall()
					} else {
						h.call(r.code, 0)
					}
				}
			}
			h.wantState(tc.want)
			if tc.clean {
				s := h.ic.Snapshots()
				if len(s) != 1 || s[0].Counts.Failures != 0 || s[0].Counts.ConsecutiveFailures != 0 {
					t.Errorf("snapshots %+v, want no failure counted", s)
				}
			}
		})
	}
}

// cancelledCall makes a call whose caller cancels it while it is in
// flight: the invoker returns what grpc-go returns then.
func (h *harness) cancelledCall() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := h.unary(ctx, plainMethod, nil, nil, h.cc, func(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
		h.sent++
		cancel()
		return status.FromContextError(ctx.Err()).Err()
	})
	if status.Code(err) != codes.Canceled {
		h.t.Fatalf("cancelled call: %v, want CANCELED", err)
	}
}
