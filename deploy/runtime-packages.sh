#!/bin/bash
#
# deploy/runtime-packages.sh ELF...: prints the Debian packages that provide the
# shared libraries the given programs load, one a line.  The Dockerfile's
# builder stage runs it on the binaries it built, and the runtime stage installs
# exactly those packages: a service that links a new library needs no change
# to the Dockerfile.
set -euo pipefail

ldd "$@" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u |
	while read -r lib; do
		real=$(readlink -f "$lib")
		found=
		# usrmerge: dpkg may know a library under /lib or under /usr/lib.
		for p in "$lib" "$real" "/usr$lib" "${lib#/usr}" "/usr$real" \
			"${real#/usr}"; do
			if out=$(dpkg -S "$p" 2>/dev/null); then
				found=${out%%:*}
				break
			fi
		done
		if [ -z "$found" ]; then
			echo "runtime-packages: no package provides $lib" >&2
			exit 1
		fi
		echo "$found"
	done | sort -u
