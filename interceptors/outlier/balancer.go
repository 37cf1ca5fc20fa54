package outlier

import (
	"encoding/json"
	"fmt"
	"sync"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/base"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	"github.com/failsoft/failsoft/interceptors/clock"
)

func init() {
	balancer.Register(builder{name: Name, clock: clock.System()})
}

// builder builds the policy; tests register one on a fake clock under
// another name.
type builder struct {
	name  string
	clock clock.Clock
}

func (b builder) Name() string { return b.name }

func (b builder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	return &outlierBalancer{
		cc:   cc,
		opts: opts,
		d:    newDetector(DefaultConfig(), b.clock),
	}
}

func (builder) ParseConfig(js json.RawMessage) (serviceconfig.LoadBalancingConfig, error) {
	return parse(js)
}

// outlierBalancer runs the child policy on a ClientConn of its own, which
// gives the child SubConns that know their endpoint and wraps the child's
// pickers. grpc-go calls its methods one at a time.
type outlierBalancer struct {
	cc   balancer.ClientConn
	opts balancer.BuildOptions
	d    *detector

	child     balancer.Balancer
	childName string

	// mu guards addrToKey, which the child's NewSubConn reads (a child
	// may call from its own goroutines).
	mu        sync.Mutex
	addrToKey map[string]string
}

func (b *outlierBalancer) UpdateClientConnState(s balancer.ClientConnState) error {
	cfg, ok := s.BalancerConfig.(*lbConfig)
	if !ok {
		var err error
		if cfg, err = parse([]byte("{}")); err != nil {
			return err
		}
	}
	keys, addrToKey := endpointKeys(s.ResolverState)
	b.mu.Lock()
	b.addrToKey = addrToKey
	b.mu.Unlock()
	b.d.update(cfg.Config, keys)

	if b.child == nil || b.childName != cfg.childName {
		if b.child != nil {
			b.child.Close()
		}
		builder := balancer.Get(cfg.childName)
		if builder == nil {
			return fmt.Errorf("failsoft: outlier: child policy %q is not registered", cfg.childName)
		}
		b.child, b.childName = builder.Build(&childConn{ClientConn: b.cc, b: b}, b.opts), cfg.childName
	}
	return b.child.UpdateClientConnState(balancer.ClientConnState{ResolverState: s.ResolverState, BalancerConfig: cfg.childConfig})
}

// endpointKeys names each endpoint by its first address and maps every
// address to that name.
func endpointKeys(s resolver.State) ([]string, map[string]string) {
	endpoints := s.Endpoints
	if len(endpoints) == 0 {
		for _, a := range s.Addresses {
			endpoints = append(endpoints, resolver.Endpoint{Addresses: []resolver.Address{a}})
		}
	}
	keys := make([]string, 0, len(endpoints))
	addrToKey := make(map[string]string, len(endpoints))
	for _, e := range endpoints {
		if len(e.Addresses) == 0 {
			continue
		}
		key := e.Addresses[0].Addr
		keys = append(keys, key)
		for _, a := range e.Addresses {
			addrToKey[a.Addr] = key
		}
	}
	return keys, addrToKey
}

func (b *outlierBalancer) ResolverError(err error) {
	if b.child == nil {
		b.cc.UpdateState(balancer.State{ConnectivityState: connectivity.TransientFailure, Picker: base.NewErrPicker(err)})
		return
	}
	b.child.ResolverError(err)
}

// UpdateSubConnState is not called: every SubConn has a StateListener.
func (b *outlierBalancer) UpdateSubConnState(balancer.SubConn, balancer.SubConnState) {}

func (b *outlierBalancer) ExitIdle() {
	if b.child != nil {
		b.child.ExitIdle()
	}
}

func (b *outlierBalancer) Close() {
	if b.child != nil {
		b.child.Close()
		b.child = nil
	}
}

// childConn is the ClientConn the child policy sees.
type childConn struct {
	balancer.ClientConn
	b *outlierBalancer
}

// subConn is a SubConn as the child sees it: grpc-go's, with the endpoint
// it belongs to, so that a pick finds its endpoint without a lookup. The
// picker hands grpc-go its own SubConn back.
type subConn struct {
	balancer.SubConn
	e *endpoint // nil when its address is no endpoint's
}

func (c *childConn) NewSubConn(addrs []resolver.Address, opts balancer.NewSubConnOptions) (balancer.SubConn, error) {
	b := c.b
	sc := &subConn{}
	if opts.StateListener == nil {
		opts.StateListener = func(s balancer.SubConnState) {
			if child := b.child; child != nil {
				//lint:ignore SA1019 a child that gives no listener still expects its updates this way.
				child.UpdateSubConnState(sc, s)
			}
		}
	}
	//lint:ignore SA1019 a ClientConn wrapper passes on the call its child makes.
	inner, err := c.ClientConn.NewSubConn(addrs, opts)
	if err != nil {
		return nil, err
	}
	sc.SubConn = inner
	if len(addrs) > 0 {
		b.mu.Lock()
		key, ok := b.addrToKey[addrs[0].Addr]
		b.mu.Unlock()
		if ok {
			sc.e = b.d.endpoint(key)
		}
	}
	return sc, nil
}

func (c *childConn) RemoveSubConn(sc balancer.SubConn) {
	if w, ok := sc.(*subConn); ok {
		sc = w.SubConn
	}
	//lint:ignore SA1019 a ClientConn wrapper passes on the call its child makes.
	c.ClientConn.RemoveSubConn(sc)
}

// UpdateAddresses passes the call on with grpc-go's SubConn.
func (c *childConn) UpdateAddresses(sc balancer.SubConn, addrs []resolver.Address) {
	if w, ok := sc.(*subConn); ok {
		sc = w.SubConn
	}
	//lint:ignore SA1019 a ClientConn wrapper passes on the call its child makes.
	c.ClientConn.UpdateAddresses(sc, addrs)
}

// UpdateState passes the child's state on with a picker that skips
// ejected endpoints and hears every call's outcome.
func (c *childConn) UpdateState(s balancer.State) {
	s.Picker = &picker{child: s.Picker, d: c.b.d, n: c.b.d.size()}
	c.ClientConn.UpdateState(s)
}
