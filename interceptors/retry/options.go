package retry

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/internal/common"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/policy"
)

// AttemptMetadata is the request metadata entry that carries the attempt
// number, "2" for the first retry or hedge, "3" for the next and so on. The
// first attempt does not carry it: its absence means attempt 1. It is not a
// "grpc-" key, so servers and proxies see it as ordinary metadata.
const AttemptMetadata = "failsoft-attempt"

// DefaultReplayBuffer is the default size of a stream's replay buffer: the
// request messages a stream may send while it can still be retried.
const DefaultReplayBuffer = 256 << 10

// Budget limits the retries and hedges sent to one target, so that an
// outage cannot multiply the load on it, while retries that work are not
// refused. Over a sliding window of TTL, every call deposits Ratio tokens
// and the floor adds MinPerSecond tokens per second; every retry or hedge
// sent takes one token, and a retry that succeeds gives its token back. A
// retry or hedge that finds less than one token is not sent.
//
// A retry that succeeds did the work of its call, so transient faults and
// lost responses are retried as fully as without a budget; only retries
// that fail again spend. Under a total outage the attempts per call stay at
// or below 1 + Ratio + MinPerSecond/(calls per second).
type Budget struct {
	// Ratio is the number of failed retries and hedges allowed per call,
	// on average. Default 0.1; it must be in (0, 1].
	Ratio float64
	// MinPerSecond is the floor: tokens added per second whatever the
	// traffic, so that a client that calls rarely can still retry.
	// DefaultBudget has 1; zero turns the floor off.
	MinPerSecond float64
	// TTL is how long a deposit counts. Default 10 s; between 1 s and
	// 1 h.
	TTL time.Duration
}

// DefaultBudget is the budget used unless WithBudget or WithoutBudget is
// given. Finagle and Linkerd allow 20% of calls plus 10 retries per second
// over 10 s; failsoft refunds the retries that succeed, so half that ratio
// keeps every productive retry while a dead target sees at most about 1.1
// attempts per call.
var DefaultBudget = Budget{Ratio: 0.1, MinPerSecond: 1, TTL: 10 * time.Second}

// Option configures an Interceptor.
type Option func(*config) error

type config struct {
	common.Config
	rand         func() float64
	budget       Budget
	budgetOff    bool
	replayBuffer int
}

func defaults() config {
	return config{
		// The resolver, policy.Default(), is filled in by New.
		Config:       common.Config{Clock: clock.System()},
		rand:         rand.Float64,
		budget:       DefaultBudget,
		replayBuffer: DefaultReplayBuffer,
	}
}

// WithResolver sets the policy resolver that says which methods may be
// retried or hedged and how. Default policy.Default().
func WithResolver(r *policy.Resolver) Option { return common.Resolver[config]("retry", r) }

// WithObserver sets the observer that hears attempts, backoffs, hedges,
// stops and budget exhaustion. Nil, the default, reports nothing and costs
// nothing.
func WithObserver(o observe.Observer) Option { return common.Observer[config](o) }

// WithClock sets the clock used for backoff waits, hedge delays, per-attempt
// timeouts, deadline checks and the budget's floor. Default the system
// clock.
func WithClock(clk clock.Clock) Option { return common.Clock[config]("retry", clk) }

// WithRand sets the source of jitter: a function returning a number in
// [0, 1) that is safe for concurrent use. Default math/rand/v2.Float64.
// Tests pass a fixed or seeded function to make waits predictable.
func WithRand(f func() float64) Option {
	return func(c *config) error {
		if f == nil {
			return errors.New("retry.WithRand: nil function")
		}
		c.rand = f
		return nil
	}
}

// WithBudget sets the per-target retry budget. A zero Ratio or TTL takes
// DefaultBudget's; a zero MinPerSecond turns the floor off.
func WithBudget(b Budget) Option {
	return func(c *config) error {
		if b.Ratio == 0 {
			b.Ratio = DefaultBudget.Ratio
		}
		if b.TTL == 0 {
			b.TTL = DefaultBudget.TTL
		}
		switch {
		case math.IsNaN(b.Ratio) || b.Ratio < 0 || b.Ratio > 1:
			return fmt.Errorf("retry.WithBudget: Ratio must be in (0, 1], got %v", b.Ratio)
		case math.IsNaN(b.MinPerSecond) || b.MinPerSecond < 0 || b.MinPerSecond > 1e6:
			return fmt.Errorf("retry.WithBudget: MinPerSecond must be in [0, 1e6], got %v", b.MinPerSecond)
		case b.TTL < time.Second || b.TTL > time.Hour:
			return fmt.Errorf("retry.WithBudget: TTL must be between 1s and 1h, got %v", b.TTL)
		}
		c.budget, c.budgetOff = b, false
		return nil
	}
}

