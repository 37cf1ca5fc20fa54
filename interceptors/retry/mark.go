package retry

import (
	"context"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/failsoft/failsoft/interceptors/outcome"
	"github.com/failsoft/failsoft/internal/chain"
)

// UnaryPushbackInterceptor returns a per-attempt interceptor that marks a
// failed attempt's error with outcome.MarkOverloaded when the server sent
// pushback: a grpc-retry-pushback-ms trailer (PushbackMetadata) with any
// value, even a negative or malformed one, or a google.rpc.RetryInfo with a
// delay in the status details, read as this package reads them to decide a
// retry. Either says that a live server answered and is shedding load, so
// the layers that see only the error (circuit breaker, throttle, fallback,
// outcome.Classify) count it as Overload, not as a Failure, whatever its
// code. The marked error keeps the attempt's status, code, message and
// details; its other results and successful attempts pass through
// untouched.
//
// It needs no configuration and holds no state. Chain it inside the
// breaker and the throttle, as close to the network as possible; see the
// package documentation.
func UnaryPushbackInterceptor() grpc.UnaryClientInterceptor { return unaryPushback }

// pushbackLayer is stream pushback marking as a layer of a folded chain.
type pushbackLayer struct{}

var thePushbackLayer = new(pushbackLayer)

func init() {
	// Unary marking is a plain interceptor that the chain runs innermost,
	// around grpc-go's invoker, without a hop of its own.
	chain.Register(chain.Pushback, func(struct{}) chain.Layer {
		return chain.Layer{UnaryInnermost: unaryPushback, Stream: thePushbackLayer}
	})
}

var streamPushback = chain.StreamInterceptor(thePushbackLayer)

// StreamPushbackInterceptor is UnaryPushbackInterceptor for streams: a
// stream that fails to open with a RetryInfo is marked, and so is the
// final error of RecvMsg when the stream's trailer or status carries
// pushback. It wraps each stream it opens (one allocation) and starts no
// goroutine.
func StreamPushbackInterceptor() grpc.StreamClientInterceptor { return streamPushback }

func unaryPushback(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if addr := trailerAddr(opts); addr != nil {
		// The common case inside the retry layer, which asks for the
		// trailer of every retryable attempt: read the same one.
		err := invoker(ctx, method, req, reply, cc, opts...)
		if err == nil {
			return nil
		}
		return markPushback(*addr, err)
	}
	tr := newTrailer(opts)
	defer tr.release()
	err := invoker(ctx, method, req, reply, cc, tr.opts...)
	if err != nil {
		err = markPushback(tr.md, err)
	}
	return err
}

func (*pushbackLayer) Stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, next chain.StreamNext, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	cs, err := next.NewStream(ctx, desc, cc, method, opts...)
	if err != nil {
		var trailer metadata.MD
		if addr := trailerAddr(opts); addr != nil {
			trailer = *addr
		}
		return nil, markPushback(trailer, err)
	}
	return &pushbackStream{ClientStream: cs}, nil
}

// pushbackStream marks the final error of a stream that carries pushback.
type pushbackStream struct{ grpc.ClientStream }

// RecvMsg marks the stream's final error. The trailer is complete once
// RecvMsg has returned an error, so reading it does not block.
func (s *pushbackStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err == nil || err == io.EOF {
		return err
	}
	return markPushback(s.ClientStream.Trailer(), err)
}

// trailerAddr returns where the last grpc.Trailer option in opts collects
// the trailer, or nil. The last is the one added closest to this
// interceptor: the retry layer's per-attempt trailer, when there is one.
func trailerAddr(opts []grpc.CallOption) *metadata.MD {
	for i := len(opts) - 1; i >= 0; i-- {
		switch o := opts[i].(type) {
		case grpc.TrailerCallOption:
			if o.TrailerAddr != nil {
				return o.TrailerAddr
			}
		case *grpc.TrailerCallOption:
			if o != nil && o.TrailerAddr != nil {
				return o.TrailerAddr
			}
		}
	}
	return nil
}

// markPushback marks err as overload when the attempt's trailer or status
// carries server pushback, by the rules the retry layer follows
// (serverPushback): any grpc-retry-pushback-ms value, valid or not, or a
// RetryInfo with a delay. An invalid pushback says "do not retry", yet it
// still comes from a live server.
func markPushback(trailer metadata.MD, err error) error {
	if _, ok := err.(*outcome.Rejection); ok {
		return err
	}
	if serverPushback(trailer, err).present {
		return outcome.MarkOverloaded(err)
	}
	return err
}
