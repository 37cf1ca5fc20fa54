package retry

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/internal/option"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/outcome"
	"github.com/failsoft/failsoft/interceptors/policy"
	"github.com/failsoft/failsoft/internal/chain"
)

// Interceptor retries and hedges the calls its policies allow. It is safe
// for concurrent use; make one per client and chain its interceptors.
type Interceptor struct {
	resolver     *policy.Resolver
	obs          observe.Observer
	clock        clock.Clock
	system       bool // clock is the system clock
	rand         func() float64
	budgets      *budgets // nil: no budget
	replayBuffer int
	latency      sync.Map // method -> *latency, for quantile hedge delays
}

// New returns an Interceptor configured by opts. It fails with an error
// naming every invalid option.
func New(opts ...Option) (*Interceptor, error) {
	cfg := defaults()
	if err := option.Apply(&cfg, opts...); err != nil {
		return nil, err
	}
	if cfg.Resolver == nil {
		cfg.Resolver = policy.Default()
	}
	ic := &Interceptor{
		resolver:     cfg.Resolver,
		obs:          cfg.Observer,
		clock:        cfg.Clock,
		system:       cfg.Clock == clock.System(),
		rand:         cfg.rand,
		replayBuffer: cfg.replayBuffer,
	}
	if !cfg.budgetOff {
		ic.budgets = newBudgets(cfg.budget)
	}
	return ic, nil
}

// UnaryClientInterceptor returns the unary client interceptor.
func (ic *Interceptor) UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return chain.UnaryInterceptor(layer{ic})
}

// StreamClientInterceptor returns the stream client interceptor, for all
// three stream kinds.
func (ic *Interceptor) StreamClientInterceptor() grpc.StreamClientInterceptor {
	return chain.StreamInterceptor(layer{ic})
}

// layer is the Interceptor as a layer of a folded chain.
type layer struct{ ic *Interceptor }

func init() {
	chain.Register(chain.Retry, func(ic *Interceptor) chain.Layer { return chain.Both(layer{ic}) })
}

func (l layer) Stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, next chain.StreamNext, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return l.ic.stream(ctx, desc, cc, method, next, opts...)
}

// errAttemptTimeout is the cause of an attempt's context when its
// per-attempt timeout fired.
var errAttemptTimeout = errors.New("per-attempt timeout")

// call is the state of one logical call shared by its attempts.
type call struct {
	ic  *Interceptor
	ctx context.Context // the caller's
	// deadline is the call's deadline when the deadline layer left it
	// pending (chain.State.Deadline) rather than on ctx: each attempt's
	// context gets it. Zero when ctx holds the call's deadline, if any.
	deadline time.Time
	folded   bool // other failsoft layers follow, reading chain.State
	watch    bool // the observer wants attempt events (observe.Wants)
	method   string
	target   string
	p        *policy.Policy
	b        *bucket // nil: no budget
	max      int     // attempts, counting the first
	timeout  time.Duration

	initial, maxBackoff time.Duration
	multiplier          float64

	n          int // attempts sent so far
	sinceReset int // retries since the last server pushback
}

func (ic *Interceptor) newCall(ctx context.Context, method, target string, p *policy.Policy, b *bucket, cfg *callConfig, hedge bool) call {
	c := call{
		ic: ic, ctx: ctx, method: method, target: target, p: p, b: b,
		max:        p.Retry.MaxAttempts,
		timeout:    p.Retry.AttemptTimeout,
		initial:    p.Retry.InitialBackoff,
		maxBackoff: p.Retry.MaxBackoff,
		multiplier: p.Retry.Multiplier,
	}
	if hedge {
		c.max = p.Hedge.MaxAttempts
	}
	if cfg.maxAttempts > 0 {
		c.max = cfg.maxAttempts
		if hedge {
			c.max = min(c.max, policy.MaxHedgeAttempts)
		}
	}
	if cfg.attemptTimeout > 0 {
		c.timeout = cfg.attemptTimeout
	}
	if o := cfg.backoff; o != nil {
		c.initial, c.maxBackoff, c.multiplier = o.initial, o.max, o.multiplier
	}
	return c
}

