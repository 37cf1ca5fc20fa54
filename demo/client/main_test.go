package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"

	"github.com/failsoft/failsoft/cmd/tracewaterfall/waterfall"
	"github.com/failsoft/failsoft/demo/internal/checkout"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const fixtureTrace = "b98a973a599b73f3b6a16ba4342d364f"

// The HTML report's waterfall is read back from Jaeger's query API; a
// trace that is not there yet is asked for again, and one that never
// arrives is named with the reason.
func TestReadWaterfall(t *testing.T) {
	fixture, err := os.ReadFile("../../cmd/tracewaterfall/waterfall/testdata/retried.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name        string
		missesFirst int
		trace       string
		wantSpans   int
		wantMissing string
		wantAsks    int64
	}{
		{name: "found at once", trace: fixtureTrace, wantSpans: 7, wantAsks: 1},
		{name: "found on the third ask", missesFirst: 2, trace: fixtureTrace, wantSpans: 7, wantAsks: 3},
		{name: "never found", missesFirst: 100, trace: fixtureTrace, wantMissing: "trace not found", wantAsks: 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var asks atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := asks.Add(1)
				if r.URL.Path != "/api/traces/"+tc.trace || n <= int64(tc.missesFirst) {
					http.NotFound(w, r)
					return
				}
				_, _ = w.Write(fixture)
			}))
			defer srv.Close()
			tr, missing := readWaterfall(context.Background(), srv.URL, tc.trace, func(context.Context) error { return nil })
			switch {
			case tc.wantSpans == 0 && tr != nil:
				t.Errorf("read trace %s, want none", tr.TraceID)
			case tc.wantSpans > 0 && (tr == nil || tr.TraceID != tc.trace || len(tr.Spans) != tc.wantSpans):
				t.Errorf("read %v, want trace %s of %d spans", tr, tc.trace, tc.wantSpans)
			}
			if missing != tc.wantMissing {
				t.Errorf("missing = %q, want %q", missing, tc.wantMissing)
			}
			if got := asks.Load(); got != tc.wantAsks {
				t.Errorf("asked %d times, want %d", got, tc.wantAsks)
			}
		})
	}
}

// writeHTML writes the page where it was asked to and returns a file://
// URL of its absolute path.
func TestWriteHTML(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "report.html")
	link, err := writeHTML(path, &checkout.Report{Waterfall: &waterfall.Trace{TraceID: "t", Spans: []waterfall.Span{{SpanID: "a", OperationName: "drawn waterfall"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if link != "file://"+filepath.ToSlash(path) {
		t.Errorf("link %q, want file://%s", link, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "drawn waterfall") || !strings.HasPrefix(string(b), "<!DOCTYPE html>") {
		t.Errorf("page is not the report:\n%.300s", b)
	}
	if _, err := writeHTML(filepath.Join(dir, "missing", "report.html"), &checkout.Report{}); err == nil {
		t.Error("writing into a missing directory did not fail")
	}
}
