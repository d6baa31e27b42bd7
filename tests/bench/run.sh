#!/usr/bin/env bash
# tests/bench/run.sh: the shortener benchmarks, each beside its baseline in
# the same run, printed as figures and ratios (never pass/fail).
#
#   tests/bench/run.sh [--duration S] [--codes N]
#
# Builds a Release tree (build-bench/), starts a private Redis and
# PostgreSQL (default durability settings), the shortener and the gateway,
# then runs wrk -t2 -c64:
#   1. baseline: nginx (2 workers) answering a fixed `return 302`;
#   2. redirect: GET /<code> for N random codes, all cached;
#   3. creation: POST /api/v1/urls, each link durable before its 201;
#      the rows in PostgreSQL are counted afterwards against wrk's count.
# Everything it started is stopped on exit.
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
	-h | --help) sed -n '2,16p' "$0"; exit 0 ;;
	*) echo "unknown argument $1" >&2; exit 1 ;;
	esac
done

for t in wrk nginx curl; do
	command -v "$t" >/dev/null || [ -x "/usr/sbin/$t" ] ||
		stack_die "$t is missing: apt-get install wrk nginx-light curl"
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

BUILD=$ROOT/build-bench
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
	-DBUILD_TESTING=OFF >/dev/null
cmake --build "$BUILD" -j2 --target shortener gateway >/dev/null

bench_init bench
bench_redis
bench_pg
SH_PORT=$(stack_free_port)
GW_PORT=$(stack_free_port)
NG_PORT=$(stack_free_port)
export SHORTENER_LISTEN=tcp://127.0.0.1:$SH_PORT
export SHORTENER_ADDR=tcp://127.0.0.1:$SH_PORT
export GATEWAY_LISTEN=127.0.0.1:$GW_PORT
export PUBLIC_BASE_URL=http://bench.test
export LOG_LEVEL=${LOG_LEVEL:-warn}
# The rate limit check is measured on its own (tests/bench/ratelimit.sh).
export GATEWAY_RATELIMIT=0

bench_spawn shortener "$BUILD/services/shortener/shortener"
bench_wait_healthy "$BUILD/services/shortener/shortener" "$SHORTENER_ADDR"
bench_spawn gateway "$BUILD/services/gateway/gateway"
bench_wait_healthy "$BUILD/services/gateway/gateway" "http://127.0.0.1:$GW_PORT"

mkdir -p "$WORK/ngx"
sed -e "s|@DIR@|$WORK/ngx|g" -e "s|@PORT@|$NG_PORT|g" \
	"$ROOT/tests/bench/nginx.conf.in" >"$WORK/ngx/nginx.conf"
bench_spawn nginx "$NGINX" -c "$WORK/ngx/nginx.conf" -p "$WORK/ngx"
for _ in $(seq 50); do
	stack_port_in_use "$NG_PORT" && break
	sleep 0.1
done

bench_seed_links "$GW_PORT" "$NCODES" b "$GW_PORT"

# run_wrk NAME URL SCRIPT: runs wrk, prints "NAME rps p50 p99 errors".
run_wrk() {
	local out rps p50 p99 err
	out=$(CODES=$WORK/codes.txt wrk -t2 -c64 -d"${DURATION}s" \
		-s "$3" "$2" 2>&1)
	echo "$out" >"$WORK/$1.wrk"
	rps=$(echo "$out" | awk '/^Requests\/sec:/{print $2}')
	p50=$(echo "$out" | sed -n 's/.*p50_ms=\([0-9.]*\).*/\1/p')
	p99=$(echo "$out" | sed -n 's/.*p99_ms=\([0-9.]*\).*/\1/p')
	err=$(echo "$out" | sed -n 's/.*errors=\([0-9]*\).*/\1/p')
	non2xx=$(echo "$out" | awk '/Non-2xx or 3xx/{print $5}')
	echo "$1 ${rps:-0} ${p50:-?} ${p99:-?} ${err:-?} ${non2xx:-0}"
}

cat >"$WORK/plain.lua" <<'LUA'
done = function(summary, latency, requests)
  io.write(string.format("p50_ms=%.3f p99_ms=%.3f errors=%d\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout))
end
LUA

rows_before=$(psql "$DATABASE_URL" -Atc 'select count(*) from shortener.urls')
read -r _ b_rps b_p50 b_p99 b_err _ < <(run_wrk nginx "http://127.0.0.1:$NG_PORT/x" "$WORK/plain.lua")
read -r _ r_rps r_p50 r_p99 r_err r_bad < <(run_wrk redirect "http://127.0.0.1:$GW_PORT" "$ROOT/tests/bench/redirect.lua")
read -r _ c_rps c_p50 c_p99 c_err c_bad < <(run_wrk create "http://127.0.0.1:$GW_PORT" "$ROOT/tests/bench/create.lua")
rows_after=$(psql "$DATABASE_URL" -Atc 'select count(*) from shortener.urls')
c_total=$(awk '/requests in/{print $1}' "$WORK/create.wrk")
sync_commit=$(psql "$DATABASE_URL" -Atc 'show synchronous_commit')
fsync=$(psql "$DATABASE_URL" -Atc 'show fsync')

ratio=$(awk -v a="$r_rps" -v b="$b_rps" 'BEGIN{ if (b > 0) printf "%.2f", a / b; else print "n/a" }')
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
cat <<OUT

machine: $(nproc) cores, ${cpu:-unknown cpu}, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo)
wrk -t2 -c64 -d${DURATION}s; $NCODES cached codes; postgres fsync=$fsync synchronous_commit=$sync_commit

| benchmark                         | requests/s | p50 ms | p99 ms | errors | non-2xx/3xx |
|-----------------------------------|-----------:|-------:|-------:|-------:|------------:|
| nginx fixed 302 (baseline)        | $b_rps | $b_p50 | $b_p99 | $b_err | - |
| redirect via gateway + shortener  | $r_rps | $r_p50 | $r_p99 | $r_err | $r_bad |
| create link (durable)             | $c_rps | $c_p50 | $c_p99 | $c_err | $c_bad |

redirect / nginx ratio: $ratio
links created during the run: wrk counted $c_total requests; $((rows_after - rows_before)) new rows in PostgreSQL
OUT
