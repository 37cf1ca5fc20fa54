package retry

import (
	"errors"

	"google.golang.org/grpc/metadata"

	serverpb "github.com/failsoft/failsoft/interceptors/internal/pushback"
)

// PushbackMetadata is the trailer in which a server tells the client when
// to retry, as defined by gRFC A6.
const PushbackMetadata = serverpb.Metadata

// serverPushback returns what the server said about retrying a failed
// attempt: what the marking interceptor found (markPushback), carried on
// err, or else what its trailer and status say (serverpb.Read: the
// trailer wins, RetryInfo is read when there is no trailer value).
func serverPushback(trailer metadata.MD, err error) serverpb.Pushback {
	var m pushbackMarked
	if errors.As(err, &m) {
		return m.serverPushback()
	}
	return serverpb.Read(trailer, err)
}
