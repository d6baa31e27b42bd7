# shellcheck shell=bash
#
# deploy/lib.sh: the shell functions that deploy/local-up.sh, deploy/local-down.sh,
# tests/run.sh and .ci/run share, so that starting Redis and PostgreSQL is written
# once.  Source it from bash; it defines functions and a few variables and runs
# nothing.
#
# Redis runs as whoever calls (root included) as a daemon with its config, data,
# log and pid file in a directory of the caller's.  PostgreSQL refuses to run as
# root, so when the caller is root, initdb/pg_ctl/postgres run as an unprivileged
# system user (STACK_PG_USER, created on first use) that owns the data directory
# and a unix socket directory of its own.  Both listen on 127.0.0.1 only.
#
# Settings (environment):
#   PG_BIN        PostgreSQL server binaries  (default /usr/lib/postgresql/15/bin)
#   PG_RUN_USER   unprivileged user for PostgreSQL when run as root
#                 (default backends-pg)

# The services, in start order (each one's dependencies before it).  Adding a
# service to the local stack is adding its name here.
# shellcheck disable=SC2034 # used by the scripts that source this
STACK_SERVICES=(shortener ratelimiter cache notifier gateway)

STACK_PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
STACK_PG_USER=${PG_RUN_USER:-backends-pg}
# The role and database every service uses (DATABASE_URL's defaults).
STACK_DB_USER=backends
STACK_DB_PASSWORD=backends
STACK_DB_NAME=backends

stack_say() {
	printf '%s\n' "$*" >&2
}

stack_die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

# stack_packages [SECTION]...: prints the package names that
# deploy/packages.txt lists in the given sections ("build", "test", "run",
# "bench"), or in all of them.
stack_packages() {
	local f
	f=$(dirname "${BASH_SOURCE[0]}")/packages.txt
	sed -e 's/#.*//' "$f" | awk -v want=" $* " '
		/^[[:space:]]*\[[a-z]+\][[:space:]]*$/ {
			gsub(/[][[:space:]]/, ""); section = $0; next
		}
		want == "  " || index(want, " " section " ") {
			for (i = 1; i <= NF; i++) print $i
		}'
}

# stack_missing_packages: prints the listed packages that are not installed.
stack_missing_packages() {
	local p
	for p in $(stack_packages); do
		if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null |
			grep -q '^install ok installed$'; then
			echo "$p"
		fi
	done
}

