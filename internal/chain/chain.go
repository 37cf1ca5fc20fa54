package chain

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/failsoft/failsoft/interceptors/policy"
)

// Unary is a layer of a folded unary chain. It calls next.Invoke to go on.
type Unary interface {
	Unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, next UnaryNext, opts ...grpc.CallOption) error
}

// Stream is a layer of a folded stream chain. It calls next.NewStream to go
// on.
type Stream interface {
	Stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, next StreamNext, opts ...grpc.CallOption) (grpc.ClientStream, error)
}

// State is what a call carries from layer to layer, by value. Each field
// has one writer; the package documentation lists them.
type State struct {
	// Resolver and Policy are the call method's policy and the resolver
	// it came from. Only Resolve writes them, the first time a layer asks:
	// later layers with the same resolver reuse the policy.
	Resolver *policy.Resolver
	Policy   *policy.Policy
	// Deadline, when not zero, is the call's deadline. Only the deadline
	// layer writes it. For a unary call the deadline layer does not put it
	// on the context itself: the retry layer sets it on each attempt's
	// context together with the attempt's own timeout (one context, not
	// two), and the chain's end sets it on the context before grpc-go's
	// invoker when no layer did. Layers in between read it with DeadlineOf.
	Deadline time.Time
	// MayRetry is written by the retry layer only, on each attempt: true
	// when a failure of this attempt with one of the policy's retryable
	// codes would be retried (attempts remain, the budget would allow one
	// now, the deadline leaves room for a backoff). Layers that judge a
	// target by logical calls rather than attempts (the breaker's trip
	// rules) leave such a failure uncounted: the retry absorbs it, and if
	// the retry fails too, the last attempt is counted.
	MayRetry bool
}

// Resolve returns the policy of method from r, which is not nil, reusing
// the one an outer layer resolved with the same resolver.
func (s *State) Resolve(r *policy.Resolver, method string) (*policy.Policy, error) {
	if s.Resolver == r {
		return s.Policy, nil
	}
	return s.resolve(r, method)
}

// resolve is Resolve for the first layer that asks, kept apart so that
// the others' question compiles into their own code.
func (s *State) resolve(r *policy.Resolver, method string) (*policy.Policy, error) {
	p, err := r.Resolve(method)
	if err == nil {
		s.Resolver, s.Policy = r, p
	}
	return p, err
}

// DeadlineOf returns the call's deadline: the earlier of ctx's and
// s.Deadline.
func (s *State) DeadlineOf(ctx context.Context) (time.Time, bool) {
	d, ok := ctx.Deadline()
	if !s.Deadline.IsZero() && (!ok || s.Deadline.Before(d)) {
		return s.Deadline, true
	}
	return d, ok
}

// ApplyDeadline returns ctx with s.Deadline set on it, unless ctx already
// ends no later. The cancel function is never nil.
func (s *State) ApplyDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); s.Deadline.IsZero() || (ok && !s.Deadline.Before(d)) {
		return ctx, func() {}
	}
	return context.WithDeadline(ctx, s.Deadline)
}

// needsDeadline reports whether ctx does not yet end by s.Deadline.
func (s *State) needsDeadline(ctx context.Context) bool {
	if s.Deadline.IsZero() {
		return false
	}
	d, ok := ctx.Deadline()
	return !ok || s.Deadline.Before(d)
}

// Unaries is a fixed list of unary layers, outermost first, and an
// optional innermost interceptor.
type Unaries struct {
	layers    []Unary
	innermost grpc.UnaryClientInterceptor // nil: none
}

// NewUnaries returns the list of layers.
func NewUnaries(layers ...Unary) *Unaries { return &Unaries{layers: layers} }

// Inside returns the layers of u run outside i, a layer that reads no
// State and must be innermost, as a plain interceptor around grpc-go's
// invoker: it then costs no hop, which copies State.
func (u *Unaries) Inside(i grpc.UnaryClientInterceptor) *Unaries {
	return &Unaries{layers: u.layers, innermost: i}
}

// Start returns the start of a call through the layers, ending in final.
func (u *Unaries) Start(final grpc.UnaryInvoker) UnaryNext {
	return UnaryNext{layers: u, final: final}
}

// UnaryNext is what follows a layer in a unary chain. It is passed by
// value through every layer, so it is kept small.
type UnaryNext struct {
	layers *Unaries // nil: only final follows
	i      int      // the next layer's index
	final  grpc.UnaryInvoker
	State
}

// finalUnary is what follows a layer used alone as a gRPC interceptor:
// grpc-go's invoker.
func finalUnary(final grpc.UnaryInvoker) UnaryNext {
	return UnaryNext{final: final}
}

// Invoke runs the rest of the chain.
func (n UnaryNext) Invoke(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
	if n.layers != nil && n.i < len(n.layers.layers) {
		l := n.layers.layers[n.i]
		n.i++
		return l.Unary(ctx, method, req, reply, cc, n, opts...)
	}
	if n.needsDeadline(ctx) {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, n.Deadline)
		defer cancel()
	}
	if n.layers != nil && n.layers.innermost != nil {
		return n.layers.innermost(ctx, method, req, reply, cc, n.final, opts...)
	}
	return n.final(ctx, method, req, reply, cc, opts...)
}

// Streams is a fixed list of stream layers, outermost first.
type Streams struct{ layers []Stream }

