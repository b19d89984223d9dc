//go:build !unix

package static

const openFlags = 0
