package pending

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/policy"
)

// Option configures a Queue.
type Option func(*config) error

// Settled is what OnSettled hears: the entry that was delivered and the
// server's reply.
type Settled struct {
	Entry
	Reply proto.Message
}

type config struct {
	methods     []string
	metadata    []string
	codes       map[codes.Code]bool
	maxAttempts int
	maxAge      time.Duration
	backoffMin  time.Duration
	backoffMax  time.Duration
	lease       time.Duration
	batch       int
	interval    time.Duration
	clock       clock.Clock
	rand        func() float64
	onSettled   func(context.Context, Settled)
	onDead      func(context.Context, Dead)
	tracer      trace.TracerProvider
	meter       metric.MeterProvider
}

func defaults() config {
	return config{
		codes:       map[codes.Code]bool{codes.Unavailable: true, codes.ResourceExhausted: true, codes.DeadlineExceeded: true, codes.Aborted: true},
		maxAttempts: 20,
		maxAge:      12 * time.Hour,
		backoffMin:  time.Second,
		backoffMax:  5 * time.Minute,
		lease:       30 * time.Second,
		batch:       64,
		interval:    time.Second,
		rand:        rand.Float64,
	}
}

// ForMethods opts methods in (full names, "/pkg.Service/Method"): only
// their calls are queued. Each must be a unary method whose request and
// reply types are in the global protobuf registry (imported generated
// code), and a keyed write: the server must deduplicate by the idempotency
// key, or a redelivery can repeat the write. Required.
func ForMethods(methods ...string) Option {
	return func(c *config) error {
		if len(methods) == 0 {
			return errors.New("pending.ForMethods: no methods")
		}
		for _, m := range methods {
			if !strings.HasPrefix(m, "/") || strings.Count(m, "/") != 2 {
				return fmt.Errorf("pending.ForMethods: %q is not a full method name \"/pkg.Service/Method\"", m)
			}
		}
		c.methods = append(c.methods, methods...)
		return nil
	}
}

// WithMetadata keeps these outgoing metadata entries of a queued call and
// sends them again with every redelivery (a tenant, say). The idempotency
// key is always kept; nothing else is. Entries are stored as they are:
// keep credentials out, and let an interceptor installed after the queue
// add fresh ones to every call, redeliveries included.
func WithMetadata(names ...string) Option {
	return func(c *config) error {
		for _, n := range names {
			if n == "" || n != strings.ToLower(n) || strings.HasPrefix(n, "grpc-") || n == policy.KeyMetadata {
				return fmt.Errorf("pending.WithMetadata: %q: want a lower-case name, not grpc-* nor the idempotency key", n)
			}
		}
		c.metadata = append(c.metadata, names...)
		return nil
	}
}

// WithCodes sets the status codes that mean "cannot be sent now" and queue
// a call (and, for a redelivery, mean "try again later"). The default is
// UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED and ABORTED: what a
// breaker, throttle, bulkhead or short deadline answers locally, and what
// is left when retries ran out on a retryable code. Any other code of a
// redelivery is a refusal for good and the entry dies.
func WithCodes(cs ...codes.Code) Option {
	return func(c *config) error {
		m := map[codes.Code]bool{}
		for _, code := range cs {
			if code == codes.OK || code > codes.Unauthenticated {
				return fmt.Errorf("pending.WithCodes: %v cannot mean \"cannot be sent now\"", code)
			}
			m[code] = true
		}
		if len(m) == 0 {
			return errors.New("pending.WithCodes: no codes")
		}
		c.codes = m
		return nil
	}
}

// WithLimits bounds redelivery: an entry dies after maxAttempts failed
// redeliveries that reached the server, or when it is older than maxAge.
// Keep maxAge below the time the server keeps idempotency keys, or a late
// redelivery may not be recognised as a repeat. The defaults are 20 and
// 12 hours.
func WithLimits(maxAttempts int, maxAge time.Duration) Option {
	return func(c *config) error {
		if maxAttempts < 1 || maxAge <= 0 {
			return fmt.Errorf("pending.WithLimits(%d, %v): want at least 1 attempt and a positive age", maxAttempts, maxAge)
		}
		c.maxAttempts, c.maxAge = maxAttempts, maxAge
		return nil
	}
}

