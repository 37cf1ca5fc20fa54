package idempotency

import (
	"testing"

	"github.com/failsoft/failsoft/interceptors/clock"
)

// The fallback's lookup on every keyed request, in the common case where
// the store took every outcome and the fallback holds nothing.
func BenchmarkUnsavedGetEmpty(b *testing.B) {
	var u unsaved
	clk := clock.System()
	k := Key{Identity: "spiffe://example.org/checkout", Method: "/pay.v1.Payments/Charge", Key: "9b2f0c4e-3c1d-4f6e-8a6b-2f1d0e9c7a55"}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := u.get(k, Fingerprint{}, clk); ok {
			b.Fatal("found an outcome in an empty fallback")
		}
	}
}

// The same lookup from every core at once, as under a server's load.
func BenchmarkUnsavedGetEmptyParallel(b *testing.B) {
	var u unsaved
	clk := clock.System()
	k := Key{Identity: "spiffe://example.org/checkout", Method: "/pay.v1.Payments/Charge", Key: "9b2f0c4e-3c1d-4f6e-8a6b-2f1d0e9c7a55"}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, ok := u.get(k, Fingerprint{}, clk); ok {
				b.Fatal("found an outcome in an empty fallback")
			}
		}
	})
}
