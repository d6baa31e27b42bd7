#!/bin/bash
#
# deploy/local-up.sh: the whole stack on this machine, without containers.
#
#   1. installs the Debian packages of deploy/packages.txt that are missing (as
#      root; otherwise prints the apt-get command to run and stops);
#   2. builds the services in build-local/ (Release, no tests);
#   3. starts Redis and PostgreSQL 15 of its own, files under STACK_DIR (default
#      .run/ in the repo; PostgreSQL as an unprivileged user when run as root),
#      on ports 6379 and 5432, or free ones when those are taken, and creates
#      the database;
#   4. starts every service in the background (logs in STACK_DIR/logs/), waits
#      until each answers `<service> health`, and prints how to use the stack.
#
# Running it again starts only what is not running.  deploy/local-down.sh stops
# it all.  Environment variables given to this command reach the services
# (LOG_LEVEL, AUTH_JWT_SECRET, SHORTENER_CODE_MODE, GATEWAY_LISTEN, ...); a
# REDIS_URL or DATABASE_URL given means "use that one" and no Redis or
# PostgreSQL of our own is started.  Other settings:
#   STACK_DIR    where data, logs and pid files go      (default <repo>/.run)
#   BUILD_DIR    where the services are built           (default <repo>/build-local)
#   REDIS_PORT   port for our Redis                     (default 6379, else a free one)
#   PG_PORT      port for our PostgreSQL                (default 5432, else a free one)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=deploy/lib.sh
. "$ROOT/deploy/lib.sh"

STACK_DIR=$(stack_abs "${STACK_DIR:-$ROOT/.run}")
BUILD_DIR=$(stack_abs "${BUILD_DIR:-$ROOT/build-local}")
LOGS=$STACK_DIR/logs
mkdir -p "$LOGS"

say() {
	printf '%s\n' "$*"
}

# ------------------------------------------------------------ 1. packages

mapfile -t missing < <(stack_missing_packages)
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" -eq 0 ]; then
		say "installing ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "${missing[@]}" \
			>"$LOGS/apt.log" || {
			tail -n 30 "$LOGS/apt.log" >&2
			stack_die "apt-get install failed (log: $LOGS/apt.log)"
		}
	else
		stack_say "these Debian packages are missing: ${missing[*]}"
		stack_say "install them, then run this again:"
		stack_say "  sudo apt-get install -y ${missing[*]}"
		exit 1
	fi
fi

# ------------------------------------------------------------ 2. build

say "building in $BUILD_DIR (log: $LOGS/build.log)"
if ! { cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release \
	-DBUILD_TESTING=OFF -DSANITIZE= &&
	cmake --build "$BUILD_DIR" -j "${JOBS:-2}"; } >"$LOGS/build.log" 2>&1; then
	tail -n 40 "$LOGS/build.log" >&2
	stack_die "build failed (log: $LOGS/build.log)"
fi

# ------------------------------------------------------------ 3. stores

# choose_port NAME WANTED SAVED DEFAULT: prints the port to start NAME on: the
# one asked for (which must be free), else the last one used or the default if
# free, else a free one.
choose_port() {
	local name=$1 wanted=$2 saved=$3 def=$4 p
	if [ -n "$wanted" ]; then
		if stack_port_in_use "$wanted"; then
			stack_die "$name: port $wanted is taken"
		fi
		echo "$wanted"
		return 0
	fi
	for p in $saved $def; do
		if ! stack_port_in_use "$p"; then
			echo "$p"
			return 0
		fi
	done
	p=$(stack_free_port) || exit 1
	stack_say "$name: port $def is taken; using $p instead"
	echo "$p"
}

if [ -n "${REDIS_URL:-}" ]; then
	say "Redis: using REDIS_URL=$REDIS_URL from the environment"
elif stack_redis_running "$STACK_DIR/redis"; then
	port=$(stack_redis_port "$STACK_DIR/redis")
	say "Redis: already running on 127.0.0.1:$port"
	export REDIS_URL=redis://127.0.0.1:$port
