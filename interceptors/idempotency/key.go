package idempotency

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sync"

	"github.com/google/uuid"
	"google.golang.org/grpc/metadata"
)

// MaxKeyLen is the longest idempotency key accepted, in bytes.
const MaxKeyLen = 255

// ReplayedMetadata is the response header entry set to "true" when the
// server answered from its store instead of running the handler.
const ReplayedMetadata = "idempotency-replayed"

type keyCtx struct{}

// WithKey returns ctx carrying key as the idempotency key of the next
// logical call made with it, instead of a generated one. Use it when the
// operation already has a stable identity (an order number, a payment
// intent), so that even a call repeated by the application after a crash
// is deduplicated. The client interceptor validates the key (see
// ValidateKey) and fails the call locally with INVALID_ARGUMENT if it is
// not valid; nothing is sent then.
//
// Every call made with the returned ctx carries this key, so derive a new
// context for each logical operation.
func WithKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, keyCtx{}, key)
}

// KeyFrom returns the key set by WithKey, if any.
func KeyFrom(ctx context.Context) (string, bool) {
	k, ok := ctx.Value(keyCtx{}).(string)
	return k, ok
}

// ValidateKey reports whether key can serve as an idempotency key: 1 to
// MaxKeyLen bytes of printable ASCII (0x20 to 0x7E), not starting or ending
// with a space, since HTTP/2 intermediaries may trim those and so change
// the key on the way.
func ValidateKey(key string) error {
	switch {
	case len(key) == 0:
		return errors.New("idempotency key is empty")
	case len(key) > MaxKeyLen:
		return fmt.Errorf("idempotency key is %d bytes long, more than %d", len(key), MaxKeyLen)
	case key[0] == ' ' || key[len(key)-1] == ' ':
		return errors.New("idempotency key starts or ends with a space")
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < 0x20 || c > 0x7e {
			return fmt.Errorf("idempotency key has a byte 0x%02x at offset %d that is not printable ASCII", c, i)
		}
	}
	return nil
}

// Generated keys are random (version 4) UUIDs in their 36-character text
// form, made in batches: one string allocation serves keysPerBatch keys,
// which keeps key generation off the allocation budget of a call. A key is
// a substring of its batch, so a key kept alive keeps its batch's 2.3 KiB
// alive.
//
// The random bits come from a ChaCha8 generator per batch, seeded from
// crypto/rand: ChaCha8 is cryptographically strong (math/rand/v2 documents
// it as such, and the Go runtime uses it for the same purpose), and about
// twice as fast as reading crypto/rand for every batch. Keys are as
// unpredictable as crypto/rand's, and collide only with the probability
// of random 122-bit values.
const (
	uuidTextLen  = 36
	keysPerBatch = 64
)

type keyBatch struct {
	text string
	next int
	rng  *mrand.ChaCha8
	rnd  [keysPerBatch * 16]byte
	hex  [keysPerBatch * 32]byte
	buf  [keysPerBatch * uuidTextLen]byte
}

var keyBatches = sync.Pool{New: func() any {
	var seed [32]byte
	// crypto/rand.Read never fails on supported platforms (it crashes the
	// program instead), so its error is not checked.
	_, _ = rand.Read(seed[:])
	return &keyBatch{next: keysPerBatch, rng: mrand.NewChaCha8(seed)}
}}

// NewKey returns a fresh random idempotency key, a version 4 UUID such as
// "9b2f0c4e-3c1d-4f6e-8a6b-2f1d0e9c7a55".
func NewKey() string {
	b := keyBatches.Get().(*keyBatch)
	if b.next == keysPerBatch {
		b.refill()
	}
	k := b.text[b.next*uuidTextLen : (b.next+1)*uuidTextLen]
	b.next++
	keyBatches.Put(b)
	return k
}

func (b *keyBatch) refill() {
	_, _ = b.rng.Read(b.rnd[:])
	for i := range keysPerBatch {
		u := (*uuid.UUID)(b.rnd[i*16:])
		u[6] = u[6]&0x0f | 0x40 // version 4
		u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
	}
	// One hex pass over the whole batch, then the dashes: the canonical
	// 8-4-4-4-12 form that uuid.UUID.String returns.
	hex.Encode(b.hex[:], b.rnd[:])
	for i := range keysPerBatch {
		h := (*[32]byte)(b.hex[i*32:])
		t := (*[uuidTextLen]byte)(b.buf[i*uuidTextLen:])
		copy(t[0:8], h[0:8])
		copy(t[9:13], h[8:12])
		copy(t[14:18], h[12:16])
		copy(t[19:23], h[16:20])
		copy(t[24:36], h[20:32])
		t[8], t[13], t[18], t[23] = '-', '-', '-', '-'
	}
	b.text = string(b.buf[:])
	b.next = 0
}

const hexDigits = "0123456789abcdef"

// KeyHash returns the hash by which events name a key: 16 hex digits of
// its 64-bit FNV-1a hash. It lets client and server events about one key
// be matched without putting the key in telemetry. It is a correlation
// aid, not a secret: a key guessable from a small set (an order number)
// can be found from its hash, while a generated UUID cannot.
func KeyHash(key string) string {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= prime
	}
	var out [16]byte
	for i := 15; i >= 0; i-- {
		out[i] = hexDigits[h&0x0f]
		h >>= 4
	}
	return string(out[:])
}

// Replayed reports whether a response header (from grpc.Header) marks the
// response as a replay of a stored outcome.
func Replayed(header metadata.MD) bool {
	v := header.Get(ReplayedMetadata)
	return len(v) == 1 && v[0] == "true"
}
