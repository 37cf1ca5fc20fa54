package telemetry

import (
	"context"
	"strconv"

	"github.com/failsoft/failsoft/interceptors/idempotency"
	"github.com/failsoft/failsoft/interceptors/policy"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
)

// UnaryServerInterceptor returns the server interceptor: one span per call,
// a child of the client's attempt span when the call carries trace context.
// Events reported by server-side layers (a replayed response, a key
// conflict) land on it. Chain it first, so those layers run inside it.
func (i *Interceptor) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		tr := i.tracer()
		if tr == nil {
			return handler(ctx, req)
		}
		ctx, span, own := i.startServer(ctx, tr, info.FullMethod)
		resp, err := handler(ctx, req)
		i.endServer(span, err, own)
		return resp, err
	}
}

// StreamServerInterceptor is UnaryServerInterceptor for streams.
func (i *Interceptor) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		tr := i.tracer()
		if tr == nil {
			return handler(srv, ss)
		}
		ctx, span, own := i.startServer(ss.Context(), tr, info.FullMethod)
		err := handler(srv, serverStream{ss, ctx})
		i.endServer(span, err, own)
		return err
	}
}

// startServer returns the call's server span and whether this interceptor
// made it. A stats handler that traces calls (otelgrpc.NewServerHandler)
// runs before any interceptor and leaves its recording server span on the
// context: failsoft then adds its attributes and events to that span
// instead of making a second server span beside it.
func (i *Interceptor) startServer(ctx context.Context, tr trace.Tracer, method string) (context.Context, trace.Span, bool) {
	name := rpcName(method)
	attrs := make([]attribute.KeyValue, 0, 4)
	attrs = append(attrs, RPCSystemName.String("grpc"), RPCMethod.String(name))
	if v := metadata.ValueFromIncomingContext(ctx, policy.KeyMetadata); len(v) > 0 {
		if i.cfg.rawKeys {
			attrs = append(attrs, Key.String(v[0]))
		} else {
			attrs = append(attrs, KeyHash.String(idempotency.KeyHash(v[0])))
		}
	}
	if v := metadata.ValueFromIncomingContext(ctx, "grpc-previous-rpc-attempts"); len(v) > 0 {
		if n, err := strconv.Atoi(v[0]); err == nil {
			attrs = append(attrs, PreviousAttempts.Int(n))
		}
	}
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(attrs...)
		return ctx, span, false
	}
	ctx, span := tr.Start(i.extract(ctx), name, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
	return ctx, span, true
}

// endServer ends a span the interceptor made; on a stats handler's span it
// only adds failsoft's outcome, leaving status and end to its owner.
func (i *Interceptor) endServer(span trace.Span, err error, own bool) {
	if own {
		endSpan(span, err, false)
		return
	}
	span.SetAttributes(outcomeAttrs(err)...)
}

// serverError reports whether code is an error on the server side, per the
// gRPC semantic conventions: the codes that say the server failed, not the
// caller.
func serverError(code codes.Code) bool {
	switch code {
	case codes.Unknown, codes.DeadlineExceeded, codes.Unimplemented, codes.Internal,
		codes.Unavailable, codes.DataLoss:
		return true
	}
	return false
}

type serverStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s serverStream) Context() context.Context { return s.ctx }
