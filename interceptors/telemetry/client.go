package telemetry

import (
	"context"
	"errors"
	"io"
	"sync"

	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/outcome"
	"github.com/failsoft/failsoft/interceptors/policy"
	"github.com/failsoft/failsoft/internal/chain"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// UnaryClientInterceptor returns the call interceptor: one span per logical
// call, over all its attempts. Chain it outside the retry and hedge layers
// so that every attempt is a child of it; put UnaryAttemptInterceptor
// inside them.
func (i *Interceptor) UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return chain.UnaryInterceptor(callLayer{i})
}

// callLayer and attemptLayer are the Interceptor's two layers in a folded
// chain.
type (
	callLayer    struct{ i *Interceptor }
	attemptLayer struct{ i *Interceptor }
)

func init() {
	chain.Register(chain.TelemetryCall, func(i *Interceptor) chain.Layer { return chain.Both(callLayer{i}) })
	chain.Register(chain.TelemetryAttempt, func(i *Interceptor) chain.Layer {
		return chain.Both(attemptLayer{i})
	})
}

func (l callLayer) Unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, next chain.UnaryNext, opts ...grpc.CallOption) error {
	i := l.i
	tr := i.tracer()
	m := i.callMetrics(ctx)
	if tr == nil && m == (callMetrics{}) {
		return next.Invoke(ctx, method, req, reply, cc, opts...)
	}
	target := cc.Target()
	ctx, span, st := i.startCall(ctx, tr, m, method, target)
	err := next.Invoke(ctx, method, req, reply, cc, opts...)
	i.endCall(ctx, span, st, method, target, err)
	return err
}

// StreamClientInterceptor returns the call interceptor for streams. The
// call span ends when the stream does: RecvMsg returns an error (io.EOF
// for success), the single response of a non-server-streaming call
// arrives, or the call's context is done.
func (i *Interceptor) StreamClientInterceptor() grpc.StreamClientInterceptor {
	return chain.StreamInterceptor(callLayer{i})
}

func (l callLayer) Stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, next chain.StreamNext, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	i := l.i
	tr := i.tracer()
	m := i.callMetrics(ctx)
	if tr == nil && m == (callMetrics{}) {
		return next.NewStream(ctx, desc, cc, method, opts...)
	}
	target := cc.Target()
	ctx, span, st := i.startCall(ctx, tr, m, method, target)
	cs, err := next.NewStream(ctx, desc, cc, method, opts...)
	if err != nil {
		i.endCall(ctx, span, st, method, target, err)
		return nil, err
	}
	return newStream(ctx, cs, desc, func(err error) { i.endCall(ctx, span, st, method, target, err) }), nil
}

func (i *Interceptor) startCall(ctx context.Context, tr trace.Tracer, m callMetrics, method, target string) (context.Context, trace.Span, *callState) {
	st := &callState{metrics: m}
	ctx = context.WithValue(ctx, callKey{}, st)
	if tr == nil {
		return ctx, nil, st
	}
	name := rpcName(method)
	ctx, span := tr.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(RPCSystemName.String("grpc"), RPCMethod.String(name)))
	if !span.IsRecording() {
		return ctx, span, st
	}
	var buf [3]attribute.KeyValue
	attrs := buf[:0]
	addr, port, hasPort := serverAttrs(target)
	attrs = append(attrs, addr)
	if hasPort {
		attrs = append(attrs, port)
	}
	if d, ok := ctx.Deadline(); ok {
		attrs = append(attrs, DeadlineRemainingMS.Float64(ms(d.Sub(i.clock.Now()))))
	}
	span.SetAttributes(attrs...)
	return ctx, span, st
}

// callMetrics says which of the metrics recorded when a call ends are on.
// It is read once, when the call starts, so that a call records all of
// them or none.
type callMetrics struct {
	calls   bool // the calls counter
	retries bool // the retries and retry delay histograms
}

func (i *Interceptor) callMetrics(ctx context.Context) callMetrics {
	return callMetrics{
		calls:   i.m.calls.Enabled(ctx),
		retries: i.m.callRetries.Enabled(ctx) || i.m.callRetryDelay.Enabled(ctx),
	}
}

func (i *Interceptor) endCall(ctx context.Context, span trace.Span, st *callState, method, target string, err error) {
	n := st.attempts.Load()
	if st.metrics.calls {
		i.m.calls.Add(ctx, 1, metric.WithAttributes(Method.String(rpcName(method)), Target.String(target), Status.String(codeName(err))))
	}
	if n > 0 && st.metrics.retries {
		opt := metric.WithAttributes(Method.String(rpcName(method)), Target.String(target))
		i.m.callRetries.Record(ctx, int64(n-1), opt)
		i.m.callRetryDelay.Record(ctx, float64(st.retryDelay.Load())/1e9, opt)
	}
	if span == nil {
		return
	}
	if n > 0 {
		span.SetAttributes(Attempts.Int(int(n)))
	}
	endSpan(span, err, true)
}

// endSpan sets the status attributes of a client span and ends it.
func endSpan(span trace.Span, err error, client bool) {
	if !span.IsRecording() {
		span.End()
		return
	}
	span.SetAttributes(outcomeAttrs(err)...)
	if err != nil && (client || serverError(outcome.Code(err))) {
		span.SetStatus(otelcodes.Error, status.Convert(err).Message())
	}
	span.End()
}

