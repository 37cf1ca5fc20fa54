package outlier

import (
	"testing"

	"google.golang.org/grpc/balancer"

	"github.com/failsoft/failsoft/interceptors/clock"
)

// benchPicker is a picker over three endpoints on the system clock, whose
// child returns no Done, as round_robin does.
func benchPicker() *picker {
	cfg := DefaultConfig()
	d := newDetector(cfg, clock.System())
	d.update(cfg, []string{"a", "b", "c"})
	child := &atomicCycle{}
	child.subConns = endpointSubConns(d, "a", "b", "c")
	p := &picker{child: child, d: d, n: 3}
	return p
}

// BenchmarkPick: what the policy adds to a successful call, a pick and its
// Done, over the child's pick.
func BenchmarkPick(b *testing.B) {
	p := benchPicker()
	b.ReportAllocs()
	for b.Loop() {
		res, err := p.Pick(balancer.PickInfo{})
		if err != nil {
			b.Fatal(err)
		}
		res.Done(balancer.DoneInfo{})
	}
}

// BenchmarkPickParallel: the same from every core at once.
func BenchmarkPickParallel(b *testing.B) {
	p := benchPicker()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			res, err := p.Pick(balancer.PickInfo{})
			if err != nil {
				b.Error(err)
				return
			}
			res.Done(balancer.DoneInfo{})
		}
	})
}
