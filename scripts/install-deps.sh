#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Installs (as root, on Debian 12) every package the build and all the tests
# need.  Does nothing when they are all installed already.  Non-interactive.
set -euo pipefail

PACKAGES=(
        # build
        meson ninja-build pkg-config gcc libc6-dev binutils
        libevent-dev libsqlite3-dev libcjson-dev libmbedtls-dev libusb-1.0-0-dev
        libsystemd-dev libp11-kit-dev libqrencode-dev
        # fuzzing (clang + libFuzzer runtime)
        clang libclang-rt-14-dev
        # real clients and peers used by the tests and the quick start
        p11-kit p11-kit-modules opensc gnutls-bin libengine-pkcs11-openssl
        # OpenSC reading the virtual PIV card (tests/opensc)
        opensc-pkcs11 pcscd vsmartcard-vpcd python3
        libnss3-tools poppler-utils openssh-client openssh-server softhsm2 openssl sqlite3
        util-linux coreutils procps
        # the emulated USB CCID reader (tests/usb: umockdev + Debian's python3-gi)
        umockdev gir1.2-umockdev-1.0 python3-gi
        # a private system bus with a mocked logind (tests/pin: screen lock)
        dbus-daemon dbus-bin python3-dbusmock
        # a real browser logging in with a token certificate (tests/browser)
        firefox-esr chromium xvfb xdotool
        # stacks of a browser that hangs in a test (tests/browser/firefox.sh)
        gdb
)

missing=()
for p in "${PACKAGES[@]}"; do
        if [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) != installed ]]; then
                missing+=("$p")
        fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
        echo "install-deps: all ${#PACKAGES[@]} packages present"
        exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=
if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || { echo "install-deps: run as root (missing: ${missing[*]})" >&2; exit 1; }
        SUDO="sudo -n"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq </dev/null
$SUDO apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${missing[@]}" </dev/null >/dev/null
echo "install-deps: done"
