package chaos

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

const sideServer = "server"

// UnaryServerInterceptor injects the faults of the current Config into
// unary calls. Put it first in the server's chain.
func (inj *Injector) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		st, r := inj.rule(info.FullMethod)
		if r == nil {
			return h(ctx, req)
		}
		d := inj.decide(st, r)
		if err := inj.before(ctx, sideServer, info.FullMethod, d, serverTrailer(ctx)); err != nil {
			return nil, err
		}
		resp, err := h(ctx, req)
		if err == nil && d.lose {
			inj.lostResponse(ctx, sideServer, info.FullMethod, serverTrailer(ctx))
			return nil, errLost
		}
		return resp, err
	}
}

// StreamServerInterceptor injects the faults of the current Config into
// streaming calls. A lost response drops every message the handler sends
// and ends the call with UNAVAILABLE. Put it first in the server's chain.
func (inj *Injector) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		st, r := inj.rule(info.FullMethod)
		if r == nil {
			return h(srv, ss)
		}
		ctx := ss.Context()
		d := inj.decide(st, r)
		if err := inj.before(ctx, sideServer, info.FullMethod, d, ss.SetTrailer); err != nil {
			return err
		}
		if !d.lose {
			return h(srv, ss)
		}
		if err := h(srv, &losingStream{ServerStream: ss}); err != nil {
			return err
		}
		inj.lostResponse(ctx, sideServer, info.FullMethod, ss.SetTrailer)
		return errLost
	}
}

// serverTrailer returns a function that sets the trailer of the unary
// call in ctx.
func serverTrailer(ctx context.Context) func(metadata.MD) {
	return func(md metadata.MD) { _ = grpc.SetTrailer(ctx, md) }
}

// losingStream drops what the handler sends, as a network would.
type losingStream struct{ grpc.ServerStream }

func (s *losingStream) SendMsg(any) error            { return nil }
func (s *losingStream) SendHeader(metadata.MD) error { return nil }