// outcomeAttrs are the attributes that say how a call or attempt ended.
func outcomeAttrs(err error) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 2, 3)
	attrs[0] = RPCResponseStatusCode.String(codeName(err))
	attrs[1] = Outcome.String(outcome.Default.Classify(err).String())
	if r, ok := outcome.AsRejection(err); ok {
		attrs = append(attrs, RejectedBy.String(r.Layer))
	}
	return attrs
}

// UnaryAttemptInterceptor returns the attempt interceptor: one span per
// attempt, hedges included, as a child of the call span. It reads the
// attempt's number, hedge flag, backoff and per-attempt timeout from
// observe.AttemptFrom (set by the retry layer), and injects the attempt
// span's trace context into the outgoing metadata so the server's spans
// join the trace. Chain it inside the retry and hedge layers.
func (i *Interceptor) UnaryAttemptInterceptor() grpc.UnaryClientInterceptor {
	return chain.UnaryInterceptor(attemptLayer{i})
}

func (l attemptLayer) Unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, next chain.UnaryNext, opts ...grpc.CallOption) error {
	i := l.i
	a := i.countAttempt(ctx, &next.State)
	tr := i.tracer()
	if tr == nil {
		return next.Invoke(ctx, method, req, reply, cc, opts...)
	}
	ctx, span := i.startAttempt(ctx, tr, method, cc.Target(), a, &next.State)
	err := next.Invoke(ctx, method, req, reply, cc, opts...)
	endSpan(span, err, true)
	return err
}

// StreamAttemptInterceptor is UnaryAttemptInterceptor for streams: the
// attempt span ends when the attempt's stream does.
func (i *Interceptor) StreamAttemptInterceptor() grpc.StreamClientInterceptor {
	return chain.StreamInterceptor(attemptLayer{i})
}

func (l attemptLayer) Stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, next chain.StreamNext, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	i := l.i
	a := i.countAttempt(ctx, &next.State)
	tr := i.tracer()
	if tr == nil {
		return next.NewStream(ctx, desc, cc, method, opts...)
	}
	ctx, span := i.startAttempt(ctx, tr, method, cc.Target(), a, &next.State)
	cs, err := next.NewStream(ctx, desc, cc, method, opts...)
	if err != nil {
		endSpan(span, err, true)
		return nil, err
	}
	return newStream(ctx, cs, desc, func(err error) { endSpan(span, err, true) }), nil
}

func (i *Interceptor) countAttempt(ctx context.Context, cs *chain.State) observe.Attempt {
	a := observe.AttemptFrom(ctx)
	if st := callStateFrom(ctx); st != nil {
		st.attempts.Add(1)
		st.retryDelay.Add(int64(a.Backoff))
	}
	return a
}

func (i *Interceptor) startAttempt(ctx context.Context, tr trace.Tracer, method, target string, a observe.Attempt, cs *chain.State) (context.Context, trace.Span) {
	name := rpcName(method)
	// The sampler sees the semantic-convention attributes; the rest is
	// built only for a span that records.
	ctx, span := tr.Start(ctx, "Attempt."+name, trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(RPCSystemName.String("grpc"), RPCMethod.String(name)))
	if !span.IsRecording() {
		return i.inject(ctx), span
	}
	var buf [11]attribute.KeyValue
	attrs := append(buf[:0], Attempt.Int(a.N), PreviousAttempts.Int(max(a.N-1, 0)), Hedge.Bool(a.Hedge))
	addr, port, hasPort := serverAttrs(target)
	attrs = append(attrs, addr)
	if hasPort {
		attrs = append(attrs, port)
	}
	if a.Backoff > 0 || a.BackoffReason != "" {
		attrs = append(attrs, BackoffMS.Float64(ms(a.Backoff)), BackoffReason.String(a.BackoffReason))
	}
	if a.Timeout > 0 {
		attrs = append(attrs, TimeoutMS.Float64(ms(a.Timeout)))
	}
	if d, ok := cs.DeadlineOf(ctx); ok {
		attrs = append(attrs, DeadlineRemainingMS.Float64(ms(d.Sub(i.clock.Now()))))
	}
	if i.cfg.rawKeys {
		if md, ok := metadata.FromOutgoingContext(ctx); ok {
			if v := md.Get(policy.KeyMetadata); len(v) > 0 {
				attrs = append(attrs, Key.String(v[0]))
			}
		}
	}
	span.SetAttributes(attrs...)
	return i.inject(ctx), span
}

// stream ends a span (through end) exactly once, when the stream ends.
type stream struct {
	grpc.ClientStream
	serverStreams bool
	once          sync.Once
	end           func(error)
	stop          func() bool
}

func newStream(ctx context.Context, cs grpc.ClientStream, desc *grpc.StreamDesc, end func(error)) *stream {
	s := &stream{ClientStream: cs, serverStreams: desc.ServerStreams, end: end}
	// A caller that abandons the stream cancels its context; end the span
	// then, without holding the stream open.
	s.stop = context.AfterFunc(ctx, func() { s.finish(ctx.Err()) })
	return s
}

func (s *stream) finish(err error) {
	s.once.Do(func() {
		s.stop()
		s.end(err)
	})
}

func (s *stream) Header() (metadata.MD, error) {
	md, err := s.ClientStream.Header()
	if err != nil {
		s.finish(err)
	}
	return md, err
}

func (s *stream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	switch {
	case errors.Is(err, io.EOF):
		s.finish(nil)
	case err != nil:
		s.finish(err)
	case !s.serverStreams:
		s.finish(nil)
	}
	return err
}
