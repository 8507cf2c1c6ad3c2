#!/usr/bin/env bash
# Real NATs on one machine: network namespaces, two NAT routers (nftables masquerade that drops
# unsolicited inbound, like a home router), a relay on a public segment, and our nodes in them.
# Shows a relayed connection between two peers behind different NATs, then a direct one after
# DCUtR hole punching.
#
#   public  203.0.113.0/24   relay .10 | NAT 1 WAN .11 | NAT 2 WAN .12    (a bridge in its own namespace)
#   private 192.0.2.0/24     NAT 1 LAN .1 | peer B .10 (node --relay RELAY)
#   private 198.51.100.0/24  NAT 2 LAN .1 | peer A .10 (ping/identify B's circuit address)
#
# Addresses are the documentation ranges (RFC 5737). Every namespace is new and named
# p2pnat-<pid>-*; no route leads to the host's own namespace, so all traffic stays inside them.
# A trap removes them (and the veths in them) and stops the nodes on any exit, Ctrl-C included.
#
# Usage: tests/nat-lab/nat-lab.sh [options] PATH/TO/p2pinference.dll
#   --relayed-only   check only the relayed connection (a build without DCUtR)
#   --nat-wait SECS  also wait up to SECS for B's AutoNAT verdict (a `nat:` line); it needs three
#                    answers in a row from its one server, a round a minute: about 3 minutes
#   --keep-logs      keep the node logs (their directory is printed)
#   --probe          only check that this machine can run the lab (root, `ip netns add`), installing
#                    iproute2 if missing; exit 0 if it can, 77 with the reason if not
# Exit: 0 every check held, 1 a check failed, 2 bad usage or set-up failure, 77 cannot run here.
# Needs root (namespaces, nftables) and `dotnet` on PATH; installs nftables and iproute2 from the
# Debian packages (apt-get) when they are missing.
set -euo pipefail

RELAYED_ONLY=0
NAT_WAIT=0
KEEP_LOGS=0
PROBE=0
DLL=""

usage() {
    sed -n '/^# Usage:/,/^# Needs root/p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

while (($# > 0)); do
    case $1 in
        --relayed-only) RELAYED_ONLY=1 ;;
        --nat-wait) shift; [[ ${1:-} =~ ^[0-9]+$ ]] || usage; NAT_WAIT=$1 ;;
        --keep-logs) KEEP_LOGS=1 ;;
        --probe) PROBE=1 ;;
        -h | --help) usage ;;
        -*) echo "nat-lab: unknown option $1" >&2; usage ;;
        *) [[ -z $DLL ]] || usage; DLL=$1 ;;
    esac
    shift
done

log() { printf 'nat-lab: %s\n' "$*"; }
skip() { printf 'nat-lab: SKIP: %s\n' "$*" >&2; exit 77; }
die() { printf 'nat-lab: ERROR: %s\n' "$*" >&2; exit 2; }

# --- can this machine run it? ---------------------------------------------------------------

[[ $(id -u) -eq 0 ]] || skip "needs root to create network namespaces and NAT rules (running as uid $(id -u))"

apt_install() {
    command -v apt-get > /dev/null || die "$1 is missing and there is no apt-get to install it"
    log "installing $1 (Debian package)"
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update -qq > /dev/null || die "apt-get update failed"
    timeout 300 apt-get install -y -qq --no-install-recommends "$1" > /dev/null || die "apt-get install $1 failed"
}

command -v ip > /dev/null || apt_install iproute2

PROBE_NS="p2pnat-$$-probe"
if ! probe_error=$(ip netns add "$PROBE_NS" 2>&1); then
    skip "cannot create a network namespace (ip netns add: ${probe_error:-failed}); a container without CAP_SYS_ADMIN cannot"
fi
ip netns delete "$PROBE_NS"
if ((PROBE)); then
    log "this machine can create network namespaces"
    exit 0
fi

[[ -n $DLL ]] || usage
[[ -f $DLL ]] || die "no such file: $DLL (build first: dotnet build src/Workers -c Release)"
DLL=$(realpath "$DLL")
command -v dotnet > /dev/null || die "dotnet is not on PATH"
command -v nft > /dev/null || apt_install nftables

# --- lab state and its removal ----------------------------------------------------------------

