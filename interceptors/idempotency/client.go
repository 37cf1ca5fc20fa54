package idempotency

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/failsoft/failsoft/interceptors/internal/option"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/outcome"
	"github.com/failsoft/failsoft/interceptors/policy"
	"github.com/failsoft/failsoft/internal/chain"
)

// Interceptor is the client side: it gives every logical call to a method
// that requires an idempotency key exactly one key, in the request
// metadata entry policy.KeyMetadata.
type Interceptor struct {
	cfg clientConfig
}

// New returns the client interceptor. It must sit outside the retry and
// hedging interceptors in the chain, so that all attempts of one call share
// the key it attaches.
func New(opts ...Option) (*Interceptor, error) {
	cfg := clientConfig{}
	if err := option.Each(opts, func(o Option) error { return o.applyClient(&cfg) }); err != nil {
		return nil, err
	}
	if cfg.Resolver == nil {
		cfg.Resolver = policy.Default()
	}
	return &Interceptor{cfg: cfg}, nil
}

// UnaryClientInterceptor returns the unary client interceptor.
func (i *Interceptor) UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return chain.UnaryInterceptor(layer{i})
}

// layer is the Interceptor as a layer of a folded chain.
type layer struct{ i *Interceptor }

func init() {
	chain.Register(chain.Idempotency, func(i *Interceptor) chain.Layer { return chain.Both(layer{i}) })
}

func (l layer) Unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, next chain.UnaryNext, opts ...grpc.CallOption) error {
	ctx, err := l.i.attach(ctx, method, cc, &next.State)
	if err != nil {
		return err
	}
	return next.Invoke(ctx, method, req, reply, cc, opts...)
}

// StreamClientInterceptor returns the stream client interceptor: a stream
// to a method that requires a key carries it in its request metadata.
func (i *Interceptor) StreamClientInterceptor() grpc.StreamClientInterceptor {
	return chain.StreamInterceptor(layer{i})
}

func (l layer) Stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, next chain.StreamNext, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	ctx, err := l.i.attach(ctx, method, cc, &next.State)
	if err != nil {
		return nil, err
	}
	return next.NewStream(ctx, desc, cc, method, opts...)
}

// attach returns ctx with the call's key in its outgoing metadata when the
// method requires one. The key is, in order: one already in the outgoing
// metadata (set by the application or an outer layer; left as it is, and
// it must agree with a key set by WithKey), the one set with WithKey, or a
// new one.
func (i *Interceptor) attach(ctx context.Context, method string, cc *grpc.ClientConn, st *chain.State) (context.Context, error) {
	p, err := st.Resolve(i.cfg.Resolver, method)
	if err != nil {
		return ctx, err // a *policy.Error: FAILED_PRECONDITION, found by errors.As
	}
	if !p.RequiresKey {
		return ctx, nil
	}
	attached := len(metadata.ValueFromOutgoingContext(ctx, policy.KeyMetadata)) == 0
	ctx, key, err := AttachKey(ctx)
	if err != nil {
		return ctx, reject(cc, fmt.Sprintf("failsoft: idempotency: key of %s: %v", method, err))
	}
	if !attached {
		return ctx, nil
	}
	if o := i.cfg.Observer; observe.Wants(ctx, o, observe.KeyAttached) {
		reason := key
		if !i.cfg.rawKeys {
			reason = KeyHash(key)
		}
		o.Observe(ctx, observe.Event{Kind: observe.KeyAttached, Method: method, Target: target(cc), Reason: reason})
	}
	return ctx, nil
}

// AttachKey returns ctx with exactly one idempotency key in its outgoing
// metadata entry policy.KeyMetadata, and that key: the one already there
// (left as it is; it must agree with a key set by WithKey), the one set
// with WithKey, or a new one (NewKey). An interceptor of the application's
// that must know the key a call carries (to queue the call under it, or log
// it) attaches it so, outside the client interceptor, which then keeps it.
// The error says what is wrong with the keys found; nothing is attached then.
func AttachKey(ctx context.Context) (context.Context, string, error) {
	key, fromCaller := KeyFrom(ctx)
	if vals := metadata.ValueFromOutgoingContext(ctx, policy.KeyMetadata); len(vals) > 0 {
		switch {
		case len(vals) > 1:
			return ctx, "", fmt.Errorf("%d %s entries in the outgoing metadata, want one", len(vals), policy.KeyMetadata)
		case fromCaller && vals[0] != key:
			return ctx, "", fmt.Errorf("%s: the outgoing metadata and WithKey hold different keys", policy.KeyMetadata)
		}
		if err := ValidateKey(vals[0]); err != nil {
			return ctx, "", fmt.Errorf("%s: %w", policy.KeyMetadata, err)
		}
		return ctx, vals[0], nil
	}
	if !fromCaller {
		key = NewKey()
	} else if err := ValidateKey(key); err != nil {
		return ctx, "", err
	}
	return metadata.AppendToOutgoingContext(ctx, policy.KeyMetadata, key), key, nil
}

// reject fails a call locally: nothing is sent.
func reject(cc *grpc.ClientConn, msg string) error {
	return &outcome.Rejection{Layer: "idempotency", Target: target(cc), Code: codes.InvalidArgument, Message: msg}
}

func target(cc *grpc.ClientConn) string {
	if cc == nil {
		return ""
	}
	return cc.Target()
}
