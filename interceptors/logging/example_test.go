package logging_test

import (
	"context"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/failsoft/failsoft"
	"github.com/failsoft/failsoft/interceptors/logging"
	"github.com/failsoft/failsoft/interceptors/observe"
)

// The suite's decisions in the service's log, at most 10 records of a kind
// per target every 10 s.
func ExampleNew() {
	obs, err := logging.New(slog.Default())
	if err != nil {
		log.Fatal(err)
	}
	suite, err := failsoft.DialOptions(failsoft.WithObserver(obs))
	if err != nil {
		log.Fatal(err)
	}
	_ = suite // grpc.NewClient(target, append(suite, creds)...)
}

func ExampleObserver_Observe() {
	noTime := func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{ReplaceAttr: noTime}))
	obs, err := logging.New(logger, logging.WithManyAttempts(3))
	if err != nil {
		log.Fatal(err)
	}
	obs.Observe(context.Background(), observe.Event{
		Kind: observe.BreakerState, Method: "/payments.v1.PaymentService/Charge", Target: "dns:///payments",
		From: "closed", To: "open", Duration: 5 * time.Second,
	})
	// A successful first attempt says nothing.
	obs.Observe(context.Background(), observe.Event{Kind: observe.AttemptEnd, Attempt: 1})
	// Output:
	// level=WARN msg="failsoft: breaker opened" failsoft.event=breaker_state grpc.method=/payments.v1.PaymentService/Charge grpc.target=dns:///payments failsoft.breaker.from=closed failsoft.breaker.to=open failsoft.duration=5s
}

// During an incident, a tighter limit keeps the log readable.
func ExampleWithRateLimit() {
	obs, err := logging.New(slog.Default(), logging.WithRateLimit(2, time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	_ = obs
}

// Warn about calls that needed four attempts or more to succeed, rather
// than three.
func ExampleWithManyAttempts() {
	obs, err := logging.New(slog.Default(), logging.WithManyAttempts(4))
	if err != nil {
		log.Fatal(err)
	}
	_ = obs
}
