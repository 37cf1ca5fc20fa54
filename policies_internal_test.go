package failsoft

import (
	"context"
	"errors"
	"maps"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/policy"
	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
	failsoftv1 "github.com/failsoft/failsoft/proto/failsoft/v1"
)

// checkedService is the service resolverWith describes. Its descriptor is
// never registered globally, so the other tests of this binary, which
// build suites over protoregistry.GlobalFiles, never see its policies.
const checkedService = "failsoft.validate.v1.Checked"

// resolverWith returns a resolver over checkedFiles(methods).
func resolverWith(t testing.TB, methods map[string]*failsoftv1.MethodPolicy) *policy.Resolver {
	t.Helper()
	r, err := policy.New(policy.WithFiles(checkedFiles(t, methods)))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// checkedFiles returns a registry holding only checkedService, whose
// methods carry the given (failsoft.v1.method) options, as a proto with
// those options would.
func checkedFiles(t testing.TB, methods map[string]*failsoftv1.MethodPolicy) *protoregistry.Files {
	t.Helper()
	svc := &descriptorpb.ServiceDescriptorProto{Name: proto.String("Checked")}
	for _, name := range slices.Sorted(maps.Keys(methods)) {
		opts := &descriptorpb.MethodOptions{}
		proto.SetExtension(opts, failsoftv1.E_Method, methods[name])
		svc.Method = append(svc.Method, &descriptorpb.MethodDescriptorProto{
			Name:       proto.String(name),
			InputType:  proto.String(".failsoft.policytest.v1.PingRequest"),
			OutputType: proto.String(".failsoft.policytest.v1.PingResponse"),
			Options:    opts,
		})
	}
	fd, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
		Name:       proto.String("failsoft/validate/v1/checked.proto"),
		Package:    proto.String("failsoft.validate.v1"),
		Syntax:     proto.String("proto3"),
		Dependency: []string{policytestv1.File_failsoft_policytest_v1_policytest_proto.Path()},
		Service:    []*descriptorpb.ServiceDescriptorProto{svc},
	}, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	files := &protoregistry.Files{}
	if err := files.RegisterFile(fd); err != nil {
		t.Fatal(err)
	}
	return files
}

func checkedMethod(name string) string { return "/" + checkedService + "/" + name }

// badPolicies are the mistakes a proto can make that buf lint accepts,
// each with the field the error must name.
var badPolicies = []struct {
	name, field string
	p           *failsoftv1.MethodPolicy
}{
	{"TooManyAttempts", "retry.max_attempts", &failsoftv1.MethodPolicy{
		Idempotency: failsoftv1.Idempotency_IDEMPOTENCY_IDEMPOTENT,
		Retry:       &failsoftv1.RetryPolicy{MaxAttempts: proto.Uint32(100)},
	}},
	{"EmptyTimeout", "timeout", &failsoftv1.MethodPolicy{Timeout: &durationpb.Duration{}}},
	{"MisspeltCode", "retry.retryable_codes", &failsoftv1.MethodPolicy{
		Idempotency: failsoftv1.Idempotency_IDEMPOTENCY_IDEMPOTENT,
		Retry:       &failsoftv1.RetryPolicy{RetryableCodes: []string{"UNAVAILBLE"}},
	}},
}

// validPolicy is a method that must never be named.
var validPolicy = &failsoftv1.MethodPolicy{
	Idempotency: failsoftv1.Idempotency_IDEMPOTENCY_IDEMPOTENT,
	Timeout:     durationpb.New(2e9),
	Retry:       &failsoftv1.RetryPolicy{MaxAttempts: proto.Uint32(4), RetryableCodes: []string{"UNAVAILABLE"}},
}

// suiteErrors builds both suites over r with the given defer choice and
// returns their errors.
func suiteErrors(r *policy.Resolver, late bool) (client, server error) {
	copts := []Option{WithResolver(r), WithoutTelemetry()}
	sopts := []ServerOption{WithServerResolver(r), WithoutServerTelemetry()}
	if late {
		copts = append(copts, WithLatePolicies())
		sopts = append(sopts, WithServerLatePolicies())
	}
	_, client = DialOptions(copts...)
	_, server = ServerOptions(sopts...)
	return client, server
}

