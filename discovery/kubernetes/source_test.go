package kubernetes_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/tinylb/lb/discovery"
	"github.com/tinylb/lb/discovery/kubernetes"
)

func TestInitialSlices(t *testing.T) {
	a := ready("10.0.0.2")
	a.Zone = ptr.To("eu-west-1a")
	a.NodeName = ptr.To("node-1")
	a.Hostname = ptr.To("web-0")
	a.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: "web-0"}
	c := fake.NewSimpleClientset(slice("web-abc", svc, http8080, a, ready("10.0.0.1")))

	set := run(t, newSource(c)).nextSet(t)

	require.Equal(t, []discovery.Target{
		{URL: "http://10.0.0.1:8080"},
		{URL: "http://10.0.0.2:8080", Zone: "eu-west-1a", Metadata: map[string]string{
			kubernetes.MetaNodeName:  "node-1",
			kubernetes.MetaHostname:  "web-0",
			kubernetes.MetaTargetRef: "Pod/shop/web-0",
		}},
	}, set)
}

func TestNoSlicesIsAnEmptySet(t *testing.T) {
	r := run(t, newSource(fake.NewSimpleClientset())).next(t)
	require.NoError(t, r.err)
	require.Empty(t, r.set)
}

func TestAddAndRemoveEndpoints(t *testing.T) {
	sl := slice("web-abc", svc, http8080, ready("10.0.0.1"))
	c := fake.NewSimpleClientset(sl.DeepCopy())
	p := run(t, newSource(c))
	require.Equal(t, []string{"http://10.0.0.1:8080"}, urls(p.nextSet(t)))

	sl.Endpoints = append(sl.Endpoints, ready("10.0.0.2"), ready("10.0.0.3"))
	update(t, c, sl.DeepCopy())
	require.Equal(t, []string{"http://10.0.0.1:8080", "http://10.0.0.2:8080", "http://10.0.0.3:8080"}, urls(p.nextSet(t)))

	sl.Endpoints = sl.Endpoints[1:2]
	update(t, c, sl.DeepCopy())
	require.Equal(t, []string{"http://10.0.0.2:8080"}, urls(p.nextSet(t)))
}

func TestNewSliceAfterSync(t *testing.T) {
	c := fake.NewSimpleClientset()
	p := run(t, newSource(c))
	require.Empty(t, p.nextSet(t))

	create(t, c, slice("web-abc", svc, http8080, ready("10.0.0.1")))
	require.Equal(t, []string{"http://10.0.0.1:8080"}, urls(p.nextSet(t)))
}

func TestTwoSlicesMergedAndDeduplicated(t *testing.T) {
	// The controller may list an endpoint in two slices for a moment while
	// it moves it; it is one backend. A usable copy beats a draining one.
	c := fake.NewSimpleClientset(
		slice("web-abc", svc, http8080, ready("10.0.0.1"), withConditions("10.0.0.3", false, true, true)),
		slice("web-def", svc, http8080, ready("10.0.0.2"), ready("10.0.0.1"), ready("10.0.0.3")),
	)
	set := run(t, newSource(c)).nextSet(t)
	require.Equal(t, []string{"http://10.0.0.1:8080", "http://10.0.0.2:8080", "http://10.0.0.3:8080"}, urls(set))
}

func TestSliceDeleted(t *testing.T) {
	c := fake.NewSimpleClientset(
		slice("web-abc", svc, http8080, ready("10.0.0.1")),
		slice("web-def", svc, http8080, ready("10.0.0.2")),
	)
	p := run(t, newSource(c))
	require.Equal(t, []string{"http://10.0.0.1:8080", "http://10.0.0.2:8080"}, urls(p.nextSet(t)))

	remove(t, c, ns, "web-abc")
	require.Equal(t, []string{"http://10.0.0.2:8080"}, urls(p.nextSet(t)))

	remove(t, c, ns, "web-def")
	r := p.next(t)
	require.NoError(t, r.err)
	require.Empty(t, r.set)
}

