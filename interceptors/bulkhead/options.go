package bulkhead

import (
	"fmt"
	"time"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/internal/common"
	"github.com/failsoft/failsoft/interceptors/observe"
)

// Defaults.
const (
	// DefaultLimit is how many calls may be in flight per compartment.
	DefaultLimit = 100
	// DefaultMaxTargets is about how many compartments are kept.
	DefaultMaxTargets = 1024
)

// Option configures an Interceptor.
type Option func(*config) error

type config struct {
	common.Config // no resolver
	limit         int
	targetLimits  map[string]int
	methodLimits  map[string]int
	maxWait       time.Duration
	perMethod     bool
	maxTargets    int
}

func defaultConfig() config {
	return config{
		Config:       common.Config{Clock: clock.System()},
		limit:        DefaultLimit,
		targetLimits: map[string]int{},
		methodLimits: map[string]int{},
		maxTargets:   DefaultMaxTargets,
	}
}

// Limit sets how many calls may be in flight to each target (or target and
// method, with PerMethod). Default 100.
func Limit(n int) Option {
	return func(c *config) error {
		if n < 1 || n > 1<<20 {
			return fmt.Errorf("bulkhead.Limit(%d): must be between 1 and 1048576", n)
		}
		c.limit = n
		return nil
	}
}

// TargetLimit sets the limit for one target, given as cc.Target() reports
// it, over Limit.
func TargetLimit(target string, n int) Option {
	return func(c *config) error {
		if target == "" || n < 1 || n > 1<<20 {
			return fmt.Errorf("bulkhead.TargetLimit(%q, %d): want a target and a limit between 1 and 1048576", target, n)
		}
		c.targetLimits[target] = n
		return nil
	}
}

// MethodLimit sets the limit for one full method name with PerMethod, over
// TargetLimit and Limit.
func MethodLimit(method string, n int) Option {
	return func(c *config) error {
		if len(method) < 4 || method[0] != '/' || n < 1 || n > 1<<20 {
			return fmt.Errorf("bulkhead.MethodLimit(%q, %d): want a full method name such as /pkg.v1.Service/Method and a limit between 1 and 1048576", method, n)
		}
		c.methodLimits[method] = n
		return nil
	}
}

// MaxWait sets how long a call waits for a slot before it is rejected.
// Default 0: a full compartment rejects at once.
func MaxWait(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("bulkhead.MaxWait(%v): must not be negative", d)
		}
		c.maxWait = d
		return nil
	}
}

// PerMethod keeps one compartment per target and method instead of one per
// target.
func PerMethod() Option {
	return func(c *config) error {
		c.perMethod = true
		return nil
	}
}

// WithMaxTargets bounds how many compartments are kept, one per target (or
// per target and method with PerMethod); default 1024. When the bound is
// reached, a compartment with no call in flight and not used lately makes
// room for a new one. Compartments with calls in flight are never dropped:
// when every one has some, the bound is exceeded rather than a new target
// left unlimited. The other layers that keep state per target take the
// same option (breaker.WithMaxTargets, throttle.WithMaxTargets); the retry
// budgets keep the same bound, fixed.
func WithMaxTargets(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("bulkhead.WithMaxTargets(%d): must be at least 1", n)
		}
		c.maxTargets = n
		return nil
	}
}

// WithObserver reports rejections (observe.BulkheadRejected) to o. Nil, the
// default, reports nothing.
func WithObserver(o observe.Observer) Option { return common.Observer[config](o) }

// WithClock sets the clock that times waits. Default: the system clock.
func WithClock(clk clock.Clock) Option { return common.Clock[config]("bulkhead", clk) }
