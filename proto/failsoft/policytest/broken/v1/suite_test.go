package brokenv1_test

import (
	"strings"
	"testing"

	"github.com/failsoft/failsoft"
	brokenv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/broken/v1"
)

// TestLinkedPoliciesRefused: a binary that links this package has invalid
// policies in protoregistry.GlobalFiles, so the suites built with the
// default resolver refuse it, naming every method, unless the check is
// deferred.
func TestLinkedPoliciesRefused(t *testing.T) {
	_, client := failsoft.DialOptions(failsoft.WithoutTelemetry())
	_, server := failsoft.ServerOptions(failsoft.WithoutServerTelemetry())
	for side, err := range map[string]error{"DialOptions": client, "ServerOptions": server} {
		if err == nil {
			t.Fatalf("%s accepted the linked invalid policies", side)
		}
		for _, m := range brokenv1.BrokenService_ServiceDesc.Methods {
			if want := "/failsoft.policytest.broken.v1.BrokenService/" + m.MethodName + ": "; !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error does not name %s:\n%v", side, m.MethodName, err)
			}
		}
	}
	if _, err := failsoft.DialOptions(failsoft.WithoutTelemetry(), failsoft.WithLatePolicies()); err != nil {
		t.Errorf("DialOptions with the check deferred: %v", err)
	}
	if _, err := failsoft.ServerOptions(failsoft.WithoutServerTelemetry(), failsoft.WithServerLatePolicies()); err != nil {
		t.Errorf("ServerOptions with the check deferred: %v", err)
	}
}
