#!/usr/bin/env bash
#
# tests/bench/tls.sh: what mutual TLS between the services costs, measured in
# one run against the same load over plain tcp://.  Figures and ratios, not
# pass/fail.
#
#   tests/bench/tls.sh [--duration S] [--rounds R] [--codes N]
#
# Builds build-bench-tls/ (Release), makes the stack's certificates with
# deploy/certs.sh, starts its own Redis and PostgreSQL and, on them, two of
# each service: one set on tcp://, one on tls+tcp://, each gateway calling
# its own set.  Then:
#   1. rpc_bench S 64: the RPC layer alone, NNG req/rep (baseline), ours on
#      tcp:// and ours on tls+tcp://, in one process;
#   2. the redirect miss path: gateways with their redirect cache off
#      (GATEWAY_CACHE_BYTES=0) and the rate limit check off, so every
#      redirect is a call to the shortener (answered from its L1): wrk -t2
#      -c64 over N codes (default 1000) from 10,000 client addresses
#      (tests/bench/manyaddr.lua), R rounds (default 3) of tcp, tls
#      alternating, S seconds each (default 10); medians and tls/tcp;
#   3. the stack as compose ships it: gateways with their redirect cache on
#      and the shipped rules (deploy/ratelimit-rules.yaml) checked by the
#      ratelimiter of their set; the same load, compared the same way.
# Everything it started is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/deploy/lib.sh"
. "$ROOT/tests/bench/lib.sh"

CMDLINE=$(bench_cmdline "$@")
DURATION=10
ROUNDS=3
NCODES=1000
while [ $# -gt 0 ]; do
	case $1 in
	--duration) DURATION=$2; shift 2 ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	--codes) NCODES=$2; shift 2 ;;
	-h | --help) sed -n '3,23p' "$0"; exit 0 ;;
	*) echo "unknown argument $1" >&2; exit 1 ;;
	esac
done
for v in "$DURATION" "$NCODES" "$ROUNDS"; do
	[[ $v =~ ^[1-9][0-9]*$ ]] || stack_die "not a positive integer: $v"
done
for t in wrk curl openssl; do
	command -v "$t" >/dev/null || stack_die "$t is missing: apt-get install $t"
done

BUILD=$ROOT/build-bench-tls
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j2 --target shortener gateway ratelimiter \
	rpc_bench >/dev/null
SH=$BUILD/services/shortener/shortener
RL=$BUILD/services/ratelimiter/ratelimiter
GW=$BUILD/services/gateway/gateway
BENCH=$ROOT/tests/bench

MACHINE_START=$(bench_machine)
bench_init tlsbench
bench_redis
bench_pg
"$ROOT/deploy/certs.sh" "$WORK/tls" gateway shortener ratelimiter cache
export RPC_TLS_DIR=$WORK/tls
export PUBLIC_BASE_URL=http://bench.test
export LOG_LEVEL=${LOG_LEVEL:-warn}
export GATEWAY_ACCESS_LOG=0
export TRUSTED_PROXIES=127.0.0.1
export RATELIMIT_RULES=$ROOT/deploy/ratelimit-rules.yaml

echo "1. rpc_bench $DURATION 64..." >&2
rpc=$("$BUILD/tests/bench/rpc_bench" "$DURATION" 64 2>&1 | grep -v 'level=' ||
	echo "rpc_bench failed")

# One set of services per transport: SCHEME tcp or tls+tcp.
bench_ports SH_TCP RL_TCP SH_TLS RL_TLS NC_PORT \
	MISS_TCP MISS_TLS SHIP_TCP SHIP_TLS
