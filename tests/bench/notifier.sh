#!/usr/bin/env bash
#
# tests/bench/notifier.sh: the notifier's benchmarks, each beside its
# baseline in the same run; figures and ratios, never pass/fail.
#
#   tests/bench/notifier.sh [--duration S] [--rounds R] [--normal N]
#                           [--high H] [--rate HZ] [--users U]
#                           [--part 1|2] [--compare BIN]
#
# Builds a Release tree (build-bench-nt/; BENCH_BUILD overrides), starts a
# private Redis and PostgreSQL (default durability: fsync and
# synchronous_commit on), the shortener, a ratelimiter with the shipped
# rules, the notifier (throttle and digest off), two gateways and nginx as
# the push receiver, then:
#   1. accepted Sends/s, R rounds (default 3) of each in turn, S seconds
#      (default 10), medians:
#      (a) baseline: link creation, wrk -t2 -c64 with tests/bench/create.lua
#          (POST /api/v1/urls: an RPC and a group-committed insert);
#      (b) notifier.Notifier/Send over RPC, as a service calls it (metadata
#          origin=service), 64 calls in flight on one client (nt_bench);
#      (c) POST /api/v1/notifications through the gateway, wrk -t2 -c64
#          with tests/bench/notify.lua and an operator's token (`gateway
#          token --user ops --claim role=admin`);
#      the bench gateway has the rate limit check off and its connection
#      caps raised; (d) once more (c) against the gateway as shipped (check
#      on, the shipped rules, default caps).  The Sends of 1. are
#      scheduled a day ahead (send_at), so that 2. starts on empty
#      streams: the accept path (validation, group commit of the
#      notification, its deliveries and its outbox row) is the same.
#   2. delivery: U users (default 1000) get one push device each, all at
#      the nginx receiver (NOTIFIER_OUTBOUND_ALLOW=its ip:port), which
#      answers 200 and logs "$msec $http_idempotency_key".  N normal
#      pushes (default 100000) are sent as fast as 64 in flight go; once
#      half of them are accepted, H high ones (default 1000) at HZ a
#      second (default 50) beside them, so that they meet the backlog.  From the send time of each id (nt_bench, taken just
#      before its call) and its arrival (nginx's log): p50/p99/max of the
#      high ones' Send-to-arrival, and the drain rate of the normal ones.
# --part runs only one of the two (default both).  --compare BIN runs
# part 2 first with the notifier BIN (e.g. one built from an earlier
# commit), then with this tree's, in the same run, for a before/after.  NOTIFIER_BENCH_ENV
# adds K=V words to the notifier's environment (printed with the figures).
# Everything it started is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/deploy/lib.sh"
. "$ROOT/tests/bench/lib.sh"

CMDLINE=$(bench_cmdline "$@")
DURATION=10
ROUNDS=3
NNORMAL=100000
NHIGH=1000
RATE=50
NUSERS=1000
PART=all
COMPARE=
while [ $# -gt 0 ]; do
	case $1 in
	--duration) DURATION=$2; shift 2 ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	--normal) NNORMAL=$2; shift 2 ;;
	--high) NHIGH=$2; shift 2 ;;
	--rate) RATE=$2; shift 2 ;;
	--users) NUSERS=$2; shift 2 ;;
	--part) PART=$2; shift 2 ;;
	--compare) COMPARE=$2; shift 2 ;;
	-h | --help) sed -n '3,45p' "$0"; exit 0 ;;
	*) echo "unknown argument $1" >&2; exit 1 ;;
	esac
done
for v in "$DURATION" "$ROUNDS" "$NNORMAL" "$NHIGH" "$RATE" "$NUSERS"; do
	[[ $v =~ ^[1-9][0-9]*$ ]] || stack_die "not a positive integer: $v"
done
case $PART in 1 | 2 | all) ;; *) stack_die "--part: 1 or 2" ;; esac
for t in wrk nginx curl psql; do
	command -v "$t" >/dev/null || [ -x "/usr/sbin/$t" ] ||
		stack_die "$t is missing: apt-get install wrk nginx-light curl postgresql-client"
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

