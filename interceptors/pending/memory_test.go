package pending_test

import (
	"testing"

	"github.com/failsoft/failsoft/interceptors/pending"
	"github.com/failsoft/failsoft/interceptors/pending/storetest"
)

func TestMemoryStoreContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T, max int) pending.Store {
		s, err := pending.NewMemoryStore(max)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func BenchmarkMemoryStore(b *testing.B) {
	storetest.Bench(b, keyedWrite, func(b *testing.B, max int) pending.Store {
		s, err := pending.NewMemoryStore(max)
		if err != nil {
			b.Fatal(err)
		}
		return s
	})
}
