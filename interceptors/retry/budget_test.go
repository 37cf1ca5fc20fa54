package retry_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/retry"
	pb "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// TestBudgetExhaustionAndRecovery follows one target's bucket: it starts
// with Burst tokens, each call adds Ratio, the clock adds MinPerSecond.
func TestBudgetExhaustionAndRecovery(t *testing.T) {
	e := newEnv(t, envOpts{retry: []retry.Option{retry.WithBudget(retry.Budget{Ratio: 0.1, MinPerSecond: 1, Burst: 2})}})
	var healthy atomic.Bool
	e.b.unary = func(*serverCall) (*pb.PingResponse, error) {
		if healthy.Load() {
			return &pb.PingResponse{}, nil
		}
		return nil, fail(codes.Unavailable)
	}
	attempts := func() int {
		t.Helper()
		before := e.b.count(mIdempotent)
		_, _ = e.invoke(within(t, 10*time.Second), mIdempotent, "x")
		return e.b.count(mIdempotent) - before
	}
	if n := attempts(); n != 3 {
		t.Fatalf("call 1: %d attempts, want 3 (two tokens)", n)
	}
	before := e.b.count(mIdempotent)
	_, err := e.invoke(within(t, 10*time.Second), mIdempotent, "x")
	var se *retry.StopError
	if !errors.As(err, &se) || se.Reason != "budget" || status.Code(err) != codes.Unavailable || e.b.count(mIdempotent)-before != 1 {
		t.Fatalf("call 2: err = %v", err)
	}
	if info := errorInfo(err); info.GetReason() != retry.ReasonBudgetExhausted || info.GetMetadata()["target"] != "passthrough:///bufnet" {
		t.Errorf("error info = %v", info)
	}
	if ev := e.obs.of(observe.BudgetExhausted); len(ev) != 1 || ev[0].Attempt != 2 || ev[0].Target != "passthrough:///bufnet" {
		t.Errorf("budget events = %+v", ev)
	}
	// The floor: one token per second.
	e.clock.Advance(time.Second)
	if n := attempts(); n != 2 {
		t.Fatalf("after a second: %d attempts, want 2", n)
	}
	// Successful calls deposit: eight more calls make a token.
	healthy.Store(true)
	for range 8 {
		attempts()
	}
	healthy.Store(false)
	if n := attempts(); n != 2 {
		t.Fatalf("after successes: %d attempts, want 2", n)
	}
}

// TestSustainedOutage: against a server that always answers UNAVAILABLE,
// the budget keeps the attempts per logical call at or under 1.2, where
// retries without a budget send 3.
func TestSustainedOutage(t *testing.T) {
	run := func(t *testing.T, calls int, opts ...retry.Option) float64 {
		e := newEnv(t, envOpts{retry: opts})
		e.b.unary = func(*serverCall) (*pb.PingResponse, error) { return nil, fail(codes.Unavailable) }
		ctx := within(t, 30*time.Second)
		for range calls {
			if _, err := e.invoke(ctx, mIdempotent, "x"); status.Code(err) != codes.Unavailable {
				t.Fatalf("err = %v", err)
			}
		}
		return float64(e.b.count(mIdempotent)) / float64(calls)
	}
	with := run(t, 2000)
	t.Logf("attempts per call with the default budget: %.3f", with)
	if with > 1.2 {
		t.Errorf("attempts per call = %.3f, want <= 1.2", with)
	}
	without := run(t, 200, retry.WithoutBudget())
	t.Logf("attempts per call without a budget: %.3f", without)
	if without != 3 {
		t.Errorf("without a budget: %.3f attempts per call, want 3", without)
	}
}