func TestTerminatingEndpointDrains(t *testing.T) {
	sl := slice("web-abc", svc, http8080, ready("10.0.0.1"), ready("10.0.0.2"))
	c := fake.NewSimpleClientset(sl.DeepCopy())
	p := run(t, newSource(c))
	require.Equal(t, []string{"http://10.0.0.1:8080", "http://10.0.0.2:8080"}, urls(p.nextSet(t)))

	// The pod got its SIGTERM and still passes its readiness probe: the
	// controller sets ready=false, serving=true, terminating=true.
	sl.Endpoints[1] = withConditions("10.0.0.2", false, true, true)
	update(t, c, sl.DeepCopy())
	require.Equal(t, []string{"http://10.0.0.1:8080", "http://10.0.0.2:8080 (draining)"}, urls(p.nextSet(t)))

	// Its readiness probe fails as it shuts down: serving=false.
	sl.Endpoints[1] = withConditions("10.0.0.2", false, false, true)
	update(t, c, sl.DeepCopy())
	require.Equal(t, []string{"http://10.0.0.1:8080"}, urls(p.nextSet(t)))
}

func TestNotReadyLeftOut(t *testing.T) {
	notReady := withConditions("10.0.0.2", false, false, false)
	nilConditions := discoveryv1.Endpoint{Addresses: []string{"10.0.0.3"}} // nil ready means ready
	published := withConditions("10.0.0.4", true, true, true)              // publishNotReadyAddresses
	c := fake.NewSimpleClientset(slice("web-abc", svc, http8080, ready("10.0.0.1"), notReady, nilConditions, published))

	set := run(t, newSource(c)).nextSet(t)
	require.Equal(t, []string{"http://10.0.0.1:8080", "http://10.0.0.3:8080", "http://10.0.0.4:8080 (draining)"}, urls(set))
}

func TestPortByName(t *testing.T) {
	ports := []discoveryv1.EndpointPort{port("http", 8080), port("metrics", 9090)}
	c := fake.NewSimpleClientset(slice("web-abc", svc, ports, ready("10.0.0.1")))

	set := run(t, newSource(c, kubernetes.WithPort("metrics"))).nextSet(t)
	require.Equal(t, []string{"http://10.0.0.1:9090"}, urls(set))
}

func TestPortByNameMissing(t *testing.T) {
	ports := []discoveryv1.EndpointPort{port("http", 8080), port("metrics", 9090)}
	c := fake.NewSimpleClientset(slice("web-abc", svc, ports, ready("10.0.0.1")))

	err := run(t, newSource(c, kubernetes.WithPort("grpc"))).nextErr(t)
	require.ErrorIs(t, err, kubernetes.ErrPortNotFound)
	assert.Contains(t, err.Error(), `"grpc"`)
	assert.Contains(t, err.Error(), "http=8080, metrics=9090")
}

func TestPortMissingFromOneSlice(t *testing.T) {
	// Pods that do not expose a named targetPort end up in a slice without
	// that port: they are no backends, the others are.
	c := fake.NewSimpleClientset(
		slice("web-abc", svc, []discoveryv1.EndpointPort{port("http", 8080), port("admin", 9000)}, ready("10.0.0.1")),
		slice("web-def", svc, []discoveryv1.EndpointPort{port("http", 8081)}, ready("10.0.0.2")),
	)
	set := run(t, newSource(c, kubernetes.WithPort("admin"))).nextSet(t)
	require.Equal(t, []string{"http://10.0.0.1:9000"}, urls(set))
}

func TestSeveralPortsNeedWithPort(t *testing.T) {
	ports := []discoveryv1.EndpointPort{port("http", 8080), port("metrics", 9090)}
	c := fake.NewSimpleClientset(slice("web-abc", svc, ports, ready("10.0.0.1")))

	err := run(t, newSource(c)).nextErr(t)
	require.ErrorIs(t, err, kubernetes.ErrAmbiguousPort)
	assert.Contains(t, err.Error(), "http=8080, metrics=9090")
}