else
	port=$(choose_port Redis "${REDIS_PORT:-}" \
		"$(stack_redis_port "$STACK_DIR/redis")" 6379)
	stack_redis_start "$STACK_DIR/redis" "$port" "appendonly yes" ||
		stack_die "Redis did not start"
	say "Redis: started on 127.0.0.1:$port (files in $STACK_DIR/redis)"
	export REDIS_URL=redis://127.0.0.1:$port
fi

if [ -n "${DATABASE_URL:-}" ]; then
	say "PostgreSQL: using DATABASE_URL=$DATABASE_URL from the environment"
else
	pgdir=$(stack_pg_dir "$STACK_DIR")
	if stack_pg_running "$pgdir"; then
		port=$(stack_pg_port "$pgdir")
		say "PostgreSQL: already running on 127.0.0.1:$port"
	else
		port=$(choose_port PostgreSQL "${PG_PORT:-}" \
			"$(stack_pg_port "$pgdir")" 5432)
		stack_pg_start "$pgdir" "$port" ||
			stack_die "PostgreSQL did not start"
		say "PostgreSQL: started on 127.0.0.1:$port (files in $pgdir)"
	fi
	stack_pg_create_db "$pgdir" "$port" ||
		stack_die "could not create the database"
	DATABASE_URL=$(stack_pg_url "$port")
	export DATABASE_URL
fi

# ------------------------------------------------------------ 4. services

# A <SERVICE>_LISTEN given without <SERVICE>_ADDR: clients (and the health
# probe) dial what the server binds, on loopback (NNG URLs as they are, HTTP
# host:port as http://127.0.0.1:port).
for svc in "${STACK_SERVICES[@]}"; do
	up=$(echo "$svc" | tr '[:lower:]' '[:upper:]')
	listen_var=${up}_LISTEN addr_var=${up}_ADDR
	if [ -z "${!listen_var:-}" ] || [ -n "${!addr_var:-}" ]; then
		continue
	fi
	case ${!listen_var} in
	*://*) export "$addr_var=${!listen_var/0.0.0.0/127.0.0.1}" ;;
	*:*) export "$addr_var=http://127.0.0.1:${!listen_var##*:}" ;;
	esac
done
GATEWAY_PORT=${GATEWAY_LISTEN:-0.0.0.0:8080}
GATEWAY_PORT=${GATEWAY_PORT##*:}
if [ -z "${PUBLIC_BASE_URL:-}" ] && [ "$GATEWAY_PORT" != 8080 ]; then
	export PUBLIC_BASE_URL=http://localhost:$GATEWAY_PORT
fi
BASE=${PUBLIC_BASE_URL:-http://localhost:8080}
# The local stack is for development: its services may run on development
# secrets (with a warning each).  Compose never sets this.
export BACKENDS_DEV_MODE=${BACKENDS_DEV_MODE:-1}

# service_pid NAME: prints the pid of the running service NAME started by us.
service_pid() {
	local pid bin=$BUILD_DIR/services/$1/$1
	pid=$(cat "$STACK_DIR/$1.pid" 2>/dev/null) || return 1
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
	[ "$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n 1)" = "$bin" ] ||
		return 1
	echo "$pid"
}

# The settings the services start with, for another shell: `. .run/env`
# (kept as it was while the first service still runs with them).
service_pid "${STACK_SERVICES[0]}" >/dev/null ||
{
	echo "# written by deploy/local-up.sh: the settings the services run with"
	for v in $(compgen -e | sort); do
		case $v in
		REDIS_URL | DATABASE_URL | PUBLIC_BASE_URL | AUTH_JWT_SECRET | \
			AUTH_JWT_SECRET_FILE | LOG_LEVEL | TRUSTED_PROXIES | \
			METRICS_TOKEN | REDIRECT_STATUS | RATELIMIT_RULES | \
			BACKENDS_DEV_MODE | RPC_TLS_DIR | RPC_ALLOW_PLAIN_REMOTE) ;;
		*)
			keep=
			for svc in "${STACK_SERVICES[@]}"; do
				up=$(echo "$svc" | tr '[:lower:]' '[:upper:]')
				case $v in "${up}"_*) keep=1 ;; esac
			done
			[ -n "$keep" ] || continue
			;;
		esac
		printf 'export %s=%q\n' "$v" "${!v}"
	done
} >"$STACK_DIR/env"

