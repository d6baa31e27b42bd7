#!/bin/bash
#
# layers_check.sh DIR: the gateway's layers include only downward.
#
#   lib/      nothing of net/, core/, handler/; no libuv, no http-parser,
#             no NNG, Redis or the cache engine
#   net/      nothing of core/ or handler/; no RPC, no cache engine
#   core/     nothing of handler/
#   handler/  another layer's internal.h never (only its contract header)
#
# A layer's files may include their own folder's internal.h.  Prints every
# offending line and exits 1 if there is one.
set -u
dir=${1:?usage: layers_check.sh DIR}
bad=0

# check LAYER REGEX WHY: no #include line of LAYER's files matches REGEX.
check() {
	local layer=$1 re=$2 why=$3 f line
	for f in "$dir/$layer"/*.[ch]; do
		[ -e "$f" ] || continue
		while IFS= read -r line; do
			echo "${f#"$dir"/}: $line: $why"
			bad=1
		done < <(grep -E '^[[:space:]]*#[[:space:]]*include' "$f" |
			grep -E "$re")
	done
}

up_net='"(net/|\.\./net/)?gwnet\.h"'
up_core='"(core/|\.\./core/)?gwcore\.h"'
up_handler='"(handler/|\.\./handler/)?handlers\.h"'
foreign_internal='"(\.\./)?(net|core|handler|lib)/internal\.h"'

check lib "$up_net|$up_core|$up_handler|internal\.h" "lib/ includes an upper layer"
check lib '<uv\.h>|<http_parser\.h>|<nng/|<hiredis/|"cache\.h"|"rpc/' "lib/ must stay pure"
check net "$up_core|$up_handler" "net/ includes an upper layer"
check net '"cache\.h"|"rpc/|<nng/|<hiredis/' "net/ knows no service"
check core "$up_handler" "core/ includes a handler"
check core "$foreign_internal" "core/ includes another layer's internals"
check handler "$foreign_internal|\"internal\.h\"" "handler/ includes a layer's internals"
check net "$foreign_internal" "net/ includes another layer's internals"

if [ "$bad" -ne 0 ]; then
	echo "layers_check: includes point upward (see above)"
	exit 1
fi
echo "layers_check: every include points down"
