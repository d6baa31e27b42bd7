#!/usr/bin/env bash
#
# tests/bench/ratelimit.sh: what the rate limit check costs, measured in one
# run against the same gateway with the check off.  Figures and ratios, not
# pass/fail.
#
#   tests/bench/ratelimit.sh [--duration S] [--rounds R] [--codes N]
#
# Builds build-bench-rl/, starts its own Redis, PostgreSQL, shortener, one
# ratelimiter (restarted with other rules between the parts) and two
# gateways, both with TRUSTED_PROXIES=127.0.0.1 and the access log off: one
# with the check on (GATEWAY_RATELIMIT=1), one with it off.  Every part is
# R rounds (default 3) of off, on alternating, wrk -t2 -c64 for S seconds
# (default 10) over N cached codes (default 1000), compared as a ratio of
# medians:
#   1. rules that match nothing (tests/bench/nomatch-rules.yaml) vs off:
#      redirects/s (bar >= 0.95x);
#   2. one address over its limit (tests/bench/flood-rules.yaml: 100 a
#      minute per address): wrk floods from 127.0.0.1, essentially every
#      answer a 429; 429s/s vs the redirects/s of the check off (bar
#      >= 0.8x).  Meanwhile a well-behaved client (tests/bench/steady.lua,
#      wrk -t1 -c1, ~100 requests/s over 1000 other addresses given in
#      X-Forwarded-For) measures its p99, beside its p99 with no flood;
#   3. the shipped rules (deploy/ratelimit-rules.yaml) with load from 10,000
#      client addresses (tests/bench/manyaddr.lua: X-Forwarded-For and code
#      drawn at random per request) vs off: redirects/s (bar >= 0.6x);
#   4. the RateLimit headers: during one more run of the load of 3., 50
#      requests from one address (curl, X-Forwarded-For) must all carry
#      RateLimit-Policy, RateLimit, RateLimit-Limit, RateLimit-Remaining and
#      RateLimit-Reset, and RateLimit-Remaining must never rise within a
#      window (before the previous response's RateLimit-Reset is over).
# Before 3. it also measures checks/s against the ratelimiter directly
# (rl_bench: 16 threads, one call in flight each, 1000 keys).
# Everything it started is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/deploy/lib.sh"
. "$ROOT/tests/bench/lib.sh"

CMDLINE=$(bench_cmdline "$@")
DURATION=10
ROUNDS=3
NCODES=1000
ADDRS=10000       # part 3's client addresses
GOOD_RATE=100     # part 2's well-behaved client: requests/s
GOOD_POOL=1000    # ... spread over this many addresses
HDR_N=50          # part 4: requests sampled
HDR_IP=10.250.0.1 # part 4: their address (outside every pool above)
while [ $# -gt 0 ]; do
	case $1 in
	--duration) DURATION=$2; shift 2 ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	--codes) NCODES=$2; shift 2 ;;
	-h | --help) sed -n '3,34p' "$0"; exit 0 ;;
	*) echo "unknown argument $1" >&2; exit 1 ;;
	esac
done
for v in "$DURATION" "$NCODES" "$ROUNDS"; do
	[[ $v =~ ^[1-9][0-9]*$ ]] || stack_die "not a positive integer: $v"
done
for t in wrk curl; do
	command -v "$t" >/dev/null || stack_die "$t is missing: apt-get install $t"
done

BUILD=$ROOT/build-bench-rl
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j2 --target shortener gateway ratelimiter \
	rl_bench >/dev/null
GW=$BUILD/services/gateway/gateway
RL=$BUILD/services/ratelimiter/ratelimiter
BENCH=$ROOT/tests/bench