for set in tcp tls; do
	if [ $set = tcp ]; then
		scheme=tcp sh_port=$SH_TCP rl_port=$RL_TCP
	else
		scheme=tls+tcp sh_port=$SH_TLS rl_port=$RL_TLS
	fi
	bench_spawn "shortener-$set" env \
		SHORTENER_LISTEN="$scheme://127.0.0.1:$sh_port" "$SH"
	bench_spawn "ratelimiter-$set" env \
		RATELIMITER_LISTEN="$scheme://127.0.0.1:$rl_port" "$RL"
	bench_wait_healthy "$SH" "$scheme://127.0.0.1:$sh_port"
	bench_wait_healthy "$RL" "$scheme://127.0.0.1:$rl_port"
	# No cache service here: a port nothing listens on.
	up=(SHORTENER_ADDR="$scheme://127.0.0.1:$sh_port"
		RATELIMITER_ADDR="$scheme://127.0.0.1:$rl_port"
		CACHE_ADDR="$scheme://127.0.0.1:$NC_PORT")
	miss=MISS_${set^^} ship=SHIP_${set^^}
	bench_spawn "gateway-miss-$set" env "${up[@]}" \
		GATEWAY_LISTEN="127.0.0.1:${!miss}" GATEWAY_CACHE_BYTES=0 \
		GATEWAY_RATELIMIT=0 "$GW"
	bench_spawn "gateway-ship-$set" env "${up[@]}" \
		GATEWAY_LISTEN="127.0.0.1:${!ship}" "$GW"
	bench_wait_healthy "$GW" "http://127.0.0.1:${!miss}"
	bench_wait_healthy "$GW" "http://127.0.0.1:${!ship}"
done

# The links are created through a gateway with no rate limit check, then
# followed once through every gateway so that the caching ones have them.
bench_seed_links "$MISS_TCP" "$NCODES" t "$MISS_TCP" "$MISS_TLS" \
	"$SHIP_TCP" "$SHIP_TLS"

# Each request from one of 10,000 client addresses (X-Forwarded-For), as
# tests/bench/ratelimit.sh's part 3: the per-address rules are not what
# is measured here.
export CODES=$WORK/codes.txt ADDRS=10000
run() { # NAME PORT; the round is $r
	bench_wrk "$1-$r" "$DURATION" "http://127.0.0.1:$2" \
		"$BENCH/manyaddr.lua" >>"$WORK/$1.runs"
}
for part in miss ship; do
	tcp_port=${part^^}_TCP tls_port=${part^^}_TLS
	bench_wrk warm 1 "http://127.0.0.1:${!tcp_port}" "$BENCH/manyaddr.lua" >/dev/null
	bench_wrk warm 1 "http://127.0.0.1:${!tls_port}" "$BENCH/manyaddr.lua" >/dev/null
	for r in $(seq "$ROUNDS"); do
		n=2
		[ $part = ship ] && n=3
		echo "$n. $part, round $r/$ROUNDS: tcp, tls..." >&2
		run "$part-tcp" "${!tcp_port}"
		run "$part-tls" "${!tls_port}"
	done
	bench_check_alive "during the $part runs"
done

med() { awk -v n="$2" '{ print $n }' "$WORK/$1.runs" | bench_median; }
line() { # PART LABEL
	local a b
	a=$(med "$1-tcp" 1) b=$(med "$1-tls" 1)
	printf '%s\n' "$2"
	printf '  tcp://      %10s req/s  p99 %7s ms  (non-3xx %s)\n' "$a" \
		"$(med "$1-tcp" 3)" "$(awk '{ s += $5 } END { print s + 0 }' "$WORK/$1-tcp.runs")"
	printf '  tls+tcp://  %10s req/s  p99 %7s ms  (non-3xx %s)\n' "$b" \
		"$(med "$1-tls" 3)" "$(awk '{ s += $5 } END { print s + 0 }' "$WORK/$1-tls.runs")"
	printf '  tls/tcp     %s (p99 %s ms)\n' "$(bench_ratio "$b" "$a")" \
		"$(bench_diff "$(med "$1-tls" 3)" "$(med "$1-tcp" 3)")"
}

echo
echo "== tests/bench/tls.sh: mutual TLS between the services vs plain tcp://"
echo "command: $CMDLINE"
echo "machine: $MACHINE_START (at start); load average $(cut -d' ' -f1-3 /proc/loadavg) (at end)"
echo "load: wrk -t2 -c64, ${DURATION}s a run, $ROUNDS rounds, medians, $NCODES codes"
echo
echo "1. the RPC layer alone (rpc_bench $DURATION 64)"
sed 's/^/  /' <<<"$rpc"
line miss "2. redirect miss path (gateway redirect cache off, rate limit check off)"
line ship "3. the stack as shipped (redirect cache on, shipped rules checked)"
