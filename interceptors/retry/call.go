package retry

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	serverpb "github.com/failsoft/failsoft/interceptors/internal/pushback"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/outcome"
	"github.com/failsoft/failsoft/interceptors/policy"
	"github.com/failsoft/failsoft/internal/chain"
)

// call is one logical call: what its opening steps learned, and its
// attempts so far. Unary calls, hedged calls and streams share it.
type call struct {
	ic     *Interceptor
	ctx    context.Context // the caller's
	method string
	target string
	p      *policy.Policy
	b      *bucket // nil: no budget
	watch  bool    // the observer wants attempt events (observe.Wants)

	// deadline is the call's deadline (zero: none); pending is the same
	// deadline when it is not on ctx yet (chain.State.Deadline), for the
	// attempts' contexts to carry it.
	deadline, pending time.Time

	hedge   bool          // hedged (unary calls whose reply is a proto message)
	max     int           // attempts, counting the first: hedges and retries together
	hedges  int           // attempts a hedged call keeps in flight at most
	timeout time.Duration // the policy's per-attempt timeout (zero: none)

	initial, maxBackoff time.Duration
	multiplier          float64

	n          int  // attempts sent so far
	sinceReset int  // retries since the last server pushback
	paid       bool // the current attempt is a retry that took a budget token
	// cut is the current attempt's own timeout, written by begin alone:
	// timeout when a retry could follow the attempt, zero when none
	// could. Cutting an attempt that nothing follows would only turn a
	// slow answer into a failure; it runs to the call's deadline.
	cut time.Duration
}

// open takes the steps every call takes before its first attempt, unary or
// stream, on a call that holds its Interceptor, context and method: it
// resolves the policy, credits the target's budget, reads the call's
// options and decides how many attempts the call may have.
// reply is a unary call's reply, nil for a stream: a call may be hedged
// only when it is a proto message, as each hedge needs a reply of its own.
func (c *call) open(cc *grpc.ClientConn, st *chain.State, opts []grpc.CallOption, now time.Time, reply any) error {
	ic, ctx := c.ic, c.ctx
	p, err := st.Resolve(ic.resolver, c.method)
	if err != nil {
		return err
	}
	c.p, c.max = p, 1
	if cc != nil {
		c.target = cc.Target()
	}
	// The call's deadline: the caller's, or the deadline layer's when it
	// is earlier, which is not on ctx yet.
	c.deadline, _ = ctx.Deadline()
	if d := st.Deadline; !d.IsZero() && (c.deadline.IsZero() || d.Before(c.deadline)) {
		c.deadline, c.pending = d, d
	}
	if ic.budgets != nil {
		c.b = ic.budgets.get(c.target)
		c.b.deposit(now)
	}
	c.watch = ic.obs != nil && (observe.Wants(ctx, ic.obs, observe.AttemptEnd) || observe.Wants(ctx, ic.obs, observe.AttemptStart))
	cfg := callOptions(opts)
	if cfg != nil && cfg.err != nil {
		return status.Error(codes.InvalidArgument, "failsoft: retry: "+cfg.err.Error())
	}
	if cfg != nil && cfg.disabled {
		return nil
	}
	if p.Hedgeable() {
		_, c.hedge = reply.(proto.Message)
	}
	if !c.hedge && !p.Retryable(p.RequiresKey && hasKey(ctx)) {
		return nil
	}
	c.max, c.hedges = p.Retry.MaxAttempts, 1
	if c.hedge {
		c.max = max(c.max, p.Hedge.MaxAttempts)
		c.hedges = p.Hedge.MaxAttempts
	}
	c.timeout = p.Retry.AttemptTimeout
	c.initial, c.maxBackoff, c.multiplier = p.Retry.InitialBackoff, p.Retry.MaxBackoff, p.Retry.Multiplier
	if cfg != nil {
		if cfg.maxAttempts > 0 {
			c.max = cfg.maxAttempts
		}
		if cfg.attemptTimeout > 0 {
			c.timeout = cfg.attemptTimeout
		}
		if o := cfg.backoff; o != nil {
			c.initial, c.maxBackoff, c.multiplier = o.initial, o.max, o.multiplier
		}
	}
	c.hedges = min(c.hedges, c.max)
	if c.hedge {
		c.timeout = 0 // hedges race within the call's deadline
	}
	return nil
}

