# edged: `make help` lists the targets.

GO      ?= go
BIN     ?= bin
DIST    ?= dist
PYTHON  ?= /usr/bin/python3
# Debian packages the tests and the bench use (real peers, not mocks).
TEST_DEBS := python3 python3-flask python3-gevent python3-django python3-fastapi python3-starlette python3-uvloop python3-websockets python3-flask-socketio python3-gevent-websocket chromium pebble curl strace lintian rpm rpmlint debootstrap nodejs haproxy keepalived logrotate
BENCH_DEBS := nginx-light gunicorn uwsgi-core uwsgi-plugin-python3 wrk nghttp2-client python3-gevent python3-uvicorn python3-httptools
TESTSSL_DEBS := python3 testssl.sh

.PHONY: help build run test deps bench-deps bench h2spec testssl-deps testssl fuzz lint clean install deb rpm packages lint-packages

VERSION := $(shell packaging/version.sh)
ARCH    ?= amd64
RPMARCH := $(subst amd64,x86_64,$(subst arm64,aarch64,$(ARCH)))
NFPM    := $(GO) tool -modfile=packaging/tools/go.mod nfpm

DESTDIR ?=
UNITDIR := /usr/lib/systemd/system

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## build edged, workerd and edgectl into bin/
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/ ./cmd/...

run: build ## serve the sample app on http://127.0.0.1:8080/ (Ctrl-C stops)
	$(BIN)/edgectl run -c testdata/run.toml

deps: ## install what the tests need (apt-get as root; otherwise says how)
	@.ci/deps $(TEST_DEBS)

bench-deps:
	@.ci/deps $(TEST_DEBS) $(BENCH_DEBS)

test: deps ## run every test (vet, unit, end to end, fuzz seeds) with -race
	$(GO) vet ./...
	EDGED_PYTHON=$(PYTHON) $(GO) test -race -count=1 -timeout 12m ./...

bench: bench-deps build ## edged vs nginx + gunicorn and nginx + uWSGI side by side, with ratios
	EDGED_PYTHON=$(PYTHON) EDGED_BENCH=1 $(GO) test -count=1 -run '^TestBench$$' -v -timeout 30m ./pkg/e2e/

h2spec: ## HTTP/2 conformance: h2spec (pinned in packaging/tools) against edged over TLS; also in make test
	@.ci/deps python3
	EDGED_PYTHON=$(PYTHON) $(GO) test -run '^TestH2spec$$' -count=1 -v -timeout 5m ./pkg/e2e/

testssl-deps:
	@.ci/deps $(TESTSSL_DEBS)

testssl: testssl-deps ## scan edged's TLS with Debian's testssl.sh; fails on findings of LOW or above (minutes)
	EDGED_PYTHON=$(PYTHON) EDGED_TESTSSL=1 $(GO) test -run '^TestTestssl$$' -count=1 -v -timeout 15m ./pkg/e2e/

fuzz: ## run each fuzz target for a while (FUZZTIME=30s)
	$(GO) test -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $${FUZZTIME:-30s} ./pkg/config/
	$(GO) test -run '^$$' -fuzz '^FuzzReadResponse$$' -fuzztime $${FUZZTIME:-30s} ./pkg/wire/
	$(GO) test -run '^$$' -fuzz '^FuzzPath$$' -fuzztime $${FUZZTIME:-30s} ./pkg/static/
	$(GO) test -run '^$$' -fuzz '^FuzzHeadScanner$$' -fuzztime $${FUZZTIME:-30s} ./pkg/edge/
	$(GO) test -run '^$$' -fuzz '^FuzzFrameScanner$$' -fuzztime $${FUZZTIME:-30s} ./pkg/edge/
	$(GO) test -run '^$$' -fuzz '^FuzzRouteOf$$' -fuzztime $${FUZZTIME:-30s} ./pkg/edge/
	$(GO) test -run '^$$' -fuzz '^FuzzWorkerFrame$$' -fuzzminimizetime 2s -fuzztime $${FUZZTIME:-30s} ./pkg/worker/

lint: ## gofmt and vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

install: build ## install binaries, units and system files under DESTDIR (keeps an existing /etc/edged/edged.toml)
	install -D -m 0755 -t $(DESTDIR)/usr/bin $(BIN)/edged $(BIN)/workerd $(BIN)/edgectl
	install -D -m 0644 -t $(DESTDIR)$(UNITDIR) units/edged.socket units/edged-https.socket units/edged.service units/workerd.socket units/workerd@.service
	install -D -m 0644 units/site/workerd-site@.service $(DESTDIR)/usr/lib/edged/workerd-site@.service
	install -d $(DESTDIR)/usr/lib/systemd/system-generators
	ln -sf ../../../bin/edgectl $(DESTDIR)/usr/lib/systemd/system-generators/edged-generator
	install -D -m 0644 units/sysusers.d/edged.conf $(DESTDIR)/usr/lib/sysusers.d/edged.conf
	install -D -m 0644 units/tmpfiles.d/edged.conf $(DESTDIR)/usr/lib/tmpfiles.d/edged.conf
	install -D -m 0644 units/sysctl.d/60-edged.conf $(DESTDIR)/usr/lib/sysctl.d/60-edged.conf
	install -D -m 0644 -t $(DESTDIR)/usr/share/edged/www packaging/www/index.html
	install -D -m 0644 testdata/apps/sample.py $(DESTDIR)/usr/share/edged/app/sample.py
	install -D -m 0644 testdata/static/style.css $(DESTDIR)/usr/share/edged/www/style.css
	install -D -m 0644 testdata/static/hello.txt $(DESTDIR)/usr/share/edged/www/hello.txt
	test -e $(DESTDIR)/etc/edged/edged.toml || install -D -m 0644 packaging/edged.toml $(DESTDIR)/etc/edged/edged.toml

deb: ## build dist/edged_<version>_<arch>.deb (nfpm, pinned in packaging/tools)
	CGO_ENABLED=0 GOARCH=$(ARCH) $(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/ ./cmd/...
	mkdir -p $(DIST)
	packaging/changelog.sh $(VERSION) > $(DIST)/changelog.yml
	sed -e 's|@BIN@|$(BIN)|g' -e 's|@DIST@|$(DIST)|g' packaging/nfpm.yaml > $(DIST)/nfpm.yaml
	EDGED_VERSION=$(VERSION) EDGED_ARCH=$(ARCH) $(NFPM) package -f $(DIST)/nfpm.yaml -p deb -t $(DIST)/edged_$(VERSION)_$(ARCH).deb

rpm: ## build dist/edged-<version>.<arch>.rpm
	CGO_ENABLED=0 GOARCH=$(ARCH) $(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/ ./cmd/...
	mkdir -p $(DIST)
	packaging/changelog.sh $(VERSION) > $(DIST)/changelog.yml
	sed -e 's|@BIN@|$(BIN)|g' -e 's|@DIST@|$(DIST)|g' packaging/nfpm.yaml > $(DIST)/nfpm.yaml
	EDGED_VERSION=$(VERSION) EDGED_ARCH=$(ARCH) $(NFPM) package -f $(DIST)/nfpm.yaml -p rpm -t $(DIST)/edged-$(VERSION).$(RPMARCH).rpm

packages: deb rpm ## both packages

lint-packages: ## lintian and rpmlint on what `make packages` built
	lintian --fail-on error,warning $(DIST)/edged_$(VERSION)_$(ARCH).deb
	rpmlint -r packaging/rpmlintrc $(DIST)/edged-$(VERSION).$(RPMARCH).rpm

clean: ## remove build output
	rm -rf $(BIN) dist
