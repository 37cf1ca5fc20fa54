package retry

import (
	"math"
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// PushbackMetadata is the trailer in which a server tells the client when
// to retry, as defined by gRFC A6.
const PushbackMetadata = "grpc-retry-pushback-ms"

// maxPushback is the largest pushback accepted, in milliseconds (the
// largest int32, about 24.8 days, as in gRFC A6). Larger values are
// malformed.
const maxPushback = math.MaxInt32

// pushback is what a server said about retrying.
type pushback struct {
	present bool          // the server said something
	allow   bool          // a retry is allowed, after delay
	delay   time.Duration // exact wait before the retry
	source  string        // "trailer" or "retry_info"
}

// parsePushback reads the grpc-retry-pushback-ms values of a trailer with
// gRFC A6 semantics: no value says nothing; exactly one non-negative
// decimal integer is the exact wait in milliseconds; a negative, malformed
// or repeated value means "do not retry".
func parsePushback(values []string) pushback {
	switch len(values) {
	case 0:
		return pushback{}
	case 1:
	default:
		return pushback{present: true, source: "trailer"}
	}
	p := pushback{present: true, source: "trailer"}
	// ParseUint refuses signs, so "-1" and "+1" say "do not retry", and
	// 31 bits bound the value by maxPushback.
	ms, err := strconv.ParseUint(values[0], 10, 31)
	if err != nil {
		return p
	}
	p.allow, p.delay = true, time.Duration(ms)*time.Millisecond
	return p
}

// retryInfoName is the type URL suffix of google.rpc.RetryInfo.
const retryInfoName = "google.rpc.RetryInfo"

// parseRetryInfo reads google.rpc.RetryInfo from a status's details. One
// RetryInfo with a valid, non-negative retry_delay is the exact wait; a
// RetryInfo without a delay says nothing; an invalid or negative delay, an
// undecodable RetryInfo, or more than one of them means "do not retry".
func parseRetryInfo(st *status.Status) pushback {
	if st == nil {
		return pushback{}
	}
	sp := st.Proto()
	var p pushback
	for _, d := range sp.GetDetails() {
		url := d.GetTypeUrl()
		if len(url) < len(retryInfoName) || url[len(url)-len(retryInfoName):] != retryInfoName ||
			(len(url) > len(retryInfoName) && url[len(url)-len(retryInfoName)-1] != '/') {
			continue
		}
		if p.present {
			return pushback{present: true, source: "retry_info"} // repeated
		}
		var ri errdetails.RetryInfo
		if err := proto.Unmarshal(d.GetValue(), &ri); err != nil {
			return pushback{present: true, source: "retry_info"}
		}
		rd := ri.GetRetryDelay()
		if rd == nil {
			continue
		}
		p = pushback{present: true, source: "retry_info"}
		if rd.CheckValid() != nil || rd.GetSeconds() < 0 || rd.GetNanos() < 0 {
			return p
		}
		if dur := rd.AsDuration(); dur <= time.Duration(maxPushback)*time.Millisecond {
			p.allow, p.delay = true, dur
		}
	}
	return p
}

// serverPushback returns the pushback of a failed attempt: the trailer
// wins, RetryInfo is read when there is no trailer value.
func serverPushback(trailer metadata.MD, err error) pushback {
	if p := parsePushback(trailer.Get(PushbackMetadata)); p.present {
		return p
	}
	st, _ := status.FromError(err)
	return parseRetryInfo(st)
}
