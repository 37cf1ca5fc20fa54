package policy

import (
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
)

// Idempotency says what repeating a call does.
type Idempotency uint8

const (
	// Unknown: nothing says the method is safe to repeat. Never retried
	// beyond gRPC's transparent retries.
	Unknown Idempotency = iota
	// NotIdempotent: explicitly unsafe to repeat.
	NotIdempotent
	// Idempotent: repeating has the same effect as one call. Safe to retry.
	Idempotent
	// NoSideEffects: the call changes nothing. Safe to retry and to hedge.
	NoSideEffects
)

func (i Idempotency) String() string {
	switch i {
	case NotIdempotent:
		return "NOT_IDEMPOTENT"
	case Idempotent:
		return "IDEMPOTENT"
	case NoSideEffects:
		return "NO_SIDE_EFFECTS"
	default:
		return "UNKNOWN"
	}
}

// Maximum values accepted for attempts; larger values are configuration
// mistakes that would multiply load.
const (
	MaxRetryAttempts = 10
	MaxHedgeAttempts = 5
)

// Policy is the resolved, immutable policy of one method. Interceptors
// receive a shared *Policy and must not modify it.
type Policy struct {
	// Method is the full method name, "/package.Service/Method".
	Method string
	// Described reports whether the method's descriptor was found. An
	// undescribed method gets the conservative defaults.
	Described bool
	// Idempotency is the effective idempotency of the method.
	Idempotency Idempotency
	// Timeout is the method's overall timeout; zero means none from the
	// policy (the deadline interceptor then applies its own default).
	Timeout time.Duration
	// MinBudget is the smallest remaining deadline with which a call is
	// still sent; zero disables the check.
	MinBudget time.Duration
	// MinBudgetSet reports that an option set MinBudget (zero included);
	// when false, the deadline interceptor applies its own default.
	MinBudgetSet bool
	// RequiresKey reports that the server deduplicates by idempotency key.
	RequiresKey bool
	// SkipBreaker excludes the method from circuit breaking.
	SkipBreaker bool
	// Retry holds the retry parameters.
	Retry Retry
	// Hedge holds the hedging parameters; Hedge.MaxAttempts <= 1 means off.
	Hedge Hedge
}

// Retry holds retry parameters. The wait before retry n (n = 1 for the
// second attempt) is drawn uniformly from
// [0, min(MaxBackoff, InitialBackoff * Multiplier^(n-1))).
type Retry struct {
	// MaxAttempts counts the first attempt: 1 means no retries.
	MaxAttempts    int
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	Multiplier     float64
	// Codes is the set of retryable status codes.
	Codes CodeSet
	// AttemptTimeout bounds each attempt; zero means attempts share the
	// call's deadline.
	AttemptTimeout time.Duration
}

// Hedge holds hedging parameters.
type Hedge struct {
	// Delay is the wait before each further hedge is sent.
	Delay time.Duration
	// MaxAttempts counts the first attempt: 1 or 0 means no hedging.
	MaxAttempts int
	// Quantile, when non-zero, makes the delay follow this quantile of the
	// method's observed latency.
	Quantile float64
}

// Retryable reports whether a call may be retried. hasKey tells whether
// the call carries an idempotency key, which makes a method that requires
// one safe to retry.
func (p *Policy) Retryable(hasKey bool) bool {
	if p.Retry.MaxAttempts <= 1 {
		return false
	}
	if p.RequiresKey && hasKey {
		// The server deduplicates by the key, which every attempt of the
		// call carries: repeating it is safe whatever the method's
		// idempotency level says.
		return true
	}
	switch p.Idempotency {
	case Idempotent, NoSideEffects:
		return true
	}
	return false
}

// Hedgeable reports whether a call may be hedged.
func (p *Policy) Hedgeable() bool {
	return p.Idempotency == NoSideEffects && p.Hedge.MaxAttempts > 1
}

// CodeSet is a set of gRPC status codes.
type CodeSet uint32

// Codes returns the set holding the given codes.
func Codes(cs ...codes.Code) CodeSet {
	var s CodeSet
	for _, c := range cs {
		if c < 32 {
			s |= 1 << c
		}
	}
	return s
}

// Has reports whether c is in the set.
func (s CodeSet) Has(c codes.Code) bool { return c < 32 && s&(1<<c) != 0 }

func (s CodeSet) String() string {
	var names []string
	for c := codes.Code(0); c < 32; c++ {
		if s.Has(c) {
			names = append(names, codeName(c))
		}
	}
	return "[" + strings.Join(names, " ") + "]"
}

// codeNames maps canonical names, as used in the proto options, to codes.
var codeNames = map[string]codes.Code{
	"OK":                  codes.OK,
	"CANCELLED":           codes.Canceled,
	"CANCELED":            codes.Canceled,
	"UNKNOWN":             codes.Unknown,
	"INVALID_ARGUMENT":    codes.InvalidArgument,
	"DEADLINE_EXCEEDED":   codes.DeadlineExceeded,
	"NOT_FOUND":           codes.NotFound,
	"ALREADY_EXISTS":      codes.AlreadyExists,
	"PERMISSION_DENIED":   codes.PermissionDenied,
	"RESOURCE_EXHAUSTED":  codes.ResourceExhausted,
	"FAILED_PRECONDITION": codes.FailedPrecondition,
	"ABORTED":             codes.Aborted,
	"OUT_OF_RANGE":        codes.OutOfRange,
	"UNIMPLEMENTED":       codes.Unimplemented,
	"INTERNAL":            codes.Internal,
	"UNAVAILABLE":         codes.Unavailable,
	"DATA_LOSS":           codes.DataLoss,
	"UNAUTHENTICATED":     codes.Unauthenticated,
}

// ParseCode parses a canonical status code name such as "UNAVAILABLE".
func ParseCode(name string) (codes.Code, error) {
	if c, ok := codeNames[strings.ToUpper(strings.TrimSpace(name))]; ok {
		return c, nil
	}
	return 0, fmt.Errorf("unknown status code %q", name)
}

func codeName(c codes.Code) string {
	if c == codes.Canceled {
		return "CANCELLED"
	}
	for n, v := range codeNames {
		if v == c && n != "CANCELED" {
			return n
		}
	}
	return c.String()
}

// KeyMetadata is the request metadata entry that carries a call's
// idempotency key. The idempotency interceptors set and read it; the retry
// interceptor checks for it to decide whether a method that requires a key
// may be retried.
const KeyMetadata = "idempotency-key"
