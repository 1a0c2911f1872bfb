package kubernetes

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/tinylb/lb/discovery"
)

// Keys of [discovery.Target.Metadata], set when the endpoint has the field.
const (
	// MetaNodeName is the endpoint's nodeName: the node that hosts it.
	MetaNodeName = "nodeName"
	// MetaHostname is the endpoint's hostname (set for the pods of a
	// StatefulSet behind a headless Service).
	MetaHostname = "hostname"
	// MetaTargetRef is the endpoint's targetRef as kind/namespace/name,
	// such as "Pod/shop/web-5d9c-x2x7q".
	MetaTargetRef = "targetRef"
)

// targets merges the EndpointSlices of the service into one set of
// backends, sorted by URL. An address that several slices list (the
// controller can briefly list an endpoint in two slices while it moves it)
// is one backend; if the copies disagree, a usable one beats a draining
// one.
func (s *source) targets(list []*discoveryv1.EndpointSlice) ([]discovery.Target, error) {
	// Sorted by name so that which copy of a duplicate wins does not
	// depend on the store's map order.
	slices.SortFunc(list, func(a, b *discoveryv1.EndpointSlice) int { return cmp.Compare(a.Name, b.Name) })
	byURL := map[string]int{}
	var set []discovery.Target
	withEndpoints, withPort := 0, 0
	var portNames []string
	for _, sl := range list {
		// The informer lists by label already; this also holds when a
		// client (a fake one, say) does not filter its watch.
		if sl.Labels[discoveryv1.LabelServiceName] != s.service || len(sl.Endpoints) == 0 {
			continue
		}
		withEndpoints++
		port, scheme, err := s.pickPort(sl)
		if err != nil {
			return nil, err
		}
		if port == 0 {
			portNames = append(portNames, slicePortNames(sl)...)
			s.opts.logger.Debug("kubernetes: EndpointSlice lacks the port", "slice", sl.Name, "port", s.opts.portName)
			continue
		}
		withPort++
		for _, ep := range sl.Endpoints {
			t, ok := s.target(sl, ep, scheme, port)
			if !ok {
				continue
			}
			if i, dup := byURL[t.URL]; dup {
				if set[i].Draining && !t.Draining {
					set[i] = t
				}
				continue
			}
			byURL[t.URL] = len(set)
			set = append(set, t)
		}
	}
	if withEndpoints > 0 && withPort == 0 {
		slices.Sort(portNames)
		return nil, fmt.Errorf("%w: %s/%s has no TCP port named %q (ports: %s)", ErrPortNotFound,
			s.namespace, s.service, s.opts.portName, strings.Join(slices.Compact(portNames), ", "))
	}
	slices.SortFunc(set, func(a, b discovery.Target) int { return cmp.Compare(a.URL, b.URL) })
	return set, nil
}

// pickPort returns the slice's port to use and the scheme that goes with
// it, or port 0 when WithPort names a port the slice lacks. Only TCP ports
// count (a nil protocol means TCP).
func (s *source) pickPort(sl *discoveryv1.EndpointSlice) (int32, string, error) {
	var tcp []discoveryv1.EndpointPort
	for _, p := range sl.Ports {
		if p.Protocol == nil || *p.Protocol == corev1.ProtocolTCP {
			tcp = append(tcp, p)
		}
	}
	var chosen *discoveryv1.EndpointPort
	switch {
	case s.opts.portSet:
		for i := range tcp {
			if deref(tcp[i].Name) == s.opts.portName {
				chosen = &tcp[i]
			}
		}
		if chosen == nil || chosen.Port == nil {
			return 0, "", nil
		}
	case len(tcp) > 1:
		return 0, "", fmt.Errorf("%w: %s/%s has ports %s", ErrAmbiguousPort, s.namespace, s.service, strings.Join(slicePortNames(sl), ", "))
	case len(tcp) == 0 || tcp[0].Port == nil:
		return 0, "", fmt.Errorf("%w: EndpointSlice %s/%s of service %s has no TCP port number", ErrNoPort, s.namespace, sl.Name, s.service)
	default:
		chosen = &tcp[0]
	}
	return *chosen.Port, s.schemeFor(chosen), nil
}

