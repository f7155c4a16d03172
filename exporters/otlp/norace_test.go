//go:build !race

package otlp

// slowdown is how much slower code runs under the race detector.
const slowdown = 1
