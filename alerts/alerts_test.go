package alerts_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/failsoft/failsoft/alerts"
	"github.com/failsoft/failsoft/interceptors/telemetry"
)

// promtool returns the path of promtool (Debian package prometheus). It
// skips the test when promtool is missing, unless
// FAILSOFT_REQUIRE_PROMTOOL=1 demands it.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("FAILSOFT_REQUIRE_PROMTOOL") == "1" {
			t.Fatalf("promtool is required (FAILSOFT_REQUIRE_PROMTOOL=1) but missing: %v", err)
		}
		t.Skip("promtool not installed (Debian package prometheus)")
	}
	return p
}

func run(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(promtool(t), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestRulesCheck(t *testing.T) {
	if out, err := run(t, ".", "check", "rules", "failsoft.rules.yml"); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

func TestRulesUnitTests(t *testing.T) {
	if out, err := run(t, ".", "test", "rules", "failsoft.rules_test.yml"); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}

// The unit tests catch a rule that no longer alerts when it must, and one
// that alerts when it must not: each mutation of the rules fails them.
func TestRulesUnitTestsCanFail(t *testing.T) {
	orig, err := os.ReadFile("failsoft.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile("failsoft.rules_test.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, from, to string }{
		{"error budget ten times looser", "rate5m > 0.001", "rate5m > 0.01"},
		{"errors counted by attempts, not calls", `rate(failsoft_client_calls_total{grpc_status=~`, `rate(failsoft_client_attempt_started_total{grpc_status=~`},
		{"NOT_FOUND spends the budget", `"UNAVAILABLE|DEADLINE_EXCEEDED`, `"NOT_FOUND|UNAVAILABLE|DEADLINE_EXCEEDED`},
		{"retry alert without a threshold", "rate5m > 0.1\n        for: 5m", "rate5m > 0"},
		{"breaker alert at once", "== 2\n        for: 2m", "== 2"},
		{"store errors: first error missed", "\n          or\n          sum by (grpc_method, failsoft_reason) (failsoft_server_idempotency_store_errors_total unless", "\n          and\n          sum by (grpc_method, failsoft_reason) (failsoft_server_idempotency_store_errors_total unless"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(string(orig), tc.from) {
				t.Fatalf("the rules no longer contain %q", tc.from)
			}
			dir := t.TempDir()
			mutated := strings.ReplaceAll(string(orig), tc.from, tc.to)
			if err := os.WriteFile(filepath.Join(dir, "failsoft.rules.yml"), []byte(mutated), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "failsoft.rules_test.yml"), tests, 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := run(t, dir, "test", "rules", "failsoft.rules_test.yml"); err == nil {
				t.Fatalf("the unit tests pass with the mutation:\n%s", out)
			}
		})
	}
}

// Every alert has unit tests, and every metric the rules read is one the
// telemetry layer records.
func TestRulesCoverage(t *testing.T) {
	rules := string(alerts.Rules())
	tests, err := os.ReadFile("failsoft.rules_test.yml")
	if err != nil {
		t.Fatal(err)
	}
	alertNames := regexp.MustCompile(`(?m)^\s*- alert: (\w+)`).FindAllStringSubmatch(rules, -1)
	if len(alertNames) < 7 {
		t.Fatalf("found %d alerts", len(alertNames))
	}
	for _, m := range alertNames {
		fires := regexp.MustCompile(`alertname: ` + m[1] + `\n\s+exp_alerts:`)
		if !fires.Match(tests) {
			t.Errorf("alert %s has no test in which it fires", m[1])
		}
		if !strings.Contains(string(tests), "alertname: "+m[1]+"}") {
			t.Errorf("alert %s has no test in which it stays quiet", m[1])
		}
	}
	known := map[string]bool{"failsoft_reason": true} // a label, from telemetry.Reason
	for _, name := range []string{telemetry.MetricCalls, telemetry.MetricAttemptStarted, telemetry.MetricRetries,
		telemetry.MetricBreakerState, telemetry.MetricStoreErrors} {
		known[strings.ReplaceAll(name, ".", "_")] = true
	}
	for _, m := range regexp.MustCompile(`\b(failsoft_[a-z_]+?)(_total)?\b`).FindAllStringSubmatch(rules, -1) {
		if !known[m[1]] {
			t.Errorf("the rules read %s, which no telemetry Metric* constant names", m[0])
		}
	}
}
