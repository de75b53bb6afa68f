#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The p11-kit module file: `meson install` puts it in $datadir/p11-kit/modules
# with the installed module's absolute path.  The installed .so does not exist
# while testing a build tree, so the test (1) checks that the configured file
# names exactly $prefix/$libdir/pkcs11/netca-pkcs11.so, and (2) drops the same
# file, its path switched to the built module, where p11-kit reads module
# files (see below), and asks p11-kit
# itself: `p11-kit list-modules` must list our module and the test token.
. "$NETCA_SOURCE_ROOT/tests/lib/fixture.sh"
need_cmd p11-kit
fixture_setup
: "${NETCA_P11KIT_FILE:?}" "${NETCA_P11KIT_EXPECT:?}"

grep -Eq "^module: ${NETCA_P11KIT_EXPECT}\$" "$NETCA_P11KIT_FILE" ||
        { cat "$NETCA_P11KIT_FILE" >&2; fail "module file does not name $NETCA_P11KIT_EXPECT"; }

# p11-kit reads ~/.config/pkcs11/modules only for non-root users; as root
# (CI containers) the file goes into a private mount namespace's copy of the
# system directory, /usr/share/p11-kit/modules, where `meson install
# --prefix /usr` puts it.  Nothing outside $T is changed either way.
mkdir -p "$T/modules"
sed "s|^module: .*|module: $MODULE|" "$NETCA_P11KIT_FILE" >"$T/modules/netca-pkcs11.module"
if [[ $(id -u) -eq 0 ]]; then
        need_cmd unshare
        cp /usr/share/p11-kit/modules/*.module "$T/modules/" 2>/dev/null || true
        foreign unshare -m --propagation private sh -c \
                'mount --bind "$1" /usr/share/p11-kit/modules && exec p11-kit list-modules' sh "$T/modules" \
                >"$T/list.out" 2>&1 || { cat "$T/list.out" >&2; fail "p11-kit list-modules failed"; }
else
        mkdir -p "$HOME/.config/pkcs11/modules"
        cp "$T/modules/netca-pkcs11.module" "$HOME/.config/pkcs11/modules/"
        printf 'user-config: merge\n' >"$HOME/.config/pkcs11/pkcs11.conf"
        foreign p11-kit list-modules >"$T/list.out" 2>&1 || { cat "$T/list.out" >&2; fail "p11-kit list-modules failed"; }
fi
python3 - "$T/list.out" "$TOKEN_LABEL" <<'PY' || { cat "$T/list.out" >&2; fail "p11-kit does not list the NETCA module with the token"; }
import sys
text = open(sys.argv[1]).read()
# Blocks start with "NAME: LIBRARY" at column 0, details indented below.
blocks = ("\n" + text).split("\n")
mods, cur = [], None
for line in blocks:
    if line and not line[0].isspace():
        cur = [line]
        mods.append(cur)
    elif cur is not None:
        cur.append(line)
ours = ["\n".join(m) for m in mods if m[0].startswith("netca-pkcs11: ")]
assert len(ours) == 1, "module not listed"
assert ("token: " + sys.argv[2]) in ours[0], "token not listed under the module"
PY
log "ok"
