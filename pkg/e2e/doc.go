// Package e2e holds the end-to-end tests: they build the real binaries,
// start them with real Python apps, and talk to them over real sockets.
// `make bench` runs TestBench here too, with nginx + gunicorn, nginx +
// uWSGI and nginx alone beside it, and `make testssl` runs TestTestssl,
// Debian's testssl.sh against edged's TLS.
package e2e
