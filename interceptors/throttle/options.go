package throttle

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/internal/common"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/outcome"
)

// Defaults. See the package documentation for the reasons.
const (
	DefaultWindow         = 2 * time.Minute
	DefaultBuckets        = 10
	DefaultMultiplier     = 2.0
	DefaultMaxProbability = 0.9
	DefaultMaxTargets     = 1024

	// MinBucketWidth is the narrowest bucket WithWindow accepts.
	MinBucketWidth = time.Millisecond
	// MaxBuckets is the most buckets WithWindow accepts.
	MaxBuckets = 1024
)

// Option configures an Interceptor. Options are checked by New, which
// returns an error naming every bad one.
type Option func(*config) error

type config struct {
	common.Config     // no resolver
	window            time.Duration
	buckets           int
	k                 float64
	maxProbability    float64
	classifier        outcome.Classifier
	failuresAsRejects bool
	rand              func() float64
	maxTargets        int
}

func defaults() config {
	return config{
		window:            DefaultWindow,
		buckets:           DefaultBuckets,
		k:                 DefaultMultiplier,
		maxProbability:    DefaultMaxProbability,
		classifier:        outcome.Default,
		Config:            common.Config{Clock: clock.System()},
		rand:              rand.Float64,
		maxTargets:        DefaultMaxTargets,
		failuresAsRejects: true,
	}
}

// WithWindow sets how far back the throttle looks (default 2 minutes, as in
// the SRE book) and in how many buckets it counts (default 10, so the
// window moves on in steps of 12 s and forgets a tenth of its history at a
// time). The bucket width, window/buckets, must be at least MinBucketWidth
// and buckets at most MaxBuckets. A shorter window reacts faster to a
// server that recovers or falls over, and throttles on less evidence.
func WithWindow(window time.Duration, buckets int) Option {
	return func(c *config) error {
		switch {
		case buckets < 1 || buckets > MaxBuckets:
			return fmt.Errorf("throttle.WithWindow(%v, %d): buckets must be between 1 and %d", window, buckets, MaxBuckets)
		case window <= 0 || window/time.Duration(buckets) < MinBucketWidth:
			return fmt.Errorf("throttle.WithWindow(%v, %d): each bucket (window/buckets) must span at least %v", window, buckets, MinBucketWidth)
		case window%time.Duration(buckets) != 0:
			return fmt.Errorf("throttle.WithWindow(%v, %d): window must divide into %d equal buckets", window, buckets, buckets)
		}
		c.window, c.buckets = window, buckets
		return nil
	}
}

// WithMultiplier sets K in max(0, (requests - K*accepts) / (requests + 1)):
// the client sends about K times as many requests as the target accepts
// before it starts rejecting locally. Default 2, the SRE book's; 1.1 is
// aggressive (little waste, but a server that recovers is noticed later).
// K must be at least 1: below 1 the client would throttle a target that
// accepts everything.
func WithMultiplier(k float64) Option {
	return func(c *config) error {
		if math.IsNaN(k) || math.IsInf(k, 0) || k < 1 {
			return fmt.Errorf("throttle.WithMultiplier(%v): K must be a finite number of at least 1", k)
		}
		c.k = k
		return nil
	}
}

// WithMaxProbability caps the rejection probability (default 0.9), so that
// even a target that accepts nothing keeps getting a share of the calls
// and its recovery is seen. 1 removes the cap; 0 turns throttling off.
func WithMaxProbability(p float64) Option {
	return func(c *config) error {
		if math.IsNaN(p) || p < 0 || p > 1 {
			return fmt.Errorf("throttle.WithMaxProbability(%v): must be between 0 and 1", p)
		}
		c.maxProbability = p
		return nil
	}
}

// WithClassifier sets the classification of results (default
// outcome.Default). Success and Ignored count as accepts, Overload does
// not; Failure does not either while the target still answers (see
// WithFailuresAsRejects).
func WithClassifier(cl outcome.Classifier) Option {
	return func(c *config) error {
		c.classifier = cl
		return nil
	}
}

// WithFailuresAsRejects says whether a result classified outcome.Failure
// (UNAVAILABLE, INTERNAL, UNKNOWN, DATA_LOSS, DEADLINE_EXCEEDED by default)
// counts as not accepted while the target still answers: while it accepted
// a call in the current bucket or the one before. Default true: many
// servers and proxies shed load with a plain UNAVAILABLE (Envoy's overflow,
// concurrency limiters), and a target that still serves a good share of
// its calls is overloaded, not down, so it is throttled in proportion.
// Failures of a target that answers nothing count as accepted: an outage is
// the circuit breaker's business, and counting it would make the throttle
// reject calls for a window after the target healed. For the same reason
// the failures counted while the target still answered, and the local
// rejections they caused, are forgotten once it answers nothing for a
// second, and again when it answers after that. False counts every
// failure as accepted, so that only RESOURCE_EXHAUSTED and pushback
// throttle, and keeps no record of whether the target answers.
func WithFailuresAsRejects(rejects bool) Option {
	return func(c *config) error {
		c.failuresAsRejects = rejects
		return nil
	}
}

// WithObserver sets who hears an observe.Throttled event for each local
// rejection, with Value the rejection probability. Nil (the default)
// reports nothing and costs nothing.
func WithObserver(o observe.Observer) Option { return common.Observer[config](o) }

// WithClock sets the clock the window is kept with (default, and when nil:
// the system clock).
func WithClock(cl clock.Clock) Option {
	return func(c *config) error {
		c.Clock = clock.OrSystem(cl)
		return nil
	}
}

// WithRand sets the source of the uniform random numbers in [0, 1) the
// rejection is drawn with (default math/rand/v2's Float64). It is called
// only when the rejection probability is above zero, and must be safe for
// concurrent use when calls are concurrent; tests pass a seeded source.
func WithRand(f func() float64) Option {
	return func(c *config) error {
		if f == nil {
			return fmt.Errorf("throttle.WithRand(nil): a random source is required")
		}
		c.rand = f
		return nil
	}
}

// WithMaxTargets bounds how many targets are tracked (default 1024). When
// the bound is reached, a target not called lately makes room for a new
// one, preferably one whose window holds no refusal (its probability is
// 0, as a new target's); when every target is in use, the bound is
// exceeded rather than a new target left unthrottled. The other layers
// that keep state per target take the same option
// (breaker.WithMaxTargets, bulkhead.WithMaxTargets); the retry budgets
// keep the same bound, fixed.
func WithMaxTargets(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("throttle.WithMaxTargets(%d): must be at least 1", n)
		}
		c.maxTargets = n
		return nil
	}
}