func TestOnlyTCPPortsCount(t *testing.T) {
	// A DNS-like Service: one UDP and one TCP port. Only TCP can carry HTTP.
	udp := port("dns", 53)
	udp.Protocol = ptr.To(corev1.ProtocolUDP)
	c := fake.NewSimpleClientset(slice("web-abc", svc, []discoveryv1.EndpointPort{udp, port("dns-tcp", 5353)}, ready("10.0.0.1")))

	set := run(t, newSource(c)).nextSet(t)
	require.Equal(t, []string{"http://10.0.0.1:5353"}, urls(set))
}

func TestIPv6AddressesBracketed(t *testing.T) {
	sl := slice("web-abc", svc, http8080, ready("fd00::1"), ready("FD00:0:0::2"))
	sl.AddressType = discoveryv1.AddressTypeIPv6
	c := fake.NewSimpleClientset(sl)

	set := run(t, newSource(c)).nextSet(t)
	require.Equal(t, []string{"http://[fd00::1]:8080", "http://[fd00::2]:8080"}, urls(set))
}

func TestFQDNAddresses(t *testing.T) {
	sl := slice("web-abc", svc, http8080, ready("web-0.web.shop.svc.cluster.local"))
	sl.AddressType = discoveryv1.AddressTypeFQDN
	c := fake.NewSimpleClientset(sl)

	set := run(t, newSource(c)).nextSet(t)
	require.Equal(t, []string{"http://web-0.web.shop.svc.cluster.local:8080"}, urls(set))
}

func TestInvalidAddressSkipped(t *testing.T) {
	c := fake.NewSimpleClientset(slice("web-abc", svc, http8080, ready("10.0.0.1"), ready("not-an-ip"), ready("fe80::1%eth0")))

	set := run(t, newSource(c)).nextSet(t)
	require.Equal(t, []string{"http://10.0.0.1:8080"}, urls(set))
}

func TestOtherServicesIgnored(t *testing.T) {
	otherNS := slice("web-xyz", svc, http8080, ready("10.9.0.1"))
	otherNS.Namespace = "staging"
	unlabelled := slice("web-unlabelled", svc, http8080, ready("10.9.0.3"))
	unlabelled.Labels = nil
	c := fake.NewSimpleClientset(
		slice("web-abc", svc, http8080, ready("10.0.0.1")),
		slice("api-abc", "api", http8080, ready("10.9.0.2")),
		otherNS, unlabelled,
	)
	p := run(t, newSource(c))
	require.Equal(t, []string{"http://10.0.0.1:8080"}, urls(p.nextSet(t)))

	// Changes to other services push nothing; the next push is ours.
	create(t, c, slice("api-def", "api", http8080, ready("10.9.0.4")))
	create(t, c, slice("web-def", svc, http8080, ready("10.0.0.2")))
	require.Equal(t, []string{"http://10.0.0.1:8080", "http://10.0.0.2:8080"}, urls(p.nextSet(t)))
}

func TestUnchangedSetNotPushedAgain(t *testing.T) {
	sl := slice("web-abc", svc, http8080, ready("10.0.0.1"))
	c := fake.NewSimpleClientset(sl.DeepCopy())
	p := run(t, newSource(c))
	require.Equal(t, []string{"http://10.0.0.1:8080"}, urls(p.nextSet(t)))

	sl.Annotations = map[string]string{"endpoints.kubernetes.io/last-change-trigger-time": "2026-12-04T20:00:00Z"}
	update(t, c, sl.DeepCopy())
	sl.Endpoints = append(sl.Endpoints, ready("10.0.0.2"))
	update(t, c, sl.DeepCopy())
	// The annotation alone changed nothing: the next push is the new endpoint.
	require.Equal(t, []string{"http://10.0.0.1:8080", "http://10.0.0.2:8080"}, urls(p.nextSet(t)))
}

func TestResyncPushesAgain(t *testing.T) {
	c := fake.NewSimpleClientset(slice("web-abc", svc, http8080, ready("10.0.0.1")))
	p := run(t, newSource(c, kubernetes.WithResync(20*time.Millisecond)))
	first := p.nextSet(t)
	require.Equal(t, first, p.nextSet(t))
	require.Equal(t, first, p.nextSet(t))
}

