package grpcmw

import (
	"context"
	"errors"
	"log/slog"

	mwlogging "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"

	"github.com/failsoft/failsoft/interceptors/logging"
)

// New returns failsoft's logging observer writing to l at level and above
// (nil: slog.LevelInfo, so that debug records are never built).
func New(l mwlogging.Logger, level slog.Leveler, opts ...logging.Option) (*logging.Observer, error) {
	if l == nil {
		return nil, errors.New("failsoft: logging: grpcmw.New: nil logger")
	}
	return logging.New(slog.New(NewHandler(l, level)), opts...)
}

// NewHandler returns a slog.Handler that writes records at level and
// above (nil: slog.LevelInfo) to l. A nil l drops every record.
func NewHandler(l mwlogging.Logger, level slog.Leveler) slog.Handler {
	if level == nil {
		level = slog.LevelInfo
	}
	return &handler{l: l, level: level}
}

type handler struct {
	l      mwlogging.Logger
	level  slog.Leveler
	fields []any  // from WithAttrs, as key-value pairs
	prefix string // from WithGroup: "a.b."
}

func (h *handler) Enabled(_ context.Context, level slog.Level) bool {
	return h.l != nil && level >= h.level.Level()
}

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	fields := make([]any, 0, len(h.fields)+2*r.NumAttrs())
	fields = append(fields, h.fields...)
	r.Attrs(func(a slog.Attr) bool {
		fields = appendAttr(fields, h.prefix, a)
		return true
	})
	// The request's own fields, which go-grpc-middleware's interceptors
	// keep on the context rather than in the Logger.
	fields = append(fields, mwlogging.ExtractFields(ctx)...)
	h.l.Log(ctx, mwlogging.Level(r.Level), r.Message, fields...)
	return nil
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.fields = make([]any, 0, len(h.fields)+2*len(attrs))
	c.fields = append(c.fields, h.fields...)
	for _, a := range attrs {
		c.fields = appendAttr(c.fields, h.prefix, a)
	}
	return &c
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.prefix = h.prefix + name + "."
	return &c
}

// appendAttr appends a as key-value pairs, groups flattened under prefix,
// following slog's rules: empty attributes and empty groups are dropped,
// and a group without a key inlines its attributes.
func appendAttr(fields []any, prefix string, a slog.Attr) []any {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return fields
	}
	if a.Value.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p = prefix + a.Key + "."
		}
		for _, g := range a.Value.Group() {
			fields = appendAttr(fields, p, g)
		}
		return fields
	}
	return append(fields, prefix+a.Key, a.Value.Any())
}
