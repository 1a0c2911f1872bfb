package main

import (
	"bytes"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/tinylb/lb"
)

// Reload re-reads the config file and the command line as SIGHUP does,
// and applies what can change in place: the backend list (with weights and
// backup flags, keeping the state of the backends that stay) or the
// discovery source, the log level, and the listener's certificate when its
// files are the same. A changed discovery object replaces the watcher: the
// pool keeps its backends until the new source's first set, which
// [lb.Pool.Update] applies like a new list (the backends it keeps keep
// their state); an unchanged one keeps its watcher. A bad config is
// logged, returned and changes nothing.
func (p *proxy) Reload() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	next, err := load(p.args)
	if err != nil {
		p.log.Error("config reload rejected; the running config stays", "error", err)
		return err
	}
	if next.file == "" {
		if !p.reloadCert(next.TLS) {
			p.log.Warn("config reload: no -config file and no new certificate; nothing to reload")
		}
		return nil
	}
	if changed := changedSettings(p.cfg, next); len(changed) > 0 {
		p.log.Warn("config reload: needs restart to apply these changed settings; ignored until then", "settings", changed)
	}

	if next.Discovery == nil {
		backends, err := next.newBackends()
		if err == nil {
			err = p.bal.Pool().Update(backends...)
		}
		if err != nil { // cannot happen to a config that passed validate
			p.log.Error("config reload rejected; the running config stays", "error", err)
			return err
		}
		p.stopWatching()
	} else if !reflect.DeepEqual(next.Discovery, p.cfg.Discovery) {
		// A new source: the old watcher stops, the pool keeps its
		// backends until the new source's first set, and those that set
		// keeps keep their state.
		p.stopWatching()
		p.watch(next.Discovery)
	}
	p.reloadCert(next.TLS)
	added, removed, changed := backendChanges(p.cfg.Backends, next.Backends)
	p.cfg.Backends = next.Backends
	p.cfg.Discovery = next.Discovery
	if next.LogLevel != p.cfg.LogLevel {
		p.level.Set(next.level())
		p.cfg.LogLevel = next.LogLevel
	}
	if next.Discovery != nil {
		p.log.Info("config reloaded", "config", next.file, "discovery", next.Discovery.String(), "log_level", p.cfg.LogLevel)
		return nil
	}
	p.log.Info("config reloaded", "config", next.file, "backends", len(next.Backends),
		"added", added, "removed", removed, "changed", changed, "log_level", p.cfg.LogLevel)
	return nil
}

// reloadCert re-reads the listener's certificate and key if next names
// the same files as the config in effect (other files need a restart):
// a renewed certificate serves the connections that come after. It
// reports whether the certificate changed.
func (p *proxy) reloadCert(next tlsConfig) bool {
	old := p.cert.Load()
	if old == nil || next != p.cfg.TLS {
		return false
	}
	cert, err := next.load() // load checked it a moment ago
	if err != nil {
		p.log.Error("config reload: the certificate stays", "error", err)
		return false
	}
	if bytes.Equal(cert.Certificate[0], old.Certificate[0]) {
		return false
	}
	p.cert.Store(&cert)
	p.log.Info("config reload: new certificate", "tls_cert_expires", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	return true
}

// backendChanges lists the backends added, removed, and changed (weight or
// backup flag) from old to new, by normalized URL.
func backendChanges(old, new []backendConfig) (added, removed, changed []string) {
	key := func(b backendConfig) string {
		if be, err := lb.NewBackend(b.URL); err == nil {
			return be.Key()
		}
		return b.URL
	}
	before := make(map[string]backendConfig, len(old))
	for _, b := range old {
		before[key(b)] = b
	}
	after := make(map[string]bool, len(new))
	for _, b := range new {
		k := key(b)
		after[k] = true
		switch o, ok := before[k]; {
		case !ok:
			added = append(added, k)
		case o.Weight != b.Weight || o.Backup != b.Backup:
			changed = append(changed, k)
		}
	}
	for _, b := range old {
		if k := key(b); !after[k] {
			removed = append(removed, k)
		}
	}
	return added, removed, changed
}

// changedSettings returns the paths of the settings that differ between
// old and new, except the backends, the discovery source and the log
// level, which a reload applies: the settings that need a restart.
func changedSettings(old, new config) []string {
	var out []string
	diff("", reflect.ValueOf(old), reflect.ValueOf(new), &out)
	return slices.DeleteFunc(out, func(p string) bool {
		return p == "backends" || p == "log_level" || p == "discovery" || strings.HasPrefix(p, "discovery.")
	})
}

func diff(path string, a, b reflect.Value, out *[]string) {
	join := func(name string) string {
		if path == "" {
			return name
		}
		return path + "." + name
	}
	switch {
	case a.Kind() == reflect.Struct && a.Type() != durationType:
		for i := range a.NumField() {
			if name := jsonName(a.Type().Field(i)); name != "" {
				diff(join(name), a.Field(i), b.Field(i), out)
			}
		}
		return
	case a.Kind() == reflect.Pointer && !a.IsNil() && !b.IsNil():
		diff(path, a.Elem(), b.Elem(), out)
		return
	case (a.Kind() == reflect.Slice || a.Kind() == reflect.Map) && a.Len() == 0 && b.Len() == 0:
		return // nil and empty are the same setting
	}
	if !reflect.DeepEqual(a.Interface(), b.Interface()) {
		*out = append(*out, path)
	}
}
