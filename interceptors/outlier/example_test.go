package outlier_test

import (
	"fmt"
	"log"

	"google.golang.org/grpc"
	_ "google.golang.org/grpc/balancer/leastrequest" // registers least_request_experimental
	"google.golang.org/grpc/credentials/insecure"

	"github.com/failsoft/failsoft"
	"github.com/failsoft/failsoft/interceptors/outlier"
)

// The policy on its own, around round_robin, with its defaults, on a
// connection without the rest of failsoft.
func ExampleAround() {
	lb := outlier.Around(`[{"round_robin":{}}]`)
	fmt.Println(lb)
	cc, err := grpc.NewClient("dns:///payments.internal:443",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":`+lb+`}`))
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()
	// Output:
	// [{"failsoft_outlier":{"childPolicy":[{"round_robin":{}}]}}]
}

// failsoft.DialOptions runs the policy by default. To tune it, give its
// configuration with failsoft.WithLoadBalancing: here a quicker base
// ejection, no latency rule (the calls are long-lived streams), and
// least_request inside.
func ExampleConfig() {
	dopts, err := failsoft.DialOptions(failsoft.WithLoadBalancing(`[{"failsoft_outlier":{
		"baseEjectionTime": "5s",
		"latencyEjection": {"ratio": 0},
		"childPolicy": [{"least_request_experimental": {}}]
	}}]`))
	if err != nil {
		log.Fatal(err)
	}
	cc, err := grpc.NewClient("dns:///payments.internal:443",
		append(dopts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()
	fmt.Println("connected")
	// Output:
	// connected
}

// ParseConfig checks a configuration before it is deployed; its errors
// name every field at fault.
func ExampleParseConfig() {
	_, err := outlier.ParseConfig([]byte(`{"interval":"soon","maxEjectionPercent":120}`))
	fmt.Println(err)
	cfg, _ := outlier.ParseConfig([]byte(`{"consecutiveFailures":3}`))
	fmt.Println(cfg.ConsecutiveFailures, cfg.BaseEjectionTime, cfg.MaxEjectionPercent)
	// Output:
	// failsoft: outlier: interval: want a positive duration such as "10s", got "soon"
	// failsoft: outlier: maxEjectionPercent: want 0 to 100, got 120
	// 3 10s 50
}

// The defaults, which an empty configuration gets. With
// failsoft.WithoutOutlierEjection, DialOptions leaves the policy out and
// every backend stays in rotation, whatever it answers.
func ExampleDefaultConfig() {
	d := outlier.DefaultConfig()
	fmt.Println(d.ConsecutiveFailures, d.FailureThreshold, d.LatencyRatio, d.BaseEjectionTime, d.MaxEjectionTime, d.MaxEjectionPercent)
	if _, err := failsoft.DialOptions(failsoft.WithoutOutlierEjection()); err != nil {
		log.Fatal(err)
	}
	// Output:
	// 5 50 3 10s 2m0s 50
}
