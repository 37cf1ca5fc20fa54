package harness

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/retry"
	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// dial connects a plain client to s.
func dial(t *testing.T, s *Server) policytestv1.PlainServiceClient {
	t.Helper()
	cc, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return policytestv1.NewPlainServiceClient(cc)
}

func start(t *testing.T, f Faults) *Server {
	t.Helper()
	s, err := StartServer(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// TestServerRejects: a call that finds no free slot is answered at once
// as Faults.Reject says, with the pushback trailer only for pushback.
func TestServerRejects(t *testing.T) {
	for _, tc := range []struct {
		reject   Reject
		code     codes.Code
		pushback []string
	}{
		{RejectExhausted, codes.ResourceExhausted, nil},
		{RejectPushback, codes.Unavailable, []string{"100"}},
		{RejectUnavailable, codes.Unavailable, nil},
	} {
		t.Run(tc.reject.String(), func(t *testing.T) {
			s := start(t, Faults{Capacity: 1, Service: time.Millisecond, Reject: tc.reject, Pushback: 100 * time.Millisecond})
			s.slots <- struct{}{} // the one slot is taken
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var trailer metadata.MD
			_, err := dial(t, s).Idempotent(ctx, &policytestv1.PingRequest{Payload: "a"}, grpc.Trailer(&trailer))
			if status.Code(err) != tc.code {
				t.Errorf("code %v (%v), want %v", status.Code(err), err, tc.code)
			}
			if got := trailer.Get(retry.PushbackMetadata); len(got) != len(tc.pushback) || (len(got) > 0 && got[0] != tc.pushback[0]) {
				t.Errorf("pushback trailer %q, want %q", got, tc.pushback)
			}
			if s.Rejected() != 1 || s.Attempts() != 1 {
				t.Errorf("rejected %d of %d attempts, want 1 of 1", s.Rejected(), s.Attempts())
			}
		})
	}
}

// TestServerOutageAndLedger: an outage fails every call until it ends;
// a charge whose response is lost is still in the ledger.
func TestServerOutageAndLedger(t *testing.T) {
	s := start(t, Faults{Outage: true, LostRate: 1})
	c := dial(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := &policytestv1.PingRequest{Payload: "a"}
	if _, err := c.Idempotent(ctx, req); status.Code(err) != codes.Unavailable {
		t.Fatalf("during the outage: %v, want UNAVAILABLE", err)
	}
	s.SetOutage(false)
	if _, err := c.Idempotent(ctx, req); err != nil {
		t.Fatalf("after the outage: %v", err)
	}
	if _, err := c.Plain(ctx, req); status.Code(err) != codes.Unavailable {
		t.Fatalf("charge with its response lost: %v, want UNAVAILABLE", err)
	}
	if _, err := c.Plain(ctx, req); status.Code(err) != codes.Unavailable {
		t.Fatalf("the charge again: %v, want UNAVAILABLE", err)
	}
	if n := s.Charges("a"); n != 2 {
		t.Errorf("charged %d times, want 2 (nothing deduplicates calls without a key)", n)
	}
	if charged, dups := s.Ledger(); charged != 1 || dups != 1 {
		t.Errorf("ledger: %d charged, %d duplicates; want 1 and 1", charged, dups)
	}
	if n := s.Charges("b"); n != 0 {
		t.Errorf("a call never made charged %d times", n)
	}
}

// TestEnvBalancesBackends: with several servers, the connection reaches
// every one of them once warm, and a failing backend fails the plain
// client's calls that land on it.
func TestEnvBalancesBackends(t *testing.T) {
	spec := Specs()[0]
	if spec.Name != "plain client" {
		t.Fatalf("first spec is %q", spec.Name)
	}
	e, err := newEnv(spec, DefaultParams(), Faults{FailRate: 1}, Faults{}, Faults{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e.warm(ctx)
	for i, s := range e.srvs {
		if s.Attempts() == 0 {
			t.Errorf("server %d got no warm-up call", i)
		}
	}
	before := e.attempts()
	recs := closedLoop(ctx, e, 30, 1, time.Second, callRead)
	if got := e.attempts() - before; got != 30 {
		t.Errorf("%d attempts for 30 calls of a plain client", got)
	}
	if ok := succeeded(recs); ok == 0 || ok == 30 {
		t.Errorf("%d of 30 calls succeeded with one of three backends failing every call", ok)
	}
}