func TestScheme(t *testing.T) {
	appHTTPS := port("web", 8443)
	appHTTPS.AppProtocol = ptr.To("https")
	for _, tc := range []struct {
		name string
		port discoveryv1.EndpointPort
		opts []kubernetes.Option
		want string
	}{
		{"plain", port("http", 8080), nil, "http://10.0.0.1:8080"},
		{"named https", port("https", 8443), nil, "https://10.0.0.1:8443"},
		{"istio-style name", port("https-web", 8443), nil, "https://10.0.0.1:8443"},
		{"appProtocol", appHTTPS, nil, "https://10.0.0.1:8443"},
		{"WithScheme https", port("web", 8443), []kubernetes.Option{kubernetes.WithScheme("https")}, "https://10.0.0.1:8443"},
		{"WithScheme http wins", port("https", 8443), []kubernetes.Option{kubernetes.WithScheme("http")}, "http://10.0.0.1:8443"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fake.NewSimpleClientset(slice("web-abc", svc, []discoveryv1.EndpointPort{tc.port}, ready("10.0.0.1")))
			require.Equal(t, []string{tc.want}, urls(run(t, newSource(c, tc.opts...)).nextSet(t)))
		})
	}
}

func TestInvalidConfig(t *testing.T) {
	c := fake.NewSimpleClientset()
	for _, tc := range []struct {
		name string
		src  discovery.Source
		want string
	}{
		{"nil client", kubernetes.New(nil, ns, svc), "nil client"},
		{"no namespace", kubernetes.New(c, "", svc), "empty namespace"},
		{"no service", kubernetes.New(c, ns, ""), "empty service name"},
		{"scheme", kubernetes.New(c, ns, svc, kubernetes.WithScheme("ftp")), `scheme "ftp"`},
		{"resync", kubernetes.New(c, ns, svc, kubernetes.WithResync(-time.Second)), "resync period -1s"},
		{"sync timeout", kubernetes.New(c, ns, svc, kubernetes.WithSyncTimeout(0)), "sync timeout 0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.src.Run(context.Background(), func([]discovery.Target, error) { t.Error("push called") })
			require.ErrorIs(t, err, kubernetes.ErrInvalidConfig)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestListFailureReported(t *testing.T) {
	c := fake.NewSimpleClientset(slice("web-abc", svc, http8080, ready("10.0.0.1")))
	forbidden := apierrors.NewForbidden(schema.GroupResource{Group: "discovery.k8s.io", Resource: "endpointslices"}, "",
		errFromString("serviceaccount shop:lb cannot list endpointslices"))
	c.PrependReactor("list", "endpointslices", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, forbidden
	})

	err := run(t, newSource(c)).nextErr(t)
	require.ErrorIs(t, err, kubernetes.ErrList)
	require.True(t, apierrors.IsForbidden(err), "got %v", err)
}

func TestSyncTimeout(t *testing.T) {
	// The first list hangs until release closes: the source must not push
	// a set it does not know yet, but say that it has none.
	c := fake.NewSimpleClientset(slice("web-abc", svc, http8080, ready("10.0.0.1")))
	release := make(chan struct{})
	c.PrependReactor("list", "endpointslices", func(k8stesting.Action) (bool, runtime.Object, error) {
		<-release
		return false, nil, nil // on to the fake's own reactor
	})
	p := run(t, newSource(c, kubernetes.WithSyncTimeout(50*time.Millisecond)))

	err := p.nextErr(t)
	require.ErrorIs(t, err, kubernetes.ErrNotSynced)
	assert.Contains(t, err.Error(), "shop/web")

	close(release)
	require.Equal(t, []string{"http://10.0.0.1:8080"}, urls(p.nextSet(t)))
}

func TestRunReturnsWhenContextEnds(t *testing.T) {
	c := fake.NewSimpleClientset(slice("web-abc", svc, http8080, ready("10.0.0.1")))
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan []discovery.Target, 1)
	done := make(chan error, 1)
	go func() {
		done <- newSource(c).Run(ctx, func(set []discovery.Target, err error) {
			select {
			case got <- set:
			default:
			}
		})
	}()
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("no push")
	}
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	// goleak in TestMain checks that the informer's goroutines are gone.
}

type errFromString string

func (e errFromString) Error() string { return string(e) }
