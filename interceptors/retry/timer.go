package retry

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/outcome"
)

// errAttemptTimeout is the cause of an attempt's context when its
// per-attempt timeout ran out.
var errAttemptTimeout = errors.New("per-attempt timeout")

// attemptTimer gives an attempt its context: the call's deadline, when it
// is not on the caller's context yet, and the attempt's own timeout.
//
// A unary attempt on the system clock gets one context deadline, the
// earlier of the two, which gRPC also sends to the server. Streams, and
// calls on another clock, get a timer that cancels the attempt: a stream
// disarms it once committed, so that a long stream is not cut.
type attemptTimer struct {
	parent context.Context
	ctx    context.Context // nil: the attempt runs on parent as it is
	// own, when not zero, is ctx's deadline when it is the attempt's own
	// timeout, earlier than the call's: the server, which got it, may
	// answer DEADLINE_EXCEEDED because of it.
	own    time.Time
	d      time.Duration      // the attempt's timeout, when own is set
	plain  context.CancelFunc // a context deadline alone
	cancel context.CancelCauseFunc
	outer  context.CancelFunc // the call's deadline, under a timer
	after  *time.Timer        // on the system clock
	timer  clock.Timer        // on another clock
	stop   chan struct{}      // ends the goroutine that waits on a fake clock's timer
}

// start returns the context of an attempt of c on ctx, which carries the
// caller's deadline, if any, and not c.pending: the attempt's own timeout
// (c.cut, zero: none) and c.pending when not zero. now is the clock's
// reading.
func (t *attemptTimer) start(c *call, ctx context.Context, now time.Time, stream bool) context.Context {
	ic, d, pending := c.ic, c.cut, c.pending
	t.parent = ctx
	if d <= 0 {
		if !pending.IsZero() {
			t.ctx, t.plain = context.WithDeadline(ctx, pending)
			return t.ctx
		}
		return ctx
	}
	if ic.system && !stream {
		own := now.Add(d)
		if !c.deadline.IsZero() && !own.Before(c.deadline) {
			// The call's deadline comes first: the attempt has no timeout
			// of its own to tell.
			if pending.IsZero() {
				return ctx
			}
			t.ctx, t.plain = context.WithDeadline(ctx, pending)
			return t.ctx
		}
		t.own, t.d = own, d
		t.ctx, t.plain = context.WithDeadlineCause(ctx, own, errAttemptTimeout)
		return t.ctx
	}
	if !pending.IsZero() {
		ctx, t.outer = context.WithDeadline(ctx, pending)
	}
	t.ctx, t.cancel = context.WithCancelCause(ctx)
	cancel := t.cancel
	if ic.system {
		t.after = time.AfterFunc(d, func() { cancel(errAttemptTimeout) })
		return t.ctx
	}
	tm := ic.clock.NewTimer(d)
	t.timer = tm
	t.stop = make(chan struct{})
	go func(done <-chan struct{}, stop chan struct{}) {
		select {
		case <-tm.C():
			cancel(errAttemptTimeout)
		case <-done:
		case <-stop:
		}
	}(t.ctx.Done(), t.stop)
	return t.ctx
}

// timedOut reports whether an attempt that failed with err ended because
// of its own timeout: the timer fired, or the attempt's own deadline passed
// (the attempt may end a moment before the context's timer runs), or the
// server, which got that deadline, answered DEADLINE_EXCEEDED in the second
// half of the attempt while the caller's context still had time. A server
// that keeps a safety margin (failsoft's own does) answers so a moment
// before the client's deadline passes; a DEADLINE_EXCEEDED that comes
// sooner is the server's own verdict and is not retried.
func (t *attemptTimer) timedOut(err error) bool {
	if t.ctx == nil {
		return false
	}
	if context.Cause(t.ctx) == errAttemptTimeout {
		return true
	}
	if t.own.IsZero() || t.parent.Err() != nil {
		return false
	}
	now := time.Now()
	return !now.Before(t.own) || (outcome.Code(err) == codes.DeadlineExceeded && !now.Before(t.own.Add(-t.d/2)))
}

// disarm stops the timer without ending the attempt.
func (t *attemptTimer) disarm() {
	if t.after != nil {
		t.after.Stop()
	}
	if t.timer != nil {
		t.timer.Stop()
	}
	if t.stop != nil {
		close(t.stop)
		t.stop = nil
	}
}

// finish releases the attempt's context and reports whether the attempt,
// which failed with err (nil: it succeeded), ended because of its own
// timeout.
func (t *attemptTimer) finish(err error) bool {
	if t.ctx == nil {
		return false
	}
	timedOut := err != nil && t.timedOut(err)
	if t.plain != nil {
		t.plain()
		return timedOut
	}
	t.disarm()
	t.cancel(context.Canceled)
	if t.outer != nil {
		t.outer()
	}
	return timedOut
}
