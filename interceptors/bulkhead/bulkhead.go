package bulkhead

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/outcome"
)

// Interceptor limits concurrent calls per target (or target and method).
type Interceptor struct {
	cfg config
	// Compartments by target, and with PerMethod by method within a
	// target. Maps and entries are copied on write: lookups are lock-free.
	reg   atomic.Pointer[map[string]*entry]
	regMu sync.Mutex
	count int // compartments, under regMu
}

type entry struct {
	c       *compartment
	methods map[string]*compartment
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
	var errs []error
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(&ic.cfg); err != nil {
			errs = append(errs, err)
		}
	}
	if len(ic.cfg.methodLimits) > 0 && !ic.cfg.perMethod {
		errs = append(errs, errors.New("bulkhead.MethodLimit: needs PerMethod"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	empty := map[string]*entry{}
	ic.reg.Store(&empty)
	return ic, nil
}

func (ic *Interceptor) get(target, method string) *compartment {
	if e, ok := (*ic.reg.Load())[target]; ok {
		if !ic.cfg.perMethod {
			return e.c
		}
		if c, ok := e.methods[method]; ok {
			return c
		}
	}
	return ic.create(target, method)
}

func (ic *Interceptor) lookup(target, method string) *compartment {
	e, ok := (*ic.reg.Load())[target]
	switch {
	case !ok:
		return nil
	case !ic.cfg.perMethod:
		return e.c
	}
	return e.methods[method]
}

func idle(c *compartment) bool { return c.n.Load() == 0 && c.waiters.Load() == 0 }

func (ic *Interceptor) create(target, method string) *compartment {
	ic.regMu.Lock()
	defer ic.regMu.Unlock()
	if c := ic.lookup(target, method); c != nil {
		return c
	}
	old := *ic.reg.Load()
	next := make(map[string]*entry, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	if ic.count >= ic.cfg.maxCompartmts {
		if !evict(next) {
			return nil
		}
		ic.count--
	}
	if !ic.cfg.perMethod {
		method = ""
	}
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
	c := &compartment{
		target: target, method: method, limit: int64(limit), wake: make(chan struct{}, limit),
		full: &outcome.Rejection{Layer: "bulkhead", Target: target, Code: codes.ResourceExhausted,
			Message: fmt.Sprintf("bulkhead for %s is full: %d calls in flight", name, limit)},
		waitedOut: &outcome.Rejection{Layer: "bulkhead", Target: target, Code: codes.ResourceExhausted,
			Message: fmt.Sprintf("bulkhead for %s is full: %d calls in flight, none ended within %v", name, limit, ic.cfg.maxWait)},
	}
	if ic.cfg.perMethod {
		e := &entry{methods: map[string]*compartment{method: c}}
		if old, ok := next[target]; ok {
			for k, v := range old.methods {
				e.methods[k] = v
			}
		}
		next[target] = e
	} else {
		next[target] = &entry{c: c}
	}
	ic.count++
	ic.reg.Store(&next)
	return c
}

// evict drops one idle compartment from targets.
func evict(targets map[string]*entry) bool {
	for t, e := range targets {
		if e.c != nil {
			if idle(e.c) {
				delete(targets, t)
				return true
			}
			continue
		}
		for m, c := range e.methods {
			if idle(c) {
				methods := make(map[string]*compartment, len(e.methods))
				for k, v := range e.methods {
					if k != m {
						methods[k] = v
					}
				}
				targets[t] = &entry{methods: methods}
				return true
			}
		}
	}
	return false
}

// InFlight returns the number of calls in flight and the limit for target
// (and method, with PerMethod), for metrics; false if no call was made yet.
func (ic *Interceptor) InFlight(target, method string) (inFlight, limit int, ok bool) {
	c := ic.lookup(target, method)
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
	for _, e := range *ic.reg.Load() {
		if e.c != nil {
			out = append(out, Usage{e.c.target, e.c.method, int(e.c.n.Load()), int(e.c.limit)})
		}
		for _, c := range e.methods {
			out = append(out, Usage{c.target, c.method, int(c.n.Load()), int(c.limit)})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Target != out[j].Target {
			return out[i].Target < out[j].Target
		}
		return out[i].Method < out[j].Method
	})
	return out
}

// acquire takes a slot, waiting up to MaxWait. It returns nil when the
// call is not limited (the registry is full) and a non-nil error when the
// call must fail without being sent.
func (ic *Interceptor) acquire(ctx context.Context, target, method string) (*compartment, error) {
	c := ic.get(target, method)
	if c == nil {
		return nil, nil
	}
	if c.tryAcquire() {
		return c, nil
	}
	rej := c.full
	var waited time.Duration
	if d := ic.cfg.maxWait; d > 0 {
		start := ic.cfg.clock.Now()
		ok, err := c.wait(ctx, ic.cfg.clock, d)
		if err != nil {
			return nil, status.FromContextError(err).Err()
		}
		if ok {
			return c, nil
		}
		rej, waited = c.waitedOut, ic.cfg.clock.Now().Sub(start)
	}
	if o := ic.cfg.observer; o != nil {
		o.Observe(ctx, observe.Event{Kind: observe.BulkheadRejected, Method: method, Target: target,
			Duration: waited, Value: float64(c.limit), Err: rej})
	}
	return nil, rej
}

// UnaryClientInterceptor returns the unary client interceptor.
func (ic *Interceptor) UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		c, err := ic.acquire(ctx, cc.Target(), method)
		if err != nil {
			return err
		}
		if c == nil {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		defer c.release()
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// StreamClientInterceptor returns the stream client interceptor. A stream
// holds its slot until it ends or its context is done.
func (ic *Interceptor) StreamClientInterceptor() grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		c, err := ic.acquire(ctx, cc.Target(), method)
		if err != nil {
			return nil, err
		}
		if c == nil {
			return streamer(ctx, desc, cc, method, opts...)
		}
		cs, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			c.release()
			return nil, err
		}
		s := &stream{ClientStream: cs, c: c, serverStreams: desc.ServerStreams}
		s.stop = context.AfterFunc(ctx, s.end)
		return s, nil
	}
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
