// Package kubernetes is a [discovery.Source] that lists the backends of a
// Kubernetes Service from its EndpointSlices (discovery.k8s.io/v1), through
// a client-go informer that lists them once and then watches them.
//
// It lives in a module of its own so that the tinylb library does not
// depend on client-go. See README.md for the RBAC rule it needs and for the
// exact mapping of endpoint conditions to backends.
package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/go-logr/logr"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	discoveryinformers "k8s.io/client-go/informers/discovery/v1"
	clientset "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/tinylb/lb/discovery"
)

// Sentinel errors. The errors that Run returns or pushes wrap one of them,
// so callers can test with [errors.Is].
var (
	// ErrInvalidConfig: New was given something unusable (no client, an
	// empty namespace or service name, a scheme other than http or https,
	// a negative duration). Run returns it at once.
	ErrInvalidConfig = errors.New("kubernetes: invalid configuration")
	// ErrPortNotFound: no EndpointSlice with endpoints has the port named
	// by [WithPort].
	ErrPortNotFound = errors.New("kubernetes: port not found")
	// ErrAmbiguousPort: an EndpointSlice has several TCP ports and no
	// [WithPort] says which one to use.
	ErrAmbiguousPort = errors.New("kubernetes: several ports, name one with WithPort")
	// ErrNoPort: an EndpointSlice with endpoints has no TCP port number.
	ErrNoPort = errors.New("kubernetes: no port")
	// ErrList: listing or watching the EndpointSlices failed before the
	// first complete list (often a missing RBAC rule); the informer retries
	// with back-off.
	ErrList = errors.New("kubernetes: listing EndpointSlices failed")
	// ErrNotSynced: the first complete list of EndpointSlices did not
	// arrive within the sync timeout ([WithSyncTimeout]).
	ErrNotSynced = errors.New("kubernetes: EndpointSlices not synced")
)

// source is the [discovery.Source] that New returns.
type source struct {
	client    clientset.Interface
	namespace string
	service   string
	opts      options
}

// New returns a source for the backends of the Service named service in
// namespace, read from its EndpointSlices (those labelled
// kubernetes.io/service-name=service) with client. Nothing is contacted
// until Run; New never fails, and Run returns [ErrInvalidConfig] when an
// argument is unusable.
func New(client clientset.Interface, namespace, service string, opts ...Option) discovery.Source {
	o := options{syncTimeout: defaultSyncTimeout}
	for _, opt := range opts {
		if opt != nil {
			opt.apply(&o)
		}
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	return &source{client: client, namespace: namespace, service: service, opts: o}
}

func (s *source) validate() error {
	bad := func(why string) error { return fmt.Errorf("%w: %s", ErrInvalidConfig, why) }
	switch {
	case s.client == nil:
		return bad("nil client")
	case s.namespace == "":
		return bad("empty namespace")
	case s.service == "":
		return bad("empty service name")
	case s.opts.scheme != "" && s.opts.scheme != "http" && s.opts.scheme != "https":
		return bad(fmt.Sprintf("scheme %q: want http or https", s.opts.scheme))
	case s.opts.resync < 0:
		return bad(fmt.Sprintf("resync period %v is negative", s.opts.resync))
	case s.opts.syncTimeout <= 0:
		return bad(fmt.Sprintf("sync timeout %v: must be positive", s.opts.syncTimeout))
	}
	return nil
}

// Run implements [discovery.Source]. It starts an informer on the
// service's EndpointSlices and pushes nothing until the informer's first
// complete list is in (so never a half-known set); then it pushes the
// whole set, and again after every change that alters it. Before that
// first list it pushes list and watch failures ([ErrList]) and, once,
// [ErrNotSynced] when the sync timeout passes. It returns nil when ctx
// ends, after the informer's goroutines have stopped.
func (s *source) Run(ctx context.Context, push func(set []discovery.Target, err error)) error {
	if err := s.validate(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	// client-go logs through the logger in the context it runs with.
	ctx = klog.NewContext(ctx, logr.FromSlogHandler(s.opts.logger.Handler()))

	changed := make(chan struct{}, 1)
	notify := func() {
		select {
		case changed <- struct{}{}:
		default: // a wake-up is pending already: it reads the latest state
		}
	}
	inf, failures, err := s.informer(notify)
	if err != nil {
		cancel()
		return err
	}
	var wg sync.WaitGroup
	wg.Go(func() { inf.RunWithContext(ctx) })
	defer func() {
		cancel()
		wg.Wait()
	}()

	l := loop{src: s, store: inf.GetStore(), push: push}
	if !l.waitSync(ctx, inf.HasSyncedChecker().Done(), changed, failures) {
		return nil
	}
	var resync <-chan time.Time
	if s.opts.resync > 0 {
		t := time.NewTicker(s.opts.resync)
		defer t.Stop()
		resync = t.C
	}
	l.publish(true)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
			if err := failures.take(); err != nil {
				// The informer keeps its cache and retries; the set
				// it holds is still the best one known.
				s.opts.logger.Warn("kubernetes: watching EndpointSlices failed", "namespace", s.namespace, "service", s.service, "err", err)
			}
			l.publish(false)
		case <-resync:
			l.publish(true)
		}
	}
}

// informer makes the EndpointSlice informer of the service, with an event
// handler and a watch-error handler that only call notify: the set is
// computed from the informer's store, on Run's goroutine, so that push is
// never called concurrently.
func (s *source) informer(notify func()) (cache.SharedIndexInformer, *lastError, error) {
	selector := labels.Set{discoveryv1.LabelServiceName: s.service}.String()
	inf := discoveryinformers.NewFilteredEndpointSliceInformer(s.client, s.namespace, 0, cache.Indexers{},
		func(o *metav1.ListOptions) { o.LabelSelector = selector })
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { notify() },
		UpdateFunc: func(any, any) { notify() },
		DeleteFunc: func(any) { notify() },
	})
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes: informer: %w", err)
	}
	failures := &lastError{}
	err = inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		if errors.Is(err, io.EOF) {
			return // a watch closed normally (cache.DefaultWatchErrorHandler)
		}
		failures.set(err)
		notify()
	})
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes: informer: %w", err)
	}
	return inf, failures, nil
}

// lastError holds the latest list or watch failure until Run takes it.
type lastError struct {
	mu  sync.Mutex // guards err
	err error
}

func (e *lastError) set(err error) {
	e.mu.Lock()
	e.err = err
	e.mu.Unlock()
}

func (e *lastError) take() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	err := e.err
	e.err = nil
	return err
}