for svc in "${STACK_SERVICES[@]}"; do
	bin=$BUILD_DIR/services/$svc/$svc
	[ -x "$bin" ] || stack_die "$bin was not built"
	if pid=$(service_pid "$svc"); then
		say "$svc: already running (pid $pid)"
		case $(readlink "/proc/$pid/exe" 2>/dev/null) in
		*" (deleted)")
			say "  (it runs an older build: deploy/local-down.sh," \
				"then deploy/local-up.sh, to restart it)"
			;;
		esac
	else
		echo "=== $(date '+%F %T') started by deploy/local-up.sh" \
			>>"$LOGS/$svc.log"
		setsid "$bin" >>"$LOGS/$svc.log" 2>&1 </dev/null &
		pid=$!
		echo "$pid" >"$STACK_DIR/$svc.pid"
		say "$svc: started (pid $pid, log $LOGS/$svc.log)"
	fi
	ok=
	for _ in $(seq 60); do
		if ! kill -0 "$pid" 2>/dev/null; then
			tail -n 20 "$LOGS/$svc.log" >&2
			stack_die "$svc exited; its log is $LOGS/$svc.log"
		fi
		if "$bin" health --timeout 1000 >/dev/null 2>&1; then
			ok=1
			break
		fi
		sleep 0.5
	done
	if [ -z "$ok" ]; then
		tail -n 20 "$LOGS/$svc.log" >&2
		stack_die "$svc does not answer '$svc health' after 30 s" \
			"(log: $LOGS/$svc.log; deploy/local-down.sh stops the stack)"
	fi
	say "$svc: healthy"
done

GW=$BUILD_DIR/services/gateway/gateway
cat <<EOF

The stack is up.  Gateway: $BASE   Logs: $LOGS/
Settings for another shell: . $STACK_DIR/env    Stop: deploy/local-down.sh

  # shorten a link
  curl -sS -X POST $BASE/api/v1/urls -H 'Content-Type: application/json' \\
       -d '{"long_url": "https://example.com/a/long/path"}'
  # follow it (use the "code" printed above)
  curl -sSi $BASE/CODE
  # a token for user alice (in another shell: . $STACK_DIR/env first), then a
  # link of hers with an alias, her links, the link's stats
  TOKEN=\$($GW token --user alice)
  curl -sS -X POST $BASE/api/v1/urls -H "Authorization: Bearer \$TOKEN" \\
       -H 'Content-Type: application/json' \\
       -d '{"long_url": "https://example.com/", "custom_alias": "alice-home"}'
  curl -sS -H "Authorization: Bearer \$TOKEN" '$BASE/api/v1/urls?limit=10'
  curl -sS -H "Authorization: Bearer \$TOKEN" $BASE/api/v1/urls/alice-home
  # a notification to alice's inbox (an operator's token: role=admin),
  # then her inbox, and the notification's delivery state
  ADMIN=\$($GW token --user ops --claim role=admin)
  curl -sS -X POST $BASE/api/v1/notifications -H "Authorization: Bearer \$ADMIN" \\
       -H 'Content-Type: application/json' \\
       -d '{"user": "alice", "type": "video.ready", "title": "Your video is ready",
            "channels": ["inapp"], "priority": "high"}'
  curl -sS -H "Authorization: Bearer \$TOKEN" $BASE/api/v1/me/notifications
  curl -sS -H "Authorization: Bearer \$ADMIN" $BASE/api/v1/notifications/ID
  # health of every service
  curl -sS $BASE/healthz
EOF
