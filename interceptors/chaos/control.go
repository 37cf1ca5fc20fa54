package chaos

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/failsoft/failsoft/interceptors/internal/option"
)

// maxControlBody bounds the config a control request may send.
const maxControlBody = 64 << 10

type controlConfig struct {
	secret string
}

// ControlOption configures Handler.
type ControlOption func(*controlConfig) error

// WithSecret makes the control endpoint require "Authorization: Bearer
// secret" on every request, from any peer. Without it the endpoint answers
// only peers on the loopback interface.
func WithSecret(secret string) ControlOption {
	return func(c *controlConfig) error {
		if len(secret) < 16 {
			return errors.New("failsoft: chaos: WithSecret: a secret needs at least 16 characters")
		}
		c.secret = secret
		return nil
	}
}

// Handler returns the control endpoint, for an operator who wants to
// change the injector's config over the network. GET shows the Status as
// JSON; POST or PUT replaces the Config with the one in the body (see
// ParseConfig; {"enabled": false} stops all injection) and answers the new
// Status, or 400 with the reason, changing nothing, when the config is bad.
//
// Without WithSecret, requests from peers outside the loopback interface
// are refused with 403, whatever address the server listens on (behind a
// proxy on the same host every peer looks local: use a secret there).
func (inj *Injector) Handler(opts ...ControlOption) (http.Handler, error) {
	var c controlConfig
	if err := option.Apply(&c, opts...); err != nil {
		return nil, err
	}
	return &control{inj: inj, secret: c.secret}, nil
}

type control struct {
	inj    *Injector
	secret string
}

func (h *control) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.allowed(r) {
		http.Error(w, "failsoft: chaos: control refused: send the shared secret, or call from loopback", http.StatusForbidden)
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodPost, http.MethodPut:
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxControlBody))
		if err != nil {
			http.Error(w, "failsoft: chaos: "+err.Error(), http.StatusBadRequest)
			return
		}
		cfg, err := ParseConfig(body)
		if err == nil {
			err = h.inj.Set(cfg)
		}
		if err != nil {
			http.Error(w, strings.ReplaceAll(err.Error(), "\n", "; "), http.StatusBadRequest)
			return
		}
	default:
		w.Header().Set("Allow", "GET, POST, PUT")
		http.Error(w, "failsoft: chaos: use GET to read, POST to change", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(h.inj.Status())
}

func (h *control) allowed(r *http.Request) bool {
	if h.secret != "" {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		return ok && subtle.ConstantTimeCompare([]byte(token), []byte(h.secret)) == 1
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
