#!/bin/bash
#
# tests/run.sh: the whole test suite, as CI runs it (.ci/run installs the system
# packages listed in deploy/packages.txt, then runs this).
#
#   1. starts a Redis and a PostgreSQL 15 of its own on free ports, with their
#      files in a temporary directory (PostgreSQL as an unprivileged user when
#      run as root), and exports for the tests:
#        REDIS_URL, DATABASE_URL, TEST_REDIS_PORT, TEST_PG_PORT,
#        TEST_REDIS_SERVER (path of redis-server), TEST_REDIS_CONF (its config:
#        `$TEST_REDIS_SERVER $TEST_REDIS_CONF` restarts the same server after a
#        test stopped it), TEST_PG_DATA (PostgreSQL's data directory: its
#        postmaster.pid names the process tree test_store_stall suspends);
#   2. builds in build/ with -DWERROR=ON and runs ctest;
#   3. builds in build-asan/ with -DSANITIZE=address,undefined -DWERROR=ON and
#      runs ctest with leak detection;
#   4. builds the libFuzzer targets with clang and runs each for
#      FUZZ_SECONDS (default 20) from its seed corpus (SKIP_FUZZ=1 skips);
#   5. checks that every tracked *.c/*.h under common/ services/ tests/ is
#      formatted as .clang-format says;
#   6. stops Redis and PostgreSQL (also on failure or interrupt), prints a
#      summary ending in "N passed, N failed" and exits non-zero if anything
#      failed.
#
# Each ctest run starts from an empty database and an empty Redis.
# Settings: JOBS (build parallelism, default 2), CTEST_ARGS (extra ctest
# arguments, e.g. "-R shortener"), SKIP_ASAN=1 (skip step 3, for a quick run;
# CI never sets it).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=deploy/lib.sh
. "$ROOT/deploy/lib.sh"

JOBS=${JOBS:-2}
read -r -a CTEST_EXTRA <<<"${CTEST_ARGS:-}"

PASSED=0
FAILED=0
SUMMARY=()

note() {
	printf '\n=== %s\n' "$*"
}

# record NAME STATUS PASSED FAILED: one line of the summary.
record() {
	SUMMARY+=("$(printf '%-22s %-5s %s passed, %s failed' "$1" "$2" "$3" "$4")")
	PASSED=$((PASSED + $3))
	FAILED=$((FAILED + $4))
}

# -------------------------------------------------------------- stores

TMP=
REDIS_PORT_=
PG_DIR=
PG_PORT_=

# resume_stores: sends SIGCONT to the PostgreSQL tree (postmaster and its
# children) and to Redis, in case a test that suspends them (test_store_stall)
# died before resuming them.  Harmless when they run.
resume_stores() {
	local pid c
	if [ -n "$PG_DIR" ] && [ -s "$PG_DIR/data/postmaster.pid" ]; then
		pid=$(head -n 1 "$PG_DIR/data/postmaster.pid")
		if [ -n "$pid" ] && kill -CONT "$pid" 2>/dev/null; then
			for c in $(pgrep -P "$pid"); do
				kill -CONT "$c" 2>/dev/null
			done
		fi
	fi
	if [ -n "$TMP" ] && [ -s "$TMP/redis/redis.pid" ]; then
		kill -CONT "$(cat "$TMP/redis/redis.pid")" 2>/dev/null
	fi
	return 0
}

