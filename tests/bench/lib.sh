# shellcheck shell=bash
#
# tests/bench/lib.sh: what the benchmark scripts share.  Source it after
# deploy/lib.sh.  bench_init makes the work directory and sets the trap that
# stops everything the script started (services, nginx, Redis, PostgreSQL).

BENCH_PIDS=()
# Benchmarks run on this machine only: development secrets are fine.
export BACKENDS_DEV_MODE=1
declare -A BENCH_NAME=() # pid -> NAME, for what bench_spawn started
PG_DIR=

bench_cleanup() {
	set +e
	for p in "${BENCH_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${BENCH_PIDS[@]}"; do wait "$p" 2>/dev/null; done
	[ -f "$WORK/ngx/nginx.pid" ] &&
		kill -QUIT "$(cat "$WORK/ngx/nginx.pid")" 2>/dev/null
	[ -d "$WORK/redis" ] && stack_redis_stop "$WORK/redis"
	[ -n "$PG_DIR" ] && stack_pg_stop "$PG_DIR"
	if [ -n "${BENCH_KEEP:-}" ]; then
		echo "logs and wrk outputs kept in $WORK" >&2
	else
		rm -rf "$WORK"
	fi
}

# bench_init NAME: WORK=/tmp/NAME.XXXXXX, cleaned up on exit (kept, for a
# look at the logs, when BENCH_KEEP is set).
bench_init() {
	WORK=$(mktemp -d "/tmp/$1.XXXXXX")
	chmod 755 "$WORK"
	trap bench_cleanup EXIT INT TERM
}

# bench_redis: a private Redis; exports REDIS_URL.
bench_redis() {
	local port
	port=$(stack_free_port)
	stack_redis_start "$WORK/redis" "$port" >/dev/null
	# shellcheck disable=SC2034 # for the scripts that source this
	REDIS_PORT=$port
	export REDIS_URL=redis://127.0.0.1:$port
}

# bench_pg: a private PostgreSQL with default durability; exports
# DATABASE_URL.
bench_pg() {
	local port
	port=$(stack_free_port)
	PG_DIR=$(stack_pg_dir "$WORK")
	stack_pg_start "$PG_DIR" "$port" >/dev/null
	stack_pg_create_db "$PG_DIR" "$port" >/dev/null
	DATABASE_URL=$(stack_pg_url "$port")
	export DATABASE_URL
}

# bench_ports VAR...: sets each VAR to a free TCP port, all different
# (nothing listens on them yet, so stack_free_port alone could repeat one).
bench_ports() {
	local v p used=" "
	for v in "$@"; do
		while :; do
			p=$(stack_free_port) || return 1
			case $used in *" $p "*) ;; *) break ;; esac
		done
		used+="$p "
		printf -v "$v" '%s' "$p"
	done
}

# bench_spawn NAME CMD...: runs CMD in the background, logging to
# $WORK/NAME.log (extra environment: prefix CMD with env K=V).
bench_spawn() {
	local name=$1
	shift
	"$@" >"$WORK/$name.log" 2>&1 &
	BENCH_PIDS+=($!)
	BENCH_NAME[$!]=$name
}

# bench_check_alive WHEN: dies (after printing the end of its log) if a
# process bench_spawn started has exited since: figures taken without it
# would mean nothing.  WHEN says where the script is, for the message.
bench_check_alive() {
	local p
	for p in "${BENCH_PIDS[@]}"; do
		[ -n "${BENCH_NAME[$p]:-}" ] || continue
		kill -0 "$p" 2>/dev/null && continue
		stack_say "${BENCH_NAME[$p]} (pid $p) exited $1; the end of its log:"
		tail -n 20 "$WORK/${BENCH_NAME[$p]}.log" >&2 || true
		stack_die "${BENCH_NAME[$p]} exited $1"
	done
}

# bench_respawn PIDVAR NAME CMD...: stops the process whose pid PIDVAR
# holds (if any), starts CMD as bench_spawn NAME would, and sets PIDVAR.
bench_respawn() {
	local var=$1 name=$2 old
	shift 2
	old=${!var:-}
	if [ -n "$old" ]; then
		if kill -TERM "$old"; then
			wait "$old" || true
		fi
		bench_forget "$old"
	fi
	bench_spawn "$name" "$@"
	printf -v "$var" '%s' "${BENCH_PIDS[-1]}"
}

# bench_forget PID: drops PID (a process that has ended and been waited
# for) from BENCH_PIDS, so that the cleanup never signals a reused pid.
bench_forget() {
	local p keep=()
	for p in "${BENCH_PIDS[@]}"; do
		[ "$p" = "$1" ] || keep+=("$p")
	done
	BENCH_PIDS=("${keep[@]}")
	unset "BENCH_NAME[$1]"
}

# bench_wait_healthy BIN ADDR: polls `BIN health` for up to 20 s.
bench_wait_healthy() {
	for _ in $(seq 200); do
		"$1" health --addr "$2" --timeout 500 >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	stack_die "$1 did not become healthy; logs in $WORK"
}

# bench_seed_links PORT N PREFIX WARM_PORT...: creates N links through the
# gateway on PORT under aliases PREFIX<run><i> (so the codes are known
# without parsing replies), writes them to $WORK/codes.txt, and follows
# each once through every WARM_PORT gateway so they are cached.
bench_seed_links() {
	local port=$1 n=$2 prefix=$3 created run p
	shift 3
	echo "creating $n links..." >&2
	run=$(printf '%05x' $((RANDOM * 32768 + RANDOM)) | cut -c1-5)
	for i in $(seq "$n"); do
		printf '%s%s%06d\n' "$prefix" "$run" "$i"
	done >"$WORK/codes.txt"
	# shellcheck disable=SC2016 # expanded by sh -c, per code
	created=$(BENCH_PORT=$port xargs -P 8 -I{} sh -c 'curl -s -o /dev/null \
		-w "%{http_code}\n" -H "Content-Type: application/json" \
		-d "{\"long_url\":\"https://example.com/seed/{}\",\"custom_alias\":\"{}\"}" \
		"http://127.0.0.1:$BENCH_PORT/api/v1/urls"' <"$WORK/codes.txt" |
		grep -c '^201$' || true)
	[ "$created" -eq "$n" ] ||
		stack_die "only $created of $n links created"
	bench_warm_links "$@"
}

