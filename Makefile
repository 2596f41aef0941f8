# muninn — run `make` for the list of targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
GO ?= go
export MUNINN_DATA_DIR ?= ./data
BIN := bin
# Tests as root also exercise nftables inside network namespaces they create.
TEST_FLAGS ?= -race -count=1 -timeout 30m

.PHONY: help generate verify lint test test/nft fuzz bench build run docker deps clean install/bouncer

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z\/_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

include Makefile.geodata
include Makefile.ui

deps: ## Install what a clean machine lacks (PostgreSQL binaries; as root: nft and ip for kernel tests, systemd-analyze for the unit check, nginx with geoip2 and haproxy for the export tests, OpenSSH, sshpass and systemd-journal-remote for the sensor tests, softflowd and pmacct for the flow tests)
	@missing=""; \
	{ command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || missing="$$missing postgresql"; \
	if [ "$$(id -u)" = 0 ]; then command -v nft >/dev/null || missing="$$missing nftables"; \
	  command -v ip >/dev/null || missing="$$missing iproute2"; \
	  command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	  command -v sshd >/dev/null || missing="$$missing openssh-server"; \
	  command -v ssh >/dev/null || missing="$$missing openssh-client"; \
	  command -v sshpass >/dev/null || missing="$$missing sshpass"; \
	  test -x /lib/systemd/systemd-journal-remote || missing="$$missing systemd-journal-remote"; \
	  command -v softflowd >/dev/null || missing="$$missing softflowd"; \
	  command -v pmacctd >/dev/null || missing="$$missing pmacct"; \
	  command -v nginx >/dev/null || missing="$$missing nginx"; \
	  test -e /usr/lib/nginx/modules/ngx_http_geoip2_module.so || missing="$$missing libnginx-mod-http-geoip2"; \
	  command -v haproxy >/dev/null || missing="$$missing haproxy"; fi; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "deps: installing$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "deps: please install:$$missing"; exit 1; fi; \
	fi

# The ogen client (a second, independent generator) is only for the tour test.
GENERATED := server/api bouncer/apiclient server/e2e/ogenclient

generate: ## Regenerate the server (server/api/apigen), the bouncer client (bouncer/apiclient) and the tour's ogen client (server/e2e/ogenclient) from openapi/openapi.yaml
	$(GO) generate $(addprefix ./,$(addsuffix /...,$(GENERATED)))

verify: generate ## Fail when generated code is stale
	@git diff --exit-code -- $(GENERATED) || { echo "verify: generated code is stale: run make generate and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- $(GENERATED))" || { echo "verify: untracked generated files"; exit 1; }

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); test -z "$$out" || { echo "gofmt would change:"; echo "$$out"; exit 1; }
	$(GO) vet ./...

test: deps ## Run every test (kernel tests need root; CI is root; UI tests drive headless Chromium)
	@./.ci/install-chromium
	$(MAKE) --no-print-directory verify lint
	@# Tests leave their databases in place (a DROP DATABASE forces a checkpoint that stalls the tests still running); drop this run's at the end.
	run=run$$$$; rc=0; MUNINN_TEST_RUN=$$run $(GO) test $(TEST_FLAGS) ./... || rc=$$?; \
	  $(GO) run ./server/store/storetest/cmd/muninn-testdb -run $$run; exit $$rc
	FUZZTIME=3s GO=$(GO) ./.ci/fuzz

fuzz: ## Run every fuzz target for FUZZTIME each (default 10m; make test runs each for 3s)
	FUZZTIME=$${FUZZTIME:-10m} GO=$(GO) ./.ci/fuzz

test/nft: deps ## Only the nftables tests (root)
	$(GO) test $(TEST_FLAGS) -v ./bouncer/...

bench: deps build ## Benchmarks: Go benchmarks (aggregation side by side with iprange), then the HTTP load and long-poll fan-out harnesses
	@command -v iprange >/dev/null || { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "bench: installing iprange for the aggregation comparison"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iprange >/dev/null; \
	  else echo "bench: iprange is not installed; BenchmarkAggregateFeeds skips the comparison"; fi; }
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 1x ./server/... ./worker/... ./bouncer/... | tee $(BIN)/bench.txt
	$(GO) run ./server/cmd/muninn-load -duration 20s | tee -a $(BIN)/bench.txt
	$(GO) run ./server/cmd/muninn-load -ingest-only -prefixes 1000000 -distinct 20000 | tee -a $(BIN)/bench.txt
	$(GO) run ./server/cmd/muninn-load -ingest-only -prefixes 1000000 -distinct 20000 -clients 4 | tee -a $(BIN)/bench.txt
	$(GO) run ./server/cmd/muninn-load -ingest-only -prefixes 3000000 -distinct 20000 -clients 4 -ingest-rate 100000 | tee -a $(BIN)/bench.txt
	$(GO) run ./server/cmd/muninn-load -ingest-only -prefixes 1000000 -clients 4 | tee -a $(BIN)/bench.txt
	$(GO) run ./server/cmd/muninn-fanout -n 1000 -wait 20s -idle 20s -timeout 3m -muninn $(BIN)/muninn | tee -a $(BIN)/bench.txt

build: ## Build bin/muninn and bin/muninn-bouncer (static)
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/muninn ./server/cmd/muninn
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/muninn-bouncer ./bouncer/cmd/muninn-bouncer

run: deps build geodata/ensure ## Start muninn on the embedded defaults (PostgreSQL under ./data; fetches the free geo data when missing)
	$(BIN)/muninn serve

docker: ## Build the images (needs a Docker engine)
	docker build -f docker/muninn.Dockerfile -t muninn .
	docker build -f docker/bouncer.Dockerfile -t muninn-bouncer .

install/bouncer: build ## Install the bouncer on this host, once, as root: SERVER=URL [CA_FILE=ca.pem], the key on stdin
	docker/install-bouncer.sh --server "$(SERVER)" $(if $(CA_FILE),--ca-file "$(CA_FILE)") --binary $(BIN)/muninn-bouncer

clean: ## Remove build output (not ./data)
	rm -rf $(BIN)
