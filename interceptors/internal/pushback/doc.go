// Package pushback reads what a server said about retrying a failed call:
// the grpc-retry-pushback-ms trailer of gRFC A6 and the
// google.rpc.RetryInfo status detail. It is the one place both are parsed,
// so that the retry layer (which waits or stops as told) and the outlier
// policy (which treats a backend that pushes back as alive, not failing)
// read them alike.
//
// The meaning, as Read gives it:
//
//   - a trailer value wins over RetryInfo. No value says nothing; exactly
//     one non-negative decimal integer (at most the largest int32, as in
//     gRFC A6) is the exact wait in milliseconds; anything else (negative,
//     signed, malformed, too large, or more than one value) says "do not
//     retry".
//   - one RetryInfo with a valid, non-negative retry_delay (at most the
//     same bound) is the exact wait; an invalid, negative or too long
//     delay, an undecodable RetryInfo, or more than one RetryInfo says "do
//     not retry".
//   - a RetryInfo without a retry_delay says nothing. The delay is the
//     message's only content: without it the server neither names a wait
//     nor refuses a retry, so it neither changes the retry layer's backoff
//     nor marks the backend as overloaded rather than failing. Reading it
//     as pushback would let a server hide real failures from the breaker
//     and the outlier policy by attaching an empty detail.
//
// Present is true whenever the server said something, valid or not: a
// malformed value still comes from a live server that chose to push back.
package pushback
