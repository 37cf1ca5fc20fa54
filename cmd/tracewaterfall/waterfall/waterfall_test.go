package waterfall

import (
	"bytes"
	"context"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func fixture(t testing.TB) *Response {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "retried.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	resp, err := Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// The fixture is a trace Jaeger stored for a call that failed twice with
// UNAVAILABLE and succeeded on the third attempt, after backoffs of 10 and
// 20 ms, with the server's span under every attempt.
func TestRenderGolden(t *testing.T) {
	resp := fixture(t)
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"retried.txt", Options{}},
		{"retried_ascii.txt", Options{ASCII: true, Width: 40, NoEvents: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := Render(&b, &resp.Data[0], tc.o); err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", tc.name)
			if *update {
				if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if b.String() != string(want) {
				t.Errorf("rendering differs from %s (go test -update to accept):\n%s", golden, b.String())
			}
		})
	}
}

func TestRenderShowsAttemptsAndBackoffs(t *testing.T) {
	resp := fixture(t)
	var b bytes.Buffer
	if err := Render(&b, &resp.Data[0], Options{ASCII: true}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(b.String(), "\n")
	var attempts, servers int
	for _, l := range lines {
		if strings.Contains(l, "attempt ") {
			attempts++
			if !strings.Contains(l, "attempt 1 ") && !strings.Contains(l, "..") {
				t.Errorf("retry row has no backoff lead-in: %q", l)
			}
		}
		if strings.HasPrefix(l, "failsoft-e2e-server") {
			servers++
		}
	}
	if attempts != 3 || servers != 3 {
		t.Errorf("%d attempt rows, %d server rows, want 3 and 3:\n%s", attempts, servers, b.String())
	}
	// Each server span is drawn right under its attempt, indented deeper.
	for i, l := range lines {
		if strings.Contains(l, "attempt ") && !strings.HasPrefix(lines[i+1], "failsoft-e2e-server") {
			t.Errorf("row after %q is %q, want the server span", l, lines[i+1])
		}
	}
}

func TestRenderEdgeCases(t *testing.T) {
	for name, tr := range map[string]Trace{
		"empty":         {TraceID: "1"},
		"zero duration": {TraceID: "2", Spans: []Span{{SpanID: "a", OperationName: "x"}}},
		"self parent": {TraceID: "3", Spans: []Span{{SpanID: "a", OperationName: "x",
			References: []Reference{{RefType: "CHILD_OF", SpanID: "a"}}}}},
		"orphan and log outside span": {TraceID: "4", Spans: []Span{{SpanID: "a", OperationName: "x", StartTime: 10, Duration: 5,
			References: []Reference{{RefType: "FOLLOWS_FROM", SpanID: "zz"}}, Logs: []Log{{Timestamp: 1e9}}}}},
	} {
		var b bytes.Buffer
		if err := Render(&b, &tr, Options{Width: 1, LabelWidth: 2}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if b.Len() == 0 {
			t.Errorf("%s: nothing drawn", name)
		}
	}
}

func TestClient(t *testing.T) {
	body, err := os.ReadFile(filepath.Join("testdata", "retried.json"))
	if err != nil {
		t.Fatal(err)
	}
	id := fixture(t).Data[0].TraceID
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/api/traces/"+id:
			_, _ = w.Write(body)
		case r.URL.Path == "/api/traces" && r.URL.Query().Get("service") == "failsoft-e2e-client":
			_, _ = w.Write(body)
		case r.URL.Path == "/api/traces/bad":
			_, _ = w.Write([]byte(`{"data":null,"errors":[{"code":400,"msg":"bad trace id"}]}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	c := &Client{Base: srv.URL + "/"}
	ctx := context.Background()
	tr, err := c.Trace(ctx, id)
	if err != nil || tr.TraceID != id || len(tr.Spans) != 7 {
		t.Fatalf("Trace: %v, %v", tr, err)
	}
	ts, err := c.Traces(ctx, "failsoft-e2e-client", 5)
	if err != nil || len(ts) != 1 {
		t.Fatalf("Traces: %d, %v", len(ts), err)
	}
	if _, err := c.Trace(ctx, "bad"); err == nil || !strings.Contains(err.Error(), "bad trace id") {
		t.Errorf("error response: %v", err)
	}
	if _, err := c.Trace(ctx, "0000"); err == nil {
		t.Error("missing trace: no error")
	}
}

func FuzzRender(f *testing.F) {
	body, err := os.ReadFile(filepath.Join("testdata", "retried.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(body, 10)
	f.Add([]byte(`{"data":[{"spans":[{"spanID":"a","startTime":-5,"duration":-9,"tags":[{"key":"failsoft.attempt.backoff_ms","value":"1e30"}]}]}]}`), 1)
	f.Fuzz(func(t *testing.T, data []byte, width int) {
		resp, err := Decode(bytes.NewReader(data))
		if err != nil {
			return
		}
		for i := range resp.Data {
			if len(resp.Data[i].Spans) > 200 {
				return
			}
			_ = Render(&bytes.Buffer{}, &resp.Data[i], Options{Width: width % 300})
		}
	})
}
