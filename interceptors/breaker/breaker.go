package breaker

import (
	"context"
	"errors"
	"io"
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

// Interceptor keeps a registry of circuit breakers, one per target (or
// per target and method), and guards calls with them.
type Interceptor struct {
	cfg     config
	base    time.Time
	system  bool
	clocked bool // the fast path reads the clock (time window, slow calls)

	// The registry: targets, and per target either one breaker or, with
	// PerMethod, one per method. Maps are copied on write, so lookups are
	// lock-free.
	reg   atomic.Pointer[map[string]*targetEntry]
	regMu sync.Mutex
	count int // breakers in the registry, under regMu
}

type targetEntry struct {
	b       *breaker
	methods atomic.Pointer[map[string]*breaker]
}

// New returns an Interceptor. With no trip rule given, a breaker opens
// when half of the last 100 calls (at least 20) failed.
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
	if len(errs) == 0 {
		if err := ic.cfg.finish(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	ic.base = ic.cfg.clock.Now()
	ic.system = ic.cfg.clock == clock.System()
	ic.clocked = ic.cfg.timeWindow > 0 || ic.cfg.slowThreshold > 0
	empty := map[string]*targetEntry{}
	ic.reg.Store(&empty)
	return ic, nil
}

// now returns the clock's offset from the interceptor's creation. The
// system clock is read through the monotonic clock only, which is cheaper.
func (ic *Interceptor) now() int64 {
	if ic.system {
		return int64(time.Since(ic.base))
	}
	return int64(ic.cfg.clock.Now().Sub(ic.base))
}

func (ic *Interceptor) at(off int64) time.Time { return ic.base.Add(time.Duration(off)) }

// get returns the breaker for a call, creating it on first use, or nil
// when the registry is full of breakers that are not closed.
func (ic *Interceptor) get(target, method string) *breaker {
	if e, ok := (*ic.reg.Load())[target]; ok {
		if !ic.cfg.perMethod {
			return e.b
		}
		if b, ok := (*e.methods.Load())[method]; ok {
			return b
		}
	}
	return ic.create(target, method)
}

func (ic *Interceptor) lookup(target, method string) *breaker {
	e, ok := (*ic.reg.Load())[target]
	if !ok {
		return nil
	}
	if !ic.cfg.perMethod {
		return e.b
	}
	return (*e.methods.Load())[method]
}

func (ic *Interceptor) create(target, method string) *breaker {
	ic.regMu.Lock()
	defer ic.regMu.Unlock()
	if b := ic.lookup(target, method); b != nil {
		return b
	}
	if ic.count >= ic.cfg.maxBreakers && !ic.evict() {
		return nil
	}
	if !ic.cfg.perMethod {
		method = ""
	}
	b := newBreaker(ic, target, method)
	ic.count++
	targets := *ic.reg.Load()
	e, ok := targets[target]
	if !ok {
		e = &targetEntry{}
		empty := map[string]*breaker{}
		e.methods.Store(&empty)
		next := make(map[string]*targetEntry, len(targets)+1)
		for k, v := range targets {
			next[k] = v
		}
		next[target] = e
		defer ic.reg.Store(&next) // publish once e is complete
	}
	if !ic.cfg.perMethod {
		e.b = b
		return b
	}
	old := *e.methods.Load()
	next := make(map[string]*breaker, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[method] = b
	e.methods.Store(&next)
	return b
}

// evict drops one closed breaker. Called with regMu held.
func (ic *Interceptor) evict() bool {
	targets := *ic.reg.Load()
	for t, e := range targets {
		if !ic.cfg.perMethod {
			if State(e.b.sg.Load()&stateMask) != Closed {
				continue
			}
			next := make(map[string]*targetEntry, len(targets))
			for k, v := range targets {
				if k != t {
					next[k] = v
				}
			}
			ic.reg.Store(&next)
			ic.count--
			return true
		}
		methods := *e.methods.Load()
		for m, b := range methods {
			if State(b.sg.Load()&stateMask) != Closed {
				continue
			}
			next := make(map[string]*breaker, len(methods))
			for k, v := range methods {
				if k != m {
					next[k] = v
				}
			}
			e.methods.Store(&next)
			ic.count--
			return true
		}
	}
	return false
}

// State returns the state of the breaker for target (and method, when
// breakers are kept per method), and false if it does not exist yet.
func (ic *Interceptor) State(target, method string) (State, bool) {
	b := ic.lookup(target, method)
	if b == nil {
		return Closed, false
	}
	return State(b.sg.Load() & stateMask), true
}

// Snapshots returns the state and counts of every breaker, sorted by
// target and method, for metrics. It does not lock the breakers.
func (ic *Interceptor) Snapshots() []Snapshot {
	var out []Snapshot
	for _, e := range *ic.reg.Load() {
		if e.b != nil {
			out = append(out, e.b.snapshot())
		}
		for _, b := range *e.methods.Load() {
			out = append(out, b.snapshot())
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

// guard resolves the method's policy and admits the call. It returns a nil
// breaker when the call is not guarded, and a non-nil error when the call
// must fail without being sent.
func (ic *Interceptor) guard(ctx context.Context, target, method string) (*breaker, uint64, int64, error) {
	p, err := ic.cfg.resolver.Resolve(method)
	if err != nil {
		return nil, 0, 0, status.Error(codes.FailedPrecondition, err.Error())
	}
	if p.SkipBreaker {
		return nil, 0, 0, nil
	}
	b := ic.get(target, method)
	if b == nil {
		return nil, 0, 0, nil
	}
	tok, rej := b.allow(ctx, method)
	if rej != nil {
		if o := ic.cfg.observer; o != nil {
			var counts observe.Counts
			if info := b.open.Load(); info != nil {
				counts = info.counts
			}
			o.Observe(ctx, observe.Event{Kind: observe.BreakerRejected, Method: method, Target: target,
				Duration: rej.RetryAfter, Counts: counts, Err: rej})
		}
		return nil, 0, 0, rej
	}
	var start int64
	if ic.cfg.slowThreshold > 0 {
		start = ic.now()
	}
	return b, tok, start, nil
}

// UnaryClientInterceptor returns the unary client interceptor.
func (ic *Interceptor) UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		b, tok, start, err := ic.guard(ctx, cc.Target(), method)
		if err != nil {
			return err
		}
		if b == nil {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		err = invoker(ctx, method, req, reply, cc, opts...)
		b.done(ctx, method, tok, ic.cfg.classifier.Classify(err), start)
		return err
	}
}

// StreamClientInterceptor returns the stream client interceptor. A stream
// that fails to open counts as a call; one that opens counts with its
// final status, seen when RecvMsg returns an error (io.EOF is success).
func (ic *Interceptor) StreamClientInterceptor() grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		b, tok, start, err := ic.guard(ctx, cc.Target(), method)
		if err != nil {
			return nil, err
		}
		if b == nil {
			return streamer(ctx, desc, cc, method, opts...)
		}
		cs, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			b.done(ctx, method, tok, ic.cfg.classifier.Classify(err), start)
			return nil, err
		}
		s := &stream{ClientStream: cs, b: b, ctx: ctx, method: method, tok: tok, start: start, serverStreams: desc.ServerStreams}
		if State(tok&stateMask) == HalfOpen {
			// A probe must give its slot back even if the caller abandons
			// the stream by cancelling its context.
			s.stop = context.AfterFunc(ctx, func() { s.finish(outcome.Ignored) })
		}
		return s, nil
	}
}

// stream reports the final status of a guarded stream.
type stream struct {
	grpc.ClientStream
	b             *breaker
	ctx           context.Context
	method        string
	tok           uint64
	start         int64
	serverStreams bool
	stop          func() bool
	ended         atomic.Bool
}

func (s *stream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	switch {
	case err == io.EOF:
		s.end(outcome.Success)
	case err != nil:
		s.end(s.b.ic.cfg.classifier.Classify(err))
	case !s.serverStreams:
		// A single response: the call is complete and succeeded.
		s.end(outcome.Success)
	}
	return err
}

func (s *stream) end(class outcome.Class) {
	if s.stop != nil {
		s.stop()
	}
	s.finish(class)
}

func (s *stream) finish(class outcome.Class) {
	if s.ended.Swap(true) {
		return
	}
	s.b.done(s.ctx, s.method, s.tok, class, s.start)
}
