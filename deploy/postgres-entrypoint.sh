#!/bin/bash
#
# Entry point of the postgres image.  As root it only hands the data directory
# to the postgres user and runs itself again as that user.  At the first start
# (no initialised data directory) it runs initdb, opens TCP with password
# (scram-sha-256) authentication, creates POSTGRES_USER with POSTGRES_PASSWORD
# and the database POSTGRES_DB owned by it, using a server that listens on the
# unix socket only, so that no client sees a half-made database.  Then it runs
# the command (postgres) in its place.
set -euo pipefail
: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_USER:=backends}"
: "${POSTGRES_PASSWORD:=backends}"
: "${POSTGRES_DB:=backends}"
export PGDATA

if [ "$(id -u)" -eq 0 ]; then
	mkdir -p "$PGDATA" /var/run/postgresql
	chown postgres:postgres "$PGDATA" /var/run/postgresql
	chmod 0700 "$PGDATA"
	exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ ! -e "$PGDATA/.initialised" ]; then
	# A first start that was interrupted leaves no marker: start over.
	find "$PGDATA" -mindepth 1 -delete
	initdb -D "$PGDATA" -U postgres -E UTF8 --locale=C \
		--auth-local=trust --auth-host=scram-sha-256 --no-instructions
	cat >>"$PGDATA/postgresql.conf" <<-CONF
		listen_addresses = '*'
		max_connections = 200
	CONF
	cat >>"$PGDATA/pg_hba.conf" <<-HBA
		host all all 0.0.0.0/0 scram-sha-256
		host all all ::/0 scram-sha-256
	HBA
	pg_ctl -D "$PGDATA" -w -o "-c listen_addresses=''" start
	psql -X -v ON_ERROR_STOP=1 -U postgres -d postgres \
		-v user="$POSTGRES_USER" -v password="$POSTGRES_PASSWORD" \
		-v db="$POSTGRES_DB" <<-'SQL'
		CREATE ROLE :"user" LOGIN PASSWORD :'password';
		CREATE DATABASE :"db" OWNER :"user";
	SQL
	pg_ctl -D "$PGDATA" -m fast -w stop
	touch "$PGDATA/.initialised"
fi

exec "$@"
