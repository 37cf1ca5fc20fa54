package breaker

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/internal/common"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/outcome"
	"github.com/failsoft/failsoft/interceptors/policy"
)

// Defaults, used for whatever the options leave unset.
const (
	// DefaultFailureRate is the failure rate that trips a breaker when no
	// trip rule is given, and the share of the calls within its interval
	// that FailuresWithin's failures must make (MinFailureRate): a target
	// that still completes a fifth of its calls is overloaded or flaky, not
	// dead, and cutting it off would turn a partial failure into a total one.
	DefaultFailureRate = 0.8
	// DefaultCountWindow is the size of the sliding window, in calls, when a
	// rate rule is given without a window.
	DefaultCountWindow = 100
	// DefaultMinimumCalls is how many calls the window must hold before a
	// rate rule may trip.
	DefaultMinimumCalls = 20
	// DefaultOpenFor is the longest a breaker stays open before it lets a
	// probe through; each open period is drawn between half and all of it.
	// A target that heals is used again within about a second, however long
	// the outage, while a dead one costs one probe per 0.5-1 s.
	DefaultOpenFor = time.Second
	// DefaultMaxOpenFor is DefaultOpenFor: the open period does not grow
	// when probes fail, since a probe is one call and a longer period only
	// delays the recovery.
	DefaultMaxOpenFor = DefaultOpenFor
	// DefaultHalfOpenProbes is how many probe calls a half-open breaker lets
	// through; that many successes close it. One probe is the cheapest
	// test of a target that may still be dead.
	DefaultHalfOpenProbes = 1
	// DefaultDeadAfter is how many failed attempts in a row open a breaker
	// whatever the other rules say (DeadAfter): a target that answered
	// none of them is down, while one that fails even a third of its
	// attempts at random makes such a run about once in 10^9 attempts.
	DefaultDeadAfter = 20
	// DefaultDeadSpan is how long before the last of DeadAfter's failures
	// the first must have ended. The calls in flight when a server pauses
	// or restarts, when a proxy sheds them, or when the client itself
	// pauses fail together, within a few milliseconds, and the next calls
	// succeed; a dead target goes on failing. 50 ms lets such bursts pass
	// and costs a dead target next to nothing: at 250 calls a second with
	// retries, 20 attempts take about that long anyway. A longer span
	// lets about one failed attempt per call through for its whole length
	// (at 250 calls a second, 100 ms makes an outage of a few seconds cost
	// about 40 % more attempts), and FailureRate cuts off a target that
	// fails most of its calls for longer.
	DefaultDeadSpan = 50 * time.Millisecond
	// DefaultMaxTargets is about how many breakers are kept.
	DefaultMaxTargets = 1024
	// timeBuckets is how many buckets a time window is divided into.
	timeBuckets = 10
)

// Option configures an Interceptor. Options are checked by New, which names
// the option that is wrong.
type Option func(*config) error

type config struct {
	common.Config
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

	minFailureRate float64 // for FailuresWithin
	deadAfter      uint32  // 0: off
	deadSpan       time.Duration

	openFor, maxOpenFor time.Duration
	probes              uint32
	perMethod           bool
	everyAttempt        bool
	rand                func() float64
	maxTargets          int
}

