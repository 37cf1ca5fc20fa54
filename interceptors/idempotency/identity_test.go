package idempotency_test

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"net/url"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/idempotency"
	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// caller is one connection of a client: its address and, with mTLS, its
// verified certificate; token stands for credentials an auth layer checks.
type caller struct {
	addr  string
	cert  *x509.Certificate
	token string
}

func (c caller) ctx(key string) context.Context {
	md := metadata.Pairs("idempotency-key", key)
	if c.token != "" {
		md.Set("authorization", "Bearer "+c.token)
	}
	p := &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(c.addr), Port: 40000}}
	if c.cert != nil {
		p.AuthInfo = credentials.TLSInfo{State: tlsState([][]*x509.Certificate{{c.cert}})}
	}
	return peer.NewContext(metadata.NewIncomingContext(context.Background(), md), p)
}

// tokenIdentity names the caller by its bearer token, as an IdentityFunc
// over an authentication layer's result would.
func tokenIdentity(ctx context.Context) (string, error) {
	v := metadata.ValueFromIncomingContext(ctx, "authorization")
	if len(v) != 1 {
		return "", status.Error(codes.Unauthenticated, "no token")
	}
	return "token:" + v[0], nil
}

// direct calls a server interceptor without a network, counting runs.
type direct struct {
	intercept grpc.UnaryServerInterceptor
	runs      int
}

func newDirect(t *testing.T, opts ...idempotency.ServerOption) *direct {
	t.Helper()
	srv, err := idempotency.NewServer(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return &direct{intercept: srv.UnaryServerInterceptor()}
}

func (d *direct) call(ctx context.Context, payload string) (string, error) {
	resp, err := d.intercept(ctx, &policytestv1.PingRequest{Payload: payload}, &grpc.UnaryServerInfo{FullMethod: keyedWrite},
		func(_ context.Context, req any) (any, error) {
			d.runs++
			return &policytestv1.PingResponse{Payload: "charged:" + req.(*policytestv1.PingRequest).Payload}, nil
		})
	if err != nil {
		return "", err
	}
	return resp.(*policytestv1.PingResponse).Payload, nil
}

var (
	billing  = &x509.Certificate{Subject: pkix.Name{CommonName: "billing", Organization: []string{"Acme"}}}
	spiffe   = &x509.Certificate{Subject: pkix.Name{CommonName: "ignored"}, URIs: []*url.URL{{Scheme: "spiffe", Host: "acme.example", Path: "/checkout"}}}
	intruder = &x509.Certificate{Subject: pkix.Name{CommonName: "intruder"}}
)

// A client that comes back from another address (restarted as a new pod,
// behind NAT, over IPv6 instead of IPv4) is the same caller: its repeated
// call is answered from the store and charged once.
func TestIdentitySurvivesNewAddress(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     []idempotency.ServerOption
		from, to caller
	}{
		{"default, mTLS certificate", nil, caller{addr: "10.0.0.1", cert: billing}, caller{addr: "10.0.0.2", cert: billing}},
		{"default, SPIFFE ID", nil, caller{addr: "::1", cert: spiffe}, caller{addr: "127.0.0.1", cert: spiffe}},
		{"auth function", []idempotency.ServerOption{idempotency.WithIdentity(tokenIdentity)}, caller{addr: "127.0.0.1", token: "acct-7"}, caller{addr: "127.0.0.2", token: "acct-7"}},
		{"unauthenticated service", []idempotency.ServerOption{idempotency.WithIdentity(idempotency.Unauthenticated)}, caller{addr: "::1"}, caller{addr: "127.0.0.1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDirect(t, tc.opts...)
			first, err1 := d.call(tc.from.ctx("k"), "p")
			again, err2 := d.call(tc.to.ctx("k"), "p")
			if err1 != nil || err2 != nil || first != again || d.runs != 1 {
				t.Errorf("answers %q, %q (%v, %v), %d runs; want one run and its answer twice", first, again, err1, err2, d.runs)
			}
		})
	}
}

// Without a verified certificate or an identity function the server does
// not guess the caller from its address: it refuses, and runs nothing.
func TestIdentityDefaultRefusesUnidentified(t *testing.T) {
	d := newDirect(t)
	for _, c := range []caller{{addr: "127.0.0.1"}, {addr: "127.0.0.1", token: "acct-7"}} {
		if _, err := d.call(c.ctx("k"), "p"); status.Code(err) != codes.Unauthenticated {
			t.Errorf("caller %+v: %v, want UNAUTHENTICATED", c, err)
		}
	}
	if d.runs != 0 {
		t.Errorf("%d runs, want none", d.runs)
	}
}

// A neighbour on the same address, with its own identity, can neither read
// nor probe another caller's keys: a used key answers it exactly as an
// unused one would.
func TestIdentityNeighbourCannotProbe(t *testing.T) {
	for _, tc := range []struct {
		name              string
		opts              []idempotency.ServerOption
		victim, neighbour caller
	}{
		{"default, mTLS certificates", nil, caller{addr: "10.0.0.1", cert: billing}, caller{addr: "10.0.0.1", cert: intruder}},
		{"auth function", []idempotency.ServerOption{idempotency.WithIdentity(tokenIdentity)}, caller{addr: "10.0.0.1", token: "acct-7"}, caller{addr: "10.0.0.1", token: "acct-8"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDirect(t, tc.opts...)
			// The neighbour sends the victim's key with the victim's request
			// (a replay if they shared a key space) and with another one (a
			// conflict), and the same requests under unused keys.
			for _, k := range []string{"a", "b"} {
				if _, err := d.call(tc.victim.ctx(k), "victim's order"); err != nil {
					t.Fatal(err)
				}
			}
			for _, probe := range []struct{ used, unused, payload string }{
				{"a", "c", "victim's order"},
				{"b", "d", "another order"},
			} {
				fresh, errFresh := d.call(tc.neighbour.ctx(probe.unused), probe.payload)
				used, errUsed := d.call(tc.neighbour.ctx(probe.used), probe.payload)
				if errFresh != nil || errUsed != nil || fresh != used {
					t.Errorf("%q: unused key %q, %v; used key %q, %v; want the same answer", probe.payload, fresh, errFresh, used, errUsed)
				}
			}
			if d.runs != 6 {
				t.Errorf("%d runs, want 6 (every call of the neighbour ran as new)", d.runs)
			}
		})
	}
}
