package idempotency

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	spb "google.golang.org/genproto/googleapis/rpc/status"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/internal/option"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/outcome"
	"github.com/failsoft/failsoft/interceptors/policy"
)

// Server is the server side: it runs each (caller, method, key) at most
// once and answers repeats from its Store.
type Server struct {
	cfg serverConfig
}

// NewServer returns the server interceptor. With no options it keeps
// outcomes in a MemoryStore with default bounds for DefaultTTL, names
// callers with CertificateIdentity and fails closed when its store is unreachable.
func NewServer(opts ...ServerOption) (*Server, error) {
	cfg := serverConfig{
		ttl:          DefaultTTL,
		lease:        DefaultLease,
		storeTimeout: DefaultStoreTimeout,
		stored:       DefaultStoredCodes,
		identity:     CertificateIdentity,
		types:        protoregistry.GlobalTypes,
	}
	if err := option.Each(opts, func(o ServerOption) error { return o.applyServer(&cfg) }); err != nil {
		return nil, err
	}
	if cfg.lease > cfg.ttl {
		return nil, fmt.Errorf("failsoft: idempotency: lease %v is longer than the TTL %v", cfg.lease, cfg.ttl)
	}
	if cfg.Resolver == nil {
		cfg.Resolver = policy.Default()
	}
	if cfg.store == nil {
		st, err := NewMemoryStore(MemoryConfig{Clock: clock.OrSystem(cfg.Clock)})
		if err != nil {
			return nil, err
		}
		cfg.store = st
	}
	return &Server{cfg: cfg}, nil
}

// Store returns the store the server uses.
func (s *Server) Store() Store { return s.cfg.store }

// UnaryServerInterceptor returns the unary server interceptor. Methods
// whose policy does not require a key pass through untouched.
func (s *Server) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		p, err := s.cfg.Resolver.Resolve(info.FullMethod)
		if err != nil {
			return nil, err // a *policy.Error: FAILED_PRECONDITION, found by errors.As
		}
		if !p.RequiresKey {
			return handler(ctx, req)
		}
		return s.serve(ctx, req, info.FullMethod, handler)
	}
}

// StreamServerInterceptor returns the stream server interceptor. Streams
// are not deduplicated: their outcome is a sequence of messages that the
// interceptor cannot store and replay faithfully. For a streaming method
// that requires a key, it checks that the stream carries exactly one valid
// key (INVALID_ARGUMENT otherwise) and leaves deduplication to the handler,
// which finds the key with IncomingKey.
func (s *Server) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		p, err := s.cfg.Resolver.Resolve(info.FullMethod)
		if err != nil {
			return err
		}
		if p.RequiresKey {
			if _, err := IncomingKey(ss.Context()); err != nil {
				return status.Errorf(codes.InvalidArgument, "failsoft: idempotency: %s: %v", info.FullMethod, err)
			}
		}
		return handler(srv, ss)
	}
}

// IncomingKey returns the idempotency key of an incoming request: the one
// value of its policy.KeyMetadata entry, validated with ValidateKey.
func IncomingKey(ctx context.Context) (string, error) {
	vals := metadata.ValueFromIncomingContext(ctx, policy.KeyMetadata)
	switch len(vals) {
	case 0:
		return "", fmt.Errorf("the method requires an idempotency key in the %s request metadata, and none was sent", policy.KeyMetadata)
	case 1:
	default:
		return "", fmt.Errorf("%d %s entries in the request metadata, want one", len(vals), policy.KeyMetadata)
	}
	if err := ValidateKey(vals[0]); err != nil {
		return "", err
	}
	return vals[0], nil
}

func (s *Server) serve(ctx context.Context, req any, method string, handler grpc.UnaryHandler) (any, error) {
	key, err := IncomingKey(ctx)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "failsoft: idempotency: %s: %v", method, err)
	}
	id, err := s.cfg.identity(ctx)
	if err != nil {
		if _, ok := status.FromError(err); ok {
			return nil, err
		}
		return nil, status.Errorf(codes.Unauthenticated, "failsoft: idempotency: caller identity: %v", err)
	}
	fp, err := FingerprintOf(method, req)
	if err != nil {
		return nil, status.Error(codes.Internal, "failsoft: "+err.Error())
	}
	k := Key{Identity: id, Method: method, Key: key}
	c, err := s.cfg.store.Claim(ctx, k, fp, s.cfg.lease)
	switch {
	case errors.Is(err, ErrFull):
		return nil, status.Errorf(codes.ResourceExhausted, "failsoft: idempotency: the key store of %s is full; retry later", method)
	case err != nil && s.cfg.failOpen:
		s.storeError(ctx, method, "claim_fail_open", err)
		return handler(ctx, req)
	case err != nil:
		s.storeError(ctx, method, "claim", err)
		return nil, status.Errorf(codes.Unavailable, "failsoft: idempotency: key store unavailable, %s not run: %v", method, err)
	}
	switch c.State {
	case Done:
		if c.Fingerprint != fp {
			return nil, s.mismatch(ctx, method)
		}
		return s.replay(ctx, method, key, c.Outcome)
	case InFlight:
		if c.Fingerprint != fp {
			return nil, s.mismatch(ctx, method)
		}
		s.observe(ctx, observe.Event{Kind: observe.KeyConflict, Method: method, Reason: "in_flight"})
		return nil, status.Errorf(codes.Aborted, "failsoft: idempotency: a request with this idempotency key is still running; retry after a backoff")
	case Claimed:
		return s.run(ctx, req, method, k, c.Token, fp, handler)
	}
	return nil, status.Errorf(codes.Internal, "failsoft: idempotency: store answered claim state %v", c.State)
}

