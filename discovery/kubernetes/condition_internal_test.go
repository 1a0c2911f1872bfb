package kubernetes

import (
	"testing"

	"github.com/stretchr/testify/assert"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"
)

// TestConditionMapping covers every combination of the three conditions,
// each unset (nil, which takes the API's default), true or false.
func TestConditionMapping(t *testing.T) {
	values := []*bool{nil, ptr.To(true), ptr.To(false)}
	isTrue := func(p *bool, def bool) bool {
		if p == nil {
			return def
		}
		return *p
	}
	for _, r := range values {
		for _, s := range values {
			for _, term := range values {
				c := discoveryv1.EndpointConditions{Ready: r, Serving: s, Terminating: term}
				ready, serving, terminating := isTrue(r, true), isTrue(s, true), isTrue(term, false)
				want := leftOut
				switch {
				case terminating && serving:
					want = draining
				case !terminating && ready:
					want = usable
				}
				assert.Equal(t, want, condition(c), "ready=%v serving=%v terminating=%v", fmtBool(r), fmtBool(s), fmtBool(term))
			}
		}
	}
	// The rows of the table in condition's comment, spelled out.
	assert.Equal(t, usable, condition(discoveryv1.EndpointConditions{}))
	assert.Equal(t, draining, condition(discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)}))
	assert.Equal(t, leftOut, condition(discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(false), Terminating: ptr.To(true)}))
	assert.Equal(t, leftOut, condition(discoveryv1.EndpointConditions{Ready: ptr.To(false)}))
}

func fmtBool(p *bool) string {
	if p == nil {
		return "nil"
	}
	if *p {
		return "true"
	}
	return "false"
}
