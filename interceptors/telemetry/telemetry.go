package telemetry

import (
	"context"
	"errors"
	"net"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/internal/option"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/outcome"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Interceptor makes the spans and metrics. It is an observe.Observer: give
// it to the other failsoft layers with their WithObserver option. Its
// methods are safe for concurrent use.
type Interceptor struct {
	cfg    config
	clock  clock.Clock
	fixed  trace.Tracer               // from WithTracerProvider; nil when that is a no-op
	cached atomic.Pointer[tracerFrom] // tracer of the global provider
	m      instruments
	off    bool // both providers were given and both are no-ops
}

var _ observe.Selector = (*Interceptor)(nil)

// New returns an Interceptor. Without options it uses the global tracer
// provider, meter provider and propagator, read when a call starts, so it
// may be built before the application installs its SDK.
func New(opts ...Option) (*Interceptor, error) {
	var cfg config
	if slices.ContainsFunc(opts, func(o Option) bool { return o == nil }) {
		return nil, errors.New("telemetry: nil Option")
	}
	if err := option.Apply(&cfg, opts...); err != nil {
		return nil, err
	}
	i := &Interceptor{cfg: cfg, clock: clock.OrSystem(cfg.clock)}
	if tp := cfg.tracerProvider; tp != nil && !isNoopProvider(tp) {
		i.fixed = newTracer(tp)
	}
	mp := cfg.meterProvider
	if mp == nil {
		// The global meter provider forwards to the SDK once one is set,
		// and its instruments report Enabled false until then.
		mp = otel.GetMeterProvider()
	}
	if err := i.m.init(mp.Meter(ScopeName)); err != nil {
		return nil, err
	}
	_, noopMeter := cfg.meterProvider.(metricnoop.MeterProvider)
	i.off = cfg.tracerProvider != nil && i.fixed == nil && noopMeter
	return i, nil
}

// Enabled reports whether the interceptor may record anything. It is false
// only when both providers given to it are no-ops; with the global
// providers, which an SDK may replace at any time, it is true. The
// failsoft suite leaves a disabled interceptor out of the chain and out of
// its observers, so that it costs nothing.
func (i *Interceptor) Enabled() bool { return !i.off }

type tracerFrom struct {
	tp         trace.TracerProvider
	comparable bool
	t          trace.Tracer // nil: tracing is off
}

func newTracer(tp trace.TracerProvider) trace.Tracer {
	return tp.Tracer(ScopeName, trace.WithSchemaURL("https://opentelemetry.io/schemas/1.40.0"))
}

// tracer returns the tracer to use for a call, or nil when tracing is off
// (no provider installed, or a no-op one): then no span is started and
// nothing is allocated.
func (i *Interceptor) tracer() trace.Tracer {
	if i.cfg.tracerProvider != nil {
		return i.fixed
	}
	tp := otel.GetTracerProvider()
	if c := i.cached.Load(); c != nil && c.comparable && c.tp == tp {
		return c.t
	}
	c := &tracerFrom{tp: tp, comparable: reflect.TypeOf(tp).Comparable()}
	if !isNoopProvider(tp) {
		c.t = newTracer(tp)
	}
	i.cached.Store(c)
	return c.t
}

// isNoopProvider reports whether tp never records: the no-op providers and
// the global placeholder that stands in until an SDK is installed (once one
// is, otel.GetTracerProvider returns the SDK itself).
func isNoopProvider(tp trace.TracerProvider) bool {
	if _, ok := tp.(noop.TracerProvider); ok {
		return true
	}
	t := reflect.TypeOf(tp)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.PkgPath() + "." + t.Name() {
	case "go.opentelemetry.io/otel/internal/global.tracerProvider",
		"go.opentelemetry.io/otel/trace.noopTracerProvider":
		return true
	}
	return false
}

func (i *Interceptor) propagator() propagation.TextMapPropagator {
	if i.cfg.propagator != nil {
		return i.cfg.propagator
	}
	return otel.GetTextMapPropagator()
}

// inject writes the trace context of ctx into its outgoing metadata.
func (i *Interceptor) inject(ctx context.Context) context.Context {
	var buf [4]string
	c := outCarrier{kv: buf[:0]}
	i.propagator().Inject(ctx, &c)
	if len(c.kv) == 0 && i.cfg.propagator == nil {
		// No global propagator was installed: W3C Trace Context, so the
		// server's spans still join the trace.
		propagation.TraceContext{}.Inject(ctx, &c)
	}
	if len(c.kv) == 0 {
		return ctx
	}
	return appendOutgoing(ctx, c.kv)
}

// extract reads the trace context of an incoming call.
func (i *Interceptor) extract(ctx context.Context) context.Context {
	c := inCarrier{ctx}
	out := i.propagator().Extract(ctx, c)
	if i.cfg.propagator == nil && !trace.SpanContextFromContext(out).IsRemote() {
		out = propagation.TraceContext{}.Extract(out, c)
	}
	return out
}

// rpcName is the span name and rpc.method value: the full method without
// its leading slash.
func rpcName(fullMethod string) string {
	return strings.TrimPrefix(fullMethod, "/")
}

// serverAttrs returns server.address and server.port for a ClientConn
// target such as "dns:///host:443", "passthrough:///127.0.0.1:80" or
// "host:80". The port is omitted when the target has none.
func serverAttrs(target string) (attribute.KeyValue, attribute.KeyValue, bool) {
	endpoint := target
	if scheme, rest, ok := strings.Cut(target, "://"); ok {
		if scheme == "unix" || scheme == "unix-abstract" {
			return ServerAddress.String(rest), attribute.KeyValue{}, false
		}
		if _, after, ok := strings.Cut(rest, "/"); ok {
			endpoint = after
		} else {
			endpoint = rest
		}
	} else if after, ok := strings.CutPrefix(target, "unix:"); ok {
		return ServerAddress.String(after), attribute.KeyValue{}, false
	}
	host, port, err := net.SplitHostPort(endpoint)
	if err != nil {
		return ServerAddress.String(endpoint), attribute.KeyValue{}, false
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return ServerAddress.String(host), attribute.KeyValue{}, false
	}
	return ServerAddress.String(host), ServerPort.Int(p), true
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// callState is what a call span learns from its attempts.
type callState struct {
	metrics    callMetrics // set when the call starts
	attempts   atomic.Int32
	retryDelay atomic.Int64 // nanoseconds waited between attempts
}

type callKey struct{}

func callStateFrom(ctx context.Context) *callState {
	s, _ := ctx.Value(callKey{}).(*callState)
	return s
}

// codeNames are the canonical status code names, as gRPC's specification
// and the semantic conventions spell them.
var codeNames = [...]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
	"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
	"UNAUTHENTICATED",
}

// codeName returns the canonical name of err's status code.
func codeName(err error) string {
	c := outcome.Code(err)
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return strconv.Itoa(int(c))
}
