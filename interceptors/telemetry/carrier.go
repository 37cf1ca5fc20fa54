package telemetry

import (
	"context"
	"strings"

	"google.golang.org/grpc/metadata"
)

// outCarrier collects the fields a propagator injects, to append them to the
// outgoing metadata in one step.
type outCarrier struct{ kv []string }

func (c *outCarrier) Get(key string) string {
	key = strings.ToLower(key)
	for j := 0; j+1 < len(c.kv); j += 2 {
		if c.kv[j] == key {
			return c.kv[j+1]
		}
	}
	return ""
}

func (c *outCarrier) Set(key, value string) {
	key = strings.ToLower(key)
	for j := 0; j+1 < len(c.kv); j += 2 {
		if c.kv[j] == key {
			c.kv[j+1] = value
			return
		}
	}
	c.kv = append(c.kv, key, value)
}

func (c *outCarrier) Keys() []string {
	keys := make([]string, 0, len(c.kv)/2)
	for j := 0; j < len(c.kv); j += 2 {
		keys = append(keys, c.kv[j])
	}
	return keys
}

// appendOutgoing adds kv to the outgoing metadata, replacing any value the
// context already carried for those keys (a caller's stale traceparent
// would otherwise travel next to ours).
func appendOutgoing(ctx context.Context, kv []string) context.Context {
	md, ok := metadata.FromOutgoingContext(ctx)
	if ok {
		stale := false
		for j := 0; j < len(kv); j += 2 {
			if _, has := md[kv[j]]; has {
				stale = true
				break
			}
		}
		if stale {
			for j := 0; j < len(kv); j += 2 {
				md[kv[j]] = []string{kv[j+1]}
			}
			return metadata.NewOutgoingContext(ctx, md)
		}
	}
	return metadata.AppendToOutgoingContext(ctx, kv...)
}

// inCarrier reads an incoming call's metadata.
type inCarrier struct{ ctx context.Context }

func (c inCarrier) Get(key string) string {
	v := metadata.ValueFromIncomingContext(c.ctx, key)
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func (c inCarrier) Set(string, string) {}

func (c inCarrier) Keys() []string {
	md, _ := metadata.FromIncomingContext(c.ctx)
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	return keys
}
