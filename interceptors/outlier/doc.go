// Package outlier is a gRPC load-balancing policy that takes a backend
// which keeps failing, or answers much slower than its siblings, out of
// rotation for a while and then lets it back in: outlier ejection, per
// endpoint, on the client.
//
// Importing the package registers the policy under Name
// ("failsoft_outlier"). failsoft.DialOptions runs it by default around
// round_robin (and around the policy given with failsoft.WithLoadBalancing);
// failsoft.WithoutOutlierEjection leaves it out. On its own:
//
//	grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":` +
//		outlier.Around(`[{"round_robin":{}}]`) + `}`)
//
// # Why not grpc-go's
//
// grpc-go implements gRFC A50 outlier detection, but registers it only
// from google.golang.org/grpc/xds, which would link the xDS client and
// Envoy's API protos into every program that uses failsoft. A50 also has no
// latency rule, and its failure-percentage rule needs five endpoints by
// default. This policy is built on grpc-go's public balancer API only.
//
// # How it works
//
// The policy runs a child policy (round_robin unless childPolicy says
// otherwise) and wraps the child's pickers. A pick that lands on an ejected
// endpoint is discarded and the child is asked again, at most once more
// than there are endpoints, so a round-robin child moves on to the next
// endpoint in rotation; the child never learns of ejections, and its
// connections stay up, ready for readmission. A retry or hedge (an
// attempt the retry layer numbers past the first) also moves on from an
// endpoint whose latest call failed, as the attempt before it most likely
// failed there: a child that picks at random would otherwise send it back
// before the detector has seen enough to eject. Every call's end (the
// picker's Done) is counted for the endpoint that served it, classified as
// the other failsoft layers classify outcomes (see package outcome):
//
//   - failures: UNAVAILABLE, INTERNAL, UNKNOWN, DATA_LOSS and
//     DEADLINE_EXCEEDED, the codes that say the backend is unwell;
//   - not counted: the caller's errors (INVALID_ARGUMENT, NOT_FOUND,
//     CANCELLED, ...) and overload (RESOURCE_EXHAUSTED, or a failure code
//     with server pushback: a grpc-retry-pushback-ms trailer or a
//     google.rpc.RetryInfo detail with a delay, read as the retry layer
//     reads them). An overloaded backend is alive; shedding load is the
//     throttle's concern, and ejecting it would only pile its share on its
//     siblings;
//   - successes, whose latency (from pick to end, on the policy's clock) is
//     kept for the latency rule; the last 32 of them per endpoint.
//
// # How it decides
//
// Three rules eject an endpoint:
//
//   - consecutive failures: consecutiveFailures (5) calls in a row failed.
//     Decided at once, on the failure that completes the run, so a dead
//     backend costs about five failed attempts, which a retry sends
//     elsewhere.
//   - failure rate: at the end of each interval (1 s), an endpoint that
//     had at least failureRateEjection.minimumCalls (10) counted calls of
//     which at least failureRateEjection.threshold (50) percent failed. It
//     catches a backend that fails every other call.
//   - latency (a gray failure): at the end of each interval, an endpoint
//     whose median latency over its recent successes (at least
//     latencyEjection.minimumCalls, 10) is at least latencyEjection.ratio
//     (3) times the median of its siblings' medians, and at least
//     latencyEjection.minimumLatency (10 ms), so that sub-millisecond
//     noise never ejects. Medians, not means, so that a few long calls (a
//     long stream, a big query) do not make an endpoint look slow. Only
//     endpoints with enough samples take part, and at least two must.
//
// The two failure rules also need the fleet to do better: most of the
// endpoint's siblings in rotation that made enough calls (as many as the
// rule needs of the endpoint: 5 for a run, 10 for a rate) must have failed
// at most half as often as it did, each over this interval and the last.
// A backend that fails while its siblings fail too is part of a fleet that
// fails: servers shedding overload as plain UNAVAILABLE, a dependency they
// share that is down. Ejecting it would move its load onto siblings that
// are failing already, and make the overload worse. So three backends
// failing alike keep all three; one of three failing while the others
// succeed goes; two of three failing while one succeeds keep both, since
// most of the fleet fails and the one healthy backend could not take half
// of another's load on top of its own (with four backends, two failing
// and two healthy, both failing ones go). A backend that fails every call
// while its siblings shed 40% still goes.
//
// The comparison borrows the idea of Envoy's and gRFC A50's success-rate
// ejection (a host is an outlier when its success rate is below the
// fleet's mean by more than 1.9 standard deviations, by default) without
// its statistics, which need many hosts: of three, a lone outlier lies at
// most 1.41 deviations from the mean and is never ejected, which is why
// they want at least five hosts (with 100 calls each). Their
// failure-percentage and consecutive-5xx ejections are absolute: they
// eject hosts of a fleet that fails alike, up to max_ejection_percent.
//
// The worst endpoints go first, and never more than maxEjectionPercent
// (50) of the endpoints at once, rounded down, but at least one when
// there are two or more, and never the last one: with one endpoint nothing
// is ejected, with two or three one may be.
//
// # Readmission
//
// An ejection lasts baseEjectionTime (10 s) times the endpoint's ejection
// count, capped at maxEjectionTime (120 s). Then the endpoint is readmitted
// with fresh counts, on probation: its first failure ejects it again at
// once (for one baseEjectionTime longer) if its siblings do better, on
// the record that got it ejected and that failure; its first outcome ends
// the probation. A backend that stays down thus costs one failed attempt per
// readmission. The ejection count falls by one for each baseEjectionTime
// the endpoint stays in rotation, so a backend that healed is soon back to
// short ejections.
//
// Readmission and the interval's rules run when a call ends, on the
// policy's clock: the policy starts no goroutine and no timer. An endpoint
// whose ejection is over is picked again at once; it only has to wait for
// a call.
//
// # Configuration
//
// See Config for the JSON fields and their defaults; ParseConfig validates
// a configuration with errors that name the field at fault, as grpc-go
// does when a service config carries one. The child policy is built once
// and rebuilt when a new service config names another one.
//
// # Limits
//
// The comparison with the siblings is over one or two intervals. When a
// whole fleet starts failing at once, a backend whose first calls after
// the start fail five in a row, while its siblings' windows still hold
// the successes from before, can be ejected; it is not ejected again on
// probation while its siblings fail as it did. A sibling needs five calls
// in two intervals to be compared with: a client that sends each backend
// fewer than a few calls a second ejects none for failures (a retry takes
// a failed call to another backend), unless a longer interval widens the
// window.
// Latency is measured from pick to the call's end, which for a stream is
// its whole life: a client whose calls are mostly long-lived streams should
// switch the latency rule off ("latencyEjection":{"ratio":0}). Endpoints
// are told apart by their first address. A pick that is discarded calls
// the child's Done with an empty DoneInfo, since nothing was sent. The
// share of endpoints that may be ejected counts every endpoint the
// resolver gave, connected or not. The policy reads the system clock:
// grpc-go builds it from a service config, which carries no Go values, so
// failsoft.WithClock does not reach it (its own tests register it on a
// fake clock under another name).
package outlier
