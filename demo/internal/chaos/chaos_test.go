package chaos_test

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	demochaos "github.com/failsoft/failsoft/demo/internal/chaos"
	"github.com/failsoft/failsoft/interceptors/chaos"
)

// A phase's faults reach every payment method, but only writes lose
// responses, and the health service is never touched.
func TestRules(t *testing.T) {
	inj, err := chaos.New(chaos.WithSeed(1), chaos.WithConfig(demochaos.Rules(demochaos.Config{LostRate: 1})))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		method string
		want   codes.Code
	}{
		{"/payments.v1.PaymentService/Charge", codes.Unavailable},
		{"/payments.v1.PaymentService/Refund", codes.Unavailable},
		{"/payments.v1.PaymentService/GetPayment", codes.OK},
		{"/grpc.health.v1.Health/Check", codes.OK},
	} {
		_, err := inj.UnaryServerInterceptor()(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: tc.method},
			func(context.Context, any) (any, error) { return "ok", nil })
		if status.Code(err) != tc.want {
			t.Errorf("%s: %v, want %v", tc.method, err, tc.want)
		}
	}
	if cfg := demochaos.Rules(demochaos.Config{}); cfg.Enabled {
		t.Errorf("a healthy phase leaves injection on: %v", cfg)
	}
}
