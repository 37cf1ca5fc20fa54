package pending

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Entry is one call that could not be sent when it was made: everything
// needed to send it again as the same logical call.
type Entry struct {
	// Key is the call's idempotency key. It names the entry: a store holds
	// at most one entry per key.
	Key string `json:"key"`
	// Method is the full method, "/pkg.Service/Method".
	Method string `json:"method"`
	// Request is the request message in protobuf wire format.
	Request []byte `json:"request"`
	// Metadata holds the outgoing metadata entries chosen with
	// WithMetadata; the key is not among them.
	Metadata map[string][]string `json:"metadata,omitempty"`
	// Trace is the W3C trace context of the original call ("traceparent"
	// and, if set, "tracestate"), so each redelivery links to it.
	Trace map[string]string `json:"trace,omitempty"`
	// Enqueued is when the call was queued.
	Enqueued time.Time `json:"enqueued"`
	// Attempts counts redeliveries that reached the wire and failed.
	Attempts int `json:"attempts"`
	// NotBefore is the earliest time the entry may be claimed: its next
	// attempt, or the end of a claim's lease.
	NotBefore time.Time `json:"not_before"`
	// LastError is the error of the latest failed redelivery.
	LastError string `json:"last_error,omitempty"`
}

// Dead is an entry that will not be sent again, with the reason.
type Dead struct {
	Entry
	Reason string    `json:"reason"`
	Died   time.Time `json:"died"`
}

// Stats describes the entries waiting in a store.
type Stats struct {
	// Depth is the number of entries waiting (dead ones excluded).
	Depth int
	// Oldest is the enqueue time of the oldest waiting entry; zero when
	// Depth is 0.
	Oldest time.Time
	// Dead is the number of entries in the dead-letter list.
	Dead int
}

// Store keeps pending entries durably. Implementations must be safe for
// concurrent use; storetest.Run checks the contract.
//
// A claim is a lease: Claim moves each entry it returns to NotBefore =
// now+lease, so that no other Claim (of this or another process) returns
// it until the lease ends. An entry whose claimant dies before settling it
// comes back when the lease ends; the idempotency key makes the repeated
// send harmless.
type Store interface {
	// Add queues e. When an entry with e.Key is already waiting, Add keeps
	// that one and returns nil. It returns an error wrapping ErrFull when
	// the store holds its maximum, and one wrapping ErrDead when e.Key is in
	// the dead-letter list.
	Add(ctx context.Context, e Entry) error
	// Claim returns up to max entries with NotBefore <= now, earliest
	// NotBefore first, each leased until now+lease.
	Claim(ctx context.Context, now time.Time, lease time.Duration, max int) ([]Entry, error)
	// Reschedule stores a claimed entry's new Attempts, NotBefore and
	// LastError. It does nothing when the entry is no longer waiting.
	Reschedule(ctx context.Context, e Entry) error
	// Settle removes the entry with key: it was delivered. Settling a key
	// that is not waiting does nothing.
	Settle(ctx context.Context, key string) error
	// Bury moves the entry with d.Key to the dead-letter list.
	Bury(ctx context.Context, d Dead) error
	// DeadLetters returns up to max dead entries (max <= 0: all), oldest
	// death first.
	DeadLetters(ctx context.Context, max int) ([]Dead, error)
	// Forget removes key from the dead-letter list once the application
	// has dealt with it.
	Forget(ctx context.Context, key string) error
	// Stats returns the depth, oldest entry and dead-letter count.
	Stats(ctx context.Context) (Stats, error)
}

var (
	// ErrFull is wrapped by Add's error when the store holds its maximum
	// number of entries.
	ErrFull = errors.New("failsoft: pending: store is full")
	// ErrDead is wrapped by Add's error when the key is in the dead-letter
	// list: the server refused it for good, sending it again cannot help.
	ErrDead = errors.New("failsoft: pending: key is in the dead-letter list")
)

// FullError returns an error wrapping ErrFull that says how full the store
// is, for Store implementations.
func FullError(max int) error {
	return fmt.Errorf("%w: it holds its maximum of %d entries", ErrFull, max)
}

// MarshalBinary encodes e for a Store. The encoding is JSON, so stored
// entries can be read with ordinary tools.
func (e Entry) MarshalBinary() ([]byte, error) { return json.Marshal(e) }

// UnmarshalBinary decodes an entry encoded by MarshalBinary.
func (e *Entry) UnmarshalBinary(b []byte) error {
	var v Entry
	if err := decode(b, &v, &v); err != nil {
		return err
	}
	*e = v
	return nil
}

// decode unmarshals b into v and checks that e, v's entry, names a key
// and a method.
func decode(b []byte, v any, e *Entry) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("failsoft: pending: corrupt entry: %w", err)
	}
	if e.Key == "" || e.Method == "" {
		return errors.New("failsoft: pending: corrupt entry: no key or method")
	}
	return nil
}

// MarshalBinary encodes d for a Store.
func (d Dead) MarshalBinary() ([]byte, error) { return json.Marshal(d) }

// UnmarshalBinary decodes a dead entry encoded by MarshalBinary.
func (d *Dead) UnmarshalBinary(b []byte) error {
	var v Dead
	if err := decode(b, &v, &v.Entry); err != nil {
		return err
	}
	*d = v
	return nil
}