// schemeFor is WithScheme's scheme, or https for a port that says it
// speaks it (appProtocol https, or a name "https" or "https-...").
func (s *source) schemeFor(p *discoveryv1.EndpointPort) string {
	if s.opts.scheme != "" {
		return s.opts.scheme
	}
	name := deref(p.Name)
	if deref(p.AppProtocol) == "https" || name == "https" || strings.HasPrefix(name, "https-") {
		return "https"
	}
	return "http"
}

// target maps one endpoint to a backend, or reports false when the
// endpoint is left out (see condition) or its address is unusable.
func (s *source) target(sl *discoveryv1.EndpointSlice, ep discoveryv1.Endpoint, scheme string, port int32) (discovery.Target, bool) {
	state := condition(ep.Conditions)
	if state == leftOut || len(ep.Addresses) == 0 {
		return discovery.Target{}, false
	}
	// Only the first address counts: "No semantics are defined for
	// additional addresses beyond the first, and kube-proxy does not look
	// at them" (k8s.io/api discovery/v1 Endpoint.Addresses).
	host := ep.Addresses[0]
	if sl.AddressType == discoveryv1.AddressTypeIPv4 || sl.AddressType == discoveryv1.AddressTypeIPv6 {
		ip, err := netip.ParseAddr(host)
		if err != nil || ip.Zone() != "" {
			s.opts.logger.Warn("kubernetes: endpoint address is not an IP address", "slice", sl.Name, "address", host)
			return discovery.Target{}, false
		}
		host = ip.String() // one spelling per address, for the dedupe
	}
	t := discovery.Target{
		// JoinHostPort brackets an IPv6 address: http://[fd00::1]:8080.
		URL:      scheme + "://" + net.JoinHostPort(host, strconv.Itoa(int(port))),
		Draining: state == draining,
		Zone:     deref(ep.Zone),
	}
	meta := map[string]string{}
	if ep.NodeName != nil && *ep.NodeName != "" {
		meta[MetaNodeName] = *ep.NodeName
	}
	if ep.Hostname != nil && *ep.Hostname != "" {
		meta[MetaHostname] = *ep.Hostname
	}
	if r := ep.TargetRef; r != nil && r.Name != "" {
		meta[MetaTargetRef] = r.Kind + "/" + r.Namespace + "/" + r.Name
	}
	if len(meta) > 0 {
		t.Metadata = meta
	}
	return t, true
}

// endpointState is what an endpoint's conditions make of it.
type endpointState int

const (
	usable   endpointState = iota // takes new requests
	draining                      // finishes what it has, takes no new ones
	leftOut                       // not a backend at all
)

// condition maps an endpoint's conditions to a state, after KEP-1672
// (Tracking Terminating Endpoints), where the EndpointSlice controller sets
// ready = serving && !terminating, and serving from the pod's readiness
// whether or not it is terminating. The API's defaults for nil apply:
// ready and serving true, terminating false.
//
//	terminating  serving  ready  →
//	false        any      true   usable
//	false        any      false  left out (not ready)
//	true         true     any    draining (still answers while it shuts down)
//	true         false    any    left out (going away and not answering)
//
// A terminating endpoint is draining even when ready is true, which a
// Service with publishNotReadyAddresses makes it.
func condition(c discoveryv1.EndpointConditions) endpointState {
	ready := c.Ready == nil || *c.Ready
	serving := c.Serving == nil || *c.Serving
	terminating := c.Terminating != nil && *c.Terminating
	switch {
	case terminating && serving:
		return draining
	case terminating:
		return leftOut
	case ready:
		return usable
	default:
		return leftOut
	}
}

// slicePortNames lists a slice's ports as name/port for error messages.
func slicePortNames(sl *discoveryv1.EndpointSlice) []string {
	var out []string
	for _, p := range sl.Ports {
		name := deref(p.Name)
		if name == "" {
			name = `""`
		}
		if p.Port != nil {
			name += "=" + strconv.Itoa(int(*p.Port))
		}
		if p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP {
			name += "/" + string(*p.Protocol)
		}
		out = append(out, name)
	}
	return out
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
