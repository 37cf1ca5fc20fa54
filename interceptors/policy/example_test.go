package policy_test

import (
	"fmt"
	"log"

	"google.golang.org/protobuf/proto"

	"github.com/failsoft/failsoft/interceptors/policy"
	failsoftv1 "github.com/failsoft/failsoft/proto/failsoft/v1"
)

func ExampleResolver_Resolve() {
	r, err := policy.New()
	if err != nil {
		log.Fatal(err)
	}
	// The test proto marks this method NO_SIDE_EFFECTS with a 100 ms hedge.
	p, err := r.Resolve("/failsoft.policytest.v1.TunedService/Hedged")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(p.Idempotency, p.Retryable(false), p.Hedgeable(), p.Hedge.Delay)

	// A method nobody described is never retried.
	p, _ = r.Resolve("/elsewhere.v1.Unknown/Write")
	fmt.Println(p.Idempotency, p.Retryable(false))
	// Output:
	// NO_SIDE_EFFECTS true true 100ms
	// UNKNOWN false
}

func ExampleWithMethod() {
	// Mark a third-party method the user cannot annotate as safe to retry.
	r, err := policy.New(policy.WithMethod("/search.v1.Search/Query", &failsoftv1.MethodPolicy{
		Idempotency: failsoftv1.Idempotency_IDEMPOTENCY_NO_SIDE_EFFECTS,
		Retry:       &failsoftv1.RetryPolicy{MaxAttempts: proto.Uint32(4)},
	}))
	if err != nil {
		log.Fatal(err)
	}
	p, _ := r.Resolve("/search.v1.Search/Query")
	fmt.Println(p.Retryable(false), p.Retry.MaxAttempts)

	// Invalid values are refused when the resolver is built.
	_, err = policy.New(policy.WithMethod("/search.v1.Search/Query", &failsoftv1.MethodPolicy{
		Retry: &failsoftv1.RetryPolicy{MaxAttempts: proto.Uint32(0)},
	}))
	fmt.Println(err)
	// Output:
	// true 4
	// failsoft: policy for /search.v1.Search/Query: retry.max_attempts: must be between 1 and 10 (it counts the first attempt), got 0
}

func ExampleResolver_Validate() {
	r, _ := policy.New()
	if err := r.Validate(); err != nil {
		// At start-up, a service would stop here. The test proto carries a
		// service of deliberately broken options.
		fmt.Println("invalid failsoft options found")
	}
	// Output: invalid failsoft options found
}

func ExampleResolver_Unmatched() {
	r, err := policy.New(
		// The test proto's package is registered: a policy for it applies.
		policy.WithService("failsoft.policytest.v1.PlainService", &failsoftv1.MethodPolicy{
			Idempotency: failsoftv1.Idempotency_IDEMPOTENCY_IDEMPOTENT,
		}),
		// A misspelt package is not an error (its descriptor might be
		// registered later) but is listed: failsoft.DialOptions reports it
		// to the observer as an observe.PolicyUnmatched event.
		policy.WithService("failsoft.policytst.v1.PlainService", &failsoftv1.MethodPolicy{
			Idempotency: failsoftv1.Idempotency_IDEMPOTENCY_IDEMPOTENT,
		}),
	)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(r.Unmatched())
	// Output: [failsoft.policytst.v1.PlainService]
}
