// Package chaos injects faults into gRPC calls, on the server and on the
// client, for staging environments and game days: if failure handling is
// never exercised, nobody knows whether it works.
//
// On the server an [Injector] fails calls with chosen status codes, adds
// latency and a slow tail, takes the service down in outage windows,
// refuses calls with overload pushback (RESOURCE_EXHAUSTED and the
// grpc-retry-pushback-ms trailer), and drops responses after the handler
// committed its work: the lost response that idempotency keys exist for.
// On the client it fails calls before they are sent, adds latency, and
// reports UNAVAILABLE for calls that succeeded on the server.
//
// Faults are chosen per method or per service by [Rule]s, with rates in
// [0, 1] drawn from a seeded random source, so that a run can be repeated.
// The rules can be replaced while the process runs, in code with
// [Injector.Set] or over HTTP with [Injector.Handler].
//
// An Injector injects nothing until a [Config] with Enabled set is given
// to it; until then, and after it is disabled again, its interceptors
// pass every call straight through at the cost of one atomic load.
//
// Every injected fault is counted ([Injector.Counters], and the
// failsoft.chaos.faults metric), marked on the span in the call's context
// (an event and the failsoft.chaos.injected attribute), and says so in its
// status: messages start with "failsoft: chaos: " ([IsInjected] checks),
// and the server adds the failsoft-chaos trailer. A drill is never mistaken
// for an incident. On a client inside failsoft's suite the span is the
// attempt's; on a server it is the one a stats handler (otelgrpc) started
// before the interceptors ran, if any: failsoft's own server span starts
// after the chaos interceptor, and the client's attempt span records the
// injected status either way.
//
// The HTTP control endpoint is opt-in: nothing listens unless the operator
// mounts [Injector.Handler]. Without a shared secret it answers only
// peers on the loopback interface; with one ([WithSecret]) every request
// must carry it as a bearer token.
//
// Put the server interceptors first in the server's chain, so that an
// injected fault looks to the client like the network or the server
// failing and a lost response is dropped after every inner interceptor
// (an idempotency store, say) recorded the result. Put the client
// interceptors last, inside failsoft's suite, so that each attempt meets
// its own faults (injected pushback reaches the retry layer through the
// caller's grpc.Trailer option, as a server's would):
//
//	srv := grpc.NewServer(
//		grpc.ChainUnaryInterceptor(inj.UnaryServerInterceptor()),
//		grpc.ChainStreamInterceptor(inj.StreamServerInterceptor()),
//	)
package chaos