func hasKey(ctx context.Context) bool {
	return len(metadata.ValueFromOutgoingContext(ctx, policy.KeyMetadata)) > 0
}

// mayRetry reports whether a failure of the attempt about to be sent,
// with a retryable code, would be retried: attempts remain, the budget
// would allow one now, and the deadline leaves room for the attempt and
// the policy's minimum budget. It is chain.State.MayRetry.
func (c *call) mayRetry(now time.Time) bool {
	if c.n >= c.max {
		return false
	}
	if !c.deadline.IsZero() && c.deadline.Sub(now)-c.timeout <= max(c.p.MinBudget, 0) {
		return false
	}
	// The budget last: it takes a lock.
	return c.b == nil || c.b.allows(now)
}

// begin counts the next attempt and decides its own timeout (cut). It
// returns whether a failure of the attempt would be retried (mayRetry),
// for chain.State.MayRetry.
func (c *call) begin(now time.Time) bool {
	c.n++
	may := c.mayRetry(now)
	c.cut = 0
	if may {
		c.cut = c.timeout
	}
	return may
}

// attemptContext returns the context of attempt c.n: its number in the
// request metadata from the second attempt on, and the attempt for inner
// layers as an observe.Attempt, unless it is a bare first attempt.
func (c *call) attemptContext(hedge bool, wait time.Duration, reason string) context.Context {
	ctx := c.attemptParent()
	if !c.bareFirst(hedge) {
		ctx = observe.WithAttempt(ctx, c.attempt(hedge, wait, reason))
	}
	return ctx
}

// bareFirst reports whether attempt c.n, sent as a hedge or not, is what
// observe.AttemptFrom reads from a context that carries no attempt: the
// first, without a timeout of its own. Its context needs none.
func (c *call) bareFirst(hedge bool) bool { return c.n == 1 && !hedge && c.cut == 0 }

// attemptParent returns the caller's context with attempt c.n's number in
// the request metadata from the second attempt on.
func (c *call) attemptParent() context.Context {
	if c.n > 1 {
		return metadata.AppendToOutgoingContext(c.ctx, AttemptMetadata, strconv.Itoa(c.n))
	}
	return c.ctx
}

// attempt describes attempt c.n, sent after waiting wait for reason.
func (c *call) attempt(hedge bool, wait time.Duration, reason string) observe.Attempt {
	return observe.Attempt{N: c.n, Hedge: hedge, Backoff: wait, BackoffReason: reason, Timeout: c.cut}
}

func (c *call) event(ctx context.Context, e observe.Event) {
	e.Method, e.Target = c.method, c.target
	c.ic.obs.Observe(ctx, e)
}

func (c *call) attemptStart(ctx context.Context, n int, hedge bool) time.Time {
	c.event(ctx, observe.Event{Kind: observe.AttemptStart, Attempt: n, Hedge: hedge})
	return c.ic.clock.Now()
}

func (c *call) attemptEnd(ctx context.Context, n int, hedge bool, start time.Time, err error) {
	c.event(ctx, observe.Event{Kind: observe.AttemptEnd, Attempt: n, Hedge: hedge, Err: err, Duration: c.ic.clock.Now().Sub(start)})
}

// succeeded settles the budget for an attempt that succeeded: a retry
// that worked gets its token back.
func (c *call) succeeded() {
	if c.paid {
		c.paid = false
		c.b.refund(c.ic.clock.Now())
	}
}

// stopped reports that retrying ended and returns err.
func (c *call) stopped(reason string, err error) error {
	if c.ic.obs != nil {
		c.event(c.ctx, observe.Event{Kind: observe.RetryStopped, Attempt: c.n, Reason: reason, Err: err})
	}
	return err
}

// retryable reports whether a failed attempt's error allows another
// attempt, and if not, the RetryStopped reason.
func (c *call) retryable(err error, timedOut bool) (string, bool) {
	if cerr := c.ctx.Err(); cerr != nil {
		if errors.Is(cerr, context.DeadlineExceeded) {
			return "deadline", false
		}
		return "canceled", false
	}
	if !c.deadline.IsZero() && !c.ic.clock.Now().Before(c.deadline) {
		return "deadline", false
	}
	if _, ok := outcome.AsRejection(err); ok {
		// Answered locally by an inner layer (open breaker, bulkhead,
		// throttle): sending again to the same target would be answered
		// the same way.
		return "rejected", false
	}
	if timedOut {
		return "", true
	}
	switch code := outcome.Code(err); code {
	case codes.Canceled, codes.DeadlineExceeded:
		return "code", false
	default:
		if !c.p.Retry.Codes.Has(code) {
			return "code", false
		}
	}
	return "", true
}