PREFIX="p2pnat-$$"
NS_PUB=$PREFIX-pub
NS_RELAY=$PREFIX-relay
NS_NAT1=$PREFIX-nat1
NS_B=$PREFIX-b
NS_NAT2=$PREFIX-nat2
NS_A=$PREFIX-a
CREATED=()
PIDS=()
LOGS=$(mktemp -d "${TMPDIR:-/tmp}/nat-lab.XXXXXX")

stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2> /dev/null || return 0
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2> /dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2> /dev/null || true
}

cleanup() {
    local status=$? pid ns i
    trap - EXIT INT TERM
    set +e
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    for ((i = ${#CREATED[@]} - 1; i >= 0; i--)); do
        ns=${CREATED[i]}
        # Anything still running in a namespace we made is ours; a namespace with processes in it outlives its name.
        for pid in $(ip netns pids "$ns" 2> /dev/null); do stop_pid "$pid"; done
        ip netns delete "$ns" 2> /dev/null || echo "nat-lab: could not delete namespace $ns" >&2
    done
    if ((KEEP_LOGS)); then
        echo "nat-lab: logs kept in $LOGS" >&2
    else
        rm -rf "$LOGS"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'echo "nat-lab: interrupted" >&2; exit 130' INT
trap 'echo "nat-lab: terminated" >&2; exit 143' TERM

# A run killed outright (SIGKILL) cannot clean up: remove what runs that are gone left behind.
# A namespace's name carries its run's pid; one whose run is alive is left alone.
remove_stale() {
    local ns pid p
    for ns in $(ip netns list | sed -n 's/^\(p2pnat-[0-9]*-[a-z0-9]*\).*/\1/p'); do
        pid=${ns#p2pnat-}
        pid=${pid%%-*}
        [[ $pid != "$$" ]] && ! kill -0 "$pid" 2> /dev/null || continue
        for p in $(ip netns pids "$ns" 2> /dev/null); do stop_pid "$p"; done
        ip netns delete "$ns" 2> /dev/null && log "removed $ns, left by an earlier run"
    done
}

in_ns() {
    local ns=$1
    shift
    ip netns exec "$ns" "$@"
}

add_ns() {
    ip netns add "$1"
    CREATED+=("$1")
    ip -n "$1" link set lo up
}

# A veth pair created straight inside the two namespaces, so it never appears in the host's.
link() {
    local ns1=$1 if1=$2 ns2=$3 if2=$4
    ip -n "$ns1" link add "$if1" type veth peer name "$if2" netns "$ns2"
    ip -n "$ns1" link set "$if1" up
    ip -n "$ns2" link set "$if2" up
}

# A home router: masquerade out of the WAN side, forward only what the LAN started, and drop
# (not refuse) anything unsolicited from the WAN. Refusing would answer a hole punch's early SYN
# with a RST that kills the peer's attempt. The counters show the NAT at work in the summary.
nat_router() {
    local ns=$1
    # /proc/sys/net shows the namespace of the process that reads it; sysctl (procps) may be absent.
    in_ns "$ns" sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'
    in_ns "$ns" nft -f - << 'EOF'
table ip nat {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan" counter masquerade
    }
}
table inet filter {
    chain input {
        type filter hook input priority filter; policy drop;
        iifname "lo" accept
        ct state established,related accept
        iifname "lan" accept
        iifname "wan" counter drop comment "unsolicited"
    }
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        iifname "lan" oifname "wan" accept
        iifname "wan" counter drop comment "unsolicited"
    }
}
EOF
}

counter() { # namespace, family, table, chain: packets counted by the chain's counter rules
    local total=0 n
    for n in $(in_ns "$1" nft list chain "$2" "$3" "$4" | sed -n 's/.*counter packets \([0-9]*\).*/\1/p'); do total=$((total + n)); done
    echo "$total"
}

# Waits for a line matching an extended regex in a log, while the process lives, for at most $3 seconds.
wait_for() {
    local file=$1 pattern=$2 limit=$3 pid=$4 what=$5
    local deadline=$((SECONDS + limit))
    while ((SECONDS < deadline)); do
        grep -Eq -- "$pattern" "$file" 2> /dev/null && return 0
        if ! kill -0 "$pid" 2> /dev/null; then
            grep -Eq -- "$pattern" "$file" 2> /dev/null && return 0
            echo "nat-lab: $what: the process exited first; its output:" >&2
            sed 's/^/  | /' "$file" >&2
            return 1
        fi
        sleep 0.2
    done
    echo "nat-lab: $what: not within ${limit}s; output so far:" >&2
    sed 's/^/  | /' "$file" >&2
    return 1
}

start_node() { # namespace, log name, arguments...: starts a node in the background; its pid in $STARTED
    local ns=$1 name=$2
    shift 2
    in_ns "$ns" dotnet "$DLL" "$@" > "$LOGS/$name.log" 2>&1 &
    STARTED=$!
    PIDS+=("$STARTED")
}

# Runs a node command in a namespace to completion, bounded by $2 seconds; output in $LOGS/$3.log,
# exit code in $RC. In the background and awaited with `wait`, which a signal interrupts, so the traps
# run at once on SIGTERM instead of after the command.
run_bounded() {
    local ns=$1 limit=$2 name=$3
    shift 3
    in_ns "$ns" timeout --kill-after=5 "$limit" dotnet "$DLL" "$@" > "$LOGS/$name.log" 2>&1 &
    PIDS+=("$!")
    RC=0
    wait "$!" || RC=$?
}

# --- the network ----------------------------------------------------------------------------

remove_stale
log "building namespaces $PREFIX-{pub,relay,nat1,b,nat2,a}"
for ns in "$NS_PUB" "$NS_RELAY" "$NS_NAT1" "$NS_B" "$NS_NAT2" "$NS_A"; do add_ns "$ns"; done

# The public segment: a bridge with the relay and both routers' WAN sides on it.
ip -n "$NS_PUB" link add br0 type bridge
ip -n "$NS_PUB" link set br0 up
link "$NS_PUB" p-relay "$NS_RELAY" eth0
link "$NS_PUB" p-nat1 "$NS_NAT1" wan
link "$NS_PUB" p-nat2 "$NS_NAT2" wan
for port in p-relay p-nat1 p-nat2; do ip -n "$NS_PUB" link set "$port" master br0; done
ip -n "$NS_RELAY" addr add 203.0.113.10/24 dev eth0
ip -n "$NS_NAT1" addr add 203.0.113.11/24 dev wan
ip -n "$NS_NAT2" addr add 203.0.113.12/24 dev wan

# Private segment 1 behind NAT 1: peer B.
link "$NS_NAT1" lan "$NS_B" eth0
ip -n "$NS_NAT1" addr add 192.0.2.1/24 dev lan
ip -n "$NS_B" addr add 192.0.2.10/24 dev eth0
ip -n "$NS_B" route add default via 192.0.2.1

# Private segment 2 behind NAT 2: peer A.
link "$NS_NAT2" lan "$NS_A" eth0
ip -n "$NS_NAT2" addr add 198.51.100.1/24 dev lan
ip -n "$NS_A" addr add 198.51.100.10/24 dev eth0
ip -n "$NS_A" route add default via 198.51.100.1

nat_router "$NS_NAT1"
nat_router "$NS_NAT2"

# The routers know only the public /24 and their LAN: the private segments reach each other only
# through the NATs' public addresses, and nothing routes to the host. Checked with ICMP where
# iputils-ping is installed; the nodes' checks below do not need it.
if command -v ping > /dev/null; then
    in_ns "$NS_A" ping -c 1 -W 5 203.0.113.10 > /dev/null || die "A cannot reach the relay through NAT 2"
    in_ns "$NS_B" ping -c 1 -W 5 203.0.113.10 > /dev/null || die "B cannot reach the relay through NAT 1"
    if in_ns "$NS_RELAY" ping -c 1 -W 1 192.0.2.10 > /dev/null 2>&1; then die "the relay reaches B's private address: the NAT is not in the way"; fi
fi

# --- the nodes ------------------------------------------------------------------------------

FAILED=0
RESULTS=()
pass() { RESULTS+=("PASS  $1"); }
fail() { RESULTS+=("FAIL  $1"); FAILED=1; }
info() { RESULTS+=("info  $1"); }
# A step the rest depends on failed: report everything so far and stop.
fail_and_stop() { fail "$1"; summary; exit 1; }

summary() {
    echo
    echo "== nat-lab summary =="
    echo "relay  203.0.113.10 (public)"
    echo "B      192.0.2.10    behind NAT 1 (public 203.0.113.11)"
    echo "A      198.51.100.10 behind NAT 2 (public 203.0.113.12)"
    local line
    for line in "${RESULTS[@]}"; do echo "$line"; done
    if ((FAILED)); then echo "result: FAIL"; else echo "result: PASS"; fi
}

log "starting the relay"
start_node "$NS_RELAY" relay node --relay-service --listen /ip4/203.0.113.10/tcp/4001
RELAY_PID=$STARTED
if ! wait_for "$LOGS/relay.log" '^/ip4/203\.0\.113\.10/tcp/4001/p2p/' 60 "$RELAY_PID" "relay address"; then
    fail_and_stop "relay started"
fi
RELAY=$(grep -Em1 '^/ip4/203\.0\.113\.10/tcp/4001/p2p/[^/]+$' "$LOGS/relay.log")
pass "relay listens at $RELAY"

log "starting peer B behind NAT 1, reserving on the relay"
start_node "$NS_B" b node --relay "$RELAY" --listen /ip4/192.0.2.10/tcp/4001
B_PID=$STARTED
if ! wait_for "$LOGS/b.log" '/p2p-circuit/p2p/' 60 "$B_PID" "B's circuit address"; then
    fail_and_stop "B reserved a slot on the relay"
fi
CIRCUIT=$(grep -Em1 '^/ip4/203\.0\.113\.10/tcp/4001/p2p/[^/]+/p2p-circuit/p2p/[^/]+$' "$LOGS/b.log")
B_ID=${CIRCUIT##*/}
pass "B reserved on the relay: $CIRCUIT"

# Before any hole punch: A cannot reach B's public mapping directly, the NAT drops it.
run_bounded "$NS_A" 30 direct-attempt ping "/ip4/203.0.113.11/tcp/4001/p2p/$B_ID" --count 1 --timeout 5
if ((RC == 0)); then
    fail "NAT 1 drops unsolicited inbound: A reached B at 203.0.113.11:4001 without the relay"
else
    pass "NAT 1 drops unsolicited inbound: a direct dial from A to 203.0.113.11:4001 fails (exit $RC)"
fi

log "A pings B through the relay"
run_bounded "$NS_A" 90 ping ping "$CIRCUIT" --count 3 --interval 0.5 --timeout 30
sed 's/^/  A | /' "$LOGS/ping.log"
if grep -Eq '^connection: relayed via |\(relayed\)$' "$LOGS/ping.log"; then
    pass "relayed connection first: $(grep -Em1 '^connection: relayed via |\(relayed\)$' "$LOGS/ping.log")"
else
    fail "relayed connection first (no 'connection: relayed via' line)"
fi
if ((RELAYED_ONLY)); then
    info "direct connection not checked (--relayed-only)"
elif line=$(grep -Em1 '^connection: direct ' "$LOGS/ping.log"); then
    if [[ $line =~ ^connection:\ direct\ /ip4/203\.0\.113\.11/tcp/ ]]; then
        pass "direct connection after DCUtR: $line (B's public mapping on NAT 1)"
    else
        fail "direct connection after DCUtR goes to B's public mapping on NAT 1: $line"
    fi
else
    fail "direct connection after DCUtR: $(grep -Em1 '^connection: relayed \(' "$LOGS/ping.log" || echo 'no "connection: direct" line')"
fi
if ((RC == 0)) && grep -q '^pong from ' "$LOGS/ping.log"; then
    pass "pings answered ($(grep -c '^pong from ' "$LOGS/ping.log") of 3)"
else
    fail "pings answered (ping exited $RC)"
fi

if ((NAT_WAIT > 0)); then
    log "waiting up to ${NAT_WAIT}s for B's AutoNAT verdict"
    wait_for "$LOGS/b.log" '^nat: ' "$NAT_WAIT" "$B_PID" "B's nat: line" || true
fi

for ((i = 0; i < 25; i++)); do grep -q '^dcutr: ' "$LOGS/b.log" && break; sleep 0.2; done
while IFS= read -r line; do info "B: $line"; done < <(grep -E '^dcutr: ' "$LOGS/b.log" || true)
if line=$(grep -Em1 '^nat: ' "$LOGS/b.log"); then
    if [[ $line == *rivate* ]]; then pass "AutoNAT: B concludes $line"; else fail "AutoNAT: B behind NAT 1 concludes private: $line"; fi
else
    info "AutoNAT: B printed no verdict during the run (--nat-wait SECS to wait for it)"
fi
for n in 1 2; do
    ns=$PREFIX-nat$n
    info "NAT $n: $(counter "$ns" ip nat postrouting) connections masqueraded, $(($(counter "$ns" inet filter input) + $(counter "$ns" inet filter forward))) unsolicited inbound packets dropped"
done

summary
((FAILED == 0))
