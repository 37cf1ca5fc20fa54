package fallback

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/failsoft/failsoft/interceptors/internal/option"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/policy"
	"github.com/failsoft/failsoft/internal/chain"
)

// Level says which level of the chain answered a call.
type Level uint8

const (
	// None: the call was not answered by a fallback.
	None Level = iota
	// Function: the user's function answered.
	Function
	// Cache: the last good response for the same request answered.
	Cache
	// Static: the static default answered.
	Static
)

var levelNames = [...]string{None: "none", Function: "function", Cache: "cache", Static: "static"}

func (l Level) String() string {
	if int(l) < len(levelNames) {
		return levelNames[l]
	}
	return fmt.Sprintf("Level(%d)", uint8(l))
}

// ParseLevel parses a level name as String writes it.
func ParseLevel(s string) (Level, bool) {
	for i, n := range levelNames {
		if n == s {
			return Level(i), true
		}
	}
	return None, false
}

// MetadataKey is the response header entry that marks a degraded answer;
// its value is the level's name. It is set through the grpc.Header call
// option the caller passed, if any.
const MetadataKey = "failsoft-fallback"

// FromHeader returns the level recorded in a response header, None when
// the answer came from the server.
func FromHeader(md metadata.MD) Level {
	if v := md.Get(MetadataKey); len(v) > 0 {
		if l, ok := ParseLevel(v[len(v)-1]); ok {
			return l
		}
	}
	return None
}

// Report returns a call option that stores in *l the level that answered
// the call: None when the server did (or the call failed).
func Report(l *Level) grpc.CallOption { return reportOption{l: l} }

type reportOption struct {
	grpc.EmptyCallOption
	l *Level
}

// Interceptor answers failed calls from per-method fallback chains.
type Interceptor struct {
	cfg   config
	cache *cache
}

// New returns an Interceptor. Methods named in WithCache must have
// NO_SIDE_EFFECTS.
func New(opts ...Option) (*Interceptor, error) {
	ic := &Interceptor{cfg: defaultConfig()}
	errs := []error{option.Apply(&ic.cfg, opts...)}
	caching := false
	for m, ch := range ic.cfg.chains {
		if !ch.cache {
			continue
		}
		caching = true
		p, err := ic.cfg.Resolver.Resolve(m)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("fallback.WithCache(%q): %w", m, err))
		case p.Idempotency != policy.NoSideEffects:
			errs = append(errs, fmt.Errorf("fallback.WithCache(%q): the method is %v; only NO_SIDE_EFFECTS methods may be answered from a cache", m, p.Idempotency))
		}
	}
	for _, ch := range ic.cfg.services {
		caching = caching || ch.cache
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if caching {
		ic.cache = newCache(ic.cfg.cacheEntries, ic.cfg.cacheMaxAge)
	}
	return ic, nil
}

// planFor returns the fallback chain of a method, nil if it has none.
func (ic *Interceptor) planFor(method string) *plan {
	if ch, ok := ic.cfg.chains[method]; ok {
		return ch
	}
	if len(ic.cfg.services) > 0 {
		if svc, _, ok := policy.SplitMethod(method); ok {
			return ic.cfg.services[svc]
		}
	}
	return nil
}

// UnaryClientInterceptor returns the unary client interceptor.
func (ic *Interceptor) UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return chain.UnaryInterceptor(layer{ic})
}

// layer is the Interceptor as a layer of a folded chain.
type layer struct{ ic *Interceptor }

func init() {
	chain.Register(chain.Fallback, func(ic *Interceptor) chain.Layer {
		if len(ic.cfg.chains) == 0 && len(ic.cfg.services) == 0 {
			return chain.Layer{} // no fallbacks: every call passes through
		}
		return chain.Both(layer{ic})
	})
}

func (l layer) Unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, next chain.UnaryNext, opts ...grpc.CallOption) error {
	ic := l.ic
	ch := ic.planFor(method)
	if ch == nil {
		return next.Invoke(ctx, method, req, reply, cc, opts...)
	}
	var rep *Level
	for _, o := range opts {
		if r, ok := o.(reportOption); ok && r.l != nil {
			rep = r.l
			*rep = None
		}
	}
	cacheable := false
	if ch.cache {
		p, err := next.Resolve(ic.cfg.Resolver, method)
		if err != nil {
			return err // a *policy.Error: FAILED_PRECONDITION
		}
		cacheable = p.Idempotency == policy.NoSideEffects
	}
	err := next.Invoke(ctx, method, req, reply, cc, opts...)
	if err == nil {
		if cacheable {
			ic.store(method, req, reply)
		}
		return nil
	}
	// The fallbacks run within the call's deadline, which inner layers may
	// have kept off ctx until now.
	ctx, cancel := next.ApplyDeadline(ctx)
	defer cancel()
	if !ic.cfg.when(ctx, err) {
		return err
	}
	level := ic.answer(ctx, ch, cacheable, method, req, reply, err)
	if level == None {
		return err
	}
	if rep != nil {
		*rep = level
	}
	for _, o := range opts {
		if h, ok := o.(grpc.HeaderCallOption); ok && h.HeaderAddr != nil {
			*h.HeaderAddr = metadata.Join(*h.HeaderAddr, metadata.Pairs(MetadataKey, level.String()))
		}
	}
	if o := ic.cfg.Observer; o != nil {
		o.Observe(ctx, observe.Event{Kind: observe.Fallback, Method: method, Target: cc.Target(), Reason: level.String(), Err: err})
	}
	return nil
}

// answer tries the chain's levels in order and returns the one that
// answered.
func (ic *Interceptor) answer(ctx context.Context, ch *plan, cacheable bool, method string, req, reply any, cause error) Level {
	if ch.fn != nil && ch.fn(ctx, method, req, reply, cause) == nil {
		return Function
	}
	out, isProto := reply.(proto.Message)
	if !isProto {
		return None
	}
	if cacheable {
		if key, ok := cacheKey(method, req); ok {
			if b, ok := ic.cache.get(key, ic.cfg.Clock.Now()); ok && proto.Unmarshal(b, out) == nil {
				return Cache
			}
		}
	}
	if ch.static != nil && ch.static.ProtoReflect().Descriptor() == out.ProtoReflect().Descriptor() {
		proto.Reset(out)
		proto.Merge(out, ch.static)
		return Static
	}
	return None
}

func (ic *Interceptor) store(method string, req, reply any) {
	out, ok := reply.(proto.Message)
	if !ok {
		return
	}
	key, ok := cacheKey(method, req)
	if !ok {
		return
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(out)
	if err != nil {
		return
	}
	ic.cache.put(key, b, ic.cfg.Clock.Now())
}

// cacheKey is the method and the deterministically marshalled request.
func cacheKey(method string, req any) (string, bool) {
	m, ok := req.(proto.Message)
	if !ok {
		return "", false
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return "", false
	}
	var sb strings.Builder
	sb.Grow(len(method) + 1 + len(b))
	sb.WriteString(method)
	sb.WriteByte(0)
	sb.Write(b)
	return sb.String(), true
}

// StreamClientInterceptor returns a stream interceptor that passes streams
// through unchanged: fallbacks answer unary calls only. It exists so that
// the package chains like the others.
func (ic *Interceptor) StreamClientInterceptor() grpc.StreamClientInterceptor {
	return chain.StreamInterceptor(layer{ic})
}

func (l layer) Stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, next chain.StreamNext, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return next.NewStream(ctx, desc, cc, method, opts...)
}
