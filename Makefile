# make test: everything CI runs, on a fresh machine. It installs what is missing first.
.PHONY: test deps generate check-generated vet gotest verify-unit e2e build bench bench-store vuln soak

GO ?= go
# Go 1.27.3 carries the standard-library fixes govulncheck asks for; this machine's Go is
# older and ignores go.mod's toolchain line, so every Go invocation is pinned here.
export GOTOOLCHAIN := go1.27.3

test: deps check-generated vet gotest verify-unit e2e

# Debian packages (sshd, chromium, postgresql) when root, and the npm tree when it is missing or stale.
deps:
	@scripts/deps.sh

# Regenerate templ code and the browser bundle after editing .templ or static/src.
generate:
	$(GO) tool templ generate -path views
	npm run build

# The committed generated code must match its sources.
check-generated:
	@scripts/check-generated.sh

vet:
	$(GO) vet ./...

gotest:
	$(GO) test -race -count=1 ./...

# The systemd unit in contrib/ passes systemd-analyze verify and keeps its hardening.
verify-unit:
	@scripts/verify-unit.sh

e2e:
	npx playwright test

build:
	$(GO) build -buildvcs=auto -o bin/shellgate ./cmd/shellgate

# shellgate next to OpenSSH on this machine (< 10 minutes on 2 cores); flags
# in BENCHFLAGS, e.g. make bench BENCHFLAGS='-runs 5 -only throughput,echo'.
bench:
	$(GO) run ./cmd/shellgate-bench $(BENCHFLAGS)
	$(GO) test -run '^$$' -bench . -benchtime 2000x ./store/

# The store's hot queries (ticket issue + claim, session lookup) on SQLite, then on a
# throwaway PostgreSQL (fsync off: its write figures are a best case).
bench-store:
	$(GO) test -run '^$$' -bench . -benchtime 2000x ./store/

# Known vulnerabilities reachable from shellgate's code, in the standard library and
# every module (docs/security.md). Needs the Go vulnerability database: vuln.go.dev,
# or a mirror named in GOVULNDB. Run before a release and after any go.mod change.
GOVULNCHECK ?= golang.org/x/vuln/cmd/govulncheck@v1.9.0
GOVULNDB ?= https://vuln.go.dev
vuln:
	$(GO) run $(GOVULNCHECK) -db $(GOVULNDB) ./...
# Not part of make test: 200 terminals typing for 10 minutes against a real sshd,
# then closed; goroutines, descriptors and RSS must come back within 10 % of the
# baseline. Shorter: make soak SOAKFLAGS='-soak.sessions=50 -soak.for=1m'.
soak:
	$(GO) test -count=1 -timeout 40m -run '^TestSoak$$' -v ./cmd/shellgate -soak $(SOAKFLAGS)
