#!/bin/bash
#
# tests/bench/ratelimit.sh: the rate limiter's cost, measured in one run.
#
#   tests/bench/ratelimit.sh [--duration S] [--codes N]
#
# Starts its own Redis, PostgreSQL, shortener, ratelimiter (with rules that
# never bind: tests/bench/never-binding-rules.yaml) and two gateways on the
# same machine: one with the check on (GATEWAY_RATELIMIT=1), one with it
# off.  Then:
#   1. checks/s against the ratelimiter directly (rl_bench: 16 threads,
#      one call in flight each, 1000 keys);
#   2. the redirect of N cached codes through each gateway, wrk -t2 -c64,
#      off / on / off / on, and prints the on/off ratio of requests/s and the
#      p99 difference (best of the two runs of each).
# Figures, not pass/fail.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/deploy/lib.sh"
. "$ROOT/tests/bench/lib.sh"

DURATION=10
NCODES=1000
while [ $# -gt 0 ]; do
	case $1 in
	--duration) DURATION=$2; shift 2 ;;
	--codes) NCODES=$2; shift 2 ;;
	-h | --help) sed -n '2,17p' "$0"; exit 0 ;;
	*) echo "unknown argument $1" >&2; exit 1 ;;
	esac
done
command -v wrk >/dev/null || stack_die "wrk is missing: apt-get install wrk"

BUILD=$ROOT/build-bench-rl
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j2 --target shortener gateway ratelimiter \
	rl_bench >/dev/null

bench_init rlbench
bench_redis
bench_pg
SH_PORT=$(stack_free_port)
RL_PORT=$(stack_free_port)
ON_PORT=$(stack_free_port)
OFF_PORT=$(stack_free_port)
export SHORTENER_LISTEN=tcp://127.0.0.1:$SH_PORT
export SHORTENER_ADDR=tcp://127.0.0.1:$SH_PORT
export RATELIMITER_LISTEN=tcp://127.0.0.1:$RL_PORT
export RATELIMITER_ADDR=tcp://127.0.0.1:$RL_PORT
export RATELIMIT_RULES=$ROOT/tests/bench/never-binding-rules.yaml
export PUBLIC_BASE_URL=http://bench.test
export LOG_LEVEL=${LOG_LEVEL:-warn}
export GATEWAY_ACCESS_LOG=0

bench_spawn shortener "$BUILD/services/shortener/shortener"
bench_wait_healthy "$BUILD/services/shortener/shortener" "$SHORTENER_ADDR"
bench_spawn ratelimiter "$BUILD/services/ratelimiter/ratelimiter"
bench_wait_healthy "$BUILD/services/ratelimiter/ratelimiter" "$RATELIMITER_ADDR"
bench_spawn gateway-on env GATEWAY_LISTEN=127.0.0.1:$ON_PORT GATEWAY_RATELIMIT=1 \
	"$BUILD/services/gateway/gateway"
bench_spawn gateway-off env GATEWAY_LISTEN=127.0.0.1:$OFF_PORT GATEWAY_RATELIMIT=0 \
	"$BUILD/services/gateway/gateway"
bench_wait_healthy "$BUILD/services/gateway/gateway" "http://127.0.0.1:$ON_PORT"
bench_wait_healthy "$BUILD/services/gateway/gateway" "http://127.0.0.1:$OFF_PORT"

bench_seed_links "$OFF_PORT" "$NCODES" r "$ON_PORT" "$OFF_PORT"

echo "checks against the ratelimiter directly..." >&2
direct=$("$BUILD/tests/bench/rl_bench" "$RATELIMITER_ADDR" 5 16 1000)

# run_wrk NAME PORT: prints "rps p99 non2xx".
run_wrk() {
	local out rps p99 bad
	out=$(CODES=$WORK/codes.txt wrk -t2 -c64 -d"${DURATION}s" \
		-s "$ROOT/tests/bench/redirect.lua" "http://127.0.0.1:$2" 2>&1)
	echo "$out" >"$WORK/$1.wrk"
	rps=$(echo "$out" | awk '/^Requests\/sec:/{print $2}')
	p99=$(echo "$out" | sed -n 's/.*p99_ms=\([0-9.]*\).*/\1/p')
	bad=$(echo "$out" | awk '/Non-2xx or 3xx/{print $5}')
	echo "${rps:-0} ${p99:-0} ${bad:-0}"
}
best() { # best of two "rps p99 bad" lines: highest rps, lowest p99
	awk '{ if ($1 > r) r = $1; if (p == "" || $2 < p) p = $2; b += $3 }
	     END { print r, p, b }'
}
echo "redirects, limiter off / on / off / on..." >&2
o1=$(run_wrk off1 "$OFF_PORT")
n1=$(run_wrk on1 "$ON_PORT")
o2=$(run_wrk off2 "$OFF_PORT")
n2=$(run_wrk on2 "$ON_PORT")
read -r off_rps off_p99 off_bad < <(printf '%s\n%s\n' "$o1" "$o2" | best)
read -r on_rps on_p99 on_bad < <(printf '%s\n%s\n' "$n1" "$n2" | best)
ratio=$(awk -v a="$on_rps" -v b="$off_rps" 'BEGIN{ if (b > 0) printf "%.2f", a / b; else print "n/a" }')
dp99=$(awk -v a="$on_p99" -v b="$off_p99" 'BEGIN{ printf "%+.3f", a - b }')
metrics=$(curl -s "http://127.0.0.1:$ON_PORT/metrics" | grep '^gateway_ratelimit' || true)
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
cat <<OUT

machine: $(nproc) cores, ${cpu:-unknown cpu}
ratelimiter direct (rl_bench, 16 threads x 1 in flight, 1000 keys, rules never bind):
  $direct
redirect, wrk -t2 -c64 -d${DURATION}s, $NCODES cached codes (best of 2 runs each):

| gateway            | requests/s | p99 ms | non-2xx/3xx |
|--------------------|-----------:|-------:|------------:|
| limiter off        | $off_rps | $off_p99 | $off_bad |
| limiter on         | $on_rps | $on_p99 | $on_bad |

on/off ratio: $ratio   p99 on - off: $dp99 ms
runs: off $o1 | on $n1 | off $o2 | on $n2
$metrics
OUT