// eligible reports whether a call may be hedged or retried.
func eligible(ctx context.Context, p *policy.Policy) (hedge, retry bool) {
	if p.Hedgeable() {
		return true, false
	}
	return false, p.Retryable(p.RequiresKey && hasKey(ctx))
}

func hasKey(ctx context.Context) bool {
	return len(metadata.ValueFromOutgoingContext(ctx, policy.KeyMetadata)) > 0
}

// Unary is the layer's unary half. It is the retry layer itself, not a
// wrapper around it: a wrapper would add a hop, which copies the chain's
// state once more on every call.
func (l layer) Unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, next chain.UnaryNext, opts ...grpc.CallOption) error {
	ic := l.ic
	p, err := next.Resolve(ic.resolver, method)
	if err != nil {
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	var target string
	if cc != nil {
		target = cc.Target()
	}
	var b *bucket
	if ic.budgets != nil {
		b = ic.budgets.get(target)
		b.deposit()
	}
	var cfg callConfig
	var found bool
	if len(opts) > 0 && !chain.Bare(opts) {
		if c := callOptions(opts); c != nil {
			if c.err != nil {
				return status.Error(codes.InvalidArgument, c.err.Error())
			}
			cfg, found = *c, true
		}
	}
	hedge, retry := false, false
	if !cfg.disabled {
		hedge, retry = eligible(ctx, p)
	}
	// The call's deadline, when the deadline layer left it pending, is
	// set on each attempt's context from here on, and on no other.
	pending := next.Deadline
	next.Deadline = time.Time{}
	// An outer layer's clock reading is the first attempt's start, and no
	// later one's.
	now := next.Now
	next.Now = time.Time{}
	watch := observe.Wants(ctx, ic.obs, observe.AttemptEnd) || observe.Wants(ctx, ic.obs, observe.AttemptStart)
	if retry && !found && !watch {
		// The common case: the first attempt needs nothing but a place for
		// its trailer and a context with the call's deadline and its own
		// timeout; the call's state is built only if it fails.
		tr := getTrailers(opts)
		timeout := p.Retry.AttemptTimeout
		// next itself carries the first attempt, and is restored for the
		// retries if it fails: a copy would cost more than the restoring.
		actx := ctx
		next.SetFirstAttempt(timeout)
		var at attemptTimer
		if timeout > 0 || !pending.IsZero() {
			if ic.system && timeout > 0 && now.IsZero() {
				now = time.Now()
			}
			actx = at.start(ic, ctx, timeout, pending, now, false)
		}
		if ic.system {
			next.Now = now
		}
		err := next.Invoke(actx, method, req, reply, cc, tr.opts...)
		timedOut := at.finish(err == nil)
		if err == nil {
			tr.release()
			return nil
		}
		if timedOut {
			err = timeoutError(err, 1, timeout)
		}
		next.ClearFirstAttempt()
		next.Now = time.Time{}
		c := ic.newCall(ctx, method, target, p, b, &cfg, false)
		c.deadline, c.folded, c.watch = pending, next.Folded(), watch
		return ic.retryUnary(&c, tr, err, timedOut, req, reply, cc, next)
	}
	if hedge {
		if m, ok := reply.(proto.Message); ok {
			c := ic.newCall(ctx, method, target, p, b, &cfg, true)
			c.deadline, c.folded, c.watch = pending, next.Folded(), watch
			if c.max > 1 {
				return ic.hedge(&c, req, m, cc, next, opts)
			}
		} else {
			// Hedges need a reply of their own; without proto messages,
			// fall back to retries.
			retry = p.Retryable(p.RequiresKey && hasKey(ctx))
		}
	}
	if retry {
		c := ic.newCall(ctx, method, target, p, b, &cfg, false)
		c.deadline, c.folded, c.watch = pending, next.Folded(), watch
		if c.max > 1 {
			return ic.retryUnary(&c, getTrailers(opts), nil, false, req, reply, cc, next)
		}
	}
	if !pending.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, pending)
		defer cancel()
	}
	if !watch {
		return next.Invoke(ctx, method, req, reply, cc, opts...)
	}
	c := call{ic: ic, ctx: ctx, method: method, target: target, p: p, max: 1, folded: next.Folded(), watch: true}
	actx := c.attemptContext(&next.State, 1, false, 0, "")
	start := c.attemptStart(actx, 1, false)
	err = next.Invoke(actx, method, req, reply, cc, opts...)
	c.attemptEnd(actx, 1, false, start, err)
	return err
}