// TestPoliciesCheckedAtConstruction: DialOptions and ServerOptions refuse
// a registry with an invalid method policy, naming each bad method and
// field on a line of its own that says it is failsoft's, and accept it
// when told to defer the check.
func TestPoliciesCheckedAtConstruction(t *testing.T) {
	all := map[string]*failsoftv1.MethodPolicy{"Valid": validPolicy}
	for _, bp := range badPolicies {
		all[bp.name] = bp.p
	}
	for _, tc := range []struct {
		name    string
		methods map[string]*failsoftv1.MethodPolicy
		bad     []int // indexes into badPolicies
	}{
		{"max_attempts 100", map[string]*failsoftv1.MethodPolicy{"Valid": validPolicy, badPolicies[0].name: badPolicies[0].p}, []int{0}},
		{"timeout {}", map[string]*failsoftv1.MethodPolicy{"Valid": validPolicy, badPolicies[1].name: badPolicies[1].p}, []int{1}},
		{"misspelt retryable code", map[string]*failsoftv1.MethodPolicy{"Valid": validPolicy, badPolicies[2].name: badPolicies[2].p}, []int{2}},
		{"all three at once", all, []int{0, 1, 2}},
		{"valid only", map[string]*failsoftv1.MethodPolicy{"Valid": validPolicy}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := resolverWith(t, tc.methods)
			client, server := suiteErrors(r, false)
			for side, err := range map[string]error{"DialOptions": client, "ServerOptions": server} {
				if len(tc.bad) == 0 {
					if err != nil {
						t.Errorf("%s: %v, want no error", side, err)
					}
					continue
				}
				if err == nil {
					t.Fatalf("%s accepted invalid policies", side)
				}
				msg := err.Error()
				for _, i := range tc.bad {
					want := checkedMethod(badPolicies[i].name) + ": " + badPolicies[i].field + ": "
					if strings.Count(msg, want) != 1 {
						t.Errorf("%s: error names %q %d times, want once:\n%s", side, want, strings.Count(msg, want), msg)
					}
				}
				if strings.Contains(msg, "Valid") {
					t.Errorf("%s: error names the valid method:\n%s", side, msg)
				}
				lines := strings.Split(msg, "\n")
				if len(lines) != len(tc.bad)+1 {
					t.Errorf("%s: %d lines, want a heading and one per bad method:\n%s", side, len(lines), msg)
				}
				for _, l := range lines {
					if !strings.HasPrefix(l, "failsoft: ") {
						t.Errorf("%s: line %q does not say it is failsoft's", side, l)
					}
				}
				late := "failsoft.WithLatePolicies()"
				if side == "ServerOptions" {
					late = "failsoft.WithServerLatePolicies()"
				}
				if !strings.Contains(lines[0], late) {
					t.Errorf("%s: heading %q does not name %s", side, lines[0], late)
				}
				var pe *policy.Error
				if !errors.As(err, &pe) || !strings.HasPrefix(pe.Method, checkedMethod("")) {
					t.Errorf("%s: errors.As finds %+v, want a bad method's *policy.Error", side, pe)
				}
			}
			client, server = suiteErrors(r, true)
			if client != nil || server != nil {
				t.Errorf("deferred: DialOptions: %v, ServerOptions: %v; want both to build", client, server)
			}
		})
	}
}

// counting serves checkedService: each method answers its request and
// counts how often a handler ran.
func counting(calls *atomic.Int32) *grpc.ServiceDesc {
	desc := &grpc.ServiceDesc{ServiceName: checkedService, HandlerType: (*any)(nil)}
	for _, name := range []string{"Valid", badPolicies[1].name} {
		desc.Methods = append(desc.Methods, grpc.MethodDesc{
			MethodName: name,
			Handler: func(_ any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
				req := &policytestv1.PingRequest{}
				if err := dec(req); err != nil {
					return nil, err
				}
				handler := func(context.Context, any) (any, error) {
					calls.Add(1)
					return &policytestv1.PingResponse{Payload: req.GetPayload()}, nil
				}
				if icpt == nil {
					return handler(ctx, req)
				}
				return icpt(ctx, req, &grpc.UnaryServerInfo{FullMethod: checkedMethod(name)}, handler)
			},
		})
	}
	return desc
}