func defaultConfig() config {
	return config{
		Config:     common.Config{Resolver: policy.Default(), Clock: clock.System()},
		classifier: outcome.Default,
		openFor:    DefaultOpenFor,
		maxOpenFor: DefaultMaxOpenFor,
		probes:     DefaultHalfOpenProbes,
		deadAfter:  DefaultDeadAfter,
		deadSpan:   DefaultDeadSpan,
		perMethod:  true,
		maxTargets: DefaultMaxTargets,
		rand:       rand.Float64,
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
	if c.minFailureRate > 0 && c.withinN == 0 {
		return fmt.Errorf("breaker.MinFailureRate(%v): applies to FailuresWithin, which was not given", c.minFailureRate)
	}
	if c.minFailureRate == 0 {
		c.minFailureRate = DefaultFailureRate
	}
	if c.countWindow > 0 && c.minimumCalls > c.countWindow {
		return fmt.Errorf("breaker.MinimumCalls(%d): larger than CountWindow(%d), so the rate rules could never trip", c.minimumCalls, c.countWindow)
	}
	return nil
}

// WithResolver sets the policy resolver that says which methods skip the
// breaker. Default: policy.Default().
func WithResolver(r *policy.Resolver) Option { return common.Resolver[config]("breaker", r) }

// WithObserver reports state changes (observe.BreakerState) and rejections
// (observe.BreakerRejected) to o. Nil, the default, reports nothing.
func WithObserver(o observe.Observer) Option { return common.Observer[config](o) }

// WithClock sets the clock used for windows, open periods and slow calls.
// Default: the system clock.
func WithClock(clk clock.Clock) Option { return common.Clock[config]("breaker", clk) }

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

// DeadAfter trips the breaker when n attempts in a row failed, the first
// of them at least span before the last, whether or not the retry layer
// retried them, alongside the other rules; any other result, even
// RESOURCE_EXHAUSTED, ends the run, but for a call its caller gave up on
// (its context ended, and the classifier ignores its code, as it does
// CANCELLED), which is no answer. A target that answered none of its
// attempts for span is down, and the rule opens its breaker however long
// its history of successes (which the rate rules weigh) and however many
// of the failures retries absorbed (which they do not count). A sick
// target hardly ever fails n attempts in a row: a third of them at random
// does with probability 3^-n, and the span asks for more of them at higher
// rates. The span lets a burst pass: the calls in flight when a server
// pauses, restarts or sheds them fail together, and the next ones
// succeed. Default DeadAfter(20, 50*time.Millisecond) (DefaultDeadAfter,
// DefaultDeadSpan); n = 0 turns the rule off, and span = 0 counts attempts
// only.
func DeadAfter(n int, span time.Duration) Option {
	return func(c *config) error {
		if n < 0 || n > 1<<30 {
			return fmt.Errorf("breaker.DeadAfter(%d, %v): n must be between 0 (off) and 2^30", n, span)
		}
		if span < 0 {
			return fmt.Errorf("breaker.DeadAfter(%d, %v): the span must not be negative", n, span)
		}
		c.deadAfter, c.deadSpan = uint32(n), span
		return nil
	}
}

// FailuresWithin trips the breaker when n failures happened within d and
// they make at least MinFailureRate (default 0.8) of the calls that ended
// within d, counted over the last max(100, n/rate) calls.
// FailuresWithin(5, 30*time.Second) is "5 failures in 30 seconds" from a
// target that stopped answering: at a few calls a second and more, 1-3 %
// (or 20 %) of failing calls never trip it, however many failures that
// makes in 30 s, while a dead target trips it after 5 calls if it served
// none before, or once its failures make 80 % of the calls within d (of
// the last 100 calls at most: 80 ms at 1,000 calls/s, 24 s at 1 call/s).
// It reads the clock on every call.
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
// MinimumCalls calls. This is the default rule, at 0.8.
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

// MinFailureRate sets the share (0 < rate <= 1) of the calls within its
// interval that FailuresWithin's failures must make before it trips.
// Default 0.8 (DefaultFailureRate): n failures from a target that serves
// most of its calls are flakiness or overload, which retries and the
// throttle handle, not an outage.
func MinFailureRate(rate float64) Option {
	return func(c *config) error {
		if !(rate > 0 && rate <= 1) {
			return fmt.Errorf("breaker.MinFailureRate(%v): must be in (0, 1]", rate)
		}
		c.minFailureRate = rate
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

// OpenFor sets how long a breaker stays open before it lets a probe
// through: initial after it trips, doubled each time a probe fails, up to
// max. Each open period is drawn uniformly between half and all of that,
// so that clients that tripped together probe apart. Default 1 s for both:
// a healed target is used again within a second, and a dead one costs one
// probe every 0.5-1 s.
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
// Default 1.
func HalfOpenProbes(n int) Option {
	return func(c *config) error {
		if n < 1 || n > 1<<16 {
			return fmt.Errorf("breaker.HalfOpenProbes(%d): must be between 1 and 65536", n)
		}
		c.probes = uint32(n)
		return nil
	}
}

// PerMethod keeps one breaker per target and method: the default, so that
// one failing method (a broken query, a dependency of one handler) does not
// cut off the target's healthy methods. A target that is down trips the
// breaker of each method that is called.
func PerMethod() Option {
	return func(c *config) error {
		c.perMethod = true
		return nil
	}
}

// PerTarget keeps one breaker per target, shared by its methods: a dead
// target is then cut off for every method after one trip, and a method that
// fails alone can cut off the others.
func PerTarget() Option {
	return func(c *config) error {
		c.perMethod = false
		return nil
	}
}

// CountEveryAttempt makes the trip rules count every failed attempt. By
// default a failed attempt that the retry layer retries (chain.State's
// MayRetry, and a code in the method's retryable codes) is not counted:
// the retry absorbs it, and the trip rules judge calls as the caller sees
// them; if the retries fail too, the last attempt is counted.
func CountEveryAttempt() Option {
	return func(c *config) error {
		c.everyAttempt = true
		return nil
	}
}

// WithRand sets the source of uniform random numbers in [0, 1) that open
// periods are drawn with (default math/rand/v2's Float64). It must be safe
// for concurrent use; tests pass a seeded source.
func WithRand(f func() float64) Option {
	return func(c *config) error {
		if f == nil {
			return errors.New("breaker.WithRand(nil): a random source is required")
		}
		c.rand = f
		return nil
	}
}

// WithMaxTargets bounds how many breakers are kept, one per target (or per
// target and method with PerMethod); default 1024. When the bound is
// reached, a closed breaker not used lately makes room for a new one,
// preferably one that counted no failure. An open or probing breaker is
// never dropped: when every breaker is, the bound is exceeded rather than
// a new target left unguarded. The other layers that keep state per
// target take the same option (bulkhead.WithMaxTargets,
// throttle.WithMaxTargets); the retry budgets keep the same bound, fixed.
func WithMaxTargets(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("breaker.WithMaxTargets(%d): must be at least 1", n)
		}
		c.maxTargets = n
		return nil
	}
}

// recentCalls is how many calls FailuresWithin looks back at: enough that
// its failure rate rests on a sample, and that n failures can make
// MinFailureRate of it.
func (c *config) recentCalls() int {
	return max(DefaultCountWindow, int(math.Ceil(float64(c.withinN)/c.minFailureRate)))
}