// trailers holds the trailer of one unary attempt and the call options that
// capture it. Holders are pooled so that the first attempt of a retryable
// call does not allocate.
type trailers struct {
	md   metadata.MD
	one  [1]grpc.CallOption // grpc.Trailer(&md)
	buf  []grpc.CallOption  // the caller's options and one[0]
	opts []grpc.CallOption  // one[:] or buf
	// bare, when not nil, is the first of the chain.Bare options that buf
	// holds: the next call with the same ones reuses buf as it is.
	bare *grpc.CallOption
}

var trailerPool = sync.Pool{New: func() any { return newTrailers() }}

func newTrailers() *trailers {
	t := &trailers{}
	t.one[0] = grpc.Trailer(&t.md)
	return t
}

func getTrailers(opts []grpc.CallOption) *trailers {
	t := trailerPool.Get().(*trailers)
	t.fill(opts)
	return t
}

// fill sets t.opts to opts followed by the trailer option.
func (t *trailers) fill(opts []grpc.CallOption) {
	switch {
	case len(opts) == 0:
		t.opts = t.one[:]
	case t.bare == &opts[0]:
		t.opts = t.buf // the same bare options as last time
	default:
		t.buf = append(append(t.buf[:0], opts...), t.one[0])
		t.opts = t.buf
		t.bare = nil
		if chain.Bare(opts) {
			t.bare = &opts[0]
		}
	}
}

func (t *trailers) release() {
	t.reset()
	trailerPool.Put(t)
}

func (t *trailers) reset() {
	if len(t.buf) > 0 && t.bare == nil {
		// Do not keep the caller's options alive in the pool.
		clear(t.buf)
		t.buf = t.buf[:0]
	}
	t.opts, t.md = nil, nil
}

// retryUnary runs the attempts of a retryable unary call. When first is
// not nil, the first attempt was already sent and failed with it (cut by
// its per-attempt timeout if firstTimedOut).
func (ic *Interceptor) retryUnary(c *call, tr *trailers, first error, firstTimedOut bool, req, reply any, cc *grpc.ClientConn, next chain.UnaryNext) error {
	defer tr.release()
	var wait time.Duration
	var reason string
	for n := 1; ; n++ {
		c.n = n
		if n == 1 && first != nil {
			var stop error
			if wait, reason, stop = c.next(first, tr.md, firstTimedOut); stop != nil {
				return stop
			}
			if err := c.sleep(wait, reason, first); err != nil {
				return err
			}
			continue
		}
		inner := next
		actx := c.ctx
		if n > 1 || c.watch {
			actx = c.attemptContext(&inner.State, n, false, wait, reason)
		} else {
			inner.SetFirstAttempt(c.timeout)
		}
		var at attemptTimer
		if c.timeout > 0 || !c.deadline.IsZero() {
			actx = at.start(ic, actx, c.timeout, c.deadline, time.Time{}, false)
		}
		var start time.Time
		if c.watch {
			start = c.attemptStart(actx, n, false)
		}
		tr.md = nil
		err := inner.Invoke(actx, c.method, req, reply, cc, tr.opts...)
		timedOut := at.finish(err == nil)
		if timedOut && err != nil {
			err = timeoutError(err, n, c.timeout)
		}
		if c.watch {
			c.attemptEnd(actx, n, false, start, err)
		}
		if err == nil {
			return nil
		}
		var stop error
		wait, reason, stop = c.next(err, tr.md, timedOut)
		if stop != nil {
			return stop
		}
		if err := c.sleep(wait, reason, err); err != nil {
			return err
		}
	}
}

