#!/usr/bin/env bash
# Twill demo: one node, two pods, connected by the bridge plugin (+ host-local), each plugin
# call made exactly as a container runtime makes it: CNI_* environment, config on stdin, run in
# the node's network namespace. Everything lives in namespaces this script creates and removes
# again, also when a step fails; the root namespace is never touched.
#
#   PLUGIN_DIR  the plugins to run (default target/debug, i.e. ours after `cargo build`;
#               PLUGIN_DIR=/usr/lib/cni runs the reference plugins)
set -euo pipefail
cd "$(dirname "$0")/.."

PLUGIN_DIR=$(realpath -m "${PLUGIN_DIR:-target/debug}")
NODE=twill-demo-node-$$
POD_A=twill-demo-a-$$
POD_B=twill-demo-b-$$
BRIDGE=twill0
SUBNET=10.244.1.0/24
GATEWAY=10.244.1.1

die() { echo "demo: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (network namespaces): run sudo make demo"
for tool in ip:iproute2 busybox:busybox-static realpath:coreutils; do
    command -v "${tool%%:*}" >/dev/null || die "${tool%%:*} not found: apt-get install ${tool#*:}"
done
for plugin in bridge host-local; do
    [ -x "$PLUGIN_DIR/$plugin" ] || die "$PLUGIN_DIR/$plugin missing: run make demo (it builds ours) or set PLUGIN_DIR"
done

DATA=$(mktemp -d /tmp/twill-demo.XXXXXX)
cleanup() {
    local status=$?
    ip netns del "$POD_A" 2>/dev/null || true
    ip netns del "$POD_B" 2>/dev/null || true
    ip netns del "$NODE" 2>/dev/null || true
    rm -rf "$DATA"
    if [ "$status" != 0 ]; then echo "demo FAILED (exit $status); namespaces and $DATA removed" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

CONF=$(cat <<EOF
{
  "cniVersion": "1.0.0",
  "name": "demo",
  "type": "bridge",
  "bridge": "$BRIDGE",
  "isGateway": true,
  "ipam": {
    "type": "host-local",
    "subnet": "$SUBNET",
    "routes": [{"dst": "0.0.0.0/0"}],
    "dataDir": "$DATA"
  }
}
EOF
)

step() { printf '\n== %s\n' "$*"; }

# cni COMMAND CONTAINER_ID NETNS: run the bridge plugin in the node namespace as a runtime does;
# its stdout (the CNI result) lands in RESULT.
cni() {
    local env=(CNI_COMMAND="$1" CNI_CONTAINERID="$2" CNI_NETNS="/run/netns/$3" CNI_IFNAME=eth0 CNI_PATH="$PLUGIN_DIR")
    echo "\$ ip netns exec $NODE env ${env[*]:0:2} \\"
    echo "      ${env[*]:2} $PLUGIN_DIR/bridge < config"
    if ! RESULT=$(ip netns exec "$NODE" env "${env[@]}" "$PLUGIN_DIR/bridge" <<<"$CONF"); then
        echo "$RESULT" >&2
        die "$1 for $2 failed"
    fi
}

# first_address RESULT_JSON: the first ips[].address of a CNI result.
first_address() { grep -o '"address": *"[^"]*"' <<<"$1" | head -n1 | cut -d'"' -f4; }

ping_from() { # ping_from NETNS ADDRESS LABEL
    local summary
    summary=$(ip netns exec "$1" busybox ping -c 1 -W 2 "$2" | tail -n1) || die "$3: no reply from $2"
    echo "$3 ($2): $summary"
}

step "namespaces: node $NODE, pods $POD_A and $POD_B (plugins from $PLUGIN_DIR)"
for ns in "$NODE" "$POD_A" "$POD_B"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
done

step "ADD: the network config below goes to the plugin on stdin"
echo "$CONF"
cni ADD pod-a "$POD_A"
ADDR_A=$(first_address "$RESULT")
echo "  -> pod-a eth0 ${ADDR_A:?the result carries no address}"
cni ADD pod-b "$POD_B"
ADDR_B=$(first_address "$RESULT")
echo "  -> pod-b eth0 ${ADDR_B:?the result carries no address}; gateway $GATEWAY on $BRIDGE in the node"

step "traffic"
ping_from "$POD_A" "${ADDR_B%/*}" "pod-a -> pod-b"
ping_from "$POD_B" "$GATEWAY" "pod-b -> gateway"

step "DEL"
cni DEL pod-a "$POD_A"
cni DEL pod-b "$POD_B"
ports=$(ip -n "$NODE" -br link show master "$BRIDGE")
reserved=$(find "$DATA" -type f -name '10.*' | wc -l)
[ -z "$ports" ] && [ "$reserved" = 0 ] || die "DEL left ports on $BRIDGE ($ports) or $reserved IP reservations"
echo "no veth left on $BRIDGE, no IP reserved in host-local"

step "done: removing the namespaces"