// WithBackoff sets the wait before an entry's next redelivery after its
// n-th failure: min(initial * 2^(n-1), max), with jitter of +-20%. The
// defaults are 1 s and 5 min.
func WithBackoff(initial, max time.Duration) Option {
	return func(c *config) error {
		if initial <= 0 || max < initial {
			return fmt.Errorf("pending.WithBackoff(%v, %v): want 0 < initial <= max", initial, max)
		}
		c.backoffMin, c.backoffMax = initial, max
		return nil
	}
}

// WithDrain sets how the drainer works: every interval (default 1 s) it
// claims up to batch entries (default 64), each for lease (default 30 s).
// A claim whose drainer dies is taken over when its lease ends, so lease
// must exceed the longest redelivery call.
func WithDrain(interval time.Duration, batch int, lease time.Duration) Option {
	return func(c *config) error {
		if interval <= 0 || batch < 1 || lease <= 0 {
			return fmt.Errorf("pending.WithDrain(%v, %d, %v): want a positive interval, batch and lease", interval, batch, lease)
		}
		c.interval, c.batch, c.lease = interval, batch, lease
		return nil
	}
}

// WithClock sets the clock of backoffs, ages and the drain interval.
func WithClock(clk clock.Clock) Option {
	return func(c *config) error {
		if clk == nil {
			return errors.New("pending.WithClock: nil clock")
		}
		c.clock = clk
		return nil
	}
}

// WithRand sets the source of backoff jitter, uniform in [0, 1).
func WithRand(f func() float64) Option {
	return func(c *config) error {
		if f == nil {
			return errors.New("pending.WithRand: nil function")
		}
		c.rand = f
		return nil
	}
}

// OnSettled is called by the drainer after an entry was delivered and
// removed from the store: the place to send the confirmation e-mail. A
// drainer that dies between delivery and removal delivers the entry again
// and the server answers it from its idempotency record, so f can be
// called twice for one key across a crash; it is never called for a key
// that did not succeed.
func OnSettled(f func(context.Context, Settled)) Option {
	return func(c *config) error {
		if f == nil {
			return errors.New("pending.OnSettled: nil function")
		}
		c.onSettled = f
		return nil
	}
}

// OnDead is called after an entry was moved to the dead-letter list. Its
// reason starts "refused with" when the server refused it for good; any
// other reason means the queue gave up, and the call's outcome is unknown.
func OnDead(f func(context.Context, Dead)) Option {
	return func(c *config) error {
		if f == nil {
			return errors.New("pending.OnDead: nil function")
		}
		c.onDead = f
		return nil
	}
}

// WithTracerProvider sets where redelivery spans go; the default is the
// global provider.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) error {
		if tp == nil {
			return errors.New("pending.WithTracerProvider: nil provider")
		}
		c.tracer = tp
		return nil
	}
}

// WithMeterProvider sets where the queue's metrics go; the default is the
// global provider.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) error {
		if mp == nil {
			return errors.New("pending.WithMeterProvider: nil provider")
		}
		c.meter = mp
		return nil
	}
}

func (c *config) finish() {
	c.clock = clock.OrSystem(c.clock)
	if c.tracer == nil {
		c.tracer = otel.GetTracerProvider()
	}
	if c.meter == nil {
		c.meter = otel.GetMeterProvider()
	}
}

// backoff returns the wait after the n-th failed attempt (n >= 1).
func (c *config) backoff(n int) time.Duration {
	d := c.backoffMin
	for i := 1; i < n && d < c.backoffMax; i++ {
		d *= 2
	}
	d = min(d, c.backoffMax)
	return time.Duration(float64(d) * (0.8 + 0.4*c.rand()))
}
