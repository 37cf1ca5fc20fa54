package deadline

import (
	"fmt"
	"time"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/internal/common"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/policy"
)

// Defaults of the options. Each is documented on its option.
const (
	// DefaultTimeout is the suite default: the deadline of a call whose
	// caller set none and whose method policy has no timeout.
	DefaultTimeout = 10 * time.Second
	// DefaultMinBudget is the smallest remaining budget with which a call is
	// sent when its method policy sets no min_budget. Zero sends every call
	// whose deadline has not passed yet.
	DefaultMinBudget = time.Duration(0)
	// DefaultSafetyMargin is how much earlier than its caller a server's
	// handler, and every call it makes with its context, gives up.
	DefaultSafetyMargin = 20 * time.Millisecond
)

// Option configures an Interceptor. Options are checked by New.
type Option func(*config) error

type config struct {
	common.Config
	timeout   time.Duration
	minBudget time.Duration
	margin    time.Duration
	// learnFloor: fail fast unary calls whose budget is below what their
	// method's recent successes took (WithLearnedFloor).
	learnFloor bool
}

func defaults() config {
	return config{
		Config:     common.Config{Resolver: policy.Default(), Clock: clock.System()},
		timeout:    DefaultTimeout,
		minBudget:  DefaultMinBudget,
		margin:     DefaultSafetyMargin,
		learnFloor: true,
	}
}

// WithResolver sets where method policies (timeout, min_budget) come from.
// The default is policy.Default().
func WithResolver(r *policy.Resolver) Option { return common.Resolver[config]("deadline", r) }

// WithObserver reports DeadlineSet and DeadlineFailFast events to o. A nil
// Observer (the default) reports nothing and costs nothing.
func WithObserver(o observe.Observer) Option { return common.Observer[config](o) }

// WithClock sets the clock the interceptor reads the time from when it
// computes deadlines and remaining budgets. The default is the system
// clock. Contexts enforce their deadlines on the system clock whatever this
// says, so a fake clock in tests should start at the current time.
func WithClock(c clock.Clock) Option { return common.Clock[config]("deadline", c) }

// WithDefaultTimeout sets the suite default timeout, given to a call whose
// caller set no deadline and whose method policy has no timeout. It must be
// positive: every call gets a deadline. The default is DefaultTimeout
// (10 s).
func WithDefaultTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("deadline.WithDefaultTimeout(%v): must be positive, every call needs a deadline", d)
		}
		c.timeout = d
		return nil
	}
}

// WithMinBudget sets the smallest remaining budget with which a call is
// still sent, for methods whose policy sets no min_budget. Below it the call
// fails at once with DEADLINE_EXCEEDED. It must not be negative. The default
// is DefaultMinBudget (0: only calls whose deadline has already passed fail
// fast).
//
// A policy's min_budget of zero reads the same as an unset one (package
// policy does not tell them apart), so such a method gets this minimum.
func WithMinBudget(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("deadline.WithMinBudget(%v): must not be negative", d)
		}
		c.minBudget = d
		return nil
	}
}

// WithSafetyMargin sets how much earlier than its caller's deadline the
// server interceptors make a handler's context expire, leaving that much
// time for the answer to travel back. It must not be negative; zero turns
// the server interceptors into pass-throughs. The default is
// DefaultSafetyMargin (20 ms).
func WithSafetyMargin(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("deadline.WithSafetyMargin(%v): must not be negative", d)
		}
		c.margin = d
		return nil
	}
}

// WithLearnedFloor switches the learned floor on or off (on by default).
// The floor of a method is the shortest time in which its unary calls
// succeeded lately: the fastest success of the last 10 to 20 seconds,
// counting only stretches of 10 s that saw at least 3 successes. Timing a
// call costs a clock read, so once a stretch has its 3, about one success
// in eight is timed. A call
// whose budget is below it is not sent: it fails at once with
// DEADLINE_EXCEEDED, as a call below the minimum budget does. It applies
// to methods whose policy sets no min_budget (that policy's minimum is the
// method owner's word), and never to streams.
//
// Such a call, a caller's nearly spent budget passed on, could only end in
// DEADLINE_EXCEEDED, which the breaker, the throttle and outlier ejection
// count against the target: enough of them would make those layers shed
// the calls of callers whose budgets the target meets. Failed here, it is
// a rejection, which no layer counts, and the target does no work for it.
//
// The floors are kept per method, for every target the interceptor serves:
// a method served by a fast and a slow target gets the fast one's floor,
// which fails fewer calls fast, never more. A target that becomes faster
// than its floor serves calls with budgets between the two only once the
// floor has followed it, within 20 s, or as soon as calls with longer
// budgets succeed faster.
//
// A call failed fast here is answered by no layer inside this one: in the
// failsoft suite, not by a fallback chain, which would have answered it
// once it timed out. To keep fallback answers for a method whose callers'
// budgets may fall below its floor, give its policy a min_budget (zero
// included), which exempts it, or switch the floor off.
func WithLearnedFloor(on bool) Option {
	return func(c *config) error {
		c.learnFloor = on
		return nil
	}
}
