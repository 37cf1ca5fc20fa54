package pending_test

import (
	"testing"

	"github.com/failsoft/failsoft/interceptors/pending"
)

// Stored entries come back from files and shared servers that anything may
// have written: decoding never panics, and what decodes encodes again to
// an entry that decodes the same.
func FuzzUnmarshalEntry(f *testing.F) {
	f.Add([]byte(`{"key":"k","method":"/p.S/M","request":"CgNhYmM=","enqueued":"2027-01-01T00:00:00Z","not_before":"2027-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"key":"k","method":"/p.S/M","metadata":{"tenant":["a"]},"trace":{"traceparent":"x"},"attempts":3}`))
	f.Add([]byte(`{"key":""}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var e pending.Entry
		if err := e.UnmarshalBinary(b); err != nil {
			return
		}
		if e.Key == "" || e.Method == "" {
			t.Fatalf("decoded an entry without key or method: %+v", e)
		}
		again, err := e.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var e2 pending.Entry
		if err := e2.UnmarshalBinary(again); err != nil || e2.Key != e.Key || string(e2.Request) != string(e.Request) || e2.Attempts != e.Attempts {
			t.Fatalf("round trip: %+v, %v; want %+v", e2, err, e)
		}
		var d pending.Dead
		_ = d.UnmarshalBinary(b)
	})
}
