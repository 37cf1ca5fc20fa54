package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/failsoft/failsoft/interceptors/pending"
)

// NewBenchStore returns an empty store for a benchmark, closed by the
// caller's b.Cleanup.
type NewBenchStore func(b *testing.B, max int) pending.Store

// Bench measures a store's throughput as the queue uses it: Enqueue adds
// entries of a 200-byte request; Drain claims and settles them through a
// Queue against a connection that accepts every call. Both report
// entries/s.
func Bench(b *testing.B, method string, newStore NewBenchStore) {
	// A request of 200 bytes in wire format: field 1, a string of 197.
	req := append([]byte{0x0a, 197, 1}, make([]byte, 197)...)
	entry := func(i int, now time.Time) pending.Entry {
		return pending.Entry{Key: fmt.Sprintf("key-%09d", i), Method: method, Request: req, Enqueued: now, NotBefore: now,
			Metadata: map[string][]string{"tenant": {"acme"}}}
	}
	b.Run("Enqueue", func(b *testing.B) {
		s := newStore(b, b.N+1)
		ctx, now := context.Background(), time.Now()
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if err := s.Add(ctx, entry(i, now)); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	})
	b.Run("Drain", func(b *testing.B) {
		s := newStore(b, b.N+1)
		ctx, now := context.Background(), time.Now()
		for i := range b.N {
			if err := s.Add(ctx, entry(i, now)); err != nil {
				b.Fatal(err)
			}
		}
		q, err := pending.New(s, pending.ForMethods(method), pending.WithDrain(time.Second, 64, time.Minute))
		if err != nil {
			b.Fatal(err)
		}
		defer q.Close()
		b.ReportAllocs()
		b.ResetTimer()
		done := 0
		for done < b.N {
			r, err := q.DrainOnce(ctx, accept{})
			if err != nil || r.Settled == 0 {
				b.Fatalf("DrainOnce = %+v, %v with %d of %d settled", r, err, done, b.N)
			}
			done += r.Settled
		}
		b.ReportMetric(float64(done)/b.Elapsed().Seconds(), "entries/s")
	})
}

// accept is a connection that answers every call with success.
type accept struct{ grpc.ClientConnInterface }

func (accept) Invoke(context.Context, string, any, any, ...grpc.CallOption) error { return nil }