MACHINE_START=$(bench_machine)
bench_init rlbench
bench_redis
bench_pg
bench_ports SH_PORT RL_PORT ON_PORT OFF_PORT CACHE_PORT
export SHORTENER_LISTEN=tcp://127.0.0.1:$SH_PORT
export SHORTENER_ADDR=tcp://127.0.0.1:$SH_PORT
export RATELIMITER_LISTEN=tcp://127.0.0.1:$RL_PORT
export RATELIMITER_ADDR=tcp://127.0.0.1:$RL_PORT
# No cache service here: a port nothing listens on.
export CACHE_ADDR=tcp://127.0.0.1:$CACHE_PORT
export PUBLIC_BASE_URL=http://bench.test
export LOG_LEVEL=${LOG_LEVEL:-warn}
export GATEWAY_ACCESS_LOG=0
export TRUSTED_PROXIES=127.0.0.1
export CODES=$WORK/codes.txt ADDRS GOOD_RATE GOOD_POOL

bench_spawn shortener "$BUILD/services/shortener/shortener"
bench_wait_healthy "$BUILD/services/shortener/shortener" "$SHORTENER_ADDR"

# start_rl RULES: (re)starts the ratelimiter with RULES, then waits until
# the check-on gateway (if it runs) is connected to it again: until then
# that gateway would fail open without asking.
# shellcheck disable=SC2034 # set and read by bench_respawn
RL_PID=
start_rl() {
	bench_respawn RL_PID ratelimiter env RATELIMIT_RULES="$1" "$RL"
	bench_wait_healthy "$RL" "$RATELIMITER_ADDR"
	[ -n "${ON_UP:-}" ] || return 0
	for _ in $(seq 50); do
		grep -q '"ratelimiter":{"status":"SERVING"' <<<"$(curl -s \
			--max-time 1 "http://127.0.0.1:$ON_PORT/healthz")" && return 0
		sleep 0.1
	done
	stack_say "warning: the gateway's /healthz does not show the ratelimiter SERVING; going on"
}
start_rl "$BENCH/nomatch-rules.yaml"
bench_spawn gateway-on env GATEWAY_LISTEN="127.0.0.1:$ON_PORT" \
	GATEWAY_RATELIMIT=1 "$GW"
bench_spawn gateway-off env GATEWAY_LISTEN="127.0.0.1:$OFF_PORT" \
	GATEWAY_RATELIMIT=0 "$GW"
bench_wait_healthy "$GW" "http://127.0.0.1:$ON_PORT"
bench_wait_healthy "$GW" "http://127.0.0.1:$OFF_PORT"
ON_UP=1

bench_seed_links "$OFF_PORT" "$NCODES" r "$ON_PORT" "$OFF_PORT"

ON=http://127.0.0.1:$ON_PORT
OFF=http://127.0.0.1:$OFF_PORT
# Runs: $WORK/NAME.runs, one "rps p50 p99 errors non2xx requests" line
# each (bench_wrk_parse).
run() { # NAME URL SCRIPT [WRK_ARGS...]; the round is $r
	local name=$1
	shift
	bench_wrk "$name-$r" "$DURATION" "$@" >>"$WORK/$name.runs"
}
warm() { # URL SCRIPT: one second of load, not counted
	bench_wrk warm 1 "$@" >/dev/null
}
m429() { bench_metric "$ON_PORT" '^gateway_http_requests_total.*status="429"'; }
# snap PART: notes the check-on gateway's decision counters (the series of
# the gateway of e254f22; "?" where a gateway has none) in $WORK/snap.PART,
# after the quarter second in which its loops add their counts.
snap() {
	local m=gateway_ratelimit_checks_total
	sleep 0.3
	printf '%s %s %s %s %s\n' "$(bench_metric "$ON_PORT" "^$m.*allowed")" \
		"$(bench_metric "$ON_PORT" "^$m.*limited")" \
		"$(bench_metric "$ON_PORT" "^$m.*local")" \
		"$(bench_metric "$ON_PORT" '^gateway_ratelimit_failures_total')" \
		"$(m429)" >>"$WORK/snap.$1"
}
# decisions PART: what the check-on gateway decided between the two snaps.
decisions() {
	# A series first seen in the second snap started at 0.
	awk 'NR == 1 { for (i = 1; i <= 5; i++) a[i] = $i }
	     NR == 2 { for (i = 1; i <= 5; i++) {
	               if (a[i] == "?" && $i ~ /^[0-9]+$/) a[i] = 0
	               d[i] = (a[i] ~ /^[0-9]+$/ && $i ~ /^[0-9]+$/) ? $i - a[i] : "?" } }
	     END { printf "asked the ratelimiter %s times (allowed %s, limited %s), decided %s locally (admitted on a budget, or a cached refusal), failed open %s times, answered 429 %s times\n",
	           (d[1] ~ /\?/ || d[2] ~ /\?/) ? "?" : d[1] + d[2], d[1], d[2], d[3], d[4], d[5] }' \
		"$WORK/snap.$1"
}

