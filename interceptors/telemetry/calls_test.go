package telemetry

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	pb "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// failsoft.client.calls counts each call once, with the status its caller
// saw: a call that retries absorbed is OK, whatever its attempts met.
func TestCallsCounter(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail int32 // failed attempts before the server answers
		want string
	}{
		{"first attempt", 0, "OK"},
		{"retried to success", 2, "OK"},
		{"retries exhausted", 5, "UNAVAILABLE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.fail)
			_, _ = e.plain.Plain(context.Background(), &pb.PingRequest{})
			s, ok := e.metrics(t)[MetricCalls].(metricdata.Sum[int64])
			if !ok || len(s.DataPoints) != 1 {
				t.Fatalf("%s = %v, want one series", MetricCalls, e.metrics(t)[MetricCalls])
			}
			dp := s.DataPoints[0]
			got, _ := dp.Attributes.Value(Status)
			method, _ := dp.Attributes.Value(Method)
			if dp.Value != 1 || got.AsString() != tc.want || method.AsString() != "failsoft.policytest.v1.PlainService/Plain" {
				t.Errorf("%s: %d with %v, want 1 call with %s %s", MetricCalls, dp.Value, dp.Attributes.ToSlice(), Status, tc.want)
			}
		})
	}
}
