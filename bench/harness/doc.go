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
//  3. p99 latency against a server with a slow tail, with and without
//     hedging;
//  4. the failure modes of issue #18 (Modes), each run for every chain in
//     the same run: 20% transient UNAVAILABLE; one bad backend of three
//     behind round_robin, failing every call or answering late; charge
//     responses lost after the charge committed (duplicate charges and
//     calls that failed although they were charged); 1.5x overload whose
//     excess is rejected as RESOURCE_EXHAUSTED, as UNAVAILABLE with
//     pushback and as plain UNAVAILABLE (goodput, attempts at the server);
//     an outage followed by a heal (attempts during it, how soon calls
//     succeed after it), with and without failsoft's breaker; and 3%
//     flakiness at about 1,000 calls/s with the README's breaker rule.
//     failsoft runs them with its library defaults (LibraryDefaults) and
//     its row is checked against the goals (ModeGoals);
//  5. the pending stores of issue #21 (RunPending): enqueue and drain
//     throughput and allocations of boltstore and redisstore through a
//     pending.Queue, each phase timed in alternation with its store's raw
//     operation (an fsync'd bbolt Put, an XADD to a redis-server the run
//     starts), and checked against goals set as ratios to it
//     (PendingGoals).
//
// A measurement that fails is tried once more; if it fails again, only the
// cells it fills say so (Row.Failed), with the reason.
//
// Faults are a pure function of a seed, the logical call id (the request
// payload) and how many attempts of that call the server has seen, so all
// chains meet the same faults. Every loop is bounded in count and time, and
// servers listen on 127.0.0.1 only.
//
// cmd/report runs everything and prints the markdown tables; the package's
// tests are a fast smoke test plus Go benchmarks (BenchmarkInterceptors,
// BenchmarkLoopback).
package harness
