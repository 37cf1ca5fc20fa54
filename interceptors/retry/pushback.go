package retry

import (
	"errors"
	"time"

	"google.golang.org/grpc/metadata"

	serverpb "github.com/failsoft/failsoft/interceptors/internal/pushback"
)

// PushbackMetadata is the trailer in which a server tells the client when
// to retry, as defined by gRFC A6.
const PushbackMetadata = serverpb.Metadata

// pushback is what a server said about retrying a failed attempt (see
// package internal/pushback for how it is read).
type pushback struct {
	present bool          // the server said something
	allow   bool          // a retry is allowed, after delay
	delay   time.Duration // exact wait before the retry
}

// serverPushback returns the pushback of a failed attempt: what the
// marking interceptor found (markPushback), carried on err, or else what
// readPushback finds.
func serverPushback(trailer metadata.MD, err error) pushback {
	var m pushbackMarked
	if errors.As(err, &m) {
		return m.serverPushback()
	}
	return readPushback(trailer, err)
}

// readPushback reads the pushback of a failed attempt from its trailer and
// its status: the trailer wins, RetryInfo is read when there is no trailer
// value.
func readPushback(trailer metadata.MD, err error) pushback {
	p := serverpb.Read(trailer, err)
	return pushback{present: p.Present, allow: p.Allow, delay: p.Delay}
}
