package idempotency

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"

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

// NewKey returns a fresh random idempotency key, a version 4 UUID in its
// 36-character text form, such as "9b2f0c4e-3c1d-4f6e-8a6b-2f1d0e9c7a55".
// Its 122 random bits come from crypto/rand, so keys neither collide nor
// can be guessed.
func NewKey() string { return uuid.NewString() }

// KeyHash returns the hash by which events name a key: 16 hex digits of
// its 64-bit FNV-1a hash. It lets client and server events about one key
// be matched without putting the key in telemetry. It is a correlation
// aid, not a secret: a key guessable from a small set (an order number)
// can be found from its hash, while a generated UUID cannot.
func KeyHash(key string) string {
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	return fmt.Sprintf("%016x", h.Sum64())
}

// Replayed reports whether a response header (from grpc.Header) marks the
// response as a replay of a stored outcome.
func Replayed(header metadata.MD) bool {
	v := header.Get(ReplayedMetadata)
	return len(v) == 1 && v[0] == "true"
}
