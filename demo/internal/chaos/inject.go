package chaos

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// PushbackTrailer is the trailer gRPC clients read a server's retry delay
// from (gRFC A6).
const PushbackTrailer = "grpc-retry-pushback-ms"

// decision is what happens to one call.
type decision struct {
	delay    time.Duration
	err      error
	pushback time.Duration
	lose     bool
}

// decide draws the faults of one call. sideEffects says whether the method
// changes state, which alone can lose a response after commit.
func (ch *Chaos) decide(sideEffects bool) decision {
	ch.calls.Add(1)
	st := ch.cfg.Load()
	var d decision
	d.delay = st.Latency
	if st.SlowFraction > 0 && ch.float() < st.SlowFraction {
		d.delay += st.SlowLatency
		ch.slow.Add(1)
	}
	if d.delay > 0 {
		ch.delayed.Add(1)
	}
	if st.Down || st.inOutage(ch.clk.Now()) {
		ch.outage.Add(1)
		d.err = status.Error(codes.Unavailable, "chaos: server is down (injected outage)")
		return d
	}
	if st.ErrorRate > 0 || st.PushbackRate > 0 {
		r := ch.float()
		switch {
		case r < st.ErrorRate:
			code := codes.Unavailable
			if n := len(st.ErrorCodes); n > 0 {
				code = st.ErrorCodes[ch.intn(n)]
			}
			ch.errs[code].Add(1)
			d.err = status.Errorf(code, "chaos: injected %s", codeName(code))
			return d
		case r < st.ErrorRate+st.PushbackRate:
			ch.pushback.Add(1)
			d.pushback = st.Pushback
			d.err = status.Errorf(codes.ResourceExhausted, "chaos: overloaded, retry in %v (injected pushback)", st.Pushback)
			return d
		}
	}
	if sideEffects && st.LostRate > 0 && ch.float() < st.LostRate {
		d.lose = true
	}
	return d
}

func (st *state) inOutage(now time.Time) bool {
	if st.OutageFor <= 0 || st.OutageEvery <= 0 {
		return false
	}
	return now.Sub(st.since)%st.OutageEvery < st.OutageFor
}

func errLost() error {
	return status.Error(codes.Unavailable, "chaos: response lost after commit (injected)")
}

func (ch *Chaos) wait(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := ch.clk.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}

func pushbackMD(d time.Duration) metadata.MD {
	return metadata.Pairs(PushbackTrailer, strconv.FormatInt(d.Milliseconds(), 10))
}

// Interceptors returns the server interceptors that inject faults into
// calls for which applies returns true; sideEffects tells which methods
// change state. Put them first in the server's chain.
func (ch *Chaos) Interceptors(applies, sideEffects func(fullMethod string) bool) (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if !applies(info.FullMethod) {
			return h(ctx, req)
		}
		d := ch.decide(sideEffects(info.FullMethod))
		if err := ch.wait(ctx, d.delay); err != nil {
			return nil, err
		}
		if d.err != nil {
			if d.pushback > 0 {
				_ = grpc.SetTrailer(ctx, pushbackMD(d.pushback))
			}
			return nil, d.err
		}
		resp, err := h(ctx, req)
		if err == nil && d.lose {
			ch.lost.Add(1)
			return nil, errLost()
		}
		return resp, err
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if !applies(info.FullMethod) {
			return h(srv, ss)
		}
		d := ch.decide(sideEffects(info.FullMethod))
		if err := ch.wait(ss.Context(), d.delay); err != nil {
			return err
		}
		if d.err != nil {
			if d.pushback > 0 {
				ss.SetTrailer(pushbackMD(d.pushback))
			}
			return d.err
		}
		if !d.lose {
			return h(srv, ss)
		}
		err := h(srv, &losingStream{ServerStream: ss})
		if err == nil {
			ch.lost.Add(1)
			return errLost()
		}
		return err
	}
	return unary, stream
}

// losingStream drops what the handler sends, as a network would.
type losingStream struct{ grpc.ServerStream }

func (s *losingStream) SendMsg(any) error            { return nil }
func (s *losingStream) SendHeader(metadata.MD) error { return nil }

// Status is what the HTTP endpoint shows.
type Status struct {
	Config  wireConfig `json:"config"`
	Summary string     `json:"summary"`
	Faults  Counters   `json:"faults"`
	Total   uint64     `json:"total_faults"`
}

// Status returns the current settings and counters.
func (ch *Chaos) Status() Status {
	c := ch.Config()
	n := ch.Counters()
	return Status{Config: toWire(c), Summary: c.String(), Faults: n, Total: n.Total()}
}

// Handler serves the settings at /chaos: GET shows them with the fault
// counters, POST or PUT applies a JSON update (fields left out keep their
// value; "reset": true starts from no chaos) and answers 400 with the
// reason when a setting is bad.
func (ch *Chaos) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/chaos", func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
		case http.MethodPost, http.MethodPut:
			body, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			u, err := ParseUpdate(body)
			if err == nil {
				_, err = ch.Apply(u)
			}
			if err != nil {
				http.Error(w, strings.ReplaceAll(err.Error(), "\n", "; "), http.StatusBadRequest)
				return
			}
		default:
			w.Header().Set("Allow", "GET, POST, PUT")
			http.Error(w, "use GET to read, POST to change", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(ch.Status())
	})
	return mux
}
