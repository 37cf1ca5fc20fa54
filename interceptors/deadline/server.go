package deadline

import (
	"context"
	"time"

	"google.golang.org/grpc"
)

// UnaryServerInterceptor is for services that call other services. When
// the incoming call has a deadline, the handler's context gets that
// deadline minus the safety margin (see WithSafetyMargin), so the handler,
// and every call it makes with its context, gives up early enough to send
// its own answer before its caller's deadline. Calls without a deadline are
// left alone. A call that arrives with less than the margin left reaches
// the handler with its context already done: the client interceptors fail
// its outgoing calls fast, and the handler should answer at once. The
// shortened context is released when the handler returns.
func (i *Interceptor) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return i.unaryServer
}

func (i *Interceptor) unaryServer(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	d, ok := i.shortened(ctx)
	if !ok {
		return handler(ctx, req)
	}
	ctx, cancel := context.WithDeadline(ctx, d)
	defer cancel()
	return handler(ctx, req)
}

// StreamServerInterceptor does for streams what UnaryServerInterceptor does
// for unary calls: the stream's Context, as the handler sees it, expires
// the safety margin before the caller's deadline.
func (i *Interceptor) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return i.streamServer
}

func (i *Interceptor) streamServer(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	d, ok := i.shortened(ss.Context())
	if !ok {
		return handler(srv, ss)
	}
	ctx, cancel := context.WithDeadline(ss.Context(), d)
	defer cancel()
	return handler(srv, &serverStream{ServerStream: ss, ctx: ctx})
}

// shortened returns the incoming deadline minus the margin.
func (i *Interceptor) shortened(ctx context.Context) (deadline time.Time, ok bool) {
	if i.cfg.margin <= 0 {
		return deadline, false
	}
	d, ok := ctx.Deadline()
	if !ok {
		return deadline, false
	}
	return d.Add(-i.cfg.margin), true
}

type serverStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *serverStream) Context() context.Context { return s.ctx }