// timeoutError is the error of an attempt cut by its per-attempt timeout.
func timeoutError(err error, n int, d time.Duration) error {
	return status.Errorf(codes.DeadlineExceeded, "attempt %d exceeded its per-attempt timeout of %v: %s", n, d, status.Convert(err).Message())
}

// attemptStrings are the values of AttemptMetadata, prepared.
var attemptStrings = func() [policy.MaxRetryAttempts + 1]string {
	var s [policy.MaxRetryAttempts + 1]string
	for i := range s {
		s[i] = strconv.Itoa(i)
	}
	return s
}()

func attemptString(n int) string {
	if n < len(attemptStrings) {
		return attemptStrings[n]
	}
	return strconv.Itoa(n)
}

// attemptContext returns the context of attempt n: the attempt number in
// the request metadata (from the second attempt on) and the attempt for
// inner layers, in st, and on the context as an observe.Attempt value.
func (c *call) attemptContext(st *chain.State, n int, hedge bool, wait time.Duration, reason string) context.Context {
	ctx := c.ctx
	if n > 1 {
		ctx = metadata.AppendToOutgoingContext(ctx, AttemptMetadata, attemptString(n))
	}
	if n == 1 && !hedge && (c.timeout == 0 || c.folded) {
		// observe.AttemptFrom already reads a context without an attempt
		// as the first one, and the suite's inner layers read st: saving
		// the value costs two allocations.
		st.SetFirstAttempt(c.timeout)
		return ctx
	}
	return observe.WithAttempt(ctx, observe.Attempt{N: n, Hedge: hedge, Backoff: wait, BackoffReason: reason, Timeout: c.timeout})
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

// callDeadline returns the call's deadline: the pending one, or ctx's.
func (c *call) callDeadline() (time.Time, bool) {
	if !c.deadline.IsZero() {
		return c.deadline, true
	}
	return c.ctx.Deadline()
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

// next decides what follows a failed attempt: the wait before the next
// one, or the error to return.
func (c *call) next(err error, trailer metadata.MD, timedOut bool) (time.Duration, string, error) {
	if why, ok := c.retryable(err, timedOut); !ok {
		return 0, "", c.stopped(why, err)
	}
	pb := serverPushback(trailer, err)
	if pb.present && !pb.allow {
		return 0, "", c.stopped("pushback", err)
	}
	if c.n >= c.max {
		return 0, "", c.stopped("attempts", err)
	}
	var wait time.Duration
	reason := "policy"
	if pb.allow {
		wait, reason, c.sinceReset = pb.delay, "pushback", 0
	} else {
		c.sinceReset++
		wait = backoff(c.initial, c.maxBackoff, c.multiplier, c.sinceReset, c.ic.rand())
	}
	if err := c.checkDeadline(wait, err); err != nil {
		return 0, "", err
	}
	if !c.spend(false) {
		return 0, "", c.stopped("budget", newStopError("budget", c.n, c.target, err, ""))
	}
	return wait, reason, nil
}

// checkDeadline returns a StopError when waiting wait would leave no time
// for another attempt before the caller's deadline (less than the policy's
// MinBudget, or nothing at all).
func (c *call) checkDeadline(wait time.Duration, last error) error {
	dl, ok := c.callDeadline()
	if !ok {
		return nil
	}
	left := dl.Sub(c.ic.clock.Now())
	if left-wait > max(c.p.MinBudget, 0) {
		return nil
	}
	detail := fmt.Sprintf("next attempt due in %v, %v left", wait.Round(time.Microsecond), max(left, 0).Round(time.Microsecond))
	return c.stopped("deadline", newStopError("deadline", c.n, c.target, last, detail))
}

// spend takes a token from the target's budget for a retry or hedge.
func (c *call) spend(hedge bool) bool {
	if c.b == nil || c.b.withdraw(c.ic.clock) {
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
	return c.stopped(why, status.Errorf(code, "%v while waiting to retry; last attempt: %s", cerr, status.Convert(last).Message()))
}

// attemptTimer enforces a per-attempt timeout. For unary calls on the
// system clock it is a context deadline, which gRPC also sends to the
// server; otherwise it is a timer that cancels the attempt, which a stream
// disarms once committed so that a long stream is not cut.
type attemptTimer struct {
	parent context.Context
	ctx    context.Context
	// deadline is the attempt's own deadline on the system clock, when it
	// is earlier than the caller's.
	deadline time.Time
	cancel   context.CancelCauseFunc
	plain    context.CancelFunc
	outer    context.CancelFunc // of the call's pending deadline, under a timer
	timer    *time.Timer
	ftimer   clock.Timer
	stop     chan struct{}
}

// pending is the call's deadline when it is not on ctx (zero otherwise):
// the attempt's context gets it too, in the same context when it can.
//
// now, when not zero, is the system clock's reading at the attempt's
// start; when it is zero and start needs one, start reads the clock.
func (t *attemptTimer) start(ic *Interceptor, ctx context.Context, d time.Duration, pending, now time.Time, stream bool) context.Context {
	t.parent = ctx
	if d <= 0 {
		t.ctx, t.plain = context.WithDeadline(ctx, pending)
		return t.ctx
	}
	if ic.system && !stream {
		if now.IsZero() {
			now = time.Now()
		}
		dl := now.Add(d)
		if !pending.IsZero() && !dl.Before(pending) {
			// The call's deadline comes first: no attempt timeout to tell.
			t.ctx, t.plain = context.WithDeadline(ctx, pending)
			return t.ctx
		}
		if pd, ok := ctx.Deadline(); !ok || dl.Before(pd) {
			t.deadline = dl
		}
		t.ctx, t.plain = context.WithDeadlineCause(ctx, dl, errAttemptTimeout)
		return t.ctx
	}
	if !pending.IsZero() {
		ctx, t.outer = context.WithDeadline(ctx, pending)
	}
	t.ctx, t.cancel = context.WithCancelCause(ctx)
	if ic.system {
		cancel := t.cancel
		t.timer = time.AfterFunc(d, func() { cancel(errAttemptTimeout) })
		return t.ctx
	}
	tm := ic.clock.NewTimer(d)
	t.ftimer = tm
	t.stop = make(chan struct{})
	go func(ctx context.Context, cancel context.CancelCauseFunc, stop chan struct{}) {
		select {
		case <-tm.C():
			cancel(errAttemptTimeout)
		case <-ctx.Done():
			tm.Stop()
		case <-stop:
			tm.Stop()
		}
	}(t.ctx, t.cancel, t.stop)
	return t.ctx
}

// timedOut reports whether the timeout fired. A context deadline counts as
// soon as it has passed: the server, which got it too, may end the attempt
// a moment before the client's own timer fires.
func (t *attemptTimer) timedOut() bool {
	if t.ctx == nil {
		return false
	}
	if context.Cause(t.ctx) == errAttemptTimeout {
		return true
	}
	return !t.deadline.IsZero() && t.parent.Err() == nil && !time.Now().Before(t.deadline)
}

// disarm stops the timer without ending the attempt.
func (t *attemptTimer) disarm() {
	if t.timer != nil {
		t.timer.Stop()
	}
	if t.ftimer != nil {
		t.ftimer.Stop()
	}
	if t.stop != nil {
		close(t.stop)
		t.stop = nil
	}
}

// finish ends the attempt's context and reports whether the timeout fired
// during an attempt that failed (ok: it succeeded, and whether the timer
// fired does not matter).
func (t *attemptTimer) finish(ok bool) bool {
	if t.ctx == nil {
		return false
	}
	fired := !ok && t.timedOut()
	if t.plain != nil {
		// A context deadline alone: no timer of ours, no outer context.
		t.plain()
		return fired
	}
	t.disarm()
	t.cancel(context.Canceled)
	if t.outer != nil {
		t.outer()
	}
	return fired
}