cleanup() {
	local rc=$?
	set +e
	trap - EXIT INT TERM
	resume_stores
	if [ -n "$REDIS_PORT_" ]; then
		stack_redis_stop "$TMP/redis" "$REDIS_PORT_"
	fi
	if [ -n "$PG_DIR" ]; then
		stack_pg_stop "$PG_DIR"
	fi
	if [ -n "$TMP" ]; then
		rm -rf "$PG_DIR" "$TMP"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT
trap 'echo "terminated" >&2; exit 143' TERM

check_prerequisites() {
	local missing=() b
	for b in cmake ctest clang-format redis-server redis-cli \
		"$STACK_PG_BIN/postgres" "$STACK_PG_BIN/initdb" "$STACK_PG_BIN/psql"; do
		command -v "$b" >/dev/null 2>&1 || missing+=("$b")
	done
	if [ "$(id -u)" -eq 0 ]; then
		command -v runuser >/dev/null 2>&1 || missing+=(runuser)
	fi
	if [ ${#missing[@]} -gt 0 ]; then
		stack_say "missing: ${missing[*]}"
		stack_say "install the system packages first (as root):"
		stack_say "  apt-get install -y $(stack_packages | tr '\n' ' ')"
		exit 1
	fi
}

start_stores() {
	# Under /tmp (not $TMPDIR), which the PostgreSQL user can always enter.
	TMP=$(mktemp -d /tmp/backends-test.XXXXXX)
	chmod 0755 "$TMP"

	for _ in 1 2 3 4 5; do
		REDIS_PORT_=$(stack_free_port)
		if stack_redis_start "$TMP/redis" "$REDIS_PORT_"; then
			break
		fi
		REDIS_PORT_=
	done
	[ -n "$REDIS_PORT_" ] || stack_die "could not start Redis"

	PG_DIR=$(stack_pg_dir "$TMP")
	for _ in 1 2 3 4 5; do
		PG_PORT_=$(stack_free_port)
		if stack_pg_start "$PG_DIR" "$PG_PORT_"; then
			break
		fi
		PG_PORT_=
	done
	[ -n "$PG_PORT_" ] || stack_die "could not start PostgreSQL"
	stack_pg_create_db "$PG_DIR" "$PG_PORT_"

	export REDIS_URL="redis://127.0.0.1:$REDIS_PORT_"
	export DATABASE_URL
	DATABASE_URL=$(stack_pg_url "$PG_PORT_")
	export TEST_REDIS_PORT=$REDIS_PORT_ TEST_PG_PORT=$PG_PORT_
	# The services the tests start may use development secrets; the
	# tests of the refusal outside that mode unset it for their process.
	export BACKENDS_DEV_MODE=1
	export TEST_PG_DATA=$PG_DIR/data
	export TEST_REDIS_SERVER TEST_REDIS_CONF=$TMP/redis/redis.conf
	TEST_REDIS_SERVER=$(stack_redis_server)
	echo "Redis      $REDIS_URL (files in $TMP/redis)"
	echo "PostgreSQL $DATABASE_URL (files in $PG_DIR)"
}

# reset_stores: an empty database and an empty Redis for the next ctest run;
# restarts Redis if a test left it stopped.
reset_stores() {
	resume_stores
	if ! stack_redis_ping "$REDIS_PORT_"; then
		stack_redis_stop "$TMP/redis"
		stack_redis_start "$TMP/redis" "$REDIS_PORT_" || return 1
	fi
	redis-cli -h 127.0.0.1 -p "$REDIS_PORT_" flushall >/dev/null || return 1
	stack_pg_reset_db "$PG_DIR" "$PG_PORT_"
}

# -------------------------------------------------------------- steps

# build_and_test NAME DIR CMAKE-ARGS...: configures and builds DIR, then runs
# ctest there; records the build as one failure when it does not build, else
# ctest's counts.
build_and_test() {
	local name=$1 dir=$ROOT/$2 log total nfail rc
	shift 2
	note "$name: configure and build ($dir)"
	if ! cmake -S "$ROOT" -B "$dir" -DWERROR=ON "$@" ||
		! cmake --build "$dir" -j "$JOBS"; then
		record "$name build" FAIL 0 1
		return 0
	fi
	note "$name: ctest"
	if ! reset_stores; then
		record "$name stores" FAIL 0 1
		return 0
	fi
	log=$dir/ctest-run.log
	rc=0
	(cd "$dir" && ctest --output-on-failure --no-tests=error \
		"${CTEST_EXTRA[@]}") 2>&1 | tee "$log" || rc=$?
	# "100% tests passed, 0 tests failed out of 12"
	total=$(sed -n 's/.*tests passed, [0-9]* tests\{0,1\} failed out of \([0-9]*\).*/\1/p' "$log" | tail -n 1)
	nfail=$(sed -n 's/.*tests passed, \([0-9]*\) tests\{0,1\} failed out of [0-9]*.*/\1/p' "$log" | tail -n 1)
	if [ -z "$total" ] || [ -z "$nfail" ]; then
		record "$name ctest" FAIL 0 1
	elif [ "$rc" -ne 0 ] || [ "$nfail" -ne 0 ]; then
		[ "$nfail" -gt 0 ] || nfail=1
		record "$name ctest" FAIL $((total - nfail)) "$nfail"
	else
		record "$name ctest" ok "$total" 0
	fi
}

check_format() {
	local files=() f out
	note "format: clang-format --dry-run --Werror"
	if out=$(git -c safe.directory='*' -C "$ROOT" ls-files -- \
		'common/*.c' 'common/*.h' 'services/*.c' 'services/*.h' \
		'tests/*.c' 'tests/*.h' 2>/dev/null); then
		while IFS= read -r f; do
			[ -f "$ROOT/$f" ] && files+=("$ROOT/$f")
		done <<<"$out"
	else
		echo "(not a git checkout: checking every file found)"
		while IFS= read -r f; do
			files+=("$f")
		done < <(find "$ROOT/common" "$ROOT/services" "$ROOT/tests" \
			-type f \( -name '*.c' -o -name '*.h' \) 2>/dev/null | sort)
	fi
	if [ ${#files[@]} -eq 0 ]; then
		echo "no files to check"
		record "clang-format" ok 1 0
		return 0
	fi
	if out=$(clang-format --dry-run --Werror "${files[@]}" 2>&1); then
		echo "${#files[@]} files formatted correctly"
		record "clang-format" ok 1 0
	else
		printf '%s\n' "$out" | head -n 200
		echo "not formatted (fix with clang-format -i):"
		printf '%s\n' "$out" | sed -n 's/^\([^:]*\):[0-9]*:[0-9]*: error:.*/  \1/p' |
			sort -u
		record "clang-format" FAIL 0 1
	fi
}

# fuzz_smoke: builds the libFuzzer targets (tests/fuzz) with clang and
# ASan+UBSan and runs each for FUZZ_SECONDS from its seed corpus: a crash,
# leak, or sanitizer report fails it.  The long campaigns are run by hand.
fuzz_smoke() {
	local dir=$ROOT/build-fuzz t work log
	note "fuzz: libFuzzer smoke run, ${FUZZ_SECONDS:-20} s per target"
	if ! command -v clang >/dev/null; then
		echo "clang is missing (apt-get install clang libclang-rt-14-dev)"
		record "fuzz build" FAIL 0 1
		return 0
	fi
	if ! CC=clang cmake -S "$ROOT" -B "$dir" -DFUZZ=ON -DWERROR=ON \
		-DSANITIZE=address,undefined -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		>"$TMP/fuzz-cmake.log" 2>&1 ||
		! cmake --build "$dir" -j"$JOBS" --target fuzz_pbjson \
			fuzz_envelope fuzz_gateway >"$TMP/fuzz-build.log" 2>&1; then
		tail -n 40 "$TMP/fuzz-cmake.log" "$TMP/fuzz-build.log" 2>/dev/null
		record "fuzz build" FAIL 0 1
		return 0
	fi
	for t in fuzz_pbjson fuzz_envelope fuzz_gateway; do
		work=$TMP/fuzz-$t
		log=$TMP/fuzz-$t.log
		mkdir -p "$work"
		if (cd "$work" && "$dir/tests/fuzz/$t" \
			-max_total_time="${FUZZ_SECONDS:-20}" -rss_limit_mb=2048 \
			"$work" "$ROOT/tests/fuzz/corpus/$t") >"$log" 2>&1; then
			echo "$t: $(grep -o 'Done [0-9]* runs' "$log")"
			record "$t" ok 1 0
		else
			tail -n 40 "$log"
			record "$t" FAIL 0 1
		fi
	done
}

# -------------------------------------------------------------- main

check_prerequisites
note "stores"
start_stores

build_and_test plain build -DSANITIZE=
if [ "${SKIP_ASAN:-0}" = 1 ]; then
	echo "SKIP_ASAN=1: not building with sanitizers"
else
	export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
	export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
	build_and_test asan build-asan -DSANITIZE=address,undefined
	unset ASAN_OPTIONS UBSAN_OPTIONS
fi
if [ "${SKIP_FUZZ:-0}" = 1 ]; then
	echo "SKIP_FUZZ=1: not running the fuzz targets"
else
	fuzz_smoke
fi
check_format

note "summary"
printf '%s\n' "${SUMMARY[@]}"
echo
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
