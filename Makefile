# Twill: the two commands an operator or CI needs.
#   make demo   build, start a 3-node cluster (etcd, twilld, pods via the twill plugin) in
#               namespaces, print the ping matrix and netctl output, tear it all down
#   make test   install what is missing, build, lint and run every test (needs root)
#   make bench  plugins against the reference plugins, pod throughput against the underlay,
#               lease-to-route latency, NetworkPolicy compile/apply/label-change latency and
#               throughput with 1,000 policies; writes docs/benchmarks.md

APT_PACKAGES := pkg-config libnftnl-dev libmnl-dev protobuf-compiler libprotobuf-dev \
	iproute2 nftables iptables conntrack etcd-server iperf3 curl podman runc \
	containernetworking-plugins busybox-static iputils-ping
CARGO ?= cargo

.PHONY: deps build lint test demo demo-bridge bench clean

deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

build: deps
	$(CARGO) build --workspace --all-targets

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test: build lint
	$(CARGO) test --workspace

demo: deps
	$(CARGO) build --workspace --bins
	target/debug/demo-cluster

# The plugins alone: two namespaces connected through our bridge.
demo-bridge: deps
	$(CARGO) build --workspace --bins
	bash e2e/demo.sh

# BENCH_ARGS: e.g. --iterations 50, or --ours /usr/lib/cni to check the harness reference against itself
bench: deps
	$(CARGO) build --release --workspace --bins
	target/release/bench-plugins $(BENCH_ARGS)
	target/release/bench-cluster
	target/release/bench-policy

clean:
	$(CARGO) clean