// WithoutBudget turns the retry budget off: retries and hedges are limited
// only by each method's policy. Not recommended outside tests.
func WithoutBudget() Option {
	return func(c *config) error {
		c.budgetOff = true
		return nil
	}
}

// WithReplayBuffer sets how many bytes of request messages a stream keeps
// for replay while it may still be retried. Once a stream has sent more, it
// is committed to its current attempt. Default DefaultReplayBuffer
// (256 KiB); zero means a stream is committed at its first message, so only
// failures to open it are retried.
func WithReplayBuffer(bytes int) Option {
	return func(c *config) error {
		if bytes < 0 || bytes > 64<<20 {
			return fmt.Errorf("retry.WithReplayBuffer: must be between 0 and 64 MiB, got %d", bytes)
		}
		c.replayBuffer = bytes
		return nil
	}
}

// CallOption changes the retry behaviour of one call. Pass it with the
// call's other grpc.CallOptions; it is ignored by everything but this
// interceptor.
type CallOption struct {
	grpc.EmptyCallOption
	apply func(*callConfig)
}

type callConfig struct {
	disabled       bool
	maxAttempts    int // 0: from the policy
	attemptTimeout time.Duration
	backoff        *backoffOverride
	err            error
}

type backoffOverride struct {
	initial, max time.Duration
	multiplier   float64
}

// Disable turns retries and hedging off for one call: it gets exactly one
// attempt from this interceptor.
func Disable() CallOption {
	return CallOption{apply: func(c *callConfig) { c.disabled = true }}
}

// WithMax sets the maximum number of attempts for one call, counting the
// first: WithMax(1) means no retries. It changes how often a method that
// may be retried or hedged is tried; it never makes an unsafe method
// retryable. n must be between 1 and policy.MaxRetryAttempts (at most
// policy.MaxHedgeAttempts are used for hedging); otherwise the call fails
// with InvalidArgument.
func WithMax(n int) CallOption {
	return CallOption{apply: func(c *callConfig) {
		if n < 1 || n > policy.MaxRetryAttempts {
			c.err = fmt.Errorf("retry.WithMax(%d): must be between 1 and %d (it counts the first attempt)", n, policy.MaxRetryAttempts)
			return
		}
		c.maxAttempts = n
	}}
}

// WithAttemptTimeout sets the per-attempt timeout of one call, replacing the
// policy's. It must be positive; otherwise the call fails with
// InvalidArgument.
func WithAttemptTimeout(d time.Duration) CallOption {
	return CallOption{apply: func(c *callConfig) {
		if d <= 0 {
			c.err = fmt.Errorf("retry.WithAttemptTimeout(%v): must be positive", d)
			return
		}
		c.attemptTimeout = d
	}}
}

// WithBackoff sets the backoff of one call, replacing the policy's: the
// wait before retry n is drawn uniformly from
// [0, min(max, initial * multiplier^(n-1))). initial must be positive, max
// at least initial and multiplier at least 1; otherwise the call fails with
// InvalidArgument.
func WithBackoff(initial, max time.Duration, multiplier float64) CallOption {
	return CallOption{apply: func(c *callConfig) {
		if initial <= 0 || max < initial || !(multiplier >= 1) || math.IsInf(multiplier, 0) {
			c.err = fmt.Errorf("retry.WithBackoff(%v, %v, %v): want initial > 0, max >= initial, multiplier >= 1", initial, max, multiplier)
			return
		}
		c.backoff = &backoffOverride{initial: initial, max: max, multiplier: multiplier}
	}}
}

// callOptions collects this package's CallOptions from opts, or returns
// nil when there are none. It does not allocate then: the config, which
// the options' functions make escape, is only made once one is found.
func callOptions(opts []grpc.CallOption) *callConfig {
	var c *callConfig
	for _, o := range opts {
		if co, ok := o.(CallOption); ok && co.apply != nil {
			if c == nil {
				c = new(callConfig)
			}
			co.apply(c)
		}
	}
	return c
}
