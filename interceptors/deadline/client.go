package deadline

import (
	"context"

	"google.golang.org/grpc"

	"github.com/failsoft/failsoft/internal/chain"
)

// UnaryClientInterceptor gives every unary call its deadline (see the
// package documentation) and fails calls fast whose remaining budget is
// below the method's minimum, without sending them.
func (i *Interceptor) UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return chain.UnaryInterceptor(&layer{i: i})
}

// layer is the Interceptor as a layer of a folded chain. It writes a
// unary call's deadline into chain.State.Deadline and leaves it off the
// context: the retry layer sets it on each attempt's context together with
// the attempt's own timeout (one context per attempt, not two), and the
// chain's end sets it when no retry layer runs.
type layer struct{ i *Interceptor }

func init() {
	chain.Register(chain.Deadline, func(i *Interceptor) chain.Layer { return chain.Both(&layer{i: i}) })
}

func (l *layer) Unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, next chain.UnaryNext, opts ...grpc.CallOption) error {
	var pl plan
	if err := l.i.plan(ctx, method, cc, &next.State, &pl); err != nil {
		return err
	}
	var fl *floor
	if pl.floored {
		fl = l.i.floors.Get(method)
		if d := fl.at(pl.now.UnixNano()); pl.remaining < d {
			return l.i.belowFloor(ctx, method, cc, &pl, d)
		}
	}
	if pl.source != FromCaller {
		next.Deadline = pl.deadline
	}
	err := next.Invoke(ctx, method, req, reply, cc, opts...)
	if err == nil && fl != nil && fl.times(pl.now.UnixNano()) {
		now := l.i.cfg.Clock.Now()
		fl.success(now.UnixNano(), now.Sub(pl.now))
	}
	return err
}

// StreamClientInterceptor gives every stream its deadline, which covers the
// stream's whole life, and fails streams fast whose remaining budget is
// below the method's minimum, without opening them.
//
// When it adds a deadline, the context holding it is released when the
// stream ends: when RecvMsg returns an error (io.EOF included), when RecvMsg
// returns the one response of a client-streaming call, or when the
// stream's context is done (the deadline passed, the caller cancelled, the
// ClientConn closed). It is never released when the interceptor returns,
// and no goroutine is started per stream. As with any gRPC stream, a caller
// that abandons a stream without reading it to the end or cancelling its
// context holds it until the deadline.
func (i *Interceptor) StreamClientInterceptor() grpc.StreamClientInterceptor {
	return chain.StreamInterceptor(&layer{i: i})
}

func (l *layer) Stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, next chain.StreamNext, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	var pl plan
	if err := l.i.plan(ctx, method, cc, &next.State, &pl); err != nil {
		return nil, err
	}
	if pl.source == FromCaller {
		return next.NewStream(ctx, desc, cc, method, opts...)
	}
	next.Deadline = pl.deadline
	ctx, cancel := context.WithDeadline(ctx, pl.deadline)
	cs, err := next.NewStream(ctx, desc, cc, method, opts...)
	if err != nil {
		cancel()
		return nil, err
	}
	s := &clientStream{ClientStream: cs, cancel: cancel, oneResponse: !desc.ServerStreams}
	// grpc-go cancels a stream's context when the stream finishes for any
	// reason; releasing then needs no goroutine of ours.
	s.stop = context.AfterFunc(cs.Context(), cancel)
	return s, nil
}

// clientStream releases the stream's deadline context when the stream ends.
// Everything else is the wrapped stream's, unchanged.
type clientStream struct {
	grpc.ClientStream
	cancel      context.CancelFunc
	stop        func() bool
	oneResponse bool // the server sends one message: the stream ends with it
}

func (s *clientStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil || s.oneResponse {
		// Stop the AfterFunc first so that it does not start a goroutine
		// only to call cancel a second time.
		s.stop()
		s.cancel()
	}
	return err
}
