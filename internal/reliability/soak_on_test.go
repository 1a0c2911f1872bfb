//go:build soak

package reliability

const soakTag = true
