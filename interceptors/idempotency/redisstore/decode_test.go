package redisstore

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/failsoft/failsoft/interceptors/idempotency"
)

// FuzzDecode: whatever a Redis value holds, decoding it neither panics nor
// accepts more than it should, and encoding round-trips.
func FuzzDecode(f *testing.F) {
	f.Add(uint32(0), []byte(nil), "t.v1.R", []byte{8, 1}, []byte(nil), []byte{1})
	f.Add(uint32(9), []byte("\x08\x09"), "", []byte(nil), []byte{3, 'a', 'b', 'c'}, []byte(nil))
	f.Fuzz(func(t *testing.T, code uint32, st []byte, typ string, resp, hdr, trl []byte) {
		o := &idempotency.Outcome{Code: codes.Code(code), Status: st, ResponseType: typ, Response: resp, Header: hdr, Trailer: trl}
		fp := idempotency.Fingerprint{7}
		v := string(encodeDone(fp, o))
		c, err := decode(v)
		if err != nil {
			if code <= 1<<31 {
				t.Fatalf("decoding an encoded outcome: %v", err)
			}
			return
		}
		got := c.Outcome
		if c.State != idempotency.Done || c.Fingerprint != fp || got.Code != o.Code || got.ResponseType != typ ||
			!bytes.Equal(got.Status, st) || !bytes.Equal(got.Response, resp) ||
			!bytes.Equal(got.Header, hdr) || !bytes.Equal(got.Trailer, trl) {
			t.Fatalf("round trip: %+v, want %+v", got, o)
		}
		// Any prefix or extension of a valid value must not panic.
		for i := range len(v) {
			_, _ = decode(v[:i])
		}
		_, _ = decode(v + "x")
	})
}
