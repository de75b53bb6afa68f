#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The whole test suite, as CI runs it (.ci/run calls this):
#   1. installs the dependencies (scripts/install-deps.sh; quick when present),
#   2. builds build/ (debugoptimized) and runs every suite in it,
#   3. builds build-asan/ with ASan+UBSan and runs every suite again (the
#      foreign client programs get the sanitizer runtimes preloaded by
#      tests/lib/fixture.sh),
#   4. sums both runs from meson's build*/meson-logs/testlog.json and ends
#      with one line "N passed, M failed" (", K skipped" if any).
# Exit status: 0 when nothing failed.
#
# A run is a judge that can fail:
#   - ASAN_OPTIONS/UBSAN_OPTIONS halt on the first finding (and the ASan build
#     is compiled with -fno-sanitize-recover=undefined), so a sanitizer report
#     is a non-zero exit, never a line in a log of a passing test;
#   - meson's own exit status counts: a run that stopped early, or that
#     recorded fewer results than `meson test --list` names, is a failure;
#   - with CI=true the build is configured with -Dtest_tools=enabled: a
#     missing test tool (umockdev-wrapper, ...) is a configure failure, not
#     tests silently left unregistered; tests that skip when a tool or data
#     is absent fail instead when CI=true.
#
# Environment:
#   NETCA_TEST_ASAN=0     skip the ASan+UBSan run (local quick runs)
#   NETCA_TEST_ARGS="..." extra arguments for `meson test` (e.g. --suite clients)
#   NETCA_SKIP_DEPS=1     do not run install-deps.sh
set -uo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
JOBS=$(nproc 2>/dev/null || echo 2)
[[ $JOBS -gt 2 ]] && JOBS=2
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3

if [[ "${NETCA_SKIP_DEPS:-0}" != 1 ]]; then
        bash ./scripts/install-deps.sh || { echo "install-deps.sh failed"; echo "0 passed, 1 failed"; exit 1; }
fi

# Every test, plain or sanitized, stops at its first sanitizer finding.  A
# test may add options (e.g. verify_asan_link_order=0 for preloading) but
# keeps these.  abort_on_error=0: exit with the sanitizer's status, no core.
export ASAN_OPTIONS="halt_on_error=1:abort_on_error=0:detect_leaks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=0:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"

TOOLS_OPT=()
[[ "${CI:-}" == true ]] && TOOLS_OPT=(-Dtest_tools=enabled)

build_failures=0
logs=()

# run_build DIR MULTIPLIER MESON-OPTIONS...
run_build() {
        local dir=$1 mult=$2 setup_log
        shift 2
        setup_log=$(mktemp)
        echo "=== $dir: configure"
        if [[ -f "$dir/build.ninja" ]]; then
                meson setup --reconfigure "$dir" "$@" >"$setup_log" 2>&1
        else
                meson setup "$dir" "$@" >"$setup_log" 2>&1
        fi || {
                cat "$setup_log"
                rm -f "$setup_log"
                echo "=== $dir: meson setup FAILED"
                build_failures=$((build_failures + 1))
                return
        }
        rm -f "$setup_log"
        echo "=== $dir: build"
        if ! ninja -C "$dir" -j "$JOBS"; then
                echo "=== $dir: build FAILED"
                build_failures=$((build_failures + 1))
                return
        fi
        echo "=== $dir: test"
        rm -f "$dir/meson-logs/testlog.json"
        local expected listed=0 results=0 rc=0
        # shellcheck disable=SC2086
        expected=$(meson test -C "$dir" --no-rebuild --list ${NETCA_TEST_ARGS:-} 2>/dev/null </dev/null) || {
                echo "=== $dir: meson test --list FAILED"
                build_failures=$((build_failures + 1))
                return
        }
        listed=$(grep -c ' / ' <<<"$expected")
        # shellcheck disable=SC2086
        meson test -C "$dir" --no-rebuild --print-errorlogs --num-processes "$JOBS" \
                --timeout-multiplier "$mult" ${NETCA_TEST_ARGS:-} </dev/null || rc=$?
        if [[ -f "$dir/meson-logs/testlog.json" ]]; then
                logs+=("$dir/meson-logs/testlog.json")
                results=$(grep -c . "$dir/meson-logs/testlog.json")
        else
                echo "=== $dir: meson test wrote no testlog.json"
                build_failures=$((build_failures + 1))
        fi
        # Meson exits non-zero when a test failed (counted from the log) but
        # also when it was killed or stopped early: make sure that counts.
        if ((results != listed)); then
                echo "=== $dir: $results results for $listed tests listed: the run stopped early"
                build_failures=$((build_failures + 1))
        fi
        if ((rc != 0)); then
                echo "=== $dir: meson test exited $rc"
                meson_status+=("$rc")
        fi
}

meson_status=()
run_build build 1 --buildtype=debugoptimized "${TOOLS_OPT[@]}"
if [[ "${NETCA_TEST_ASAN:-1}" != 0 ]]; then
        run_build build-asan 3 --buildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false "${TOOLS_OPT[@]}"
fi

# Sum the runs.  Meson results: OK, EXPECTEDFAIL pass; SKIP skips; FAIL,
# TIMEOUT, UNEXPECTEDPASS, ERROR (and anything else) fail.
summary=$("$PY" - "$build_failures" "${#meson_status[@]}" "${logs[@]}" <<'PYEOF'
import json, sys
passed = failed = skipped = 0
failed_names = []
skipped_names = []
failed += int(sys.argv[1])
meson_failed_runs = int(sys.argv[2])
for path in sys.argv[3:]:
    run = path.split('/')[0]
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            t = json.loads(line)
            r = t.get('result')
            if r in ('OK', 'EXPECTEDFAIL'):
                passed += 1
            elif r == 'SKIP':
                skipped += 1
                skipped_names.append('%s: %s' % (run, t.get('name')))
            else:
                failed += 1
                failed_names.append('%s: %s (%s)' % (run, t.get('name'), r))
# meson exited non-zero in a run whose log shows no failure: something the
# log does not hold went wrong (an interrupted or killed run).
if meson_failed_runs and not failed:
    failed += 1
    failed_names.append('meson test exited non-zero with no failed test in its log')
for n in skipped_names:
    print('skipped: ' + n)
for n in failed_names:
    print('failed: ' + n)
line = '%d passed, %d failed' % (passed, failed)
if skipped:
    line += ', %d skipped' % skipped
print(line)
sys.exit(1 if failed else 0)
PYEOF
)
rc=$?
[[ -n "$summary" ]] || { summary="0 passed, 1 failed"; rc=1; }
echo "$summary"
exit $rc
