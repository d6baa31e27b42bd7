#!/usr/bin/env bash
# tests/bench/run.sh: the shortener benchmarks, each beside its baseline in
# the same run, printed as figures and ratios (never pass/fail).
#
#   tests/bench/run.sh [--duration S] [--codes N] [--rounds R] [--old REV]
#
# Builds a Release tree (build-bench/), starts a private Redis and
# PostgreSQL (default durability settings), the shortener, a ratelimiter
# and the gateway, then runs wrk -t2 -c64 for S seconds (default 10):
#   1. baseline: nginx (2 workers) answering a fixed `return 302`;
#   2. redirect: GET /<code> for N random codes (default 1000), all cached;
#   3. creation: POST /api/v1/urls, each link durable before its 201;
#      the rows in PostgreSQL are counted afterwards against wrk's count;
#   4. gateway old vs new: the gateway of REV (default e254f22, the tree
#      before the gateway rewrite; built once into build-bench-old/<commit>/)
#      and the current one, against the same shortener, R rounds (default
#      3) of old, new alternating, the redirect of 2.:
#        (a) rate limit check off (GATEWAY_RATELIMIT=0);
#        (b) check on, with rules that match nothing
#            (tests/bench/nomatch-rules.yaml);
#      both with the access log at its default (on; each gateway's stderr
#      goes to a file).  Prints the medians of requests/s and p99, the
#      new/old ratio and the p99 difference beside the issue's bars, and
#      every run.
# Everything it started is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/deploy/lib.sh"
. "$ROOT/tests/bench/lib.sh"

CMDLINE=$(bench_cmdline "$@")
DURATION=10
NCODES=1000
ROUNDS=3
OLD_REV=e254f22
while [ $# -gt 0 ]; do
	case $1 in
	--duration) DURATION=$2; shift 2 ;;
	--codes) NCODES=$2; shift 2 ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	--old) OLD_REV=$2; shift 2 ;;
	-h | --help) sed -n '2,25p' "$0"; exit 0 ;;
	*) echo "unknown argument $1" >&2; exit 1 ;;
	esac
done
for v in "$DURATION" "$NCODES" "$ROUNDS"; do
	[[ $v =~ ^[1-9][0-9]*$ ]] || stack_die "not a positive integer: $v"
done

for t in wrk nginx curl git; do
	command -v "$t" >/dev/null || [ -x "/usr/sbin/$t" ] ||
		stack_die "$t is missing: apt-get install wrk nginx-light curl git"
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

BUILD=$ROOT/build-bench
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
	-DBUILD_TESTING=OFF >/dev/null
cmake --build "$BUILD" -j2 --target shortener gateway ratelimiter >/dev/null
NEW_GW=$BUILD/services/gateway/gateway

# The old gateway: REV's tree, exported (git archive: no worktree to
# register or clean up) and built once per commit.
OLD_SHA=$(git -C "$ROOT" rev-parse --verify --quiet "$OLD_REV^{commit}") ||
	stack_die "commit $OLD_REV is not in $ROOT (a shallow clone? git fetch --unshallow)"
OLD_DIR=$ROOT/build-bench-old/$OLD_SHA
OLD_GW=$OLD_DIR/build/services/gateway/gateway
if [ ! -f "$OLD_DIR/built" ] || [ ! -x "$OLD_GW" ]; then
	echo "building the gateway of $OLD_REV ($OLD_SHA) in $OLD_DIR..." >&2
	rm -rf "$OLD_DIR"
	mkdir -p "$OLD_DIR/src"
	git -C "$ROOT" archive "$OLD_SHA" | tar -x -C "$OLD_DIR/src"
	cmake -S "$OLD_DIR/src" -B "$OLD_DIR/build" -DCMAKE_BUILD_TYPE=Release \
		-DBUILD_TESTING=OFF >/dev/null
	cmake --build "$OLD_DIR/build" -j2 --target gateway >/dev/null
	touch "$OLD_DIR/built"