// TestLatePoliciesFailTheirCalls: with the check deferred, a call to a
// method whose policy is invalid fails with FAILED_PRECONDITION, carrying
// the *policy.Error, without reaching the handler, on the client side as
// on the server side, while valid methods work.
func TestLatePoliciesFailTheirCalls(t *testing.T) {
	r := resolverWith(t, map[string]*failsoftv1.MethodPolicy{"Valid": validPolicy, badPolicies[1].name: badPolicies[1].p})
	for _, tc := range []struct {
		name           string
		client, server bool // which side installs a suite
	}{
		{"client suite", true, false},
		{"server suite", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var (
				sopts []grpc.ServerOption
				dopts []grpc.DialOption
				err   error
			)
			if tc.server {
				if sopts, err = ServerOptions(WithServerResolver(r), WithoutServerTelemetry(), WithServerLatePolicies()); err != nil {
					t.Fatal(err)
				}
			}
			if tc.client {
				if dopts, err = DialOptions(WithResolver(r), WithoutTelemetry(), WithLatePolicies()); err != nil {
					t.Fatal(err)
				}
			}
			var calls atomic.Int32
			srv := grpc.NewServer(sopts...)
			srv.RegisterService(counting(&calls), nil)
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go srv.Serve(lis)
			defer srv.Stop()
			cc, err := grpc.NewClient(lis.Addr().String(), append(dopts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			ctx := context.Background()
			err = cc.Invoke(ctx, checkedMethod(badPolicies[1].name), &policytestv1.PingRequest{Payload: "x"}, &policytestv1.PingResponse{})
			if status.Code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), checkedMethod(badPolicies[1].name)+": timeout") {
				t.Errorf("call to the invalid method: %v, want FAILED_PRECONDITION naming it", err)
			}
			if tc.client {
				var pe *policy.Error
				if !errors.As(err, &pe) {
					t.Errorf("errors.As finds no *policy.Error in %v", err)
				}
			}
			if calls.Load() != 0 {
				t.Errorf("the invalid method's handler ran %d times, want 0", calls.Load())
			}
			resp := &policytestv1.PingResponse{}
			if err := cc.Invoke(ctx, checkedMethod("Valid"), &policytestv1.PingRequest{Payload: "y"}, resp); err != nil || resp.GetPayload() != "y" || calls.Load() != 1 {
				t.Errorf("call to the valid method: %v, payload %q, handler ran %d times; want success once", err, resp.GetPayload(), calls.Load())
			}
		})
	}
}

// TestUnmatchedPoliciesWarned: policies given in code whose service is not
// registered are reported to the observer once, by each suite, as
// PolicyUnmatched; policies for registered services are not.
func TestUnmatchedPoliciesWarned(t *testing.T) {
	p := &failsoftv1.MethodPolicy{Timeout: durationpb.New(2e9)}
	for _, tc := range []struct {
		name string
		opts []policy.Option
		want []string
	}{
		{"registered", []policy.Option{policy.WithService(checkedService, p), policy.WithMethod(checkedMethod("Valid"), p)}, nil},
		{"misspelt package", []policy.Option{policy.WithMethod("/failsoft.validat.v1.Checked/Valid", p)}, []string{"/failsoft.validat.v1.Checked/Valid"}},
		{"service not linked", []policy.Option{policy.WithService("elsewhere.v1.Search", p), policy.WithService(checkedService, p)}, []string{"elsewhere.v1.Search"}},
		{"several", []policy.Option{policy.WithService("elsewhere.v1.Search", p), policy.WithMethod("/elsewhere.v1.Search/Query", p)}, []string{"/elsewhere.v1.Search/Query", "elsewhere.v1.Search"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := policy.New(append([]policy.Option{policy.WithFiles(checkedFiles(t, map[string]*failsoftv1.MethodPolicy{"Valid": validPolicy}))}, tc.opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			obs := observe.Func(func(ctx context.Context, e observe.Event) {
				if e.Kind == observe.PolicyUnmatched {
					got = append(got, e.Method)
				}
			})
			if _, err := DialOptions(WithResolver(r), WithObserver(obs), WithoutTelemetry()); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("DialOptions warned about %q, want %q", got, tc.want)
			}
			got = nil
			if _, err := ServerOptions(WithServerResolver(r), WithServerObserver(obs), WithoutServerTelemetry()); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("ServerOptions warned about %q, want %q", got, tc.want)
			}
		})
	}
}
