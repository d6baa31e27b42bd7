#!/bin/bash
#
# deploy/certs.sh DIR NAME...: the certificates of the stack's mutual TLS
# (RPC_TLS_DIR=DIR, addresses tls+tcp://), made with openssl:
#
#   DIR/ca.crt, DIR/ca.key       the stack's CA (EC P-256, 10 years), made
#                                once; every certificate it signs is one of
#                                the stack's services
#   DIR/NAME.crt, DIR/NAME.key   one per service NAME, signed by the CA, with
#                                NAME as CN and DNS SAN (clients check the name
#                                of the service they dial, never an address),
#                                for both server and client use (825 days)
#
# What exists is kept: a run makes what is missing and renews a service
# certificate that expires within 30 days, so it is safe at every start.
# Keys are 0600; with OWNER=user[:group] set, the files are given to it.
set -euo pipefail

if [ $# -lt 2 ]; then
	echo "usage: $0 DIR NAME..." >&2
	exit 1
fi
dir=$1
shift
command -v openssl >/dev/null || {
	echo "certs.sh: openssl is not installed" >&2
	exit 1
}
umask 077
mkdir -p "$dir"

if [ ! -s "$dir/ca.crt" ] || [ ! -s "$dir/ca.key" ]; then
	openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
		-keyout "$dir/ca.key" -out "$dir/ca.crt" -days 3650 \
		-subj "/CN=backends stack CA" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi

for name in "$@"; do
	case $name in
	'' | *[!A-Za-z0-9.-]*)
		echo "certs.sh: bad service name: $name" >&2
		exit 1
		;;
	esac
	crt=$dir/$name.crt
	key=$dir/$name.key
	if [ -s "$crt" ] && [ -s "$key" ] &&
		openssl x509 -in "$crt" -noout -checkend $((30 * 86400)) >/dev/null &&
		openssl verify -CAfile "$dir/ca.crt" "$crt" >/dev/null 2>&1; then
		continue
	fi
	ext=$(mktemp)
	printf '%s\n' \
		"basicConstraints=critical,CA:FALSE" \
		"keyUsage=critical,digitalSignature,keyAgreement" \
		"extendedKeyUsage=serverAuth,clientAuth" \
		"subjectAltName=DNS:$name" >"$ext"
	openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
		-keyout "$key" -out "$dir/$name.csr" -subj "/CN=$name" 2>/dev/null
	openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" \
		-CAkey "$dir/ca.key" -CAcreateserial -out "$crt" -days 825 \
		-extfile "$ext" 2>/dev/null
	rm -f "$ext" "$dir/$name.csr"
done
rm -f "$dir/ca.srl"
chmod 0600 "$dir"/*.key
chmod 0644 "$dir"/*.crt
if [ -n "${OWNER:-}" ]; then
	chown "$OWNER" "$dir" "$dir"/*.crt "$dir"/*.key
fi
