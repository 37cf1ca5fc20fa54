package retry

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	serverpb "github.com/failsoft/failsoft/interceptors/internal/pushback"
	"github.com/failsoft/failsoft/interceptors/outcome"
	"github.com/failsoft/failsoft/internal/chain"
)

// UnaryPushbackInterceptor returns a per-attempt interceptor that marks a
// failed attempt's error as overload, as outcome.MarkOverloaded does, when
// the server sent pushback: a grpc-retry-pushback-ms trailer
// (PushbackMetadata) with any value, even a negative or malformed one, or
// a google.rpc.RetryInfo with a delay in the status details, read as this
// package reads them to decide a retry. Either says that a live server
// answered and is shedding load, so the layers that see only the error
// (circuit breaker, throttle, fallback, outcome.Classify) count it as
// Overload, not as a Failure, whatever its code. The marked error keeps
// the attempt's status, code, message and details, and carries the
// pushback for the retry layer outside; other results and successful
// attempts pass through untouched.
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
		// The caller asked for the trailer: read the same one.
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
// (serverpb.Read): any grpc-retry-pushback-ms value, valid or not, or a
// RetryInfo with a delay. An invalid pushback says "do not retry", yet it
// still comes from a live server. The marked error carries what the server
// said, so that a retry layer outside reads it from the error
// (serverPushback) and needs no trailer of its own. A layer's own
// rejection says nothing of the server and is never marked.
func markPushback(trailer metadata.MD, err error) error {
	if _, ok := outcome.AsRejection(err); ok {
		return err
	}
	var m pushbackMarked
	if errors.As(err, &m) {
		return err // marked further in
	}
	pb := serverpb.Read(trailer, err)
	if !pb.Present {
		return err
	}
	if st, ok := status.FromError(err); ok {
		return &markedStatus{marked{err, pb}, st}
	}
	return &marked{err, pb}
}

// pushbackMarked is implemented by the errors markPushback returns.
type pushbackMarked interface{ serverPushback() serverpb.Pushback }

// marked is a failed attempt's error that carries server pushback: it is
// overload to outcome.Classify through its Overloaded method, as
// outcome.MarkOverloaded's errors are, and it holds what the server said,
// which outcome's errors cannot. Its message is the attempt's, and it
// unwraps to the attempt's error.
type marked struct {
	error // the attempt's
	pb    serverpb.Pushback
}

func (m *marked) Unwrap() error                     { return m.error }
func (m *marked) Overloaded() bool                  { return true }
func (m *marked) serverPushback() serverpb.Pushback { return m.pb }

// markedStatus is marked for an error with a gRPC status, which it answers
// with, so that status.FromError and outcome.Classify read it unchanged.
type markedStatus struct {
	marked
	st *status.Status
}

func (m *markedStatus) GRPCStatus() *status.Status { return m.st }
