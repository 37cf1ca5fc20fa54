//go:build !race

package deadline_test

import (
	"context"
	"testing"
	"time"
)

// TestAllocs pins the benchmarks' promise: no allocation when the caller's
// deadline is already the earliest, and none beyond context.WithDeadline's
// own when a deadline is added.
func TestAllocs(t *testing.T) {
	bare := testing.AllocsPerRun(200, func() {
		_, cancel := context.WithDeadline(context.Background(), time.Now().Add(time.Second))
		cancel()
	})
	for _, c := range benchCases {
		t.Run(c.name, func(t *testing.T) {
			dl, ctx := c.setup(t)
			unary := dl.UnaryClientInterceptor()
			got := testing.AllocsPerRun(200, func() {
				if err := unary(ctx, c.method, nil, nil, nil, nopInvoker); err != nil {
					t.Fatal(err)
				}
			})
			want := bare
			if c.deadline > 0 {
				want = 0
			}
			if got != want {
				t.Errorf("unary: %v allocs per call, want %v (context.WithDeadline alone: %v)", got, want, bare)
			}
		})
	}
}
