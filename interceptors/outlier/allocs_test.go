//go:build !race

package outlier

import (
	"testing"
	"time"

	"google.golang.org/grpc/balancer"

	"github.com/failsoft/failsoft/interceptors/clock"
)

// TestPickAllocs: a pick and its Done cost no allocation (when the child's
// pick costs none), so the policy adds nothing to a call's allocations.
func TestPickAllocs(t *testing.T) {
	clk := clock.NewFake(time.Unix(0, 0))
	cfg := DefaultConfig()
	d := newDetector(cfg, clk)
	d.update(cfg, []string{"a", "b", "c"})
	child := &cycle{}
	child.subConns = endpointSubConns(d, "a", "b", "c")
	p := &picker{child: child, d: d, n: 3}
	child.noDone = true
	pick := func() {
		res, err := p.Pick(balancer.PickInfo{})
		if err != nil {
			t.Fatal(err)
		}
		res.Done(balancer.DoneInfo{})
	}
	pick() // the interval's first evaluation
	if n := testing.AllocsPerRun(1000, pick); n != 0 {
		t.Fatalf("%v allocations per pick and Done, want 0", n)
	}
}
