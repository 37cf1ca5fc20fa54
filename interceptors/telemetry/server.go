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
		ctx, span := i.startServer(ctx, tr, info.FullMethod)
		resp, err := handler(ctx, req)
		endSpan(span, err, false)
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
		ctx, span := i.startServer(ss.Context(), tr, info.FullMethod)
		err := handler(srv, serverStream{ss, ctx})
		endSpan(span, err, false)
		return err
	}
}

func (i *Interceptor) startServer(ctx context.Context, tr trace.Tracer, method string) (context.Context, trace.Span) {
	ctx = i.extract(ctx)
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
	return tr.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
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
