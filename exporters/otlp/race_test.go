//go:build race

package otlp

// slowdown is how much slower code runs under the race detector (5-10x).
const slowdown = 10
