package idempotency

import (
	"context"
	"crypto/x509"
	"net"
	"net/netip"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// CertificateIdentity is the default IdentityFunc. It names the caller by
// the client certificate that the server's TLS configuration verified
// (mTLS): its first URI name, such as a SPIFFE ID ("uri:spiffe://..."),
// or else its subject ("x509:CN=billing,O=Acme"). The name survives
// restarts, new addresses and NAT, so a call repeated by a restarted
// client is still deduplicated. A request without a verified certificate
// fails with UNAUTHENTICATED: a service that authenticates callers some
// other way names them with WithIdentity, and one that does not
// authenticate them chooses Unauthenticated (or PeerIdentity) explicitly.
func CertificateIdentity(ctx context.Context) (string, error) {
	if id, ok := certificateName(ctx); ok {
		return id, nil
	}
	return "", status.Error(codes.Unauthenticated, "failsoft: idempotency: the caller has no verified client certificate to be identified by; "+
		"name callers with idempotency.WithIdentity (or choose idempotency.Unauthenticated)")
}

func certificateName(ctx context.Context) (string, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", false
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return "", false
	}
	c := verifiedLeaf(ti.State.VerifiedChains)
	switch {
	case c == nil:
		return "", false
	case len(c.URIs) > 0:
		return "uri:" + c.URIs[0].String(), true
	}
	return "x509:" + c.Subject.String(), true
}

// Unauthenticated is the IdentityFunc of a service that cannot tell its
// callers apart: every caller has the one identity "anonymous". A request
// is then deduplicated whichever connection, address or restarted process
// sends it, but callers share one key space and one quota: a caller who
// sends another's key with the same request receives that request's
// outcome, and one caller can use up the quota of all. It is safe only
// when keys cannot be guessed (NewKey's random UUIDs) and callers are
// trusted not to flood the store.
func Unauthenticated(context.Context) (string, error) { return "anonymous", nil }

// PeerIdentity names the caller by its verified TLS client certificate
// (as CertificateIdentity) when there is one, and otherwise by its IP
// address without the port ("ip:" and the address). An address is a weak
// identity, to be chosen explicitly: a client restarted elsewhere, or
// moving between IPv4 and IPv6, becomes a new caller and its retried call
// runs again; callers behind one NAT or proxy share an identity and can
// meet each other's keys.
func PeerIdentity(ctx context.Context) (string, error) {
	if id, ok := certificateName(ctx); ok {
		return id, nil
	}
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", status.Error(codes.Unauthenticated, "failsoft: idempotency: the request has no peer to identify the caller by")
	}
	if a, ok := p.Addr.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			return "ip:" + ip.Unmap().String(), nil
		}
	}
	if p.Addr == nil {
		return "", status.Error(codes.Unauthenticated, "failsoft: idempotency: the request's peer has no address")
	}
	return p.Addr.Network() + ":" + p.Addr.String(), nil
}

func verifiedLeaf(chains [][]*x509.Certificate) *x509.Certificate {
	if len(chains) > 0 && len(chains[0]) > 0 {
		return chains[0][0]
	}
	return nil
}
