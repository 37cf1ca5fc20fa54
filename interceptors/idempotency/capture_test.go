package idempotency

import (
	"testing"

	"google.golang.org/grpc/metadata"
)

func FuzzMetadataEncoding(f *testing.F) {
	f.Add("x-a", "1", "x-b-bin", "\x00\xff")
	f.Add("", "", "k", "")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		md := metadata.MD{k1: {v1, v2}, k2: {v2}}
		got, err := decodeMD(encodeMD(md))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(md) {
			t.Fatalf("round trip %v, want %v", got, md)
		}
		for k, vs := range md {
			if g := got[k]; len(g) != len(vs) {
				t.Fatalf("round trip %v, want %v", got, md)
			}
			for i := range vs {
				if got[k][i] != vs[i] {
					t.Fatalf("round trip %v, want %v", got, md)
				}
			}
		}
		// Truncations are refused or decoded, never a panic.
		b := encodeMD(md)
		for i := range len(b) {
			_, _ = decodeMD(b[:i])
		}
	})
}
