package chaos

import (
	"context"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

const sideClient = "client"

// UnaryClientInterceptor injects the faults of the current Config into
// unary calls: errors, outages and pushback fail the call before it is
// sent, and a lost response turns a call that succeeded on the server into
// UNAVAILABLE. Put it last in the client's chain, so that every attempt
// meets its own faults.
func (inj *Injector) UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		st, r := inj.rule(method)
		if r == nil {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		d := inj.decide(st, r)
		if err := inj.before(ctx, sideClient, method, d, trailerSetter(opts)); err != nil {
			return err
		}
		if err := invoker(ctx, method, req, reply, cc, opts...); err != nil || !d.lose {
			return err
		}
		inj.lostResponse(ctx, sideClient, method, trailerSetter(opts))
		return errLost
	}
}

// StreamClientInterceptor injects the faults of the current Config into
// streaming calls: errors, outages and pushback fail the call before the
// stream opens, and a lost response ends a stream that succeeded with
// UNAVAILABLE instead. Put it last in the client's chain.
func (inj *Injector) StreamClientInterceptor() grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		st, r := inj.rule(method)
		if r == nil {
			return streamer(ctx, desc, cc, method, opts...)
		}
		d := inj.decide(st, r)
		if err := inj.before(ctx, sideClient, method, d, trailerSetter(opts)); err != nil {
			return nil, err
		}
		cs, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil || !d.lose {
			return cs, err
		}
		return &losingClientStream{ClientStream: cs, inj: inj, method: method, serverStreams: desc.ServerStreams}, nil
	}
}

// trailerSetter returns a function that hands md to the caller's
// grpc.Trailer options, as a server's trailer would reach them.
func trailerSetter(opts []grpc.CallOption) func(metadata.MD) {
	return func(md metadata.MD) {
		for _, o := range opts {
			if t, ok := o.(grpc.TrailerCallOption); ok && t.TrailerAddr != nil {
				*t.TrailerAddr = md
			}
		}
	}
}

// losingClientStream reports UNAVAILABLE where the stream would have
// ended well: at the end of a server stream, or at the single response of
// a client stream.
type losingClientStream struct {
	grpc.ClientStream
	inj           *Injector
	method        string
	serverStreams bool
	lost          bool
}

func (s *losingClientStream) RecvMsg(m any) error {
	if s.lost {
		return errLost
	}
	err := s.ClientStream.RecvMsg(m)
	if err == io.EOF || (err == nil && !s.serverStreams) {
		s.lost = true
		s.inj.lostResponse(s.Context(), sideClient, s.method, func(metadata.MD) {})
		return errLost
	}
	return err
}