BUILD=${BENCH_BUILD:-$ROOT/build-bench-nt}
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j2 --target shortener gateway ratelimiter notifier \
	nt_bench >/dev/null
GW=$BUILD/services/gateway/gateway
NT=$BUILD/services/notifier/notifier
NTB=$BUILD/tests/bench/nt_bench
BENCH=$ROOT/tests/bench
DESC="$(git -C "$ROOT" rev-parse --short HEAD)"
if [ -n "$(git -C "$ROOT" status --porcelain -- services common proto CMakeLists.txt)" ]; then
	DESC="$DESC + uncommitted changes"
fi

MACHINE_START=$(bench_machine)
bench_init ntbench
bench_redis
bench_pg
sync_commit=$(psql "$DATABASE_URL" -Atc 'show synchronous_commit')
fsync=$(psql "$DATABASE_URL" -Atc 'show fsync')
bench_ports SH_PORT RL_PORT NT_PORT GW_PORT SHIP_PORT RX_PORT CACHE_PORT
export SHORTENER_LISTEN=tcp://127.0.0.1:$SH_PORT
export SHORTENER_ADDR=tcp://127.0.0.1:$SH_PORT
export RATELIMITER_LISTEN=tcp://127.0.0.1:$RL_PORT
export RATELIMITER_ADDR=tcp://127.0.0.1:$RL_PORT
export RATELIMIT_RULES=$ROOT/deploy/ratelimit-rules.yaml
export NOTIFIER_LISTEN=tcp://127.0.0.1:$NT_PORT
export NOTIFIER_ADDR=tcp://127.0.0.1:$NT_PORT
# No cache service here: a port nothing listens on.
export CACHE_ADDR=tcp://127.0.0.1:$CACHE_PORT
export PUBLIC_BASE_URL=http://bench.test
export LOG_LEVEL=${LOG_LEVEL:-warn}
AUTH_JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export AUTH_JWT_SECRET

# The notifier: the shipped configuration but for the throttle and the
# digest (off: the issue's bar is for delivery without them) and the
# outbound guard, which lets the receiver's address through.
NT_ENV=(NOTIFIER_THROTTLE_MAX=0 NOTIFIER_DIGEST_WINDOW_S=0
	"NOTIFIER_OUTBOUND_ALLOW=127.0.0.1:$RX_PORT")
# shellcheck disable=SC2086 # NOTIFIER_BENCH_ENV: extra K=V words
bench_spawn notifier env "${NT_ENV[@]}" ${NOTIFIER_BENCH_ENV:-} "$NT"
# shellcheck disable=SC2034 # read by bench_respawn
NT_PID=${BENCH_PIDS[-1]}
bench_spawn shortener "$BUILD/services/shortener/shortener"
bench_spawn ratelimiter "$BUILD/services/ratelimiter/ratelimiter"
bench_wait_healthy "$NT" "$NOTIFIER_ADDR"
bench_wait_healthy "$BUILD/services/shortener/shortener" "$SHORTENER_ADDR"
bench_wait_healthy "$BUILD/services/ratelimiter/ratelimiter" "$RATELIMITER_ADDR"
# The bench gateway: check off, caps raised.  The shipped one: defaults.
GW_BENCH_ENV=(GATEWAY_RATELIMIT=0 GATEWAY_MAX_CONNS=65536
	GATEWAY_MAX_CONNS_PER_ADDR=65536 GATEWAY_ACCESS_LOG=0)
bench_spawn gateway env "${GW_BENCH_ENV[@]}" GATEWAY_LISTEN="127.0.0.1:$GW_PORT" "$GW"
bench_spawn gateway-shipped env GATEWAY_LISTEN="127.0.0.1:$SHIP_PORT" "$GW"
bench_wait_healthy "$GW" "http://127.0.0.1:$GW_PORT"
bench_wait_healthy "$GW" "http://127.0.0.1:$SHIP_PORT"

mkdir -p "$WORK/rx"
sed -e "s|@DIR@|$WORK/rx|g" -e "s|@PORT@|$RX_PORT|g" \
	"$BENCH/nt-receiver.conf.in" >"$WORK/rx/nginx.conf"
