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
        # shellcheck disable=SC2086
        meson test -C "$dir" --no-rebuild --print-errorlogs --num-processes "$JOBS" \
                --timeout-multiplier "$mult" ${NETCA_TEST_ARGS:-} </dev/null
        if [[ -f "$dir/meson-logs/testlog.json" ]]; then
                logs+=("$dir/meson-logs/testlog.json")
        else
                echo "=== $dir: meson test wrote no testlog.json"
                build_failures=$((build_failures + 1))
        fi
}

run_build build 1 --buildtype=debugoptimized
if [[ "${NETCA_TEST_ASAN:-1}" != 0 ]]; then
        run_build build-asan 3 --buildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false
fi

# Sum the runs.  Meson results: OK, EXPECTEDFAIL pass; SKIP skips; FAIL,
# TIMEOUT, UNEXPECTEDPASS, ERROR (and anything else) fail.
summary=$("$PY" - "$build_failures" "${logs[@]}" <<'PYEOF'
import json, sys
passed = failed = skipped = 0
failed_names = []
failed += int(sys.argv[1])
for path in sys.argv[2:]:
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
            else:
                failed += 1
                failed_names.append('%s: %s (%s)' % (run, t.get('name'), r))
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