# stack_port_in_use PORT: true if something accepts TCP connections on
# 127.0.0.1:PORT.
stack_port_in_use() {
	timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# stack_free_port: prints a TCP port that nothing listens on, below Linux's
# ephemeral range (32768-60999) so that outgoing connections do not take it.
# Another process may still take it before we bind it: callers retry.
stack_free_port() {
	local p
	for _ in $(seq 200); do
		p=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
		if ! stack_port_in_use "$p"; then
			echo "$p"
			return 0
		fi
	done
	stack_say "no free TCP port found"
	return 1
}

# stack_abs PATH: prints PATH made absolute (PATH need not exist).
stack_abs() {
	case $1 in
	/*) echo "$1" ;;
	*) echo "$PWD/$1" ;;
	esac
}

# ---------------------------------------------------------------- Redis

# stack_redis_server: prints the path of redis-server.
stack_redis_server() {
	command -v redis-server 2>/dev/null ||
		{ [ -x /usr/bin/redis-server ] && echo /usr/bin/redis-server; } ||
		{
			stack_say "redis-server not found (apt-get install redis-server)"
			return 1
		}
}

# stack_redis_ping PORT: true if a Redis server answers PING on 127.0.0.1:PORT.
stack_redis_ping() {
	[ "$(timeout 3 redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = PONG ]
}

# stack_redis_start DIR PORT ["directive value"]...: starts redis-server as a
# daemon on 127.0.0.1:PORT, with redis.conf, redis.log, redis.pid and data/ in
# DIR (created if missing); extra arguments are added to redis.conf as lines
# (e.g. "appendonly yes").  Restarting it later with `redis-server DIR/redis.conf`
# gives the same server.  Waits until it answers PING; on failure (port taken,
# ...) prints its log, leaves nothing running and returns 1.
stack_redis_start() {
	local dir port srv line
	dir=$(stack_abs "$1")
	port=$2
	shift 2
	srv=$(stack_redis_server) || return 1
	mkdir -p "$dir/data" || return 1
	{
		echo "# written by deploy/lib.sh"
		echo "bind 127.0.0.1"
		echo "port $port"
		echo "daemonize yes"
		echo "pidfile \"$dir/redis.pid\""
		echo "logfile \"$dir/redis.log\""
		echo "dir \"$dir/data\""
		for line in "$@"; do
			echo "$line"
		done
	} >"$dir/redis.conf" || return 1
	rm -f "$dir/redis.pid"
	"$srv" "$dir/redis.conf" || return 1
	for _ in $(seq 100); do
		if stack_redis_ping "$port"; then
			return 0
		fi
		sleep 0.1
	done
	stack_say "redis-server did not come up on port $port; its log:"
	tail -n 20 "$dir/redis.log" >&2 2>/dev/null || true
	stack_redis_stop "$dir"
	return 1
}

# stack_redis_port DIR: prints the port of the Redis configured in DIR.
stack_redis_port() {
	sed -n 's/^port \([0-9]*\)$/\1/p' "$1/redis.conf" 2>/dev/null
}

# stack_redis_running DIR: true if the Redis started in DIR is alive.
stack_redis_running() {
	local pid
	pid=$(cat "$1/redis.pid" 2>/dev/null) || return 1
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# stack_redis_stop DIR [PORT]: stops the Redis started in DIR (TERM, then KILL
# after 10 s).  With PORT, a Redis server still answering there afterwards (one
# that a test restarted by hand, say) is shut down too.
stack_redis_stop() {
	local dir=$1 port=${2:-} pid i
	pid=$(cat "$dir/redis.pid" 2>/dev/null) || pid=
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null
		for i in $(seq 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$dir/redis.pid"
	if [ -n "$port" ] && stack_redis_ping "$port"; then
		timeout 5 redis-cli -h 127.0.0.1 -p "$port" shutdown nosave \
			>/dev/null 2>&1 || true
	fi
	return 0
}

# ---------------------------------------------------------------- PostgreSQL

# stack_pg_as CMD...: runs CMD as the PostgreSQL user: the caller itself, or
# STACK_PG_USER when the caller is root (from /, so that a working directory the
# user cannot enter does not trouble initdb or pg_ctl).
stack_pg_as() {
	if [ "$(id -u)" -eq 0 ]; then
		(cd / && runuser -u "$STACK_PG_USER" -- \
			env HOME=/ PGSYSCONFDIR=/nonexistent "$@")
	else
		"$@"
	fi
}

# stack_pg_ensure_user: as root, creates the unprivileged system user
# STACK_PG_USER if it does not exist.  A no-op for other callers.
stack_pg_ensure_user() {
	[ "$(id -u)" -eq 0 ] || return 0
	id -u "$STACK_PG_USER" >/dev/null 2>&1 && return 0
	stack_say "creating system user $STACK_PG_USER to run PostgreSQL"
	useradd --system --user-group --no-create-home \
		--home-dir /nonexistent --shell /usr/sbin/nologin \
		"$STACK_PG_USER" ||
		id -u "$STACK_PG_USER" >/dev/null 2>&1
}

# stack_pg_dir BASE: prints the directory that holds PostgreSQL's files for a
# stack whose directory is BASE: BASE/pg, or, when the caller is root and
# STACK_PG_USER cannot reach BASE (a checkout under /root, say), a directory
# under /var/lib/STACK_PG_USER with BASE/pg a symlink to it.  Creates it and
# gives it to the PostgreSQL user.
stack_pg_dir() {
	local base dir alt
	base=$(stack_abs "$1")
	mkdir -p "$base" || return 1
	dir=$base/pg
	if [ -L "$dir" ]; then
		readlink -f "$dir"
		return 0
	fi
	if [ "$(id -u)" -eq 0 ]; then
		stack_pg_ensure_user || return 1
		if [ ! -e "$dir" ] && ! stack_pg_as test -x "$base"; then
			alt=/var/lib/$STACK_PG_USER/$(printf '%s' "$base" |
				cksum | cut -d' ' -f1)
			mkdir -p "$alt" || return 1
			chown "$STACK_PG_USER:" "/var/lib/$STACK_PG_USER" "$alt"
			chmod 0755 "/var/lib/$STACK_PG_USER"
			ln -s "$alt" "$dir" || return 1
			stack_say "note: $STACK_PG_USER cannot enter $base;" \
				"PostgreSQL's files are in $alt"
			echo "$alt"
			return 0
		fi
		mkdir -p "$dir" && chown "$STACK_PG_USER:" "$dir" || return 1
		if ! stack_pg_as test -w "$dir"; then
			stack_say "$STACK_PG_USER cannot write $dir"
			return 1
		fi
	else
		mkdir -p "$dir" || return 1
	fi
	echo "$dir"
}

# stack_pg_sockdir DIR: prints the unix socket directory of the PostgreSQL
# whose files are in DIR (DIR/sock, or a short one under /tmp when that path
# would be too long for a unix socket), creating it.
stack_pg_sockdir() {
	local dir=$1 s
	if [ -s "$dir/sockdir" ] && [ -d "$(cat "$dir/sockdir")" ]; then
		cat "$dir/sockdir"
		return 0
	fi
	s=$dir/sock
	if [ ${#s} -gt 80 ]; then
		s=$(mktemp -d /tmp/pgsock.XXXXXX) || return 1
	else
		mkdir -p "$s" || return 1
	fi
	chmod 0755 "$s"
	[ "$(id -u)" -ne 0 ] || chown "$STACK_PG_USER:" "$s"
	echo "$s" >"$dir/sockdir"
	echo "$s"
}

# stack_pg_start DIR PORT: initialises (first time) and starts PostgreSQL with
# its data in DIR/data, listening on 127.0.0.1:PORT and on a unix socket in its
# own socket directory, log in DIR/postgres.log; waits until it accepts
# connections.  DIR comes from stack_pg_dir.  Local socket connections are
# trusted, TCP ones need a password (scram-sha-256).  Returns 1 (after printing
# the log) when it cannot start, e.g. because the port is taken.
stack_pg_start() {
	local dir port sock
	dir=$(stack_abs "$1")
	port=$2
	if [ ! -x "$STACK_PG_BIN/postgres" ]; then
		stack_say "PostgreSQL 15 not found in $STACK_PG_BIN" \
			"(apt-get install postgresql)"
		return 1
	fi
	stack_pg_ensure_user || return 1
	sock=$(stack_pg_sockdir "$dir") || return 1
	if [ ! -s "$dir/data/PG_VERSION" ]; then
		rm -rf "$dir/data"
		if ! stack_pg_as "$STACK_PG_BIN/initdb" -D "$dir/data" \
			-U postgres -E UTF8 --locale=C --auth-local=trust \
			--auth-host=scram-sha-256 --no-instructions \
			>"$dir/initdb.log" 2>&1; then
			stack_say "initdb failed:"
			cat "$dir/initdb.log" >&2
			return 1
		fi
		echo "include_if_exists = 'stack.conf'" >>"$dir/data/postgresql.conf"
	fi
	# Rewritten at every start: the port may change between runs.
	stack_pg_as sh -c "cat >'$dir/data/stack.conf'" <<-EOF || return 1
		# written by deploy/lib.sh at every start
		listen_addresses = '127.0.0.1'
		port = $port
		unix_socket_directories = '$sock'
		max_connections = 200
	EOF
	if ! stack_pg_as "$STACK_PG_BIN/pg_ctl" -D "$dir/data" \
		-l "$dir/postgres.log" -w -t 60 start >/dev/null; then
		stack_say "PostgreSQL did not start on port $port; its log:"
		tail -n 20 "$dir/postgres.log" >&2 2>/dev/null || true
		stack_pg_stop "$dir"
		return 1
	fi
}

# stack_pg_running DIR: true if the PostgreSQL whose files are in DIR runs.
stack_pg_running() {
	[ -s "$1/data/postmaster.pid" ] &&
		stack_pg_as "$STACK_PG_BIN/pg_ctl" -D "$1/data" status \
			>/dev/null 2>&1
}

# stack_pg_port DIR: prints the port the PostgreSQL in DIR was last set to.
stack_pg_port() {
	sed -n 's/^port = \([0-9]*\)$/\1/p' "$1/data/stack.conf" 2>/dev/null
}

# stack_pg_psql DIR PORT ARGS...: psql as the superuser over the unix socket.
stack_pg_psql() {
	local dir=$1 port=$2 sock
	shift 2
	sock=$(cat "$dir/sockdir") || return 1
	"$STACK_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$sock" -p "$port" \
		-U postgres -d postgres "$@"
}

# stack_pg_create_db DIR PORT: creates the role and database the services use
# (backends/backends, database backends) unless they exist.
stack_pg_create_db() {
	local dir=$1 port=$2
	if [ "$(stack_pg_psql "$dir" "$port" -tAc \
		"SELECT 1 FROM pg_roles WHERE rolname = '$STACK_DB_USER'")" != 1 ]; then
		stack_pg_psql "$dir" "$port" -c "CREATE ROLE $STACK_DB_USER LOGIN
			PASSWORD '$STACK_DB_PASSWORD'" || return 1
	fi
	if [ "$(stack_pg_psql "$dir" "$port" -tAc \
		"SELECT 1 FROM pg_database WHERE datname = '$STACK_DB_NAME'")" != 1 ]; then
		stack_pg_psql "$dir" "$port" -c "CREATE DATABASE $STACK_DB_NAME
			OWNER $STACK_DB_USER" || return 1
	fi
}

# stack_pg_reset_db DIR PORT: drops the services' database (closing its
# connections) and creates it empty again.
stack_pg_reset_db() {
	local dir=$1 port=$2
	stack_pg_psql "$dir" "$port" \
		-c "DROP DATABASE IF EXISTS $STACK_DB_NAME WITH (FORCE)" &&
		stack_pg_create_db "$dir" "$port"
}

# stack_pg_url PORT: prints the DATABASE_URL of the services' database.
stack_pg_url() {
	echo "postgresql://$STACK_DB_USER:$STACK_DB_PASSWORD@127.0.0.1:$1/$STACK_DB_NAME"
}

# stack_pg_stop DIR: stops the PostgreSQL whose files are in DIR (fast
# shutdown, then KILL after 30 s); removes a socket directory made under /tmp.
stack_pg_stop() {
	local dir=$1 pid sock
	if [ -s "$dir/data/postmaster.pid" ]; then
		pid=$(head -n 1 "$dir/data/postmaster.pid")
		if ! stack_pg_as "$STACK_PG_BIN/pg_ctl" -D "$dir/data" -m fast \
			-w -t 30 stop >/dev/null 2>&1; then
			if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
				kill -KILL "$pid" 2>/dev/null || true
				stack_say "PostgreSQL (pid $pid) killed"
			fi
		fi
	fi
	sock=$(cat "$dir/sockdir" 2>/dev/null) || sock=
	case $sock in
	/tmp/pgsock.*) rm -rf "$sock" "$dir/sockdir" ;;
	esac
	return 0
}
