#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A suite that can fail (issue 22): every scenario of the robustness and
# stress tests (and the other users of tests/conformance/testutil.c) is run
# with what it needs broken, and must fail: exit status 1.  Not 0 (a
# scenario that passes without its daemon or module proves nothing), not 77
# (a skip), not a signal or a sanitizer's status.
#
#   selfcheck.sh no-daemon|no-module BINARY:SCENARIO...
#
# no-daemon: NETCA_NETCAD=/bin/false (netcad exits at once, status 1);
# no-module: NETCA_PKCS11_MODULE=/nonexistent.so.  SCENARIO may be empty
# (a binary without one).  The scenarios run in parallel; each fails in well
# under a second, the timeout is only a hang guard.
set -u
mode=$1
shift
case $mode in
no-daemon) export NETCA_NETCAD=/bin/false ;;
no-module) export NETCA_PKCS11_MODULE=/nonexistent.so ;;
*)
        echo "usage: $0 no-daemon|no-module BINARY:SCENARIO..." >&2
        exit 2
        ;;
esac
: "${NETCA_NETCAD:?}" "${NETCA_PKCS11_MODULE:?}"
out=$(mktemp -d /tmp/netca-selfcheck-XXXXXX)
trap 'rm -rf "$out"' EXIT

pids=()
names=()
for spec in "$@"; do
        bin=${spec%%:*}
        scen=${spec#*:}
        name="$(basename "$bin")${scen:+ $scen}"
        log="$out/${#names[@]}.log"
        if [ -n "$scen" ]; then
                timeout -s KILL 120 "$bin" "$scen" >"$log" 2>&1 &
        else
                timeout -s KILL 120 "$bin" >"$log" 2>&1 &
        fi
        pids+=($!)
        names+=("$name")
done

bad=0
for i in "${!pids[@]}"; do
        wait "${pids[$i]}"
        st=$?
        name=${names[$i]}
        want=1
        # The uid scenario needs root: without, it skips whatever the
        # environment, as in a normal run.
        if [ "$name" = "robustness uid" ] && [ "$(id -u)" != 0 ]; then
                want=77
        fi
        if [ "$st" = "$want" ]; then
                echo "ok: $name: exit $st ($mode)"
                continue
        fi
        bad=$((bad + 1))
        case $st in
        0) why="passed without its ${mode#no-}" ;;
        77) why="skipped" ;;
        137) why="hung (killed after 120 s)" ;;
        *) why="exit status $st (a signal or a sanitizer report?)" ;;
        esac
        echo "FAIL: $name ($mode): $why, want exit $want; its output:"
        sed 's/^/    /' "$out/$i.log"
done
if [ "$bad" -gt 0 ]; then
        echo "selfcheck $mode: $bad of ${#pids[@]} scenario(s) did not fail as they must"
        exit 1
fi
echo "selfcheck $mode: all ${#pids[@]} scenarios failed as they must"
exit 0
