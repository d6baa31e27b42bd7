#!/bin/bash
#
# deploy/local-down.sh: stops what deploy/local-up.sh started: the services
# (SIGTERM, so that they drain and flush, then SIGKILL after 20 s), then Redis
# and PostgreSQL.  Data stays in STACK_DIR (default <repo>/.run) for the next
# local-up.sh; with --purge, it is deleted too.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=deploy/lib.sh
. "$ROOT/deploy/lib.sh"

STACK_DIR=$(stack_abs "${STACK_DIR:-$ROOT/.run}")
PURGE=
case ${1:-} in
--purge) PURGE=1 ;;
"") ;;
*)
	echo "usage: $0 [--purge]" >&2
	exit 1
	;;
esac

if [ ! -d "$STACK_DIR" ]; then
	echo "nothing to stop: $STACK_DIR does not exist"
	exit 0
fi

# stop_pidfile NAME FILE: stops the process in FILE (TERM, then KILL).
stop_pidfile() {
	local name=$1 f=$2 pid i
	pid=$(cat "$f" 2>/dev/null) || pid=
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for i in $(seq 200); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			kill -KILL "$pid" 2>/dev/null || true
			echo "$name: killed (pid $pid did not stop within 20 s)"
		else
			echo "$name: stopped"
		fi
	fi
	rm -f "$f"
}

# Services in reverse start order, then any other pid file left behind (a
# service since removed from the list).
for ((i = ${#STACK_SERVICES[@]} - 1; i >= 0; i--)); do
	svc=${STACK_SERVICES[$i]}
	stop_pidfile "$svc" "$STACK_DIR/$svc.pid"
done
for f in "$STACK_DIR"/*.pid; do
	[ -e "$f" ] || continue
	svc=$(basename "$f" .pid)
	stop_pidfile "$svc" "$f"
done

if stack_redis_running "$STACK_DIR/redis"; then
	stack_redis_stop "$STACK_DIR/redis"
	echo "Redis: stopped"
fi
if [ -e "$STACK_DIR/pg" ]; then
	pgdir=$(readlink -f "$STACK_DIR/pg")
	if stack_pg_running "$pgdir"; then
		stack_pg_stop "$pgdir"
		echo "PostgreSQL: stopped"
	fi
fi

if [ -n "$PURGE" ]; then
	if [ -L "$STACK_DIR/pg" ]; then
		rm -rf "$(readlink -f "$STACK_DIR/pg")"
	fi
	rm -rf "$STACK_DIR"
	echo "deleted $STACK_DIR"
fi