fi
NEW_DESC="working tree at $(git -C "$ROOT" rev-parse --short HEAD)"
if [ -n "$(git -C "$ROOT" status --porcelain -- services common proto CMakeLists.txt)" ]; then
	NEW_DESC="$NEW_DESC + uncommitted changes"
fi

MACHINE_START=$(bench_machine)
bench_init bench
bench_redis
bench_pg
bench_ports SH_PORT RL_PORT GW_PORT NG_PORT CACHE_PORT \
	OLD_OFF_PORT NEW_OFF_PORT OLD_ON_PORT NEW_ON_PORT
export SHORTENER_LISTEN=tcp://127.0.0.1:$SH_PORT
export SHORTENER_ADDR=tcp://127.0.0.1:$SH_PORT
export RATELIMITER_LISTEN=tcp://127.0.0.1:$RL_PORT
export RATELIMITER_ADDR=tcp://127.0.0.1:$RL_PORT
export RATELIMIT_RULES=$ROOT/tests/bench/nomatch-rules.yaml
# No cache service here: a port nothing listens on, so that no gateway
# talks to one left running on the default port.
export CACHE_ADDR=tcp://127.0.0.1:$CACHE_PORT
export GATEWAY_LISTEN=127.0.0.1:$GW_PORT
export PUBLIC_BASE_URL=http://bench.test
export LOG_LEVEL=${LOG_LEVEL:-warn}
# Benchmarks 2 and 3 run with the rate limit check off (its cost is
# measured in 4 and in tests/bench/ratelimit.sh).
export GATEWAY_RATELIMIT=0

bench_spawn shortener "$BUILD/services/shortener/shortener"
bench_wait_healthy "$BUILD/services/shortener/shortener" "$SHORTENER_ADDR"
bench_spawn ratelimiter "$BUILD/services/ratelimiter/ratelimiter"
bench_wait_healthy "$BUILD/services/ratelimiter/ratelimiter" "$RATELIMITER_ADDR"
bench_spawn gateway "$NEW_GW"
bench_wait_healthy "$NEW_GW" "http://127.0.0.1:$GW_PORT"

mkdir -p "$WORK/ngx"
sed -e "s|@DIR@|$WORK/ngx|g" -e "s|@PORT@|$NG_PORT|g" \
	"$ROOT/tests/bench/nginx.conf.in" >"$WORK/ngx/nginx.conf"
bench_spawn nginx "$NGINX" -c "$WORK/ngx/nginx.conf" -p "$WORK/ngx"
for _ in $(seq 50); do
	stack_port_in_use "$NG_PORT" && break
	sleep 0.1
done

bench_seed_links "$GW_PORT" "$NCODES" b "$GW_PORT"

