#!/usr/bin/env bash
# tests/bench/cache_run.sh: the cache benchmarks, each beside its baseline in
# the same run, printed as figures and ratios (never pass/fail).
#
#   tests/bench/cache_run.sh [--duration S] [--rounds N] [--clients N]
#                            [--sockets N] [--workers N]
#
# Builds a Release tree (build-bench/), starts a private Redis and the cache
# service, then:
#   1. Get of one L1-resident key over the cache service's RPC (cache_bench:
#      N callers with one call in flight each, over a few client sockets) vs
#      `redis-benchmark -t get -c N -P 1`, N = 50.  Twice: with every process
#      free to run on any CPU, then with equal resources -- each server
#      (redis-server, the cache service via CACHE_CPUS) confined to CPU 0
#      and each client to CPU 1.  Each pair runs --rounds times, alternating;
#      the best of each side is compared.
#   2. L1 hit ratio, W-TinyLFU vs LRU at the same byte budget, Zipf(0.9)
#      with a 10% scan (l1_hitratio);
#   3. the shortener's redirect with the cache engine (SHORTENER_CACHE=engine)
#      vs without it (=off: every redirect reads PostgreSQL): wrk -t2 -c64
#      GET /<code> over 1000 codes through a gateway whose own redirect
#      cache is off (GATEWAY_CACHE_BYTES=0), so every redirect reaches the
#      shortener; --rounds alternating runs, best of each.
# Everything it started is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/deploy/lib.sh"
. "$ROOT/tests/bench/lib.sh"

DURATION=10
ROUNDS=2
CLIENTS=50
SOCKETS=2
WORKERS=2
while [ $# -gt 0 ]; do
	case $1 in
	--duration) DURATION=$2; shift 2 ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	--clients) CLIENTS=$2; shift 2 ;;
	--sockets) SOCKETS=$2; shift 2 ;;
	--workers) WORKERS=$2; shift 2 ;;
	-h | --help) sed -n '2,20p' "$0"; exit 0 ;;
	*) echo "unknown argument $1" >&2; exit 1 ;;
	esac
done
command -v redis-benchmark >/dev/null ||
	stack_die "redis-benchmark is missing: apt-get install redis-tools"
for t in wrk curl psql; do
	command -v "$t" >/dev/null || stack_die "$t is missing"
done

BUILD=$ROOT/build-bench
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
	-DBUILD_TESTING=ON >/dev/null
cmake --build "$BUILD" -j2 --target cache cache_bench l1_hitratio \
	shortener gateway >/dev/null

bench_init cbench
bench_redis
C_PORT=$(stack_free_port)
export CACHE_LISTEN=tcp://127.0.0.1:$C_PORT CACHE_ADDR=tcp://127.0.0.1:$C_PORT
export CACHE_WORKERS=$WORKERS LOG_LEVEL=${LOG_LEVEL:-warn}
redis-cli -p "$REDIS_PORT" SET key:__rand_int__ xxx >/dev/null
REDIS_PID=$(cat "$WORK/redis/redis.pid")

# cache_start [CPUS]: (re)starts the cache service, confined to CPUS if set.
# shellcheck disable=SC2034 # set and read by bench_respawn
CACHE_PID=
cache_start() {
	bench_respawn CACHE_PID cache env CACHE_CPUS="${1:-}" \
		"$BUILD/services/cache/cache"
	bench_wait_healthy "$BUILD/services/cache/cache" "$CACHE_ADDR"
}

