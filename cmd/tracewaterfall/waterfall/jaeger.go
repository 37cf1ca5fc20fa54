package waterfall

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Response is the envelope of Jaeger's /api/traces endpoints. Count traces
// with len(Data): Total is not filled in by every storage backend.
type Response struct {
	Data   []Trace `json:"data"`
	Total  int     `json:"total"`
	Errors []struct {
		Code int    `json:"code"`
		Msg  string `json:"msg"`
	} `json:"errors"`
}

// Trace is one trace in Jaeger's JSON model.
type Trace struct {
	TraceID   string             `json:"traceID"`
	Spans     []Span             `json:"spans"`
	Processes map[string]Process `json:"processes"`
}

// Span is one span in Jaeger's JSON model. Times are in microseconds.
type Span struct {
	TraceID       string      `json:"traceID"`
	SpanID        string      `json:"spanID"`
	OperationName string      `json:"operationName"`
	References    []Reference `json:"references"`
	StartTime     int64       `json:"startTime"`
	Duration      int64       `json:"duration"`
	Tags          []KeyValue  `json:"tags"`
	Logs          []Log       `json:"logs"`
	ProcessID     string      `json:"processID"`
}

// Reference links a span to its parent.
type Reference struct {
	RefType string `json:"refType"`
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

// KeyValue is a tag or log field.
type KeyValue struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	Value any    `json:"value"`
}

// Log is a span event.
type Log struct {
	Timestamp int64      `json:"timestamp"`
	Fields    []KeyValue `json:"fields"`
}

// Process names the service that reported a span.
type Process struct {
	ServiceName string `json:"serviceName"`
}

// Tag returns the value of the tag key as a string, and whether it is set.
func (s *Span) Tag(key string) (string, bool) {
	for _, kv := range s.Tags {
		if kv.Key == key {
			return valueString(kv.Value), true
		}
	}
	return "", false
}

// Parent returns the span ID of the CHILD_OF reference, or "".
func (s *Span) Parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	if len(s.References) > 0 {
		return s.References[0].SpanID
	}
	return ""
}

// Event returns the value of the "event" field of a log (its name).
func (l *Log) Event() string {
	for _, kv := range l.Fields {
		if kv.Key == "event" {
			return valueString(kv.Value)
		}
	}
	return ""
}

func valueString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

// Decode reads a Jaeger API response.
func Decode(r io.Reader) (*Response, error) {
	var resp Response
	if err := json.NewDecoder(r).Decode(&resp); err != nil {
		return nil, fmt.Errorf("decoding Jaeger response: %w", err)
	}
	if len(resp.Errors) > 0 {
		return &resp, fmt.Errorf("jaeger: %s (code %d)", resp.Errors[0].Msg, resp.Errors[0].Code)
	}
	return &resp, nil
}

// Client queries Jaeger's HTTP API (the query port, 16686 by default).
type Client struct {
	Base string // e.g. "http://127.0.0.1:16686"
	HTTP *http.Client
}

func (c *Client) get(ctx context.Context, path string, q url.Values) (*Response, error) {
	u := strings.TrimRight(c.Base, "/") + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	res, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusNotFound {
		return nil, errNotFound
	}
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 512))
		return nil, fmt.Errorf("GET %s: %s: %s", u, res.Status, strings.TrimSpace(string(b)))
	}
	return Decode(res.Body)
}

var errNotFound = errors.New("trace not found")

// Trace fetches one trace by its hex ID.
func (c *Client) Trace(ctx context.Context, traceID string) (*Trace, error) {
	resp, err := c.get(ctx, "/api/traces/"+url.PathEscape(traceID), nil)
	if err != nil {
		return nil, err
	}
	if len(resp.Data) == 0 {
		return nil, errNotFound
	}
	return &resp.Data[0], nil
}

// Traces fetches the recent traces of a service (at most limit).
func (c *Client) Traces(ctx context.Context, service string, limit int) ([]Trace, error) {
	q := url.Values{"service": {service}, "limit": {strconv.Itoa(limit)}, "lookback": {"1h"}}
	resp, err := c.get(ctx, "/api/traces", q)
	if err != nil {
		return nil, err
	}
	return resp.Data, nil
}
