package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/failsoft/failsoft/interceptors/internal/option"
	failsoftv1 "github.com/failsoft/failsoft/proto/failsoft/v1"
)

// maxCached bounds the resolver's cache. Method names come from generated
// code, so a real client stays far below it; past it, policies are still
// resolved, just not cached.
const maxCached = 4096

// Suite defaults: what a method gets when neither its proto nor code says
// otherwise. A method is still retried only when it is safe to retry.
var suiteDefaults = &failsoftv1.MethodPolicy{
	Retry: &failsoftv1.RetryPolicy{
		MaxAttempts:       proto.Uint32(3),
		InitialBackoff:    durationpb.New(50 * time.Millisecond),
		MaxBackoff:        durationpb.New(2 * time.Second),
		BackoffMultiplier: proto.Float64(2),
		RetryableCodes:    []string{"UNAVAILABLE"},
	},
}

// Error reports an invalid policy value, naming the method and the field.
type Error struct {
	Method string // full method name, or a service name for service overrides
	Field  string // option field, e.g. "retry.max_attempts"
	Reason string
}

func (e *Error) Error() string {
	return fmt.Sprintf("failsoft: policy for %s: %s: %s", e.Method, e.Field, e.Reason)
}

// GRPCStatus makes an *Error a gRPC status error: a call whose method has
// an invalid policy fails with FAILED_PRECONDITION, and the caller still
// finds the *Error with errors.As. Layers return it as it is.
func (e *Error) GRPCStatus() *status.Status {
	return status.New(codes.FailedPrecondition, e.Error())
}

// Option configures a Resolver.
type Option func(*config) error

type config struct {
	files    *protoregistry.Files
	defaults *failsoftv1.MethodPolicy
	services map[string]*failsoftv1.MethodPolicy
	methods  map[string]*failsoftv1.MethodPolicy
}

// WithFiles makes the resolver look up method descriptors in files instead
// of protoregistry.GlobalFiles.
func WithFiles(files *protoregistry.Files) Option {
	return func(c *config) error {
		if files == nil {
			return errors.New("policy.WithFiles: nil registry")
		}
		c.files = files
		return nil
	}
}

// WithDescriptorSet makes the resolver look up method descriptors in a
// compiled descriptor set (for example from `buf build -o`), for services
// whose generated code is not linked into the binary.
func WithDescriptorSet(set *descriptorpb.FileDescriptorSet) Option {
	return func(c *config) error {
		files, err := protodesc.NewFiles(set)
		if err != nil {
			return fmt.Errorf("policy.WithDescriptorSet: %w", err)
		}
		c.files = files
		return nil
	}
}

// WithDefaults replaces the suite defaults field by field: fields set in p
// win over the built-in defaults.
func WithDefaults(p *failsoftv1.MethodPolicy) Option {
	return func(c *config) error {
		if p == nil {
			return errors.New("policy.WithDefaults: nil policy")
		}
		c.defaults = merge(c.defaults, p)
		return nil
	}
}

// WithService sets a policy in code for every method of a service, given by
// its full name ("payments.v1.PaymentService"). It sits over the service's
// proto options and under each method's own options.
func WithService(service string, p *failsoftv1.MethodPolicy) Option {
	return func(c *config) error {
		if service == "" || strings.ContainsRune(service, '/') || p == nil {
			return fmt.Errorf("policy.WithService(%q): want a full service name such as pkg.v1.Service and a non-nil policy", service)
		}
		c.services[service] = merge(c.services[service], p)
		return nil
	}
}

// WithMethod sets a policy in code for one method, given by its full name
// ("/payments.v1.PaymentService/Charge"). It wins over everything else, so
// it also serves methods of services the user cannot annotate.
func WithMethod(fullMethod string, p *failsoftv1.MethodPolicy) Option {
	return func(c *config) error {
		if _, _, ok := SplitMethod(fullMethod); !ok || p == nil {
			return fmt.Errorf("policy.WithMethod(%q): want a full method name such as /pkg.v1.Service/Method and a non-nil policy", fullMethod)
		}
		c.methods[fullMethod] = merge(c.methods[fullMethod], p)
		return nil
	}
}

