package deadline

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/failsoft/failsoft/interceptors/internal/option"
	"github.com/failsoft/failsoft/interceptors/internal/registry"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/outcome"
	"github.com/failsoft/failsoft/internal/chain"
)

// Layer is the Rejection.Layer of calls this package fails fast.
const Layer = "deadline"

// Source says where a call's deadline came from. Its String is the Reason
// of DeadlineSet and DeadlineFailFast events.
type Source uint8

const (
	// FromCaller: the caller's own deadline was the earliest and was kept.
	FromCaller Source = iota + 1
	// FromPolicy: the method policy's timeout was earlier than any deadline
	// of the caller's.
	FromPolicy
	// FromDefault: neither the caller nor the policy gave one; the
	// interceptor's default timeout applies.
	FromDefault
)

func (s Source) String() string {
	switch s {
	case FromCaller:
		return "caller"
	case FromPolicy:
		return "policy"
	case FromDefault:
		return "default"
	}
	return "unknown"
}

// Interceptor gives calls their deadlines and fails calls fast that have
// too little budget left. Client and server interceptors come from the same
// value; it is safe for concurrent use.
type Interceptor struct {
	cfg    config
	floors *registry.Table[string, floor] // learned floors by method
}

// New returns an Interceptor. Invalid options are reported together, each
// naming its option.
func New(opts ...Option) (*Interceptor, error) {
	cfg := defaults()
	if err := option.Apply(&cfg, opts...); err != nil {
		return nil, err
	}
	return &Interceptor{cfg: cfg, floors: newFloors()}, nil
}

// effective returns a call's deadline: the earlier of the caller's and
// now+timeout when both exist, whichever exists when one does, and
// now+def otherwise. It never returns a deadline later than the caller's.
func effective(now, caller time.Time, hasCaller bool, timeout, def time.Duration) (time.Time, Source) {
	if timeout > 0 {
		d := now.Add(timeout)
		if hasCaller && !d.Before(caller) {
			return caller, FromCaller
		}
		return d, FromPolicy
	}
	if hasCaller {
		return caller, FromCaller
	}
	return now.Add(def), FromDefault
}

// plan is what the client interceptors do with one call.
type plan struct {
	deadline  time.Time
	remaining time.Duration
	source    Source
	now       time.Time // when the plan was made
	// floored: the method's policy sets no min_budget, so a learned
	// floor applies (WithLearnedFloor).
	floored bool
}

// plan resolves the method's policy, computes the call's deadline into pl
// and checks the budget. It reports DeadlineSet, or DeadlineFailFast
// together with the *outcome.Rejection it returns. What only a call that
// is observed or refused needs lives in functions of its own, so that the
// code every call runs stays short.
func (i *Interceptor) plan(ctx context.Context, method string, cc *grpc.ClientConn, st *chain.State, pl *plan) error {
	p, err := st.Resolve(i.cfg.Resolver, method)
	if err != nil {
		return err
	}
	now := i.cfg.Clock.Now()
	pl.now = now
	caller, hasCaller := ctx.Deadline()
	pl.deadline, pl.source = effective(now, caller, hasCaller, p.Timeout, i.cfg.timeout)
	switch pl.source {
	case FromPolicy:
		pl.remaining = p.Timeout
	case FromDefault:
		pl.remaining = i.cfg.timeout
	default:
		pl.remaining = pl.deadline.Sub(now)
	}
	minBudget := p.MinBudget
	if !p.MinBudgetSet {
		minBudget = i.cfg.minBudget
		pl.floored = i.cfg.learnFloor
	}
	if pl.remaining <= 0 || pl.remaining < minBudget {
		return i.failFast(ctx, method, cc, pl, minBudget)
	}
	if o := i.cfg.Observer; o != nil && observe.Wants(ctx, o, observe.DeadlineSet) {
		i.observeSet(ctx, o, method, cc, pl)
	}
	return nil
}

func (i *Interceptor) observeSet(ctx context.Context, o observe.Observer, method string, cc *grpc.ClientConn, pl *plan) {
	o.Observe(ctx, observe.Event{
		Kind: observe.DeadlineSet, Method: method, Target: target(cc),
		Duration: pl.remaining, Reason: pl.source.String(),
	})
}

// failFast refuses a call whose budget is below minBudget.
func (i *Interceptor) failFast(ctx context.Context, method string, cc *grpc.ClientConn, pl *plan, minBudget time.Duration) error {
	return i.refuse(ctx, method, cc, pl, failFastMessage(method, pl.remaining, minBudget))
}

// belowFloor refuses a call whose budget is below floor, the fastest its
// method's calls succeeded lately.
func (i *Interceptor) belowFloor(ctx context.Context, method string, cc *grpc.ClientConn, pl *plan, floor time.Duration) error {
	return i.refuse(ctx, method, cc, pl, fmt.Sprintf(
		"failsoft: deadline: %v of budget left for %s, and none of its recent calls succeeded in less than %v; the call was not sent",
		pl.remaining, method, floor))
}

// refuse fails a call fast with a Rejection carrying msg, and reports it.
func (i *Interceptor) refuse(ctx context.Context, method string, cc *grpc.ClientConn, pl *plan, msg string) error {
	rej := &outcome.Rejection{
		Layer:   Layer,
		Target:  target(cc),
		Code:    codes.DeadlineExceeded,
		Message: msg,
		Cause:   context.DeadlineExceeded,
	}
	if o := i.cfg.Observer; o != nil {
		o.Observe(ctx, observe.Event{
			Kind: observe.DeadlineFailFast, Method: method, Target: rej.Target,
			Duration: pl.remaining, Reason: pl.source.String(), Err: rej,
		})
	}
	return rej
}

func failFastMessage(method string, remaining, minBudget time.Duration) string {
	if remaining < 0 {
		return fmt.Sprintf("failsoft: deadline: no budget left for %s (its deadline passed %v ago), the minimum is %v; the call was not sent",
			method, -remaining, minBudget)
	}
	return fmt.Sprintf("failsoft: deadline: %v of budget left for %s, the minimum is %v; the call was not sent",
		remaining, method, minBudget)
}

func target(cc *grpc.ClientConn) string {
	if cc == nil {
		return ""
	}
	return cc.Target()
}