// next decides what follows a failed attempt, given what the server said
// about retrying it: the wait before the next one and why, or the error to
// return.
func (c *call) next(err error, pb serverpb.Pushback, timedOut bool) (time.Duration, string, error) {
	if why, ok := c.retryable(err, timedOut); !ok {
		return 0, "", c.stopped(why, err)
	}
	if pb.Present && !pb.Allow {
		return 0, "", c.stopped("pushback", err)
	}
	if c.n >= c.max {
		return 0, "", c.stopped("attempts", err)
	}
	wait, reason := c.backoff(pb)
	if err := c.checkDeadline(wait, err); err != nil {
		return 0, "", err
	}
	if timedOut && c.b != nil {
		// The attempt was cut because a retry could follow it: it does.
		c.b.owe(c.ic.clock.Now())
		c.paid = true
	} else if !c.spend(false) {
		return 0, "", c.stopped("budget", newStopError("budget", c.n, c.target, err, ""))
	}
	return wait, reason, nil
}

// backoff returns the wait before the next retry and its reason: the
// server's pushback when it allows one, the policy's backoff otherwise.
func (c *call) backoff(pb serverpb.Pushback) (time.Duration, string) {
	if pb.Allow {
		c.sinceReset = 0
		return pb.Delay, "pushback"
	}
	c.sinceReset++
	return backoff(c.initial, c.maxBackoff, c.multiplier, c.sinceReset, c.ic.rand()), "policy"
}

// checkDeadline returns a StopError when waiting wait would leave no time
// for another attempt before the call's deadline (less than the policy's
// MinBudget, or nothing at all).
func (c *call) checkDeadline(wait time.Duration, last error) error {
	if c.deadline.IsZero() {
		return nil
	}
	left := c.deadline.Sub(c.ic.clock.Now())
	if left-wait > max(c.p.MinBudget, 0) {
		return nil
	}
	detail := fmt.Sprintf("next attempt due in %v, %v left", wait.Round(time.Microsecond), max(left, 0).Round(time.Microsecond))
	return c.stopped("deadline", newStopError("deadline", c.n, c.target, last, detail))
}

// spend takes a token from the target's budget for a retry or hedge.
func (c *call) spend(hedge bool) bool {
	if c.b == nil {
		return true
	}
	if c.b.withdraw(c.ic.clock.Now()) {
		c.paid = !hedge
		return true
	}
	if c.ic.obs != nil {
		c.event(c.ctx, observe.Event{Kind: observe.BudgetExhausted, Attempt: c.n + 1, Hedge: hedge})
	}
	return false
}

// sleep waits d before the next attempt, reporting the Backoff, unless the
// caller's context ends first.
func (c *call) sleep(d time.Duration, reason string, last error) error {
	if c.ic.obs != nil {
		c.event(c.ctx, observe.Event{Kind: observe.Backoff, Attempt: c.n + 1, Duration: d, Reason: reason})
	}
	if d <= 0 {
		return nil
	}
	t := c.ic.clock.NewTimer(d)
	select {
	case <-t.C():
		return nil
	case <-c.ctx.Done():
		t.Stop()
		return c.interrupted(last)
	}
}

// interrupted is the error of a call whose context ended while it waited
// to retry: the context's code, and the last attempt's message.
func (c *call) interrupted(last error) error {
	cerr := c.ctx.Err()
	code, why := codes.Canceled, "canceled"
	if errors.Is(cerr, context.DeadlineExceeded) {
		code, why = codes.DeadlineExceeded, "deadline"
	}
	return c.stopped(why, status.Errorf(code, "failsoft: retry: %v while waiting to retry; last attempt: %s", cerr, status.Convert(last).Message()))
}

// timeoutError is the error of an attempt cut by its per-attempt timeout.
func timeoutError(err error, n int, d time.Duration) error {
	return status.Errorf(codes.DeadlineExceeded, "failsoft: retry: attempt %d exceeded its per-attempt timeout of %v: %s", n, d, status.Convert(err).Message())
}
