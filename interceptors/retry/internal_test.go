package retry

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/clock"
)

func TestBackoffFormula(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		n    int
		r    float64
		want time.Duration
	}{
		{1, 0, 0},
		{1, 0.5, 25 * ms},
		{2, 0.5, 50 * ms},
		{3, 0.5, 100 * ms},
		{6, 0.5, 500 * ms},   // 50 ms * 2^5 = 1.6 s, capped at 1 s
		{100, 0.5, 500 * ms}, // no overflow
		{1, 1, 50*ms - 1},    // r clamped below 1
		{1, -3, 0},
	}
	for _, tt := range tests {
		if got := backoff(50*ms, time.Second, 2, tt.n, tt.r); got != tt.want {
			t.Errorf("backoff(n=%d, r=%v) = %v, want %v", tt.n, tt.r, got, tt.want)
		}
	}
}

func TestBucket(t *testing.T) {
	clk := clock.NewFake(time.Unix(0, 0))
	k := newBucket(Budget{Ratio: 0.25, MinPerSecond: 0.2, TTL: 10 * time.Second}, clk.Now())
	// The floor: 0.2/s over 10 s is two tokens.
	for i := range 2 {
		if !k.withdraw(clk.Now()) {
			t.Fatalf("withdraw %d refused within the floor", i)
		}
	}
	if k.withdraw(clk.Now()) || k.allows(clk.Now()) {
		t.Fatal("a spent budget allowed a withdrawal")
	}
	for range 4 {
		k.deposit(clk.Now())
	}
	if !k.allows(clk.Now()) || !k.withdraw(clk.Now()) || k.withdraw(clk.Now()) {
		t.Fatal("four deposits of 0.25 must make exactly one token")
	}
	k.refund(clk.Now())
	if !k.withdraw(clk.Now()) {
		t.Fatal("a refunded token cannot be spent again")
	}
	// Ten seconds later, what was spent and deposited has expired: the
	// floor is back, the deposits are gone.
	clk.Advance(10 * time.Second)
	n := 0
	for k.withdraw(clk.Now()) {
		n++
	}
	if n != 2 {
		t.Fatalf("after the window: %d tokens, want the floor's 2", n)
	}
}

func TestBudgetsByTarget(t *testing.T) {
	bs := newBudgets(DefaultBudget, clock.System())
	a, b := bs.get("a"), bs.get("b")
	if a == b || bs.get("a") != a || bs.get("b") != b {
		t.Fatal("targets must have their own bucket")
	}
	for i := range maxTargets + 5 {
		bs.get(strings.Repeat("x", i+1))
	}
	if n := bs.t.Len(); n != maxTargets {
		t.Fatalf("%d buckets, want at most %d", n, maxTargets)
	}
	if more := bs.get("one more"); more == nil || bs.get("one more") != more || bs.t.Len() != maxTargets {
		t.Fatalf("a target past the bound must get a bucket of its own in a table of %d, has %d", maxTargets, bs.t.Len())
	}
}

func TestLatencyQuantile(t *testing.T) {
	l := &latency{q: 0.9}
	for i := 1; i < latencyEvery; i++ {
		l.add(time.Duration(i) * time.Millisecond)
	}
	if _, ok := l.get(); ok {
		t.Fatal("quantile before enough samples")
	}
	l.add(latencyEvery * time.Millisecond)
	if d, ok := l.get(); !ok || d != 29*time.Millisecond {
		t.Fatalf("p90 of 1..32 ms = %v, %v; want 29ms", d, ok)
	}
	for i := range 2 * latencySamples {
		l.add(time.Duration(1000+i%8) * time.Millisecond)
	}
	if d, _ := l.get(); d != 1007*time.Millisecond {
		t.Fatalf("p90 after the window moved = %v", d)
	}
}

func TestStopErrorStatus(t *testing.T) {
	st, _ := status.New(codes.Unavailable, "down").WithDetails(&errdetails.DebugInfo{Detail: "d"})
	last := st.Err()
	e := newStopError("deadline", 2, "dns:///x", last, "next attempt due in 1s, 10ms left")
	got := status.Convert(e)
	if got.Code() != codes.Unavailable || got.Message() != "failsoft: retry: retries cut short by the deadline after 2 attempts (next attempt due in 1s, 10ms left); last attempt: down" {
		t.Fatalf("status = %v", got)
	}
	if ds := got.Details(); len(ds) != 2 {
		t.Fatalf("details = %v", ds)
	}
	if e.Unwrap() != last || e.Overloaded() {
		t.Fatal("Unwrap/Overloaded")
	}
}
