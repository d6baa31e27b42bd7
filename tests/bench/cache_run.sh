#!/usr/bin/env bash
# tests/bench/cache_run.sh: the cache benchmarks, each beside its baseline in
# the same run, printed as figures and ratios (never pass/fail).
#
#   tests/bench/cache_run.sh [--duration S] [--clients N] [--workers N]
#
# Builds a Release tree (build-bench/), starts a private Redis and the cache
# service, then:
#   1. Get of one L1-resident key over the cache service's RPC (cache_bench,
#      N client sockets) vs `redis-benchmark -t get -c 50 -P 1`;
#   2. L1 hit ratio, W-TinyLFU vs LRU at the same byte budget, Zipf(0.9)
#      with a 10% scan (l1_hitratio).
# Everything it started is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/deploy/lib.sh"
. "$ROOT/tests/bench/lib.sh"

DURATION=10
CLIENTS=16
WORKERS=8
while [ $# -gt 0 ]; do
	case $1 in
	--duration) DURATION=$2; shift 2 ;;
	--clients) CLIENTS=$2; shift 2 ;;
	--workers) WORKERS=$2; shift 2 ;;
	-h | --help) sed -n '2,13p' "$0"; exit 0 ;;
	*) echo "unknown argument $1" >&2; exit 1 ;;
	esac
done
command -v redis-benchmark >/dev/null ||
	stack_die "redis-benchmark is missing: apt-get install redis-tools"

BUILD=$ROOT/build-bench
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
	-DBUILD_TESTING=ON >/dev/null
cmake --build "$BUILD" -j2 --target cache cache_bench l1_hitratio >/dev/null

bench_init cbench
bench_redis
C_PORT=$(stack_free_port)
export CACHE_LISTEN=tcp://127.0.0.1:$C_PORT CACHE_ADDR=tcp://127.0.0.1:$C_PORT
export CACHE_WORKERS=$WORKERS LOG_LEVEL=${LOG_LEVEL:-warn}
bench_spawn cache "$BUILD/services/cache/cache"
bench_wait_healthy "$BUILD/services/cache/cache" "$CACHE_ADDR"
redis-cli -p "$REDIS_PORT" SET key:__rand_int__ xxx >/dev/null

rb=$(redis-benchmark -p "$REDIS_PORT" -t get -c 50 -P 1 -n $((DURATION * 60000)) \
	--csv | awk -F'","' '/^"GET"/{print $2}')
out=$("$BUILD/tests/bench/cache_bench" "$CACHE_ADDR" "$DURATION" "$CLIENTS")
echo "$out"
cr=$(echo "$out" | sed -n 's/.*calls\/s=\([0-9]*\).*/\1/p')
hr=$("$BUILD/tests/bench/l1_hitratio")
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
cat <<OUT

machine: $(nproc) cores, ${cpu:-unknown cpu}
| benchmark | ops/s |
|---|---:|
| redis-benchmark GET -c 50 -P 1 | $rb |
| cache RPC Get (L1 hit), $CLIENTS client sockets, $WORKERS workers | $cr |

cache / redis ratio: $(awk -v a="$cr" -v b="$rb" 'BEGIN{ if (b > 0) printf "%.2f", a / b; else print "n/a" }')
$hr
OUT