cat >"$WORK/plain.lua" <<'LUA'
done = function(summary, latency, requests)
  io.write(string.format("p50_ms=%.3f p99_ms=%.3f\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
LUA
REDIRECT_LUA=$ROOT/tests/bench/redirect.lua

echo "1. nginx baseline, 2. redirect..." >&2
# (bench_wrk into a file, not through a pipe: in a subshell its wrk would
# be out of the cleanup's reach.)
bench_wrk nginx "$DURATION" "http://127.0.0.1:$NG_PORT/x" "$WORK/plain.lua" \
	>"$WORK/nginx.res"
read -r b_rps b_p50 b_p99 b_err _ _ <"$WORK/nginx.res"
bench_wrk redirect "$DURATION" "http://127.0.0.1:$GW_PORT" "$REDIRECT_LUA" \
	>"$WORK/redirect.res"
read -r r_rps r_p50 r_p99 r_err r_bad _ <"$WORK/redirect.res"
bench_check_alive "during benchmarks 1-2"

echo "3. creation..." >&2
rows_before=$(psql "$DATABASE_URL" -Atc 'select count(*) from shortener.urls')
bench_wrk create "$DURATION" "http://127.0.0.1:$GW_PORT" \
	"$ROOT/tests/bench/create.lua" >"$WORK/create.res"
read -r c_rps c_p50 c_p99 c_err c_bad c_total <"$WORK/create.res"
rows_after=$(psql "$DATABASE_URL" -Atc 'select count(*) from shortener.urls')
sync_commit=$(psql "$DATABASE_URL" -Atc 'show synchronous_commit')
fsync=$(psql "$DATABASE_URL" -Atc 'show fsync')
bench_check_alive "during benchmark 3"

# The gateways compared in 4. (started only now: 1-3 run as they did before
# there were any), each with its logging at the defaults: no LOG_LEVEL, no
# GATEWAY_ACCESS_LOG; stdout and stderr in $WORK/NAME.log.
cmp_gateway() { # NAME BIN PORT RATELIMIT
	bench_spawn "$1" env -u LOG_LEVEL -u GATEWAY_ACCESS_LOG \
		GATEWAY_LISTEN="127.0.0.1:$3" GATEWAY_RATELIMIT="$4" "$2"
}
cmp_gateway gw-old-off "$OLD_GW" "$OLD_OFF_PORT" 0
cmp_gateway gw-new-off "$NEW_GW" "$NEW_OFF_PORT" 0
cmp_gateway gw-old-on "$OLD_GW" "$OLD_ON_PORT" 1
cmp_gateway gw-new-on "$NEW_GW" "$NEW_ON_PORT" 1
bench_wait_healthy "$OLD_GW" "http://127.0.0.1:$OLD_OFF_PORT"
bench_wait_healthy "$NEW_GW" "http://127.0.0.1:$NEW_OFF_PORT"
bench_wait_healthy "$OLD_GW" "http://127.0.0.1:$OLD_ON_PORT"
bench_wait_healthy "$NEW_GW" "http://127.0.0.1:$NEW_ON_PORT"
bench_warm_links "$OLD_OFF_PORT" "$NEW_OFF_PORT" "$OLD_ON_PORT" "$NEW_ON_PORT"

# 4. old vs new: runs go to $WORK/cmp-CASE-SIDE.runs, one
# "rps p50 p99 errors non2xx requests" line each.
declare -A CMP_PORT=([off-old]=$OLD_OFF_PORT [off-new]=$NEW_OFF_PORT
	[on-old]=$OLD_ON_PORT [on-new]=$NEW_ON_PORT)
for case in off on; do
	for r in $(seq "$ROUNDS"); do
		for side in old new; do
			echo "4. check $case, round $r/$ROUNDS, $side gateway..." >&2
			bench_wrk "cmp-$case-$side-$r" "$DURATION" \
				"http://127.0.0.1:${CMP_PORT[$case-$side]}" \
				"$REDIRECT_LUA" >>"$WORK/cmp-$case-$side.runs"
		done
	done
	bench_check_alive "during benchmark 4, check $case"
done


ratio=$(bench_ratio "$r_rps" "$b_rps" "%.2f")

# col CASE SIDE N: the medians of column N of the runs.
col_median() {
	awk -v n="$3" '{ print $n }' "$WORK/cmp-$1-$2.runs" | bench_median
}
declare -A MED
for case in off on; do
	for side in old new; do
		MED[$case-$side-rps]=$(col_median "$case" "$side" 1)
		MED[$case-$side-p99]=$(col_median "$case" "$side" 3)
	done
	MED[$case-ratio]=$(bench_ratio "${MED[$case-new-rps]}" "${MED[$case-old-rps]}")
	MED[$case-dp99]=$(bench_diff "${MED[$case-new-p99]}" "${MED[$case-old-p99]}")
done

# What the check-on gateways did (series of the gateway of e254f22; "?" if
# a gateway does not export them).
rl_summary() { # PORT
	local m=gateway_ratelimit_checks_total
	printf 'checks allowed=%s local=%s limited=%s, fail-open=%s' \
		"$(bench_metric "$1" "^$m.*allowed")" \
		"$(bench_metric "$1" "^$m.*local")" \
		"$(bench_metric "$1" "^$m.*limited")" \
		"$(bench_metric "$1" '^gateway_ratelimit_failures_total')"
}
alog_lines() { # NAME: lines the gateway NAME wrote to its log
	local f=$WORK/$1.log
	[ -f "$f" ] && wc -l <"$f" | tr -d ' ' || echo "?"
}

cat <<OUT

machine: $MACHINE_START
  (at the end: load average $(cut -d' ' -f1-3 /proc/loadavg))
command: $CMDLINE
wrk -t2 -c64 -d${DURATION}s; $NCODES cached codes; postgres fsync=$fsync synchronous_commit=$sync_commit

| benchmark                         | requests/s | p50 ms | p99 ms | errors | non-2xx/3xx |
|-----------------------------------|-----------:|-------:|-------:|-------:|------------:|
| nginx fixed 302 (baseline)        | $b_rps | $b_p50 | $b_p99 | $b_err | - |
| redirect via gateway + shortener  | $r_rps | $r_p50 | $r_p99 | $r_err | $r_bad |
| create link (durable)             | $c_rps | $c_p50 | $c_p99 | $c_err | $c_bad |

redirect / nginx ratio: $ratio
links created during the run: wrk counted $c_total requests; $((rows_after - rows_before)) new rows in PostgreSQL

4. gateway old vs new, redirect of $NCODES cached codes, wrk -t2 -c64 -d${DURATION}s,
$ROUNDS rounds of old, new alternating, medians; access log at its default
(LOG_LEVEL and GATEWAY_ACCESS_LOG unset), each gateway's stderr to a file:
  old: $OLD_REV ($OLD_SHA), build-bench-old/$OLD_SHA
  new: $NEW_DESC, build-bench
  check on: ratelimiter with tests/bench/nomatch-rules.yaml (one rule, POST /api/v1/never)

| case                               | old req/s | new req/s | new/old | bar    | old p99 ms | new p99 ms | p99 new-old ms | bar     |
|------------------------------------|----------:|----------:|--------:|--------|-----------:|-----------:|---------------:|---------|
| (a) check off (GATEWAY_RATELIMIT=0) | ${MED[off-old-rps]} | ${MED[off-new-rps]} | ${MED[off-ratio]} | >= 0.97 | ${MED[off-old-p99]} | ${MED[off-new-p99]} | ${MED[off-dp99]} | <= +0.5 |
| (b) check on, rules match nothing  | ${MED[on-old-rps]} | ${MED[on-new-rps]} | ${MED[on-ratio]} | -      | ${MED[on-old-p99]} | ${MED[on-new-p99]} | ${MED[on-dp99]} | <= +0.5 |

every run, in the order run:

| case | round | gateway | requests/s | p50 ms | p99 ms | socket errors | non-2xx/3xx |
|------|------:|---------|-----------:|-------:|-------:|--------------:|------------:|
OUT
for case in off on; do
	for r in $(seq "$ROUNDS"); do
		for side in old new; do
			read -r a b c d e _ <<<"$(sed -n "${r}p" "$WORK/cmp-$case-$side.runs")"
			echo "| ($([ "$case" = off ] && echo a || echo b)) check $case | $r | $side | $a | $b | $c | $d | $e |"
		done
	done
done
cat <<OUT

access log lines written: old-off $(alog_lines gw-old-off), new-off $(alog_lines gw-new-off), old-on $(alog_lines gw-old-on), new-on $(alog_lines gw-new-on)
check on, old: $(rl_summary "$OLD_ON_PORT")
check on, new: $(rl_summary "$NEW_ON_PORT")
OUT
