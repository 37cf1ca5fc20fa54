package retry

import (
	"math"
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

// backoff returns the full-jitter wait before retry n (n = 1 for the second
// attempt): a uniform draw from [0, min(max, initial * multiplier^(n-1))).
// r is a uniform number in [0, 1).
func backoff(initial, max time.Duration, multiplier float64, n int, r float64) time.Duration {
	if n < 1 {
		n = 1
	}
	ceiling := float64(initial) * math.Pow(multiplier, float64(n-1))
	if ceiling > float64(max) || math.IsNaN(ceiling) || math.IsInf(ceiling, 0) {
		ceiling = float64(max)
	}
	if !(r >= 0) { // also catches NaN
		r = 0
	} else if r >= 1 {
		r = math.Nextafter(1, 0)
	}
	return time.Duration(ceiling * r)
}

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
	s := values[0]
	if s == "" || len(s) > 10 {
		return p
	}
	var ms int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return p // negative ("-1") or malformed
		}
		ms = ms*10 + int64(c-'0')
	}
	if ms > maxPushback {
		return p
	}
	p.allow, p.delay = true, time.Duration(ms)*time.Millisecond
	return p
}

// retryInfoURL is the type URL suffix of google.rpc.RetryInfo.
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
