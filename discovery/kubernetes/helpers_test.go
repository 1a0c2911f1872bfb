package kubernetes_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/tinylb/lb/discovery"
	"github.com/tinylb/lb/discovery/kubernetes"
)

const (
	ns  = "shop"
	svc = "web"
)

// pushResult is one call of push.
type pushResult struct {
	set []discovery.Target
	err error
}

// pushes records what a running source pushes.
type pushes struct {
	ch chan pushResult
}

// run starts src.Run with a recording push and stops it when the test
// ends, checking that Run returned nil and did so after its context ended.
func run(t *testing.T, src discovery.Source) *pushes {
	t.Helper()
	p := &pushes{ch: make(chan pushResult, 256)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- src.Run(ctx, func(set []discovery.Target, err error) {
			select {
			case p.ch <- pushResult{set, err}:
			default:
				t.Error("more than 256 pushes")
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("Run did not return 10 s after its context ended")
		}
	})
	return p
}

// next waits for the next push.
func (p *pushes) next(t *testing.T) pushResult {
	t.Helper()
	select {
	case r := <-p.ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no push within 10 s")
		return pushResult{}
	}
}

// nextSet waits for the next push and requires it to be a set.
func (p *pushes) nextSet(t *testing.T) []discovery.Target {
	t.Helper()
	r := p.next(t)
	require.NoError(t, r.err)
	return r.set
}

// nextErr waits for the next push and requires it to be an error.
func (p *pushes) nextErr(t *testing.T) error {
	t.Helper()
	r := p.next(t)
	require.Error(t, r.err, "got set %v", r.set)
	require.Nil(t, r.set)
	return r.err
}

// urls lists the URLs of a set, marking draining ones with a trailing " (draining)".
func urls(set []discovery.Target) []string {
	out := []string{}
	for _, t := range set {
		u := t.URL
		if t.Draining {
			u += " (draining)"
		}
		out = append(out, u)
	}
	return out
}

// port is an EndpointSlice port; name "" leaves it unnamed.
func port(name string, n int32) discoveryv1.EndpointPort {
	p := discoveryv1.EndpointPort{Port: ptr.To(n)}
	if name != "" {
		p.Name = ptr.To(name)
	}
	return p
}

// slice is an EndpointSlice of service in ns with the given ports and
// endpoints, of address type IPv4.
func slice(name, service string, ports []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:      name,
			Namespace: ns,
			Labels:    map[string]string{discoveryv1.LabelServiceName: service},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       ports,
		Endpoints:   eps,
	}
}

// ready is a ready endpoint at addr, with conditions as the EndpointSlice
// controller sets them.
func ready(addr string) discoveryv1.Endpoint {
	return withConditions(addr, true, true, false)
}

// withConditions is an endpoint at addr with the three conditions set.
func withConditions(addr string, isReady, serving, terminating bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{
		Addresses: []string{addr},
		Conditions: discoveryv1.EndpointConditions{
			Ready:       ptr.To(isReady),
			Serving:     ptr.To(serving),
			Terminating: ptr.To(terminating),
		},
	}
}

// http8080 is the one port of a single-port Service named "http".
var http8080 = []discoveryv1.EndpointPort{port("http", 8080)}

func create(t *testing.T, c *fake.Clientset, sl *discoveryv1.EndpointSlice) {
	t.Helper()
	_, err := c.DiscoveryV1().EndpointSlices(sl.Namespace).Create(context.Background(), sl, metav1.CreateOptions{})
	require.NoError(t, err)
}

func update(t *testing.T, c *fake.Clientset, sl *discoveryv1.EndpointSlice) {
	t.Helper()
	_, err := c.DiscoveryV1().EndpointSlices(sl.Namespace).Update(context.Background(), sl, metav1.UpdateOptions{})
	require.NoError(t, err)
}

func remove(t *testing.T, c *fake.Clientset, namespace, name string) {
	t.Helper()
	err := c.DiscoveryV1().EndpointSlices(namespace).Delete(context.Background(), name, metav1.DeleteOptions{})
	require.NoError(t, err)
}

// newSource is kubernetes.New for the test service, with one difference:
// a set is handed on only once the informer's watch is in place. The fake
// clientset's watches start from "now", not from the list's
// resourceVersion as a real API server's do, so a change made between
// the list and the watch would be lost, and a test that changes slices
// right after the first set would wait for a push that never comes.
func newSource(c *fake.Clientset, opts ...kubernetes.Option) discovery.Source {
	watching := make(chan struct{})
	var once sync.Once
	c.PrependWatchReactor("endpointslices", func(a k8stesting.Action) (bool, watch.Interface, error) {
		w, err := c.Tracker().Watch(a.GetResource(), a.GetNamespace())
		once.Do(func() { close(watching) })
		return true, w, err
	})
	src := kubernetes.New(c, ns, svc, opts...)
	return discovery.SourceFunc(func(ctx context.Context, push func([]discovery.Target, error)) error {
		return src.Run(ctx, func(set []discovery.Target, err error) {
			if err == nil {
				select {
				case <-watching:
				case <-time.After(5 * time.Second):
				}
			}
			push(set, err)
		})
	})
}
