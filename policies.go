package failsoft

import (
	"context"
	"errors"

	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/policy"
)

// WithLatePolicies defers the check of method policies from DialOptions to
// each method's first call, for programs that register descriptors after
// building the suite (protos loaded at run time). A call to a method whose
// policy is invalid then fails with FAILED_PRECONDITION, the
// *policy.Error naming the method and field, before anything is sent.
//
// Without it, DialOptions checks the policy of every method the
// resolver's registry holds (every service linked into the binary, with
// the default resolver) and refuses invalid ones, naming each.
func WithLatePolicies() Option {
	return func(c *config) error {
		c.latePolicies = true
		return nil
	}
}

// WithServerLatePolicies is WithLatePolicies for ServerOptions: a call to a
// method whose policy is invalid then fails with FAILED_PRECONDITION
// before its handler runs.
func WithServerLatePolicies() ServerOption {
	return func(c *serverConfig) error {
		c.latePolicies = true
		return nil
	}
}

// checkPolicies resolves every method of r's registry and returns one
// error naming each invalid policy, one per line, each line starting with
// "failsoft: " (the *policy.Error of each method, found with errors.As),
// under a first line that says how to defer the check.
func checkPolicies(r *policy.Resolver, deferWith string) error {
	err := r.Validate()
	if err == nil {
		return nil
	}
	return errors.Join(
		errors.New("failsoft: invalid method policies (fix the proto options or the resolver's policies, or pass "+deferWith+" to fail only the calls to these methods):"),
		err)
}

// warnUnmatched reports to o every policy given to r in code whose name
// matches no registered service: a misspelt package or service in
// policy.WithService or policy.WithMethod would otherwise be a policy
// that silently never applies. They are warnings, not errors, since
// policies in code also serve services whose descriptors are not linked.
func warnUnmatched(r *policy.Resolver, o observe.Observer) {
	if o == nil {
		return
	}
	for _, name := range r.Unmatched() {
		o.Observe(context.Background(), observe.Event{Kind: observe.PolicyUnmatched, Method: name,
			Reason: "no registered descriptor describes this service"})
	}
}