bench_spawn receiver "$NGINX" -c "$WORK/rx/nginx.conf" -p "$WORK/rx"
for _ in $(seq 50); do
	stack_port_in_use "$RX_PORT" && break
	sleep 0.1
done
TOKEN=$("$GW" token --user ops --claim role=admin)
export TOKEN
code=$(curl -s -o "$WORK/probe.json" -w '%{http_code}' \
	-H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
	-d '{"user":"probe","type":"bench.push","title":"t","body":"b","channels":["push"]}' \
	"http://127.0.0.1:$GW_PORT/api/v1/notifications")
case $code in 2??) ;; *) stack_die "a Send through the gateway answered $code: $(cat "$WORK/probe.json")" ;; esac

# ---- 1. accepted Sends/s
part1() {
run() { # NAME CMD...: one "rps p50 p99 errors non2xx requests" line
	local name=$1
	shift
	"$@" >>"$WORK/$name.runs"
}
rpc_send() { # one nt_bench send, as a bench_wrk_parse line
	local out
	out=$("$NTB" send "$NOTIFIER_ADDR" "$DURATION" 64 2>>"$WORK/nt_bench.err") ||
		true
	read -r a b c d e <<<"$out"
	echo "${a:-?} ${b:-?} ${c:-?} ${d:-0} 0 ${e:-?}"
}
rows() { psql "$DATABASE_URL" -Atc "select count(*) from $1"; }
n_before=$(rows notifier.notifications)
for r in $(seq "$ROUNDS"); do
	echo "1. round $r/$ROUNDS: link creation, Send over RPC, Send through the gateway..." >&2
	run create bench_wrk "create-$r" "$DURATION" "http://127.0.0.1:$GW_PORT" \
		"$BENCH/create.lua"
	run rpc rpc_send
	run gw bench_wrk "gw-$r" "$DURATION" "http://127.0.0.1:$GW_PORT" \
		"$BENCH/notify.lua"
	bench_check_alive "during part 1, round $r"
done
echo "1. the gateway as shipped..." >&2
run ship bench_wrk ship "$DURATION" "http://127.0.0.1:$SHIP_PORT" \
	"$BENCH/notify.lua"
ship429=$(bench_metric "$SHIP_PORT" '^gateway_http_requests_total.*status="429"')
n_after=$(rows notifier.notifications)
bench_check_alive "during part 1"

c_rps=$(med create 1)
rpc_rps=$(med rpc 1)
gw_rps=$(med gw 1)
read -r s_rps s_p50 s_p99 s_err s_bad s_total <"$WORK/ship.runs"
s_ok=$(awk -v r="$s_rps" -v b="$s_bad" -v t="$s_total" \
	'BEGIN { if (t > 0) printf "%.0f\n", r * (t - b) / t; else print "?" }')

cat <<OUT
1. accepted Sends/s, $ROUNDS rounds of (a) (b) (c) in turn, ${DURATION}s each, medians
   (wrk -t2 -c64; nt_bench: 64 calls in flight on one RPC client)

| benchmark | per s | p50 ms | p99 ms | errors | non-2xx | / link creation | bar |
|---|---:|---:|---:|---:|---:|---:|---|
| (a) link creation, POST /api/v1/urls (baseline) | $c_rps | $(med create 2) | $(med create 3) | $(sum create 4) | $(sum create 5) | 1 | - |
| (b) Send over RPC (origin=service) | $rpc_rps | $(med rpc 2) | $(med rpc 3) | $(sum rpc 4) | - | $(bench_ratio "$rpc_rps" "$c_rps" "%.2f") | >= 0.5 and >= 5,000/s |
| (c) POST /api/v1/notifications, bench gateway | $gw_rps | $(med gw 2) | $(med gw 3) | $(sum gw 4) | $(sum gw 5) | $(bench_ratio "$gw_rps" "$c_rps" "%.2f") | >= 0.5 and >= 5,000/s |
| (d) the same, the gateway as shipped: all answers | $s_rps | $s_p50 | $s_p99 | $s_err | $s_bad | - | - |

(d) as shipped: $s_ok accepted/s; $s_bad of $s_total answers were not 2xx ($ship429 were 429: one
    address, the shipped per-ip rule of 6000 a minute, burst 300)
notifications accepted in 1.: $((n_after - n_before)) new rows in notifier.notifications;
    wrk and nt_bench counted $(awk '{ s += $6 } END { print s }' "$WORK/rpc.runs" "$WORK/gw.runs" "$WORK/ship.runs") answers (non-2xx included; calls in flight at the end are committed too)

every run of 1. (rps p50 p99 errors non2xx requests):
  (a) $(paste -sd'|' "$WORK/create.runs" | sed 's/|/  |  /g')
  (b) $(paste -sd'|' "$WORK/rpc.runs" | sed 's/|/  |  /g')
  (c) $(paste -sd'|' "$WORK/gw.runs" | sed 's/|/  |  /g')

OUT
}

