// Package policy resolves a gRPC method to the policy that says what the
// failsoft interceptors may do with a call to it: whether it may be retried
// or hedged, with which backoff, timeouts and deadline budget, whether it
// needs an idempotency key, and whether the circuit breaker applies.
//
// # Where policies come from
//
// For a full method name such as "/payments.v1.PaymentService/Charge", a
// Resolver lays these over each other, field by field, later ones winning:
//
//  1. the suite defaults (3 attempts, 50 ms initial backoff, 2 s cap,
//     multiplier 2, UNAVAILABLE retried), changed with WithDefaults;
//  2. the service's (failsoft.v1.service_default) option;
//  3. a service policy given in code with WithService;
//  4. the method's (failsoft.v1.method) option;
//  5. a method policy given in code with WithMethod.
//
// Idempotency comes from the standard `option idempotency_level`, unless a
// failsoft option sets `idempotency`. A method is retried only when it is
// IDEMPOTENT or NO_SIDE_EFFECTS, or when it requires an idempotency key and
// the call carries one, whatever its idempotency level says (the server
// deduplicates by the key, so a NOT_IDEMPOTENT method that requires a key
// is retried with it); it is hedged only when it has NO_SIDE_EFFECTS. A
// method whose descriptor is not linked into the binary, or that says
// nothing, is not idempotent: it is never retried beyond what gRPC does
// transparently, while deadlines, breakers and tracing still apply.
//
// Descriptors are looked up in protoregistry.GlobalFiles (generated code
// registers itself there), or in a registry or descriptor set given with
// WithFiles or WithDescriptorSet.
//
// # Validation
//
// Policies given in code are checked by New, and so are their names: a
// WithMethod for a method its registered service lacks, or a WithService
// for a service its registered package lacks, is an error (a misspelt name
// would be a policy that never applies); names in packages that are not
// registered are accepted. Proto options are checked on a
// method's first Resolve, which then returns the conservative policy and an
// *Error naming the method and field; Validate checks every method at once,
// for use at start-up. failsoft.DialOptions and failsoft.ServerOptions
// call Validate on their resolver and refuse invalid policies unless told
// to defer the check.
//
// # Cost
//
// Resolve caches: after the first call for a method it is lock-free and
// does not allocate.
package policy
