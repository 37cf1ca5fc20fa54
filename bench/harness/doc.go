// Package harness measures failsoft's client chain against the peers a Go
// gRPC user would otherwise pick, in one process and on the same calls:
//
//   - go-grpc-middleware v2 retry and timeout interceptors;
//   - go-grpc-middleware retry with a sony/gobreaker v2 breaker interceptor;
//   - failsafe-go's failsafegrpc interceptor with retry, circuit breaker and
//     timeout (and its hedge policy where hedging is measured);
//   - grpc-go's built-in retry from the service config, without and with
//     retry throttling;
//   - a plain client, the reference.
//
// Every chain gets the same settings (Params): attempts, backoff, deadline,
// breaker threshold and delay, hedge delay. What is measured:
//
//  1. the interceptors' own cost over a no-op invoker (ns/op, allocs/op),
//     chained exactly as grpc.WithChainUnaryInterceptor chains them;
//  2. one unary call over loopback TCP to a server that answers at once;
//  3. scenarios against a loopback server with injected faults: attempts
//     per logical call under a total outage, success under transient
//     UNAVAILABLE, duplicate charges when responses are lost after the
//     server committed a write (a ledger keyed by the logical call), and
//     p99 latency against a slow tail with and without hedging;
//  4. overload: a server with a fixed capacity that rejects the excess at
//     once with RESOURCE_EXHAUSTED, and an open-loop client offering 1.5x
//     that capacity: goodput, attempts reaching the server per second,
//     success rate and breaker opens.
//
// Faults are a pure function of a seed, the logical call id (the request
// payload) and how many attempts of that call the server has seen, so all
// chains meet the same faults. Every loop is bounded in count and time, and
// servers listen on 127.0.0.1 only.
//
// cmd/report runs everything and prints one markdown table; the package's
// tests are a fast smoke test plus Go benchmarks (BenchmarkInterceptors,
// BenchmarkLoopback).
package harness