func (s *Server) mismatch(ctx context.Context, method string) error {
	s.observe(ctx, observe.Event{Kind: observe.KeyConflict, Method: method, Reason: "fingerprint"})
	return status.Errorf(codes.FailedPrecondition, "failsoft: idempotency: this idempotency key was already used for a different request to %s; use a new key for a new request", method)
}

// run runs the handler under a claim and stores or releases its outcome.
func (s *Server) run(ctx context.Context, req any, method string, k Key, token string, fp Fingerprint, handler grpc.UnaryHandler) (resp any, err error) {
	finished := false
	defer func() {
		if !finished {
			// The handler panicked: give the key back, as a crash would
			// once its lease ended.
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.storeTimeout)
			if err := s.cfg.store.Release(wctx, k, token); err != nil {
				s.storeError(ctx, method, "release", err)
			}
			cancel()
		}
	}()
	var cs *capturingStream
	if sts := grpc.ServerTransportStreamFromContext(ctx); sts != nil {
		cs = &capturingStream{ServerTransportStream: sts}
		ctx = grpc.NewContextWithServerTransportStream(ctx, cs)
	}
	resp, err = handler(ctx, req)
	finished = true

	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.storeTimeout)
	defer cancel()
	code := outcome.Code(err)
	if !s.cfg.stored.Has(code) {
		if rErr := s.cfg.store.Release(wctx, k, token); rErr != nil {
			s.storeError(ctx, method, "release", rErr)
		}
		return resp, err
	}
	o, encErr := encodeOutcome(code, resp, err)
	if encErr == nil && cs != nil {
		o.Header, o.Trailer = cs.captured()
	}
	if encErr != nil {
		// The outcome cannot be stored. The claim is kept until its lease
		// ends, so that a retry is answered ABORTED rather than run again
		// at once.
		s.storeError(ctx, method, "encode", encErr)
		return resp, err
	}
	// A failed write leaves the claim in place until its lease ends; the
	// caller still gets the handler's answer, which is the truth.
	if cErr := s.cfg.store.Complete(wctx, k, token, fp, o, s.cfg.ttl); cErr != nil {
		s.storeError(ctx, method, "complete", cErr)
	}
	return resp, err
}

func encodeOutcome(code codes.Code, resp any, err error) (*Outcome, error) {
	if code != codes.OK {
		b, mErr := proto.Marshal(status.Convert(err).Proto())
		if mErr != nil {
			return nil, mErr
		}
		return &Outcome{Code: code, Status: b}, nil
	}
	m, ok := resp.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("response is %T, not a protobuf message", resp)
	}
	b, mErr := proto.Marshal(m)
	if mErr != nil {
		return nil, mErr
	}
	return &Outcome{Code: codes.OK, ResponseType: string(m.ProtoReflect().Descriptor().FullName()), Response: b}, nil
}

// replay answers from a stored outcome, marking the response as a replay.
func (s *Server) replay(ctx context.Context, method, key string, o *Outcome) (any, error) {
	if s.cfg.Observer != nil {
		reason := key
		if !s.cfg.rawKeys {
			reason = KeyHash(key)
		}
		s.cfg.Observer.Observe(ctx, observe.Event{Kind: observe.Replay, Method: method, Reason: reason})
	}
	header, herr := decodeMD(o.Header)
	trailer, terr := decodeMD(o.Trailer)
	if herr != nil || terr != nil {
		return nil, status.Errorf(codes.Internal, "failsoft: idempotency: stored metadata of %s is corrupt", method)
	}
	if header == nil {
		header = metadata.MD{}
	}
	header[ReplayedMetadata] = []string{"true"}
	// Without a transport stream (a handler called directly in a test)
	// there is no header to set; the replay is still correct.
	_ = grpc.SetHeader(ctx, header)
	if trailer != nil {
		_ = grpc.SetTrailer(ctx, trailer)
	}
	if o.Code != codes.OK {
		var sp spb.Status
		if err := proto.Unmarshal(o.Status, &sp); err != nil {
			return nil, status.Errorf(codes.Internal, "failsoft: idempotency: stored status of %s is corrupt: %v", method, err)
		}
		return nil, status.ErrorProto(&sp)
	}
	mt, err := s.cfg.types.FindMessageByName(protoreflect.FullName(o.ResponseType))
	if err != nil {
		return nil, status.Errorf(codes.Internal, "failsoft: idempotency: stored response type %q of %s: %v", o.ResponseType, method, err)
	}
	m := mt.New().Interface()
	if err := proto.Unmarshal(o.Response, m); err != nil {
		return nil, status.Errorf(codes.Internal, "failsoft: idempotency: stored response of %s is corrupt: %v", method, err)
	}
	return m, nil
}

// storeError reports a failure of the store, or of storing an outcome:
// what an operator needs to see before deduplication quietly stops.
func (s *Server) storeError(ctx context.Context, method, where string, err error) {
	s.observe(ctx, observe.Event{Kind: observe.KeyStoreError, Method: method, Reason: where, Err: err})
}

func (s *Server) observe(ctx context.Context, e observe.Event) {
	if s.cfg.Observer != nil {
		s.cfg.Observer.Observe(ctx, e)
	}
}

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
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			if c := verifiedLeaf(ti.State.VerifiedChains); c != nil {
				if len(c.URIs) > 0 {
					return "uri:" + c.URIs[0].String(), nil
				}
				return "x509:" + c.Subject.String(), nil
			}
		}
	}
	return "", status.Error(codes.Unauthenticated, "failsoft: idempotency: the caller has no verified client certificate to be identified by; "+
		"name callers with idempotency.WithIdentity (or choose idempotency.Unauthenticated)")
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
	if id, err := CertificateIdentity(ctx); err == nil {
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
