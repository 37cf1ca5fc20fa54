package pushback

import (
	"math"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Metadata is the trailer in which a server tells the client when to
// retry, as defined by gRFC A6.
const Metadata = "grpc-retry-pushback-ms"

// Max is the longest wait accepted: the largest int32 in milliseconds
// (about 24.8 days), as in gRFC A6. A longer one is malformed.
const Max = math.MaxInt32 * time.Millisecond

// Pushback is what a server said about retrying.
type Pushback struct {
	// Present is true when the server said something, valid or not.
	Present bool
	// Allow is true when a retry is allowed, after Delay.
	Allow bool
	// Delay is the exact wait before the retry.
	Delay time.Duration
}

// Read returns the pushback of a failed call: the trailer's
// grpc-retry-pushback-ms when it has a value, the RetryInfo detail of
// err's status otherwise.
func Read(trailer metadata.MD, err error) Pushback {
	if p := Trailer(trailer.Get(Metadata)); p.Present {
		return p
	}
	if err == nil {
		return Pushback{}
	}
	st, _ := status.FromError(err)
	return RetryInfo(st)
}

// Trailer reads the values of a grpc-retry-pushback-ms trailer.
func Trailer(values []string) Pushback {
	switch len(values) {
	case 0:
		return Pushback{}
	case 1:
	default:
		return Pushback{Present: true} // repeated
	}
	// ParseUint refuses signs, so "-1" and "+1" say "do not retry", and
	// 31 bits bound the value by Max.
	ms, err := strconv.ParseUint(values[0], 10, 31)
	if err != nil {
		return Pushback{Present: true}
	}
	return Pushback{Present: true, Allow: true, Delay: time.Duration(ms) * time.Millisecond}
}

// retryInfoName is the full name of google.rpc.RetryInfo, the end of its
// type URL.
const retryInfoName = "google.rpc.RetryInfo"

// RetryInfo reads google.rpc.RetryInfo from a status's details.
func RetryInfo(st *status.Status) Pushback {
	if st == nil {
		return Pushback{}
	}
	var p Pushback
	for _, d := range st.Proto().GetDetails() {
		if !isRetryInfo(d.GetTypeUrl()) {
			continue
		}
		if p.Present {
			return Pushback{Present: true} // repeated
		}
		var ri errdetails.RetryInfo
		if err := proto.Unmarshal(d.GetValue(), &ri); err != nil {
			return Pushback{Present: true}
		}
		rd := ri.GetRetryDelay()
		if rd == nil {
			continue // says nothing
		}
		p = Pushback{Present: true}
		if rd.CheckValid() != nil || rd.GetSeconds() < 0 || rd.GetNanos() < 0 {
			return p
		}
		if delay := rd.AsDuration(); delay <= Max {
			p.Allow, p.Delay = true, delay
		}
	}
	return p
}

// isRetryInfo reports whether a type URL names google.rpc.RetryInfo: the
// name alone, or after a slash (type.googleapis.com/google.rpc.RetryInfo).
func isRetryInfo(url string) bool {
	rest, ok := strings.CutSuffix(url, retryInfoName)
	return ok && (rest == "" || strings.HasSuffix(rest, "/"))
}
