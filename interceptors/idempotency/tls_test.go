package idempotency_test

import (
	"crypto/tls"
	"crypto/x509"
)

func tlsState(chains [][]*x509.Certificate) tls.ConnectionState {
	return tls.ConnectionState{VerifiedChains: chains}
}
