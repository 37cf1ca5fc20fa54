package observe

import (
	"context"
	"time"
)

// Kind names what happened.
type Kind uint8

const (
	// AttemptStart: an attempt is about to be sent. Attempt, Hedge.
	AttemptStart Kind = iota + 1
	// AttemptEnd: an attempt finished. Attempt, Hedge, Err, Duration.
	AttemptEnd
	// Backoff: the retry layer waits before the next attempt. Attempt (the
	// one about to be sent), Duration (the wait), Reason ("policy" or
	// "pushback").
	Backoff
	// RetryStopped: the retry layer gives up. Reason says why ("deadline",
	// "attempts", "code", "pushback", "committed", "buffer", "budget").
	RetryStopped
	// Hedge: a hedged attempt is sent. Attempt, Duration (the delay).
	Hedge
	// BudgetExhausted: a retry or hedge was refused by the per-target budget.
	BudgetExhausted
	// BreakerState: a breaker changed state. From, To, Counts.
	BreakerState
	// BreakerRejected: an open breaker failed a call at once.
	BreakerRejected
	// BulkheadRejected: a full bulkhead refused a call.
	BulkheadRejected
	// Throttled: the adaptive throttle rejected a call locally. Value is the
	// rejection probability.
	Throttled
	// Fallback: a fallback answered the call. Reason names the level.
	Fallback
	// DeadlineSet: the deadline layer gave the call its deadline. Duration
	// is the budget remaining at send time.
	DeadlineSet
	// DeadlineFailFast: too little budget was left to send the call.
	// Duration is what was left.
	DeadlineFailFast
	// KeyAttached: an idempotency key was attached. Reason is a hash of the
	// key, never the key.
	KeyAttached
	// Replay: the server answered a repeated key from its store.
	Replay
	// KeyConflict: the server refused a key (in flight, or reused with a
	// different request). Reason says which.
	KeyConflict
	// KeyStoreError: the server's idempotency store failed, or an outcome
	// could not be stored. Reason says where ("claim": the call was
	// refused; "claim_fail_open": the call ran without deduplication;
	// "complete" and "encode": the outcome was not stored, so a retry is
	// refused until the claim's lease ends and then runs again;
	// "release": the key stays claimed until its lease ends). Err is the
	// store's error.
	KeyStoreError
	// PolicyUnmatched: a policy given in code (policy.WithService,
	// policy.WithMethod) names a service that no descriptor in the
	// resolver's registry describes when a suite is built, so it applies
	// only to calls with exactly that name, and a misspelt one to none.
	// Method is the name as given. Reported once per name by
	// failsoft.DialOptions and ServerOptions, on context.Background().
	PolicyUnmatched
)

var kindNames = [...]string{
	AttemptStart: "attempt_start", AttemptEnd: "attempt_end", Backoff: "backoff",
	RetryStopped: "retry_stopped", Hedge: "hedge", BudgetExhausted: "budget_exhausted",
	BreakerState: "breaker_state", BreakerRejected: "breaker_rejected",
	BulkheadRejected: "bulkhead_rejected", Throttled: "throttled", Fallback: "fallback",
	DeadlineSet: "deadline_set", DeadlineFailFast: "deadline_fail_fast",
	KeyAttached: "key_attached", Replay: "replay", KeyConflict: "key_conflict",
	KeyStoreError: "key_store_error", PolicyUnmatched: "policy_unmatched",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "unknown"
}

// Counts are a breaker's counts at the moment of an event.
type Counts struct {
	Requests, Successes, Failures, SlowCalls, ConsecutiveFailures, ConsecutiveSuccesses uint32
}

// Event is one decision. Fields that do not apply to a Kind are zero.
// Events are passed by value, so reporting one does not allocate.
type Event struct {
	Kind     Kind
	Method   string // full method name
	Target   string // ClientConn target
	Attempt  int    // 1 for the first attempt
	Hedge    bool
	Duration time.Duration
	Reason   string
	From, To string // breaker states
	Counts   Counts
	Value    float64
	Err      error
}

// Observer hears events. Implementations must be safe for concurrent use
// and quick: they run on the call's goroutine.
type Observer interface {
	Observe(ctx context.Context, e Event)
}

// Func adapts a function to Observer.
type Func func(ctx context.Context, e Event)

// Observe calls f.
func (f Func) Observe(ctx context.Context, e Event) { f(ctx, e) }

// Multi returns an Observer that calls each non-nil observer in order. It
// returns nil when none is left, so that layers skip reporting entirely.
func Multi(observers ...Observer) Observer {
	var out multi
	for _, o := range observers {
		switch o := o.(type) {
		case nil:
		case multi:
			out = append(out, o...)
		default:
			out = append(out, o)
		}
	}
	switch len(out) {
	case 0:
		return nil
	case 1:
		return out[0]
	}
	return out
}

type multi []Observer

func (m multi) Observe(ctx context.Context, e Event) {
	for _, o := range m {
		o.Observe(ctx, e)
	}
}

func (m multi) Wants(ctx context.Context, k Kind) bool {
	for _, o := range m {
		if Wants(ctx, o, k) {
			return true
		}
	}
	return false
}

// A Selector is an Observer that can tell, cheaply, whether it would use
// an event of kind k on ctx. Layers ask before building an event that
// costs something to build (timing an attempt reads the clock twice;
// reporting a key hashes it) and skip it when no observer wants it.
type Selector interface {
	Observer
	Wants(ctx context.Context, k Kind) bool
}

// Wants reports whether o would use an event of kind k on ctx: false for a
// nil o, and true for an observer that is not a Selector.
func Wants(ctx context.Context, o Observer, k Kind) bool {
	if o == nil {
		return false
	}
	if s, ok := o.(Selector); ok {
		return s.Wants(ctx, k)
	}
	return true
}

// Attempt describes the attempt a context belongs to. The retry layer sets
// it on each attempt's context; inner layers (per-attempt spans) read it.
type Attempt struct {
	N             int           // 1 for the first attempt
	Hedge         bool          // sent as a hedge
	Backoff       time.Duration // waited before this attempt
	BackoffReason string        // "policy", "pushback" or "hedge"; "" for the first attempt
	Timeout       time.Duration // per-attempt timeout, zero if none
}

type attemptKey struct{}

// WithAttempt returns ctx carrying a.
func WithAttempt(ctx context.Context, a Attempt) context.Context {
	return &AttemptContext{Context: ctx, Attempt: a}
}

// AttemptContext is a context that carries an Attempt in one allocation
// (context.WithValue would box the Attempt in a second one). It answers
// Value for the attempt itself and leaves every other method to Context,
// its parent, so that contexts derived from it still find the parent's
// cancellation. WithAttempt makes one; a layer that keeps more about an
// attempt embeds it in a value of its own, so that the attempt still
// costs one allocation.
type AttemptContext struct {
	context.Context // the parent
	Attempt         Attempt
}

// Value returns the Attempt for AttemptFrom, and asks the parent for any
// other key.
func (c *AttemptContext) Value(key any) any {
	if key == (attemptKey{}) {
		return &c.Attempt
	}
	return c.Context.Value(key)
}

// AttemptFrom returns the attempt set on ctx. A context without one is the
// first attempt, without a per-attempt timeout.
func AttemptFrom(ctx context.Context) Attempt {
	if a, ok := ctx.Value(attemptKey{}).(*Attempt); ok {
		return *a
	}
	return Attempt{N: 1}
}
