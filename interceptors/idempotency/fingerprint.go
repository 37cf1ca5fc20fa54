package idempotency

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"

	"google.golang.org/protobuf/proto"
)

// Fingerprint identifies a request: the SHA-256 of its full method name
// and its deterministic protobuf encoding. A key reused with a different
// fingerprint is refused with FAILED_PRECONDITION.
type Fingerprint [sha256.Size]byte

func (f Fingerprint) String() string { return hex.EncodeToString(f[:]) }

var fingerprintBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// maxPooledBuf keeps one huge request from pinning a huge buffer in the
// pool.
const maxPooledBuf = 64 << 10

// FingerprintOf returns the fingerprint of req sent to fullMethod. req is
// encoded with deterministic marshalling, so equal messages (including map
// fields, whatever their iteration order) have equal fingerprints; unknown
// fields are part of the encoding and so of the fingerprint.
func FingerprintOf(fullMethod string, req any) (Fingerprint, error) {
	m, ok := req.(proto.Message)
	if !ok {
		return Fingerprint{}, fmt.Errorf("idempotency: request of %s is %T, not a protobuf message", fullMethod, req)
	}
	bp := fingerprintBufs.Get().(*[]byte)
	buf := append((*bp)[:0], fullMethod...)
	buf = append(buf, 0)
	buf, err := proto.MarshalOptions{Deterministic: true}.MarshalAppend(buf, m)
	if err != nil {
		fingerprintBufs.Put(bp)
		return Fingerprint{}, fmt.Errorf("idempotency: encoding request of %s: %w", fullMethod, err)
	}
	fp := Fingerprint(sha256.Sum256(buf))
	if cap(buf) <= maxPooledBuf {
		*bp = buf
		fingerprintBufs.Put(bp)
	}
	return fp, nil
}