# ---- 1. rules that match nothing vs off
warm "$ON" "$BENCH/redirect.lua"
snap 1
for r in $(seq "$ROUNDS"); do
	echo "1. rules that match nothing, round $r/$ROUNDS: off, on..." >&2
	run p1-off "$OFF" "$BENCH/redirect.lua"
	run p1-on "$ON" "$BENCH/redirect.lua"
done
snap 1
bench_check_alive "during part 1"

# ---- 2. one address over its limit; a well-behaved client beside it
start_rl "$BENCH/flood-rules.yaml"
warm "$ON" "$BENCH/redirect.lua" # 127.0.0.1 is over its limit from here
snap 2
for r in $(seq "$ROUNDS"); do
	echo "2. flood from one address, round $r/$ROUNDS: off, flood + client, client alone..." >&2
	run p2-off "$OFF" "$BENCH/redirect.lua"
	bench_wrk_start "p2-good-$r" "$DURATION" "$ON" "$BENCH/steady.lua" -t1 -c1
	good_pid=$BENCH_WRK_PID
	run p2-flood "$ON" "$BENCH/redirect.lua"
	bench_wrk_wait "$good_pid" "p2-good-$r" >>"$WORK/p2-good.runs"
	run p2-alone "$ON" "$BENCH/steady.lua" -t1 -c1
done
snap 2
bench_check_alive "during part 2"

# ---- 3. the shipped rules, 10,000 addresses
start_rl "$ROOT/deploy/ratelimit-rules.yaml"
echo "checks against the ratelimiter directly..." >&2
direct=$("$BUILD/tests/bench/rl_bench" "$RATELIMITER_ADDR" 5 16 1000 2>&1 ||
	echo "rl_bench failed")
warm "$ON" "$BENCH/manyaddr.lua"
snap 3
for r in $(seq "$ROUNDS"); do
	echo "3. shipped rules, $ADDRS addresses, round $r/$ROUNDS: off, on..." >&2
	run p3-off "$OFF" "$BENCH/manyaddr.lua"
	run p3-on "$ON" "$BENCH/manyaddr.lua"
done
snap 3
bench_check_alive "during part 3"

# ---- 4. the headers, sampled from one address during the load of 3.
echo "4. RateLimit headers, $HDR_N requests from $HDR_IP during the load of 3..." >&2
# The load runs until the sample is done (SIGINT: wrk stops and reports).
bench_wrk_start p4-load 600 "$ON" "$BENCH/manyaddr.lua"
load_pid=$BENCH_WRK_PID
sleep 1
mapfile -t hdr_codes < <(shuf -n "$HDR_N" -r "$WORK/codes.txt")
t0=$(date +%s%3N)
for i in $(seq "$HDR_N"); do
	t=$(($(date +%s%3N) - t0))
	code=$(curl -s --max-time 5 -o /dev/null -D "$WORK/hdr.$i" \
		-w '%{http_code}' -H "X-Forwarded-For: $HDR_IP" \
		"$ON/${hdr_codes[$((i - 1))]}") || code=000
	# One record a line: i t_ms status and the five headers ("-": absent).
	awk -v i="$i" -v t="$t" -v code="$code" '
	BEGIN { n = split("ratelimit-policy ratelimit ratelimit-limit " \
	                  "ratelimit-remaining ratelimit-reset", want, " ")
	        for (k = 1; k <= n; k++) v[want[k]] = "-" }
	{ sub(/\r$/, ""); p = index($0, ":"); if (p == 0) next
	  name = tolower(substr($0, 1, p - 1)); val = substr($0, p + 1)
	  sub(/^[ \t]+/, "", val); gsub(/[ \t]/, "", val)
	  if (name in v) v[name] = val }
	END { printf "%s %s %s", i, t, code
	      for (k = 1; k <= n; k++) printf " %s", v[want[k]]
	      printf "\n" }' "$WORK/hdr.$i" 2>/dev/null >>"$WORK/hdr.records" ||
		echo "$i $t $code - - - - -" >>"$WORK/hdr.records"
	sleep 0.05
