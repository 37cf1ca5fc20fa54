package breaker

import (
	"errors"
	"fmt"
	"time"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/outcome"
	"github.com/failsoft/failsoft/interceptors/policy"
)

// Defaults, used for whatever the options leave unset.
const (
	// DefaultFailureRate is the failure rate that trips a breaker when no
	// trip rule is given.
	DefaultFailureRate = 0.5
	// DefaultCountWindow is the size of the sliding window, in calls, when a
	// rate rule is given without a window.
	DefaultCountWindow = 100
	// DefaultMinimumCalls is how many calls the window must hold before a
	// rate rule may trip.
	DefaultMinimumCalls = 20
	// DefaultOpenFor is how long a breaker first stays open.
	DefaultOpenFor = 5 * time.Second
	// DefaultMaxOpenFor caps the open period, which doubles each time a
	// probe fails.
	DefaultMaxOpenFor = time.Minute
	// DefaultHalfOpenProbes is how many probe calls a half-open breaker lets
	// through; that many successes close it.
	DefaultHalfOpenProbes = 3
	// DefaultMaxBreakers bounds the registry.
	DefaultMaxBreakers = 1024
	// timeBuckets is how many buckets a time window is divided into.
	timeBuckets = 10
)

// Option configures an Interceptor. Options are checked by New, which names
// the option that is wrong.
type Option func(*config) error

type config struct {
	resolver   *policy.Resolver
	observer   observe.Observer
	clock      clock.Clock
	classifier outcome.Classifier
	hooks      []func(Change)

	// Trip rules; zero means the rule is off.
	consecutive   uint32
	withinN       int
	withinD       time.Duration
	failureRate   float64
	slowRate      float64
	slowThreshold time.Duration

	// Sliding window for the rate rules: one of the two.
	countWindow  int
	timeWindow   time.Duration
	minimumCalls int

	openFor, maxOpenFor time.Duration
	probes              uint32
	perMethod           bool
	maxBreakers         int
}

func defaultConfig() config {
	return config{
		resolver:    policy.Default(),
		clock:       clock.System(),
		classifier:  outcome.Default,
		openFor:     DefaultOpenFor,
		maxOpenFor:  DefaultMaxOpenFor,
		probes:      DefaultHalfOpenProbes,
		maxBreakers: DefaultMaxBreakers,
	}
}

// finish fills in defaults that depend on other options and checks how
// options combine.
func (c *config) finish() error {
	if c.consecutive == 0 && c.withinN == 0 && c.failureRate == 0 && c.slowRate == 0 {
		c.failureRate = DefaultFailureRate
	}
	rates := c.failureRate > 0 || c.slowRate > 0
	if rates && c.countWindow == 0 && c.timeWindow == 0 {
		c.countWindow = DefaultCountWindow
	}
	if !rates && (c.countWindow > 0 || c.timeWindow > 0) {
		// A window without a rate rule would only cost time.
		c.countWindow, c.timeWindow = 0, 0
	}
	if rates && c.minimumCalls == 0 {
		c.minimumCalls = DefaultMinimumCalls
		if c.countWindow > 0 && c.countWindow < c.minimumCalls {
			c.minimumCalls = c.countWindow
		}
	}
	if c.countWindow > 0 && c.minimumCalls > c.countWindow {
		return fmt.Errorf("breaker.MinimumCalls(%d): larger than CountWindow(%d), so the rate rules could never trip", c.minimumCalls, c.countWindow)
	}
	return nil
}

// WithResolver sets the policy resolver that says which methods skip the
// breaker. Default: policy.Default().
func WithResolver(r *policy.Resolver) Option {
	return func(c *config) error {
		if r == nil {
			return errors.New("breaker.WithResolver: nil resolver")
		}
		c.resolver = r
		return nil
	}
}

// WithObserver reports state changes (observe.BreakerState) and rejections
// (observe.BreakerRejected) to o. Nil, the default, reports nothing.
func WithObserver(o observe.Observer) Option {
	return func(c *config) error {
		c.observer = o
		return nil
	}
}

// WithClock sets the clock used for windows, open periods and slow calls.
// Default: the system clock.
func WithClock(clk clock.Clock) Option {
	return func(c *config) error {
		if clk == nil {
			return errors.New("breaker.WithClock: nil clock")
		}
		c.clock = clk
		return nil
	}
}

// WithClassifier sets how a call's result is classified. Only
// outcome.Failure feeds the trip rules; Success counts in the windows and
// ends a run of consecutive failures; Overload and Ignored are not counted
// at all, so an overloaded server never opens the breaker unless the
// classifier says RESOURCE_EXHAUSTED is a Failure. Default:
// outcome.Default.
func WithClassifier(cl outcome.Classifier) Option {
	return func(c *config) error {
		c.classifier = cl
		return nil
	}
}

// OnStateChange calls f on every state change, with the counts at the
// moment of the change. f runs while the breaker's lock is held, so that
// changes are seen in order: it must be quick and must not make calls
// through the same interceptor. It may call State and Snapshots.
func OnStateChange(f func(Change)) Option {
	return func(c *config) error {
		if f == nil {
			return errors.New("breaker.OnStateChange: nil function")
		}
		c.hooks = append(c.hooks, f)
		return nil
	}
}