# ---- 2. delivery
part2() { # LABEL BIN: part 2 with the notifier BIN
local label=$1 base
if [ "$2" != "$NT" ] || [ -n "$COMPARE" ]; then
	# shellcheck disable=SC2086 # NOTIFIER_BENCH_ENV: extra K=V words
	bench_respawn NT_PID "notifier-$label" env "${NT_ENV[@]}" \
		${NOTIFIER_BENCH_ENV:-} "$2"
	bench_wait_healthy "$NT" "$NOTIFIER_ADDR"
fi
if [ ! -f "$WORK/devices.done" ]; then
	echo "2. $NUSERS devices at the receiver..." >&2
	"$NTB" devices "$NOTIFIER_ADDR" "$NUSERS" "http://127.0.0.1:$RX_PORT/push" >&2
	touch "$WORK/devices.done"
fi
echo "2. ($label) $NNORMAL normal pushes, $NHIGH high ones at $RATE/s from half-way..." >&2
base=$(wc -l <"$WORK/rx/arrivals.log" 2>/dev/null || echo 0)
t_load=$(date +%s.%N)
"$NTB" load "$NOTIFIER_ADDR" "$NUSERS" "$NNORMAL" "$NHIGH" "$RATE" \
	"$WORK/sent.txt" 2>&1 | sed 's/^/   /' >&2 || true
want=$((base + NNORMAL + NHIGH))
waited=0
prev=-1
while :; do
	got=$(wc -l <"$WORK/rx/arrivals.log" 2>/dev/null || echo 0)
	[ "$got" -ge "$want" ] && break
	# Give up after 30 s without a new arrival.
	if [ "$got" = "$prev" ]; then
		waited=$((waited + 1))
		[ "$waited" -ge 30 ] && break
	else
		waited=0
	fi
	prev=$got
	sleep 1
done
sleep 0.5 # the log's last buffer
bench_check_alive "during part 2"

# Join sends and arrivals by id: "h|n send_s arrival_s" per arrival (the
# first arrival of an id counts; more are duplicates).
awk 'NR == FNR { kind[$2] = $1; sent[$2] = $3; next }
	($2 in kind) { if (seen[$2]++) { dup++; next }
		print kind[$2], sent[$2], $1 }
	END { printf "%d\n", dup > "/dev/stderr" }' \
	"$WORK/sent.txt" "$WORK/rx/arrivals.log" >"$WORK/joined.txt" \
	2>"$WORK/dups.txt"
dups=$(cat "$WORK/dups.txt")
sent_n=$(grep -c '^n ' "$WORK/sent.txt" || true)
sent_h=$(grep -c '^h ' "$WORK/sent.txt" || true)
# High: Send-to-arrival in ms, sorted.
awk '$1 == "h" { printf "%.3f\n", ($3 - $2) * 1000 }' "$WORK/joined.txt" |
	sort -g >"$WORK/high.ms"
pct() { # FILE P: the P-th percentile of the sorted numbers in FILE
	awk -v p="$2" '{ v[NR] = $1 } END {
		if (NR == 0) { print "?"; exit }
		i = int(NR * p / 100 + 0.999999); if (i < 1) i = 1; if (i > NR) i = NR
		printf "%.1f\n", v[i] }' "$1"
}
h_got=$(wc -l <"$WORK/high.ms")
h_p50=$(pct "$WORK/high.ms" 50)
h_p99=$(pct "$WORK/high.ms" 99)
h_max=$(tail -1 "$WORK/high.ms" 2>/dev/null || echo "?")
# Normal: arrivals, the first Send, the first and last arrival; how many
# were still on their way when the last high Send went out.
read -r n_got n_first_send n_first n_last n_after_high <<<"$(awk '
	$1 == "h" && $2 > lasth { lasth = $2 }
	$1 == "n" { n++; t[n] = $3
		if (fs == "" || $2 < fs) fs = $2
		if (fa == "" || $3 < fa) fa = $3
		if ($3 > la) la = $3 }
	END { c = 0; for (i = 1; i <= n; i++) if (t[i] > lasth) c++
		printf "%d %.3f %.3f %.3f %d\n", n, fs, fa, la, c }' "$WORK/joined.txt")"