# pair LABEL CLIENT_PREFIX...: rounds of redis-benchmark and cache_bench,
# alternating; prints each figure and sets RB and CR to the best of each.
pair() {
	local label=$1 rb cr out
	shift
	RB=0 CR=0
	for r in $(seq "$ROUNDS"); do
		rb=$("$@" redis-benchmark -p "$REDIS_PORT" -t get -c "$CLIENTS" \
			-P 1 -n $((DURATION * 50000)) --csv |
			awk -F'","' '/^"GET"/{printf "%.0f", $2}')
		out=$("$@" "$BUILD/tests/bench/cache_bench" "$CACHE_ADDR" \
			"$DURATION" "$CLIENTS" "$SOCKETS")
		cr=$(echo "$out" | sed -n 's/.*calls\/s=\([0-9]*\).*/\1/p')
		echo "$label round $r: redis-benchmark $rb/s; $out" >&2
		if [ "$rb" -gt "$RB" ]; then RB=$rb; fi
		if [ "$cr" -gt "$CR" ]; then CR=$cr; fi
	done
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

cache_start
pair free env
RB_FREE=$RB CR_FREE=$CR
PINNED=
if [ "$(nproc)" -ge 2 ]; then
	taskset -a -p -c 0 "$REDIS_PID" >/dev/null
	cache_start 0
	pair pinned taskset -c 1
	taskset -a -p -c "0-$(($(nproc) - 1))" "$REDIS_PID" >/dev/null
	PINNED="| redis-benchmark GET, redis-server on CPU 0, client on CPU 1 | $RB |
| cache RPC Get, service on CPU 0 (CACHE_CPUS=0), client on CPU 1 | $CR |
| **ratio, equal CPUs** | **$(ratio "$CR" "$RB")x** |"
fi
hr=$("$BUILD/tests/bench/l1_hitratio")

# 3. The shortener's redirect, engine vs off, behind a gateway that does
# not cache redirects itself.
bench_pg
SH_PORT=$(stack_free_port)
GW_PORT=$(stack_free_port)
export SHORTENER_LISTEN=tcp://127.0.0.1:$SH_PORT
export SHORTENER_ADDR=tcp://127.0.0.1:$SH_PORT
export GATEWAY_LISTEN=127.0.0.1:$GW_PORT PUBLIC_BASE_URL=http://bench.test
export GATEWAY_RATELIMIT=0 GATEWAY_CACHE_BYTES=0
# shellcheck disable=SC2034 # set and read by bench_respawn
SH_PID=
shortener_start() {
	bench_respawn SH_PID "shortener-$1" env SHORTENER_CACHE="$1" \
		"$BUILD/services/shortener/shortener"
	bench_wait_healthy "$BUILD/services/shortener/shortener" \
		"$SHORTENER_ADDR"
	# The gateway redials within its backoff (20 ms at first).
	for _ in $(seq 50); do
		curl -s -o /dev/null -w '%{http_code}' \
			"http://127.0.0.1:$GW_PORT/healthz" | grep -q 200 && break
		sleep 0.1
	done
}
shortener_start engine
bench_spawn gateway "$BUILD/services/gateway/gateway"
bench_wait_healthy "$BUILD/services/gateway/gateway" "http://127.0.0.1:$GW_PORT"
bench_seed_links "$GW_PORT" 1000 c "$GW_PORT"
# redirect_rps: wrk over the codes; prints requests/s and p99 (ms).
redirect_rps() {
	local out
	out=$(CODES=$WORK/codes.txt wrk -t2 -c64 -d"${DURATION}s" \
		-s "$ROOT/tests/bench/redirect.lua" "http://127.0.0.1:$GW_PORT" 2>&1)
	if echo "$out" | grep -q 'Non-2xx'; then
		echo "$out" >&2
		stack_die "redirects failed"
	fi
	echo "$(echo "$out" | awk '/^Requests\/sec:/{printf "%.0f", $2}') \
$(echo "$out" | sed -n 's/.*p99_ms=\([0-9.]*\).*/\1/p')"
}
RE=0 RO=0 PE=- PO=-
for r in $(seq "$ROUNDS"); do
	for m in off engine; do
		shortener_start "$m"
		read -r rps p99 < <(redirect_rps)
		echo "shortener round $r: SHORTENER_CACHE=$m $rps redirects/s p99 ${p99}ms" >&2
		if [ "$m" = engine ] && [ "$rps" -gt "$RE" ]; then RE=$rps PE=$p99; fi
		if [ "$m" = off ] && [ "$rps" -gt "$RO" ]; then RO=$rps PO=$p99; fi
	done
done
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
cat <<OUT

machine: $(nproc) cores, ${cpu:-unknown cpu}
$CLIENTS clients, one call in flight each; cache: $SOCKETS client sockets, $WORKERS workers; best of $ROUNDS x ${DURATION}s
| benchmark | ops/s |
|---|---:|
| redis-benchmark GET, every process on any CPU | $RB_FREE |
| cache RPC Get (L1 hit), every process on any CPU | $CR_FREE |
| ratio, any CPU | $(ratio "$CR_FREE" "$RB_FREE")x |
$PINNED

$hr

shortener redirect (wrk -t2 -c64, 1000 codes, gateway redirect cache off), best of $ROUNDS x ${DURATION}s
| shortener | redirects/s | p99 ms |
|---|---:|---:|
| without the engine (SHORTENER_CACHE=off: PostgreSQL) | $RO | $PO |
| with the engine (SHORTENER_CACHE=engine) | $RE | $PE |
| **engine / without** | **$(ratio "$RE" "$RO")x** | |
OUT
