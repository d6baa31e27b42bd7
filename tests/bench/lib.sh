# shellcheck shell=bash
#
# tests/bench/lib.sh: what the benchmark scripts share.  Source it after
# deploy/lib.sh.  bench_init makes the work directory and sets the trap that
# stops everything the script started (services, nginx, Redis, PostgreSQL).

BENCH_PIDS=()
PG_DIR=

bench_cleanup() {
	set +e
	for p in "${BENCH_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${BENCH_PIDS[@]}"; do wait "$p" 2>/dev/null; done
	[ -f "$WORK/ngx/nginx.pid" ] &&
		kill -QUIT "$(cat "$WORK/ngx/nginx.pid")" 2>/dev/null
	[ -d "$WORK/redis" ] && stack_redis_stop "$WORK/redis"
	[ -n "$PG_DIR" ] && stack_pg_stop "$PG_DIR"
	rm -rf "$WORK"
}

# bench_init NAME: WORK=/tmp/NAME.XXXXXX, cleaned up on exit.
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

# bench_spawn NAME CMD...: runs CMD in the background, logging to
# $WORK/NAME.log (extra environment: prefix CMD with env K=V).
bench_spawn() {
	local name=$1
	shift
	"$@" >"$WORK/$name.log" 2>&1 &
	BENCH_PIDS+=($!)
}

# bench_respawn PIDVAR NAME CMD...: stops the process whose pid PIDVAR
# holds (if any), starts CMD as bench_spawn NAME would, and sets PIDVAR.
bench_respawn() {
	local var=$1 name=$2 old
	shift 2
	old=${!var:-}
	if [ -n "$old" ]; then
		kill -TERM "$old" && wait "$old" || true
	fi
	bench_spawn "$name" "$@"
	printf -v "$var" '%s' "${BENCH_PIDS[-1]}"
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
	created=$(BENCH_PORT=$port xargs -P 8 -I{} sh -c 'curl -s -o /dev/null \
		-w "%{http_code}\n" -H "Content-Type: application/json" \
		-d "{\"long_url\":\"https://example.com/seed/{}\",\"custom_alias\":\"{}\"}" \
		"http://127.0.0.1:$BENCH_PORT/api/v1/urls"' <"$WORK/codes.txt" |
		grep -c '^201$' || true)
	[ "$created" -eq "$n" ] ||
		stack_die "only $created of $n links created"
	for p in "$@"; do
		xargs -P 8 -I{} curl -s -o /dev/null "http://127.0.0.1:$p/{}" \
			<"$WORK/codes.txt"
	done
}