done
kill -INT "$load_pid" 2>/dev/null || true
bench_wrk_wait "$load_pid" p4-load >"$WORK/p4-load.res"
bench_check_alive "during part 4"
# Fields: 1 i, 2 ms since the first, 3 status, 4 policy, 5 ratelimit, 6 limit,
# 7 remaining, 8 reset (seconds).
headers=$(awk -v n="$HDR_N" '
	{ for (k = 4; k <= 8; k++) if ($k == "-") {
		miss++; if (miss <= 3) why = why sprintf("; response %d (status %s) lacks %s", $1, $3,
			k == 4 ? "RateLimit-Policy" : k == 5 ? "RateLimit" : k == 6 ? "RateLimit-Limit" : k == 7 ? "RateLimit-Remaining" : "RateLimit-Reset")
		break } }
	$7 != "-" && $8 != "-" {
		if (have && $4 == ppol && $7 + 0 > prem + 0 && $2 < pt + 1000 * preset) {
			rise++
			if (rise <= 3) why = why sprintf("; response %d: RateLimit-Remaining %s after %s %d ms earlier, whose RateLimit-Reset was %s s", $1, $7, prem, $2 - pt, preset)
		}
		have = 1; pt = $2; prem = $7; preset = $8; ppol = $4
	}
	{ st[$3]++; got++ }
	END {
		for (s in st) stat = stat sprintf(" %s x%d", s, st[s])
		if (got == 0) { print "headers: no response recorded"; exit }
		if (miss == 0 && rise == 0)
			printf "headers: ok (%d responses; statuses%s)\n", got, stat
		else
			printf "headers: WRONG: %d of %d responses lack a header, RateLimit-Remaining rose %d times within a window (statuses%s)%s\n",
			    miss, got, rise, stat, why
	}' "$WORK/hdr.records")
hdr_first=$(head -1 "$WORK/hdr.records")
hdr_last=$(tail -1 "$WORK/hdr.records")

# ---- the figures
col() { # NAME N: column N of NAME's runs, one a line
	awk -v n="$2" '{ print $n }' "$WORK/$1.runs"
}
med() { col "$1" "$2" | bench_median; }
# 429s/s of a flood run: requests/s times the share of non-2xx/3xx.
awk '{ if ($6 + 0 > 0) printf "%.2f\n", $1 * $5 / $6; else print "?" }' \
	"$WORK/p2-flood.runs" >"$WORK/p2-429.rate"
rate429=$(bench_median <"$WORK/p2-429.rate")
share429=$(awk '{ r += $6; b += $5 } END { if (r) printf "%.2f", 100 * b / r; else print "?" }' \
	"$WORK/p2-flood.runs")
flood_non2xx=$(awk '{ b += $5 } END { print b + 0 }' "$WORK/p2-flood.runs")

r1=$(bench_ratio "$(med p1-on 1)" "$(med p1-off 1)")
r2=$(bench_ratio "$rate429" "$(med p2-off 1)")
r3=$(bench_ratio "$(med p3-on 1)" "$(med p3-off 1)")

cat <<OUT

machine: $MACHINE_START
  (at the end: load average $(cut -d' ' -f1-3 /proc/loadavg))
command: $CMDLINE
wrk -t2 -c64 -d${DURATION}s over $NCODES cached codes; $ROUNDS rounds of off, on
alternating per part; medians; both gateways TRUSTED_PROXIES=127.0.0.1,
GATEWAY_ACCESS_LOG=0, LOG_LEVEL=$LOG_LEVEL; one ratelimiter, restarted with each
part's rules

| part                                              | check on        | check off (redirects/s) | on/off | bar    |
|---------------------------------------------------|----------------:|------------------------:|-------:|--------|
| 1. nomatch-rules.yaml: redirects/s                | $(med p1-on 1) | $(med p1-off 1) | $r1 | >= 0.95 |
| 2. flood-rules.yaml, one address: 429s/s          | $rate429 | $(med p2-off 1) | $r2 | >= 0.8 |
| 3. ratelimit-rules.yaml, $ADDRS addresses: redirects/s | $(med p3-on 1) | $(med p3-off 1) | $r3 | >= 0.6 |

p99 ms (medians), on / off: 1. $(med p1-on 3) / $(med p1-off 3) ($(bench_diff "$(med p1-on 3)" "$(med p1-off 3)"))   2. $(med p2-flood 3) / $(med p2-off 3)   3. $(med p3-on 3) / $(med p3-off 3) ($(bench_diff "$(med p3-on 3)" "$(med p3-off 3)"))
2. flood: ${share429}% of its responses were non-2xx/3xx ($flood_non2xx)
2. well-behaved client (wrk -t1 -c1, ~$GOOD_RATE req/s, X-Forwarded-For over $GOOD_POOL addresses):
   p99 $(med p2-good 3) ms during the flood vs $(med p2-alone 3) ms without it (p50 $(med p2-good 2) vs $(med p2-alone 2) ms);
   $(med p2-good 1) vs $(med p2-alone 1) req/s; non-2xx/3xx $(col p2-good 5 | awk '{ s += $1 } END { print s + 0 }') during the flood, $(col p2-alone 5 | awk '{ s += $1 } END { print s + 0 }') without
4. $headers
   first: $hdr_first
   last:  $hdr_last
   (request, ms since the first, status, RateLimit-Policy, RateLimit, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset)
   the load meanwhile: $(cat "$WORK/p4-load.res") (rps p50 p99 errors non2xx requests; not in the medians)
ratelimiter direct (rl_bench, 16 threads x 1 in flight, 1000 keys, ratelimit-rules.yaml):
   $direct
the check-on gateway, over each part's on runs (from its /metrics):
   1. $(decisions 1)
   2. $(decisions 2)
   3. $(decisions 3)

every run, in the order run (2. flood and client ran together):

| part | round | run | requests/s | p50 ms | p99 ms | socket errors | non-2xx/3xx | requests |
|------|------:|-----|-----------:|-------:|-------:|--------------:|------------:|---------:|
OUT
for r in $(seq "$ROUNDS"); do
	for spec in "1 p1-off off" "1 p1-on on"; do
		read -r part name label <<<"$spec"
		echo "| $part | $r | $label | $(sed -n "${r}p" "$WORK/$name.runs" | tr ' ' '|' | sed 's/|/ | /g') |"
	done
done
for r in $(seq "$ROUNDS"); do
	for spec in "2 p2-off off" "2 p2-flood on,flood" "2 p2-good on,client-during-flood" "2 p2-alone on,client-alone"; do
		read -r part name label <<<"$spec"
		echo "| $part | $r | $label | $(sed -n "${r}p" "$WORK/$name.runs" | tr ' ' '|' | sed 's/|/ | /g') |"
	done
done
for r in $(seq "$ROUNDS"); do
	for spec in "3 p3-off off" "3 p3-on on"; do
		read -r part name label <<<"$spec"
		echo "| $part | $r | $label | $(sed -n "${r}p" "$WORK/$name.runs" | tr ' ' '|' | sed 's/|/ | /g') |"
	done
done
echo "2. 429s/s per flood run: $(paste -sd' ' "$WORK/p2-429.rate")"