// ConsecutiveFailures trips the breaker after n failures in a row.
func ConsecutiveFailures(n int) Option {
	return func(c *config) error {
		if n < 1 || n > 1<<30 {
			return fmt.Errorf("breaker.ConsecutiveFailures(%d): must be at least 1", n)
		}
		c.consecutive = uint32(n)
		return nil
	}
}

// FailuresWithin trips the breaker when n failures happened within d, in
// any interval: the n-th most recent failure is less than d old. Only
// failures read the clock. FailuresWithin(5, 30*time.Second) is "5
// failures in 30 seconds".
func FailuresWithin(n int, d time.Duration) Option {
	return func(c *config) error {
		if n < 1 || n > 1<<16 {
			return fmt.Errorf("breaker.FailuresWithin(%d, %v): n must be between 1 and 65536", n, d)
		}
		if d <= 0 {
			return fmt.Errorf("breaker.FailuresWithin(%d, %v): the interval must be positive", n, d)
		}
		c.withinN, c.withinD = n, d
		return nil
	}
}

// FailureRate trips the breaker when at least this fraction (0 < rate <= 1)
// of the calls in the sliding window failed, once the window holds
// MinimumCalls calls. This is the default rule, at 0.5.
func FailureRate(rate float64) Option {
	return func(c *config) error {
		if !(rate > 0 && rate <= 1) {
			return fmt.Errorf("breaker.FailureRate(%v): must be in (0, 1]", rate)
		}
		c.failureRate = rate
		return nil
	}
}

// SlowCallRate trips the breaker when at least this fraction (0 < rate <=
// 1) of the calls in the sliding window took slowerThan or longer, once
// the window holds MinimumCalls calls. Failed calls count as slow too when
// they were. Measuring durations reads the clock twice per call.
func SlowCallRate(rate float64, slowerThan time.Duration) Option {
	return func(c *config) error {
		if !(rate > 0 && rate <= 1) {
			return fmt.Errorf("breaker.SlowCallRate(%v, %v): rate must be in (0, 1]", rate, slowerThan)
		}
		if slowerThan <= 0 {
			return fmt.Errorf("breaker.SlowCallRate(%v, %v): threshold must be positive", rate, slowerThan)
		}
		c.slowRate, c.slowThreshold = rate, slowerThan
		return nil
	}
}

// CountWindow makes the rate rules look at the last n calls (the default,
// with n = 100). It needs no clock reads on the fast path.
func CountWindow(n int) Option {
	return func(c *config) error {
		if n < 1 || n > 1<<20 {
			return fmt.Errorf("breaker.CountWindow(%d): must be between 1 and 1048576", n)
		}
		if c.timeWindow > 0 {
			return fmt.Errorf("breaker.CountWindow(%d): TimeWindow was already given; use one window", n)
		}
		c.countWindow = n
		return nil
	}
}

// TimeWindow makes the rate rules look at the calls of the last d, kept in
// 10 buckets of d/10 (so the window spans between 0.9d and d). It reads
// the clock once per call.
func TimeWindow(d time.Duration) Option {
	return func(c *config) error {
		if d < timeBuckets {
			return fmt.Errorf("breaker.TimeWindow(%v): must be positive", d)
		}
		if c.countWindow > 0 {
			return fmt.Errorf("breaker.TimeWindow(%v): CountWindow was already given; use one window", d)
		}
		c.timeWindow = d
		return nil
	}
}

// MinimumCalls is how many calls the sliding window must hold before a
// rate rule may trip. Default 20 (or the count window's size if smaller).
func MinimumCalls(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("breaker.MinimumCalls(%d): must be at least 1", n)
		}
		c.minimumCalls = n
		return nil
	}
}

// OpenFor sets how long a breaker stays open before it probes: initial
// after it trips, doubled each time a probe fails, up to max. Defaults 5 s
// and 1 min.
func OpenFor(initial, max time.Duration) Option {
	return func(c *config) error {
		if initial <= 0 || max < initial {
			return fmt.Errorf("breaker.OpenFor(%v, %v): want 0 < initial <= max", initial, max)
		}
		c.openFor, c.maxOpenFor = initial, max
		return nil
	}
}

// HalfOpenProbes sets how many calls a half-open breaker lets through as
// probes; when all of them succeed it closes, and any failure reopens it.
// Default 3.
func HalfOpenProbes(n int) Option {
	return func(c *config) error {
		if n < 1 || n > 1<<16 {
			return fmt.Errorf("breaker.HalfOpenProbes(%d): must be between 1 and 65536", n)
		}
		c.probes = uint32(n)
		return nil
	}
}

// PerMethod keeps one breaker per target and method instead of one per
// target.
func PerMethod() Option {
	return func(c *config) error {
		c.perMethod = true
		return nil
	}
}

// MaxBreakers bounds the registry (default 1024). When it is full, a
// closed breaker is dropped to make room; when none is closed, calls for
// new targets pass unguarded until one closes.
func MaxBreakers(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("breaker.MaxBreakers(%d): must be at least 1", n)
		}
		c.maxBreakers = n
		return nil
	}
}