drain=$(awk -v n="$n_got" -v a="$n_first" -v b="$n_last" \
	'BEGIN { if (b > a) printf "%.0f\n", (n - 1) / (b - a); else print "?" }')
e2e=$(awk -v n="$n_got" -v a="$n_first_send" -v b="$n_last" \
	'BEGIN { if (b > a) printf "%.0f\n", n / (b - a); else print "?" }')
load_s=$(awk -v a="$t_load" -v b="$n_last" 'BEGIN { printf "%.1f\n", b - a }')

cat <<OUT
2. delivery ($label: $2): $NUSERS users with one push device each at nginx (2 workers, 200, buffered log);
   $NNORMAL normal Sends (64 in flight); from half of them accepted on, $NHIGH high ones at $RATE/s beside them

| figure | value | bar |
|---|---:|---|
| high: Send to arrival p50 ms | $h_p50 | - |
| high: Send to arrival p99 ms | $h_p99 | < 100 |
| high: Send to arrival max ms | $h_max | - |
| normal: drain rate, arrivals/s (first to last arrival) | $drain | >= 2,000 |
| normal: Sends to last arrival, per s | $e2e | - |

accepted: $sent_n normal, $sent_h high; arrived: $n_got normal, $h_got high, $dups duplicate
arrivals; $n_after_high normal ones arrived after the last high Send (still draining: $([ "$n_after_high" -gt 0 ] && echo yes || echo NO));
from the first Send to the last arrival: ${load_s} s
OUT
}

# ---- the figures
col() { awk -v n="$2" '{ print $n }' "$WORK/$1.runs"; }
sum() { awk -v n="$2" '{ s += $n } END { print s + 0 }' "$WORK/$1.runs"; }
med() { col "$1" "$2" | bench_median; }
[ "$PART" = 2 ] || part1 >"$WORK/part1.out"
if [ "$PART" != 1 ]; then
	[ -z "$COMPARE" ] || part2 before "$COMPARE" >"$WORK/part2-before.out"
	part2 "$([ -n "$COMPARE" ] && echo after || echo this tree)" "$NT" \
		>"$WORK/part2.out"
fi
cat <<OUT

machine: $MACHINE_START
  (at the end: load average $(cut -d' ' -f1-3 /proc/loadavg))
command: $CMDLINE
tree: $DESC, $BUILD (Release); postgres fsync=$fsync synchronous_commit=$sync_commit
notifier: ${NT_ENV[*]} ${NOTIFIER_BENCH_ENV:-}(the rest at its defaults)
bench gateway: ${GW_BENCH_ENV[*]}
shipped gateway: defaults (GATEWAY_RATELIMIT=1, deploy/ratelimit-rules.yaml, caps 16384/1024)

OUT
[ "$PART" = 2 ] || cat "$WORK/part1.out"
[ "$PART" = 1 ] || [ -z "$COMPARE" ] || cat "$WORK/part2-before.out"
[ "$PART" = 1 ] || cat "$WORK/part2.out"
