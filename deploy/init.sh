#!/bin/bash
#
# deploy/init.sh DIR NAME...: what a stack needs before its first start and
# that is never committed, made once into DIR (compose runs it as its `init`
# service, into a volume every service mounts read-only):
#
#   DIR/secrets/jwt_secret        AUTH_JWT_SECRET_FILE: the gateway's HS256 key
#   DIR/secrets/shortener_id_key  SHORTENER_ID_KEY_FILE: the id permutation key
#   DIR/secrets/notifier_unsubscribe_key  NOTIFIER_UNSUBSCRIBE_KEY_FILE: the
#                                 HMAC key of the notifier's unsubscribe links
#   DIR/tls/                      RPC_TLS_DIR: the stack's CA and a certificate
#                                 per service NAME (deploy/certs.sh)
#
# Each secret is 32 random bytes in hex, made only when absent: a restart
# keeps them (a new SHORTENER_ID_KEY would keep existing links, but tokens
# signed with an old AUTH_JWT_SECRET stop working).  With OWNER=user[:group]
# the files are given to that user (the services' own), all but the CA's key.
set -euo pipefail

if [ $# -lt 2 ]; then
	echo "usage: $0 DIR NAME..." >&2
	exit 1
fi
dir=$1
shift
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
umask 077
mkdir -p "$dir/secrets"
for s in jwt_secret shortener_id_key notifier_unsubscribe_key; do
	if [ ! -s "$dir/secrets/$s" ]; then
		openssl rand -hex 32 >"$dir/secrets/$s.new"
		mv "$dir/secrets/$s.new" "$dir/secrets/$s"
		echo "init: made $dir/secrets/$s"
	fi
done
"$here/certs.sh" "$dir/tls" "$@"
if [ -n "${OWNER:-}" ]; then
	chown -R "$OWNER" "$dir/secrets" "$dir/tls"
	# The CA's key signs certificates, which no service needs to do.
	chown "$(id -u):$(id -g)" "$dir/tls/ca.key"
fi
chmod 0755 "$dir"
echo "init: $dir is ready for: $*"
