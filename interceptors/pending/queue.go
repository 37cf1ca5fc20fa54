package pending

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/failsoft/failsoft/interceptors/idempotency"
	"github.com/failsoft/failsoft/interceptors/internal/option"
	"github.com/failsoft/failsoft/interceptors/outcome"
)

// Queue turns calls that cannot be sent now into pending entries of a
// Store, and its drainer sends them again. Create it with New.
type Queue struct {
	store   Store
	cfg     config
	methods map[string]methodTypes
	tel     *telemetry
}

// methodTypes are the request and reply types of an opted-in method.
type methodTypes struct {
	req, reply protoreflect.MessageType
}

// New returns a Queue over store. ForMethods is required.
func New(store Store, opts ...Option) (*Queue, error) {
	cfg := defaults()
	if err := option.Apply(&cfg, opts...); err != nil {
		return nil, err
	}
	if store == nil {
		return nil, errors.New("pending.New: nil store")
	}
	if len(cfg.methods) == 0 {
		return nil, errors.New("pending.New: no methods opted in; use ForMethods")
	}
	cfg.finish()
	q := &Queue{store: store, cfg: cfg, methods: map[string]methodTypes{}}
	for _, m := range cfg.methods {
		t, err := lookupMethod(m)
		if err != nil {
			return nil, fmt.Errorf("pending.ForMethods: %w", err)
		}
		q.methods[m] = t
	}
	tel, err := newTelemetry(&q.cfg, store)
	if err != nil {
		return nil, err
	}
	q.tel = tel
	return q, nil
}

// Close unregisters the queue's metrics. It does not close the store.
func (q *Queue) Close() error { return q.tel.close() }

// lookupMethod finds a unary method's message types in the global
// registry.
func lookupMethod(method string) (methodTypes, error) {
	svc, name, _ := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		return methodTypes{}, fmt.Errorf("%s: service %s not registered: %w", method, svc, err)
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return methodTypes{}, fmt.Errorf("%s: %s is not a service", method, svc)
	}
	md := sd.Methods().ByName(protoreflect.Name(name))
	if md == nil {
		return methodTypes{}, fmt.Errorf("%s: no method %s in %s", method, name, svc)
	}
	if md.IsStreamingClient() || md.IsStreamingServer() {
		return methodTypes{}, fmt.Errorf("%s: a streaming method cannot be queued", method)
	}
	req, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
	if err != nil {
		return methodTypes{}, fmt.Errorf("%s: request type: %w", method, err)
	}
	reply, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	if err != nil {
		return methodTypes{}, fmt.Errorf("%s: reply type: %w", method, err)
	}
	return methodTypes{req: req, reply: reply}, nil
}

// redelivery marks the drainer's own calls, which the interceptor passes
// through.
type redelivery struct{}

// UnaryClientInterceptor returns the interceptor that queues calls of the
// opted-in methods that cannot be sent now. Install it before
// failsoft.DialOptions, so that it sees each logical call once, with the
// final outcome of its retries:
//
//	grpc.NewClient(target, append([]grpc.DialOption{
//		grpc.WithChainUnaryInterceptor(q.UnaryClientInterceptor())}, suite...)...)
//
// A call without an idempotency key (idempotency.WithKey or the
// policy.KeyMetadata metadata entry) gets a new one here, so the key the
// server sees is the key the entry is queued under.
func (q *Queue) UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if _, ok := q.methods[method]; !ok || ctx.Value(redelivery{}) != nil {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		ctx, key, err := idempotency.AttachKey(ctx)
		if err != nil {
			return &outcome.Rejection{Layer: "pending", Code: codes.InvalidArgument,
				Message: fmt.Sprintf("failsoft: pending: key of %s: %v", method, err)}
		}
		err = invoker(ctx, method, req, reply, cc, opts...)
		if err == nil || !q.deferrable(ctx, err) {
			return err
		}
		return q.enqueue(ctx, key, method, req, err)
	}
}

// deferrable reports whether a call that failed with err is one that
// cannot be sent now. A call the caller cancelled is not.
func (q *Queue) deferrable(ctx context.Context, err error) bool {
	if errors.Is(ctx.Err(), context.Canceled) {
		return false
	}
	return q.cfg.codes[outcome.Code(err)]
}

// Enqueue queues a call the application could not make, under key, as
// the interceptor queues the calls it cannot send: for calls the
// interceptor does not see (the items of a client stream the server
// records one by one under keys of their own, say) or failures the
// application judges may have committed. method must be opted in with
// ForMethods. It returns a *Deferred error when the call was queued and a
// *NotQueuedError when it was not; cause is kept in both.
func (q *Queue) Enqueue(ctx context.Context, method, key string, req proto.Message, cause error) error {
	if _, ok := q.methods[method]; !ok {
		return &NotQueuedError{Method: method, Cause: cause, Err: fmt.Errorf("%s is not opted in with ForMethods", method)}
	}
	if err := idempotency.ValidateKey(key); err != nil {
		return &NotQueuedError{Method: method, Cause: cause, Err: fmt.Errorf("idempotency key: %w", err)}
	}
	return q.enqueue(ctx, key, method, req, cause)
}

// enqueue queues the call and returns its Deferred error, or a
// NotQueuedError.
func (q *Queue) enqueue(ctx context.Context, key, method string, req any, cause error) error {
	msg, ok := req.(proto.Message)
	if !ok {
		return &NotQueuedError{Method: method, Cause: cause, Err: fmt.Errorf("request is a %T, not a proto.Message", req)}
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		return &NotQueuedError{Method: method, Cause: cause, Err: err}
	}
	now := q.cfg.clock.Now()
	e := Entry{Key: key, Method: method, Request: b, Enqueued: now, NotBefore: now}
	if cause != nil {
		e.LastError = cause.Error()
	}
	if md, ok := metadata.FromOutgoingContext(ctx); ok {
		for _, n := range q.cfg.metadata {
			if v := md.Get(n); len(v) > 0 {
				if e.Metadata == nil {
					e.Metadata = map[string][]string{}
				}
				e.Metadata[n] = v
			}
		}
	}
	tc := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, tc)
	if len(tc) > 0 {
		e.Trace = tc
	}
	// The caller's context may be ending; the entry must be written anyway.
	if err := q.store.Add(context.WithoutCancel(ctx), e); err != nil {
		return &NotQueuedError{Method: method, Cause: cause, Err: err}
	}
	q.tel.enqueued(ctx, method)
	return &Deferred{Key: key, Method: method, Cause: cause}
}