# bench_warm_links PORT...: follows each code of $WORK/codes.txt once
# through the gateway on each PORT, so that it has them cached.
bench_warm_links() {
	local p
	for p in "$@"; do
		xargs -P 8 -I{} curl -s -o /dev/null "http://127.0.0.1:$p/{}" \
			<"$WORK/codes.txt"
	done
}

# ---------------------------------------------------------------- wrk runs

# bench_wrk_start NAME SECONDS URL SCRIPT [WRK_ARGS...]: starts wrk (default
# -t2 -c64) in the background with the Lua SCRIPT against URL for SECONDS,
# output in $WORK/NAME.wrk; CODES=$WORK/codes.txt.  Its pid goes to
# BENCH_WRK_PID (and BENCH_PIDS, so an interrupted run stops it too).
bench_wrk_start() {
	local name=$1 secs=$2 url=$3 script=$4
	shift 4
	[ $# -gt 0 ] || set -- -t2 -c64
	CODES=$WORK/codes.txt wrk "$@" -d"${secs}s" -s "$script" "$url" \
		>"$WORK/$name.wrk" 2>&1 &
	BENCH_WRK_PID=$!
	BENCH_PIDS+=("$BENCH_WRK_PID")
}

# bench_wrk_wait PID NAME: waits for the wrk started as NAME and prints its
# figures (bench_wrk_parse).
bench_wrk_wait() {
	wait "$1" || true
	bench_forget "$1"
	bench_wrk_parse "$WORK/$2.wrk"
}

# bench_wrk NAME SECONDS URL SCRIPT [WRK_ARGS...]: bench_wrk_start, then
# bench_wrk_wait.
bench_wrk() {
	bench_wrk_start "$@"
	bench_wrk_wait "$BENCH_WRK_PID" "$1"
}

# bench_wrk_parse FILE: prints "rps p50_ms p99_ms socket_errors non2xx
# requests" from wrk's output in FILE; the percentiles come from the
# script's done() line (p50_ms=... p99_ms=...); a figure that is missing
# (wrk failed) is "?".
bench_wrk_parse() {
	awk '
	/^Requests\/sec:/ { rps = $2 }
	/ requests in / { req = $1 }
	/Non-2xx or 3xx responses:/ { bad = $NF }
	/Socket errors:/ { gsub(/,/, ""); err = $4 + $6 + $8 + $10 }
	match($0, /p50_ms=[0-9.]+/) { p50 = substr($0, RSTART + 7, RLENGTH - 7) }
	match($0, /p99_ms=[0-9.]+/) { p99 = substr($0, RSTART + 7, RLENGTH - 7) }
	END {
		if (rps == "") { rps = "?"; req = "?" }
		printf "%s %s %s %d %d %s\n", rps, p50 == "" ? "?" : p50,
		    p99 == "" ? "?" : p99, err, bad, req
	}' "$1"
}

# bench_median: the median of the numbers on stdin, one a line ("?" lines
# are skipped; "?" if none is left).
bench_median() {
	grep -E '^-?[0-9.]+$' | sort -g | awk '
	{ v[NR] = $1 }
	END {
		if (NR == 0) print "?"
		else if (NR % 2) print v[(NR + 1) / 2]
		else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2
	}'
}

# bench_ratio A B [FMT]: A / B (default "%.3f"), "?" when either is not a
# number or B is 0.
bench_ratio() {
	awk -v a="$1" -v b="$2" -v f="${3:-%.3f}" 'BEGIN {
		if (a !~ /^-?[0-9.]+$/ || b !~ /^-?[0-9.]+$/ || b + 0 == 0)
			print "?"
		else printf f "\n", a / b }'
}

# bench_diff A B: A - B as "%+.3f", "?" when either is not a number.
bench_diff() {
	awk -v a="$1" -v b="$2" 'BEGIN {
		if (a !~ /^-?[0-9.]+$/ || b !~ /^-?[0-9.]+$/) print "?"
		else printf "%+.3f\n", a - b }'
}

# bench_metric PORT REGEX: the sum of the Prometheus series on
# http://127.0.0.1:PORT/metrics whose line matches the extended REGEX
# ("?" when none does or the gateway does not answer).
bench_metric() {
	curl -s --max-time 5 "http://127.0.0.1:$1/metrics" 2>/dev/null |
		awk -v re="$2" '$0 !~ /^#/ && $0 ~ re { s += $NF; n++ }
			END { if (n) printf "%.0f\n", s; else print "?" }'
}

# bench_machine: "N cores, CPU model, load average a b c".
bench_machine() {
	local cpu
	cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
	printf '%s cores, %s, %s GiB, load average %s\n' "$(nproc)" \
		"${cpu:-unknown cpu}" \
		"$(awk '/MemTotal/{printf "%.0f", $2/1048576}' /proc/meminfo)" \
		"$(cut -d' ' -f1-3 /proc/loadavg)"
}

# bench_cmdline ARGS...: the command line that ran this script, quoted.
bench_cmdline() {
	local s=
	[ $# -eq 0 ] || s=$(printf ' %q' "$@")
	printf '%s%s\n' "${0#"$ROOT"/}" "$s"
}