// NewStreams returns the list of layers.
func NewStreams(layers ...Stream) *Streams { return &Streams{layers: layers} }

// Start returns the start of a stream through the layers, ending in final.
func (s *Streams) Start(final grpc.Streamer) StreamNext {
	return StreamNext{layers: s, final: final}
}

// StreamNext is what follows a layer in a stream chain. A stream's
// deadline is always on its context, which must live as long as the
// stream: the deadline layer puts it there.
type StreamNext struct {
	layers *Streams // nil: only final follows
	i      int
	final  grpc.Streamer
	State
}

// finalStream is what follows a layer used alone as a gRPC interceptor:
// grpc-go's streamer.
func finalStream(final grpc.Streamer) StreamNext {
	return StreamNext{final: final}
}

// NewStream runs the rest of the chain.
func (n StreamNext) NewStream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	if n.layers != nil && n.i < len(n.layers.layers) {
		l := n.layers.layers[n.i]
		n.i++
		return l.Stream(ctx, desc, cc, method, n, opts...)
	}
	return n.final(ctx, desc, cc, method, opts...)
}

// suiteMarker is a call option that a suite adds to every call it passes
// on, so that a second suite further in on the same connection sees it
// and refuses the call. It is not a default call option: grpc-go copies
// the default options into a new slice for every call that has options
// of its own, and the suite's layers always add one (the trailer that
// carries server pushback). Scanning the options costs no allocation,
// unlike a context value.
type suiteMarker struct{ grpc.EmptyCallOption }

// The marked options of the two most common calls, shared by every such
// call so that marking them costs nothing: one without options, and one
// from generated client code, which passes grpc.StaticMethod alone. Both
// are full, so that a layer that adds an option copies them first.
var (
	markerOnly         = []grpc.CallOption{suiteMarker{}}
	staticMethodMarked = []grpc.CallOption{grpc.StaticMethod(), suiteMarker{}}
)

// Mark returns a call's options with the suite's marker added, or false
// if they already carry one.
func Mark(opts []grpc.CallOption) ([]grpc.CallOption, bool) {
	switch len(opts) {
	case 0:
		return markerOnly, true
	case 1:
		if _, ok := opts[0].(grpc.StaticMethodCallOption); ok {
			return staticMethodMarked, true
		}
	}
	for _, o := range opts {
		if _, ok := o.(suiteMarker); ok {
			return nil, false
		}
	}
	return append(opts[:len(opts):len(opts)], suiteMarker{}), true
}

// UnaryInterceptor returns a unary layer as a gRPC interceptor.
func UnaryInterceptor(u Unary) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return u.Unary(ctx, method, req, reply, cc, finalUnary(invoker), opts...)
	}
}

// StreamInterceptor returns a stream layer as a gRPC interceptor.
func StreamInterceptor(s Stream) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		return s.Stream(ctx, desc, cc, method, finalStream(streamer), opts...)
	}
}

// Kind names a layer for Register and Lookup.
type Kind string

// The layers of the suite.
const (
	Deadline         Kind = "deadline"
	Idempotency      Kind = "idempotency"
	Fallback         Kind = "fallback"
	Retry            Kind = "retry"
	Pushback         Kind = "pushback"
	Throttle         Kind = "throttle"
	Breaker          Kind = "breaker"
	Bulkhead         Kind = "bulkhead"
	TelemetryCall    Kind = "telemetry call"
	TelemetryAttempt Kind = "telemetry attempt"
)

// Layer is a layer's unary and stream halves. A layer with nothing to do
// (a fallback layer without fallbacks) is the zero Layer, left out of the
// chain.
type Layer struct {
	Unary  Unary
	Stream Stream
	// UnaryInnermost, set in place of Unary, is a unary half that reads
	// no State and must run innermost: see Unaries.Inside.
	UnaryInnermost grpc.UnaryClientInterceptor
}

// Both returns the Layer whose two halves are l.
func Both[L interface {
	Unary
	Stream
}](l L) Layer {
	return Layer{Unary: l, Stream: l}
}

// Empty reports whether l is the zero Layer.
func (l Layer) Empty() bool { return l.Unary == nil && l.UnaryInnermost == nil && l.Stream == nil }

var (
	mu       sync.RWMutex
	registry = map[Kind]func(any) (Layer, bool){}
)

// Register makes Lookup(kind, v) return of(v) for a v of type T. Layer
// packages call it from init.
func Register[T any](kind Kind, of func(T) Layer) {
	mu.Lock()
	defer mu.Unlock()
	registry[kind] = func(v any) (Layer, bool) {
		t, ok := v.(T)
		if !ok {
			return Layer{}, false
		}
		return of(t), true
	}
}

// Lookup returns the layer of kind that v, a value built by the layer's
// package, implements.
func Lookup(kind Kind, v any) (Layer, error) {
	mu.RLock()
	of := registry[kind]
	mu.RUnlock()
	if of == nil {
		return Layer{}, fmt.Errorf("chain: no layer of kind %q registered", kind)
	}
	l, ok := of(v)
	hasUnary := l.Unary != nil || l.UnaryInnermost != nil
	if !ok || hasUnary != (l.Stream != nil) || (l.Unary != nil && l.UnaryInnermost != nil) {
		return Layer{}, fmt.Errorf("chain: %T is not a layer of kind %q", v, kind)
	}
	return l, nil
}
