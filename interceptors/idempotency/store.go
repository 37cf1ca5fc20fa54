package idempotency

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
)

// Key identifies one logical operation in a Store: who called, which
// method, and the idempotency key the caller sent. Two callers that send
// the same idempotency key never share an entry, because Identity differs.
type Key struct {
	// Identity is the caller, as returned by the server's identity function.
	Identity string
	// Method is the full method name, "/pkg.Service/Method".
	Method string
	// Key is the idempotency key from the request metadata.
	Key string
}

// Outcome is the stored result of a handler: a response message for a
// success, a status for an error.
type Outcome struct {
	// Code is the status code; codes.OK for a success.
	Code codes.Code
	// Status is the marshalled google.rpc.Status of an error (code, message
	// and details); nil for a success.
	Status []byte
	// ResponseType is the full protobuf name of the response message of a
	// success, used to rebuild it on replay.
	ResponseType string
	// Response is the marshalled response message of a success.
	Response []byte
	// Header and Trailer are the response header and trailer metadata the
	// handler set, in an encoding private to this package; nil when none.
	// Stores keep them as opaque bytes.
	Header, Trailer []byte
}

// Size is the number of bytes the outcome's payload takes.
func (o *Outcome) Size() int {
	return len(o.Status) + len(o.ResponseType) + len(o.Response) + len(o.Header) + len(o.Trailer)
}

// State is what Claim found.
type State uint8

const (
	// Claimed: the key was free (never seen, expired, or its lease ran out)
	// and now belongs to the caller of Claim until the lease ends or the
	// claim is completed or released.
	Claimed State = iota + 1
	// InFlight: another request holds a live lease on the key.
	InFlight
	// Done: the key has a stored outcome.
	Done
)

func (s State) String() string {
	switch s {
	case Claimed:
		return "claimed"
	case InFlight:
		return "in_flight"
	case Done:
		return "done"
	}
	return "unknown"
}

// Claim is the answer of Store.Claim.
type Claim struct {
	State State
	// Token identifies the claim when State is Claimed; Complete and Release
	// take it so that a handler whose lease ran out (and whose key was
	// claimed again) cannot overwrite the newer claim.
	Token string
	// Fingerprint is the fingerprint of the request that created the entry,
	// when State is InFlight or Done.
	Fingerprint Fingerprint
	// Outcome is the stored outcome when State is Done.
	Outcome *Outcome
}

// Store keeps idempotency entries. Implementations must be safe for
// concurrent use, and Claim must be atomic: of any number of concurrent
// Claims for one key, at most one returns Claimed. The package provides
// MemoryStore; the redisstore subpackage provides a store shared by
// replicas.
//
// An error other than ErrFull and ErrLeaseLost means the store cannot be
// reached; the server interceptor then fails the call with UNAVAILABLE
// (or runs it without deduplication when configured to fail open).
type Store interface {
	// Claim atomically claims key for lease, recording fp, unless a live
	// entry exists: then it reports that entry (InFlight or Done) and its
	// fingerprint. An entry whose lease or TTL has passed does not exist.
	Claim(ctx context.Context, key Key, fp Fingerprint, lease time.Duration) (Claim, error)
	// Complete stores o under key for ttl if token still owns the claim,
	// or if the entry has meanwhile expired without being claimed again.
	// It returns ErrLeaseLost when another claim or outcome replaced it.
	Complete(ctx context.Context, key Key, token string, fp Fingerprint, o *Outcome, ttl time.Duration) error
	// Release deletes the entry if token still owns the claim, so that the
	// request can be retried with the same key. Releasing a claim that was
	// lost is not an error.
	Release(ctx context.Context, key Key, token string) error
	// Extend renews the lease of the claim token owns to lease from now,
	// while its handler is still running. It returns ErrLeaseLost when the
	// claim is no longer token's.
	Extend(ctx context.Context, key Key, token string, lease time.Duration) error
}

// Waiter is implemented by stores that can tell a request waiting for a
// claim in flight when that claim ends. Wait returns when the claim on key
// was completed or released, or its lease ended (or at once if there is
// no claim in flight), or with ctx's error. The server polls stores that
// are not Waiters.
type Waiter interface {
	Wait(ctx context.Context, key Key) error
}

var (
	// ErrFull is returned by a store that has no room for another entry:
	// what is in the way are claims in flight, which end within a lease.
	// The server answers RESOURCE_EXHAUSTED, with a retry delay.
	ErrFull = errors.New("idempotency: store full")
	// ErrLeaseLost is returned by Complete when the claim's lease ran out
	// and the key was claimed again or completed by another request.
	ErrLeaseLost = errors.New("idempotency: lease lost")
)
