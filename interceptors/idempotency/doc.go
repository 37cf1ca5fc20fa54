// Package idempotency makes retries of calls with side effects safe: a
// client interceptor gives every logical call one idempotency key, which
// all its retries and hedges carry, and a server interceptor runs each key
// once and answers every repeat with the first outcome. A payment whose
// response was lost is retried and still charged once.
//
// # Which methods
//
// Both sides act only on methods whose policy requires a key (the proto
// option `(failsoft.v1.method) = {requires_idempotency_key: true}`, or
// policy.WithMethod in code), read through a policy.Resolver
// (policy.Default() unless WithResolver is given). Such a method is also
// the one the retry interceptor retries only when a key is attached. Other
// methods pass through untouched, at the cost of one cached policy lookup.
//
// # Client
//
// New returns the client Interceptor. For a method that requires a key it
// puts one in the request metadata entry policy.KeyMetadata
// ("idempotency-key"):
//
//   - a key already in the outgoing metadata (set by the application, or
//     by an outer copy of the interceptor), left as it is;
//   - or the caller's key, set with WithKey;
//   - or a new random UUID (NewKey).
//
// Keys are checked with ValidateKey (printable ASCII, 1 to 255 bytes, no
// leading or trailing space); an invalid key, or a WithKey key that
// differs from one already in the metadata, fails the call locally with
// INVALID_ARGUMENT, as an *outcome.Rejection, and nothing is sent.
//
// It must sit outside the retry and hedging interceptors, so that every
// attempt of a call reuses the key in its context, and each new call gets a
// new one:
//
//	grpc.WithChainUnaryInterceptor(
//		deadlines, idem.UnaryClientInterceptor(), retries, breaker, ...)
//
// Streams to such methods carry the key in their metadata the same way.
// Each attached key is reported as an observe.KeyAttached event whose
// Reason is KeyHash(key); the key itself only with WithRawKeysInEvents.
//
// # Server
//
// NewServer returns the Server, whose UnaryServerInterceptor deduplicates
// by (caller identity, method, key). The caller identity comes from an
// IdentityFunc (WithIdentity) and must survive restarts and new addresses:
//
//   - CertificateIdentity, the default: the verified mTLS client
//     certificate (its URI name, such as a SPIFFE ID, or its subject); a
//     request without one is refused with UNAUTHENTICATED;
//   - a function of the caller's credentials, such as the principal an
//     authentication interceptor (placed before this one) put in the
//     context;
//   - Unauthenticated, the explicit choice of a service that cannot tell
//     callers apart: one identity, one key space and one quota for all;
//   - PeerIdentity, the IP address, an explicit and weak choice.
//
// A stored outcome is replayed only to the identity that created it, and
// another identity's key answers a caller exactly as an unused key does.
//
// For a request with a key:
//
//   - no key, several, or an invalid one: INVALID_ARGUMENT;
//   - a new key: claimed atomically with a lease (WithLease, DefaultLease),
//     the handler runs, and its outcome is stored for WithTTL (DefaultTTL,
//     24 h) if its code is in DefaultStoredCodes (successes and final
//     business errors); otherwise (validation, authorization and transient
//     failures) the claim is released and the request may be retried with
//     the same key;
//   - a key with a stored outcome: that outcome, without running the
//     handler, with the response header "idempotency-replayed: true";
//   - a key whose first request is still running: ABORTED, so the client
//     retries after a backoff;
//   - a key used before for a different request (FingerprintOf the method
//     and the deterministic encoding of the request differs):
//     FAILED_PRECONDITION, never the stored response.
//
// A claim whose handler crashed ends with its lease, and the key can then
// be claimed again. A handler still running when its lease ends may run a
// second time, so the lease must exceed the slowest handler. A panicking
// handler releases its claim before the panic goes on.
//
// Stored outcomes are the response message (rebuilt on replay from the
// type registry, WithTypes) or the full status with its details, and the
// response header and trailer metadata the handler set (grpc.SetHeader,
// grpc.SendHeader, grpc.SetTrailer), which a replay sends again.
//
// # Stores
//
// Outcomes live in a Store. The default is a MemoryStore, bounded in
// entries and bytes, which never evicts a live key: when full, a new key
// is answered RESOURCE_EXHAUSTED. Services with several replicas share
// redisstore.Store (Redis, SET NX with a lease). When the store cannot be
// reached the request fails with UNAVAILABLE, never running unguarded,
// unless WithFailOpen is given. Every failure of the store, and every
// outcome that could not be stored, is reported as an
// observe.KeyStoreError event saying where it happened (the telemetry
// package counts them in failsoft.server.idempotency.store_errors): with
// WithFailOpen, or with outcomes that stop being stored, deduplication
// would otherwise stop without a sign.
//
// # Streams
//
// The StreamServerInterceptor checks that a stream to a method requiring a
// key carries one valid key (INVALID_ARGUMENT otherwise), and does not
// deduplicate: a stream's outcome is a sequence of messages in both
// directions that cannot be stored and replayed faithfully. Streaming
// handlers find the key with IncomingKey and deduplicate in their own
// storage.
//
// # Cost
//
// Attaching a key costs one policy lookup, a random UUID (uuid.NewString,
// two allocations) and grpc's metadata.AppendToOutgoingContext. See the
// package benchmarks.
package idempotency