// Resolver turns full method names into policies. It is safe for concurrent
// use; after the first call for a method, Resolve is lock-free and does not
// allocate.
type Resolver struct {
	cfg   config
	cache atomic.Pointer[map[string]entry]
	mu    sync.Mutex // serialises cache writers
}

type entry struct {
	p   *Policy
	err error
}

// New returns a Resolver. Policies given in code are validated here; proto
// options are validated on first use of each method, or all at once by
// Validate, which failsoft.DialOptions and ServerOptions call.
func New(opts ...Option) (*Resolver, error) {
	r := &Resolver{cfg: config{
		files:    protoregistry.GlobalFiles,
		defaults: suiteDefaults,
		services: map[string]*failsoftv1.MethodPolicy{},
		methods:  map[string]*failsoftv1.MethodPolicy{},
	}}
	errs := []error{option.Apply(&r.cfg, opts...)}
	if err := validate("defaults", r.cfg.defaults, Unknown); err != nil {
		errs = append(errs, err)
	}
	for name, p := range r.cfg.services {
		if err := validate(name, p, idempotencyOf(p, Unknown)); err != nil {
			errs = append(errs, err)
		}
		if err := r.knownService(name); err != nil {
			errs = append(errs, err)
		}
	}
	for name, p := range r.cfg.methods {
		if err := validate(name, p, idempotencyOf(p, Unknown)); err != nil {
			errs = append(errs, err)
		}
		if err := r.known(name); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	empty := map[string]entry{}
	r.cache.Store(&empty)
	return r, nil
}

// known returns an error when fullMethod names a method that its service,
// registered in the resolver's files, does not have: a misspelt name would
// otherwise be a policy that silently never applies. Methods of services
// that are not registered are accepted: their descriptors may be linked
// later, or never (a policy in code for a service the user cannot
// annotate).
func (r *Resolver) known(fullMethod string) error {
	service, method, _ := SplitMethod(fullMethod)
	d, err := r.cfg.files.FindDescriptorByName(protoreflect.FullName(service))
	if err != nil {
		return nil
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	switch {
	case !ok:
		return fmt.Errorf("policy.WithMethod(%q): %s is a %T, not a service", fullMethod, service, d)
	case sd.Methods().ByName(protoreflect.Name(method)) == nil:
		return fmt.Errorf("policy.WithMethod(%q): service %s has no method %s", fullMethod, service, method)
	}
	return nil
}

// knownService returns an error when service is not a service of the
// resolver's files although its package is registered there: a misspelt
// name would otherwise be a policy that silently never applies. Services
// of packages that are not registered are accepted, as in known.
func (r *Resolver) knownService(service string) error {
	d, err := r.cfg.files.FindDescriptorByName(protoreflect.FullName(service))
	if err == nil {
		if _, ok := d.(protoreflect.ServiceDescriptor); !ok {
			return fmt.Errorf("policy.WithService(%q): %s is a %T, not a service", service, service, d)
		}
		return nil
	}
	pkg := protoreflect.FullName(service).Parent()
	if pkg != "" && r.cfg.files.NumFilesByPackage(pkg) > 0 {
		return fmt.Errorf("policy.WithService(%q): package %s has no service %s", service, pkg, protoreflect.FullName(service).Name())
	}
	return nil
}

// Unmatched returns the names given with WithService and WithMethod whose
// service no descriptor in the resolver's registry describes, sorted. New
// refuses a name whose package (WithService) or service (WithMethod) is
// registered but lacks it; the names it accepted are of services whose
// descriptors are not linked (a policy in code is then their whole
// policy), registered later, or misspelt in their package. DialOptions and
// ServerOptions report them to the observer.
func (r *Resolver) Unmatched() []string {
	var out []string
	for name := range r.cfg.services {
		if _, err := r.cfg.files.FindDescriptorByName(protoreflect.FullName(name)); err != nil {
			out = append(out, name)
		}
	}
	for name := range r.cfg.methods {
		service, _, _ := SplitMethod(name)
		if _, err := r.cfg.files.FindDescriptorByName(protoreflect.FullName(service)); err != nil {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

var (
	defaultOnce     sync.Once
	defaultResolver *Resolver
)

// Default returns the shared resolver over protoregistry.GlobalFiles with
// the suite defaults, used by interceptors that were given no resolver.
func Default() *Resolver {
	defaultOnce.Do(func() {
		r, err := New()
		if err != nil {
			panic(err) // the built-in defaults are valid; a test pins it
		}
		defaultResolver = r
	})
	return defaultResolver
}

// Resolve returns the policy for a full method name such as
// "/payments.v1.PaymentService/Charge". When the method's options are
// invalid it returns the conservative policy (no retries, no hedging)
// together with an *Error, so that a caller can fail the call or log and
// proceed; it never silently ignores the problem.
func (r *Resolver) Resolve(fullMethod string) (*Policy, error) {
	if e, ok := (*r.cache.Load())[fullMethod]; ok {
		return e.p, e.err
	}
	return r.resolveSlow(fullMethod)
}

func (r *Resolver) resolveSlow(fullMethod string) (*Policy, error) {
	p, err := r.compute(fullMethod)
	r.mu.Lock()
	defer r.mu.Unlock()
	old := *r.cache.Load()
	if e, ok := old[fullMethod]; ok {
		return e.p, e.err
	}
	if len(old) >= maxCached {
		return p, err
	}
	next := make(map[string]entry, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[fullMethod] = entry{p, err}
	r.cache.Store(&next)
	return p, err
}

// Validate resolves every method of every service in the resolver's
// registry and returns all invalid options at once. Call it at start-up to
// fail early instead of on a method's first call.
func (r *Resolver) Validate() error {
	var errs []error
	r.cfg.files.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		svcs := fd.Services()
		for i := 0; i < svcs.Len(); i++ {
			ms := svcs.Get(i).Methods()
			for j := 0; j < ms.Len(); j++ {
				m := "/" + string(svcs.Get(i).FullName()) + "/" + string(ms.Get(j).Name())
				if _, err := r.Resolve(m); err != nil {
					errs = append(errs, err)
				}
			}
		}
		return true
	})
	return errors.Join(errs...)
}

// SplitMethod splits "/pkg.Service/Method" into its service and method
// names.
func SplitMethod(fullMethod string) (service, method string, ok bool) {
	if len(fullMethod) < 4 || fullMethod[0] != '/' {
		return "", "", false
	}
	i := strings.LastIndexByte(fullMethod, '/')
	if i <= 1 || i == len(fullMethod)-1 {
		return "", "", false
	}
	return fullMethod[1:i], fullMethod[i+1:], true
}

func (r *Resolver) compute(fullMethod string) (*Policy, error) {
	service, method, ok := SplitMethod(fullMethod)
	std := Unknown
	var svcOpt, methOpt *failsoftv1.MethodPolicy
	described := false
	if ok {
		if d, err := r.cfg.files.FindDescriptorByName(protoreflect.FullName(service)); err == nil {
			if sd, isSvc := d.(protoreflect.ServiceDescriptor); isSvc {
				if md := sd.Methods().ByName(protoreflect.Name(method)); md != nil {
					described = true
					std = stdIdempotency(md)
					methOpt = methodExt(md.Options())
				}
				svcOpt = serviceExt(sd.Options())
			}
		}
	}
	eff := merge(r.cfg.defaults, svcOpt)
	eff = merge(eff, r.cfg.services[service])
	eff = merge(eff, methOpt)
	eff = merge(eff, r.cfg.methods[fullMethod])
	idem := idempotencyOf(eff, std)
	if err := validate(fullMethod, eff, idem); err != nil {
		return conservative(fullMethod, described), err
	}
	p := build(eff, idem)
	p.Method = fullMethod
	p.Described = described
	return p, nil
}

func conservative(fullMethod string, described bool) *Policy {
	p := build(suiteDefaults, NotIdempotent)
	p.Method, p.Described = fullMethod, described
	p.Retry.MaxAttempts = 1
	return p
}

func stdIdempotency(md protoreflect.MethodDescriptor) Idempotency {
	opts, _ := md.Options().(*descriptorpb.MethodOptions)
	switch opts.GetIdempotencyLevel() {
	case descriptorpb.MethodOptions_NO_SIDE_EFFECTS:
		return NoSideEffects
	case descriptorpb.MethodOptions_IDEMPOTENT:
		return Idempotent
	}
	return Unknown
}

func methodExt(m proto.Message) *failsoftv1.MethodPolicy {
	if m == nil || !proto.HasExtension(m, failsoftv1.E_Method) {
		return nil
	}
	p, _ := proto.GetExtension(m, failsoftv1.E_Method).(*failsoftv1.MethodPolicy)
	return p
}

func serviceExt(m proto.Message) *failsoftv1.MethodPolicy {
	if m == nil || !proto.HasExtension(m, failsoftv1.E_ServiceDefault) {
		return nil
	}
	p, _ := proto.GetExtension(m, failsoftv1.E_ServiceDefault).(*failsoftv1.MethodPolicy)
	return p
}

func idempotencyOf(p *failsoftv1.MethodPolicy, std Idempotency) Idempotency {
	switch p.GetIdempotency() {
	case failsoftv1.Idempotency_IDEMPOTENCY_NO_SIDE_EFFECTS:
		return NoSideEffects
	case failsoftv1.Idempotency_IDEMPOTENCY_IDEMPOTENT:
		return Idempotent
	case failsoftv1.Idempotency_IDEMPOTENCY_NOT_IDEMPOTENT:
		return NotIdempotent
	}
	return std
}

// merge returns base with every field set in top laid over it. Neither
// argument is modified.
func merge(base, top *failsoftv1.MethodPolicy) *failsoftv1.MethodPolicy {
	if top == nil {
		return base
	}
	if base == nil {
		return proto.CloneOf(top)
	}
	out := proto.CloneOf(base)
	if top.Timeout != nil {
		out.Timeout = top.Timeout
	}
	if top.MinBudget != nil {
		out.MinBudget = top.MinBudget
	}
	if top.Idempotency != failsoftv1.Idempotency_IDEMPOTENCY_UNSPECIFIED {
		out.Idempotency = top.Idempotency
	}
	if top.RequiresIdempotencyKey != nil {
		out.RequiresIdempotencyKey = top.RequiresIdempotencyKey
	}
	if top.SkipCircuitBreaker != nil {
		out.SkipCircuitBreaker = top.SkipCircuitBreaker
	}
	if t := top.Retry; t != nil {
		if out.Retry == nil {
			out.Retry = &failsoftv1.RetryPolicy{}
		}
		o := out.Retry
		if t.MaxAttempts != nil {
			o.MaxAttempts = t.MaxAttempts
		}
		if t.InitialBackoff != nil {
			o.InitialBackoff = t.InitialBackoff
		}
		if t.MaxBackoff != nil {
			o.MaxBackoff = t.MaxBackoff
		}
		if t.BackoffMultiplier != nil {
			o.BackoffMultiplier = t.BackoffMultiplier
		}
		if len(t.RetryableCodes) > 0 {
			o.RetryableCodes = t.RetryableCodes
		}
		if t.PerAttemptTimeout != nil {
			o.PerAttemptTimeout = t.PerAttemptTimeout
		}
	}
	if t := top.Hedge; t != nil {
		if out.Hedge == nil {
			out.Hedge = &failsoftv1.HedgePolicy{}
		}
		o := out.Hedge
		if t.Delay != nil {
			o.Delay = t.Delay
		}
		if t.MaxAttempts != nil {
			o.MaxAttempts = t.MaxAttempts
		}
		if t.LatencyQuantile != nil {
			o.LatencyQuantile = t.LatencyQuantile
		}
	}
	return out
}

// validate checks an effective policy. idem is the effective idempotency,
// needed to refuse hedging of methods that are not free of side effects.
func validate(name string, p *failsoftv1.MethodPolicy, idem Idempotency) error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &Error{Method: name, Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	positive := func(field string, d *durationpb.Duration) {
		if d == nil {
			return
		}
		if err := d.CheckValid(); err != nil {
			bad(field, "%v", err)
		} else if d.AsDuration() <= 0 {
			bad(field, "must be positive, got %v", d.AsDuration())
		}
	}
	positive("timeout", p.Timeout)
	if d := p.MinBudget; d != nil {
		if err := d.CheckValid(); err != nil {
			bad("min_budget", "%v", err)
		} else if d.AsDuration() < 0 {
			bad("min_budget", "must not be negative, got %v", d.AsDuration())
		}
	}
	if r := p.Retry; r != nil {
		if r.MaxAttempts != nil && (r.GetMaxAttempts() < 1 || r.GetMaxAttempts() > MaxRetryAttempts) {
			bad("retry.max_attempts", "must be between 1 and %d (it counts the first attempt), got %d", MaxRetryAttempts, r.GetMaxAttempts())
		}
		positive("retry.initial_backoff", r.InitialBackoff)
		positive("retry.max_backoff", r.MaxBackoff)
		positive("retry.per_attempt_timeout", r.PerAttemptTimeout)
		if r.InitialBackoff != nil && r.MaxBackoff != nil && r.InitialBackoff.AsDuration() > r.MaxBackoff.AsDuration() {
			bad("retry.max_backoff", "%v is below initial_backoff %v", r.MaxBackoff.AsDuration(), r.InitialBackoff.AsDuration())
		}
		if r.BackoffMultiplier != nil && !(r.GetBackoffMultiplier() >= 1 && r.GetBackoffMultiplier() <= 100) {
			bad("retry.backoff_multiplier", "must be between 1 and 100, got %v", r.GetBackoffMultiplier())
		}
		for _, n := range r.RetryableCodes {
			c, err := ParseCode(n)
			switch {
			case err != nil:
				bad("retry.retryable_codes", "%v", err)
			case c == codes.OK:
				bad("retry.retryable_codes", "OK cannot be retried")
			}
		}
	}
	if h := p.Hedge; h != nil {
		if h.MaxAttempts != nil && (h.GetMaxAttempts() < 1 || h.GetMaxAttempts() > MaxHedgeAttempts) {
			bad("hedge.max_attempts", "must be between 1 and %d (it counts the first attempt), got %d", MaxHedgeAttempts, h.GetMaxAttempts())
		}
		positive("hedge.delay", h.Delay)
		if h.LatencyQuantile != nil && !(h.GetLatencyQuantile() > 0 && h.GetLatencyQuantile() < 1) {
			bad("hedge.latency_quantile", "must be in (0, 1), got %v", h.GetLatencyQuantile())
		}
		if h.GetMaxAttempts() > 1 {
			if idem != NoSideEffects {
				bad("hedge", "hedging needs a method with NO_SIDE_EFFECTS, this one is %v", idem)
			}
			if h.Delay == nil {
				bad("hedge.delay", "required when hedging is on")
			}
		}
	}
	return errors.Join(errs...)
}

// build converts a validated effective policy.
func build(p *failsoftv1.MethodPolicy, idem Idempotency) *Policy {
	out := &Policy{
		Idempotency:  idem,
		Timeout:      p.GetTimeout().AsDuration(),
		MinBudget:    p.GetMinBudget().AsDuration(),
		MinBudgetSet: p.MinBudget != nil,
		RequiresKey:  p.GetRequiresIdempotencyKey(),
		SkipBreaker:  p.GetSkipCircuitBreaker(),
	}
	if r := p.GetRetry(); r != nil {
		out.Retry = Retry{
			MaxAttempts:    int(r.GetMaxAttempts()),
			InitialBackoff: r.GetInitialBackoff().AsDuration(),
			MaxBackoff:     r.GetMaxBackoff().AsDuration(),
			Multiplier:     r.GetBackoffMultiplier(),
			AttemptTimeout: r.GetPerAttemptTimeout().AsDuration(),
		}
		for _, n := range r.RetryableCodes {
			if c, err := ParseCode(n); err == nil {
				out.Retry.Codes |= Codes(c)
			}
		}
	}
	if out.Retry.MaxAttempts < 1 {
		out.Retry.MaxAttempts = 1
	}
	if h := p.GetHedge(); h != nil {
		out.Hedge = Hedge{
			Delay:       h.GetDelay().AsDuration(),
			MaxAttempts: int(h.GetMaxAttempts()),
			Quantile:    h.GetLatencyQuantile(),
		}
	}
	return out
}
