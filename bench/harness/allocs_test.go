//go:build !race

package harness

import "testing"

// TestLoopbackAllocs pins what a loopback call through failsoft's suite
// allocates beyond a plain call that sets the same deadline: two
// allocations, grpc-go's copy of the trailer the suite reads server
// pushback from, and the attempt (number and timeout) the retry layer puts
// on the context of an attempt with its own timeout, so that interceptors
// after the suite see it. Client and server share the process, so both
// sides count; the figures are the same from run to run. Making every
// call's options a new slice, for one, would show here.
func TestLoopbackAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("starts loopback servers")
	}
	allocs := func(name string) float64 {
		t.Helper()
		var spec *Spec
		for _, s := range Specs() {
			if s.Name == name {
				spec = &s
			}
		}
		if spec == nil {
			t.Fatalf("no chain %q", name)
		}
		c, err := newCaller(*spec, DefaultParams(), Loopback)
		if err != nil {
			t.Fatal(err)
		}
		defer c.done()
		var callErr error
		n := testing.AllocsPerRun(300, func() {
			if err := c.call(); err != nil {
				callErr = err
			}
		})
		if callErr != nil {
			t.Fatalf("%s: %v", name, callErr)
		}
		return n
	}
	ref := allocs(PlainDeadline)
	for _, tc := range []struct {
		chain string
		extra float64
	}{
		{"failsoft", 2},
	} {
		if got := allocs(tc.chain); got-ref > tc.extra {
			t.Errorf("a loopback call through %s allocates %.0f times, %.0f more than %s; want at most %.0f more",
				tc.chain, got, got-ref, PlainDeadline, tc.extra)
		}
	}
}
