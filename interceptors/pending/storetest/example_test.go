package storetest_test

import (
	"testing"

	"github.com/failsoft/failsoft/interceptors/pending"
	"github.com/failsoft/failsoft/interceptors/pending/storetest"
)

// A store's tests run the contract with a function that returns an empty
// store holding at most max entries.
func ExampleRun() {
	_ = func(t *testing.T) {
		storetest.Run(t, func(t *testing.T, max int) pending.Store {
			s, err := pending.NewMemoryStore(max)
			if err != nil {
				t.Fatal(err)
			}
			return s
		})
	}
}

// The same function shape benchmarks a store's enqueue and drain
// throughput.
func ExampleBench() {
	_ = func(b *testing.B) {
		storetest.Bench(b, "/pay.v1.Pay/Charge", func(b *testing.B, max int) pending.Store {
			s, _ := pending.NewMemoryStore(max)
			return s
		})
	}
}
