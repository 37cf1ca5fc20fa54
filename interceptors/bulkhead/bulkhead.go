package bulkhead

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/internal/option"
	"github.com/failsoft/failsoft/interceptors/internal/registry"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/outcome"
	"github.com/failsoft/failsoft/internal/chain"
)

// Interceptor limits concurrent calls per target (or target and method).
type Interceptor struct {
	cfg config
	// Compartments by target, or with PerMethod by target and method. When
	// the registry is full, an idle compartment makes room; one with calls
	// in flight is never dropped.
	reg registry.Registry[compartment]
}

// compartment is one target's (or method's) semaphore: an atomic count
// for the fast path, and a channel that wakes waiters when a slot frees.
type compartment struct {
	target, method string
	limit          int64
	n              atomic.Int64
	waiters        atomic.Int64
	wake           chan struct{}      // capacity limit; a token may be stale
	full           *outcome.Rejection // shared by every rejection; immutable
	waitedOut      *outcome.Rejection
}

func (c *compartment) tryAcquire() bool {
	for {
		n := c.n.Load()
		if n >= c.limit {
			return false
		}
		if c.n.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (c *compartment) release() {
	c.n.Add(-1)
	if c.waiters.Load() > 0 {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// wait waits up to d for a slot. It reports whether it got one, or the
// context's error.
func (c *compartment) wait(ctx context.Context, clk clock.Clock, d time.Duration) (bool, error) {
	c.waiters.Add(1)
	defer c.waiters.Add(-1)
	t := clk.NewTimer(d)
	defer t.Stop()
	for {
		// Registered as a waiter before trying, so a release either is
		// seen here or sends a wake-up.
		if c.tryAcquire() {
			return true, nil
		}
		select {
		case <-c.wake:
		case <-ctx.Done():
			return false, ctx.Err()
		case <-t.C():
			return c.tryAcquire(), nil
		}
	}
}

// New returns an Interceptor.
func New(opts ...Option) (*Interceptor, error) {
	ic := &Interceptor{cfg: defaultConfig()}
	err := option.Apply(&ic.cfg, opts...)
	if len(ic.cfg.methodLimits) > 0 && !ic.cfg.perMethod {
		err = errors.Join(err, errors.New("bulkhead.MethodLimit: needs PerMethod"))
	}
	if err != nil {
		return nil, err
	}
	ic.reg.Init(ic.cfg.perMethod, ic.cfg.maxTargets, ic.newCompartment, worth)
	return ic, nil
}

// worth says what dropping c would lose: the count of its calls in flight
// and of its waiters, which a new compartment would not limit.
func worth(c *compartment) registry.Worth {
	if c.n.Load() == 0 && c.waiters.Load() == 0 {
		return registry.Nothing
	}
	return registry.Needed
}

// newCompartment makes the compartment of target (and method, with
// PerMethod).
func (ic *Interceptor) newCompartment(target, method string) *compartment {
	limit := ic.cfg.limit
	if n, ok := ic.cfg.targetLimits[target]; ok {
		limit = n
	}
	if n, ok := ic.cfg.methodLimits[method]; ok {
		limit = n
	}
	name := target
	if method != "" {
		name += " " + method
	}
	return &compartment{
		target: target, method: method, limit: int64(limit), wake: make(chan struct{}, limit),
		full: &outcome.Rejection{Layer: "bulkhead", Target: target, Code: codes.ResourceExhausted,
			Message: fmt.Sprintf("failsoft: bulkhead: %s is full: %d calls in flight", name, limit)},
		waitedOut: &outcome.Rejection{Layer: "bulkhead", Target: target, Code: codes.ResourceExhausted,
			Message: fmt.Sprintf("failsoft: bulkhead: %s is full: %d calls in flight, none ended within %v", name, limit, ic.cfg.maxWait)},
	}
}

// InFlight returns the number of calls in flight and the limit for target
// (and method, with PerMethod), for metrics; false if no call was made yet.
func (ic *Interceptor) InFlight(target, method string) (inFlight, limit int, ok bool) {
	c := ic.reg.Lookup(target, method)
	if c == nil {
		return 0, 0, false
	}
	return int(c.n.Load()), int(c.limit), true
}

// Usage is one compartment's load, as returned by Usages.
type Usage struct {
	Target, Method  string
	InFlight, Limit int
}

// Usages returns the load of every compartment, sorted by target and
// method.
func (ic *Interceptor) Usages() []Usage {
	var out []Usage
	for c := range ic.reg.All() {
		out = append(out, Usage{c.target, c.method, int(c.n.Load()), int(c.limit)})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Target != out[j].Target {
			return out[i].Target < out[j].Target
		}
		return out[i].Method < out[j].Method
	})
	return out
}

// acquire takes a slot, waiting up to MaxWait. It returns an error when the
// call must fail without being sent.
func (ic *Interceptor) acquire(ctx context.Context, target, method string) (*compartment, error) {
	c := ic.reg.Get(target, method)
	if c.tryAcquire() {
		return c, nil
	}
	rej := c.full
	var waited time.Duration
	if d := ic.cfg.maxWait; d > 0 {
		start := ic.cfg.Clock.Now()
		ok, err := c.wait(ctx, ic.cfg.Clock, d)
		if err != nil {
			return nil, status.FromContextError(err).Err()
		}
		if ok {
			return c, nil
		}
		rej, waited = c.waitedOut, ic.cfg.Clock.Now().Sub(start)
	}
	if o := ic.cfg.Observer; o != nil {
		o.Observe(ctx, observe.Event{Kind: observe.BulkheadRejected, Method: method, Target: target,
			Duration: waited, Value: float64(c.limit), Err: rej})
	}
	return nil, rej
}

// UnaryClientInterceptor returns the unary client interceptor.
func (ic *Interceptor) UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return chain.UnaryInterceptor(layer{ic})
}

// layer is the Interceptor as a layer of a folded chain.
type layer struct{ ic *Interceptor }

func init() {
	chain.Register(chain.Bulkhead, func(ic *Interceptor) chain.Layer { return chain.Both(layer{ic}) })
}

func (l layer) Unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, next chain.UnaryNext, opts ...grpc.CallOption) error {
	c, err := l.ic.acquire(ctx, cc.Target(), method)
	if err != nil {
		return err
	}
	defer c.release()
	return next.Invoke(ctx, method, req, reply, cc, opts...)
}

// StreamClientInterceptor returns the stream client interceptor. A stream
// holds its slot until it ends or its context is done.
func (ic *Interceptor) StreamClientInterceptor() grpc.StreamClientInterceptor {
	return chain.StreamInterceptor(layer{ic})
}

func (l layer) Stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, next chain.StreamNext, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	c, err := l.ic.acquire(ctx, cc.Target(), method)
	if err != nil {
		return nil, err
	}
	cs, err := next.NewStream(ctx, desc, cc, method, opts...)
	if err != nil {
		c.release()
		return nil, err
	}
	s := &stream{ClientStream: cs, c: c, serverStreams: desc.ServerStreams}
	s.stop = context.AfterFunc(ctx, s.end)
	return s, nil
}

type stream struct {
	grpc.ClientStream
	c             *compartment
	serverStreams bool
	stop          func() bool
	ended         atomic.Bool
}

func (s *stream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil || !s.serverStreams {
		// The stream ended: io.EOF, its status, or its single response.
		s.stop()
		s.end()
	}
	return err
}

func (s *stream) end() {
	if !s.ended.Swap(true) {
		s.c.release()
	}
}
