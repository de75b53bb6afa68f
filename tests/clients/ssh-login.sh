#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# ssh -I logs in with a token key: a private sshd (openssh-server) on
# 127.0.0.1 and a free high port, as the current user, whose authorized keys
# are the token's as listed by ssh-keygen -D.  ssh reads the PIN through
# SSH_ASKPASS (SSH_ASKPASS_REQUIRE=force; not BatchMode, which makes ssh's
# PKCS#11 code refuse to ask for a PIN).  The RSA key and the EC key each log
# in (sshd says which key it accepted); a wrong PIN gets C_Login's
# CKR_PIN_INCORRECT ("PKCS#11 login failed: PIN incorrect") and no login.
set -euo pipefail
. "$(dirname "$0")/../lib/fixture.sh"
need_cmd ssh ssh-keygen
SSHD=/usr/sbin/sshd
if [[ ! -x $SSHD ]]; then
        [[ ${CI:-} = true ]] && fail "$SSHD is missing (openssh-server, scripts/install-deps.sh)"
        skip "$SSHD is missing (openssh-server)"
fi
fixture_setup
fixture_add_rsa 01 test-rsa
fixture_add_ec 02 test-ec

SSHD_PID=
stop_sshd() {
        if [[ -n "$SSHD_PID" ]]; then
                kill -TERM "$SSHD_PID" 2>/dev/null || true
                wait "$SSHD_PID" 2>/dev/null || true
                SSHD_PID=
        fi
        return 0
}
# shellcheck disable=SC2154
trap 'st=$?; stop_sshd; (exit $st); fixture_cleanup' EXIT

user=$(id -un)
S="$T/sshd"
mkdir -p "$S"
ssh-keygen -q -t ed25519 -N '' -f "$S/host_ed25519" || fail "ssh-keygen (host key)"
foreign ssh-keygen -D "$MODULE" >"$S/token_keys" 2>"$S/D.err" || { cat "$S/D.err"; fail "ssh-keygen -D"; }
cat "$S/token_keys"
for k in test-rsa test-ec; do
        ssh-keygen -i -m PKCS8 -f "$T/$k.pub" >"$T/$k.ssh" || fail "ssh-keygen -i ($k)"
        grep -qF "$(cut -d' ' -f1,2 "$T/$k.ssh")" "$S/token_keys" || fail "ssh-keygen -D does not list $k"
done
# authorized_keys LABEL: only that key of the token (sshd reads the file anew
# for each connection).
authorized_keys() { grep -F "$(cut -d' ' -f1,2 "$T/$1.ssh")" "$S/token_keys" >"$S/authorized_keys"; }
authorized_keys test-rsa

# sshd as root needs its privilege separation directory (the ssh.service
# unit's RuntimeDirectory; nothing created it without systemd).
if [[ $(id -u) -eq 0 && ! -d /run/sshd ]]; then
        mkdir -p /run/sshd && chmod 0755 /run/sshd
fi

start_sshd() {
        for _ in $(seq 10); do
                port=$((30000 + RANDOM % 30000))
                cat >"$S/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $port
HostKey $S/host_ed25519
PidFile none
AuthorizedKeysFile $S/authorized_keys
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
AllowUsers $user
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitUserRC no
PrintMotd no
PrintLastLog no
LogLevel VERBOSE
EOF
                : >"$S/sshd.log"
                "$SSHD" -D -e -f "$S/sshd_config" 2>"$S/sshd.log" </dev/null &
                SSHD_PID=$!
                for _ in $(seq 100); do
                        grep -q "Server listening on 127.0.0.1 port $port" "$S/sshd.log" && return 0
                        kill -0 "$SSHD_PID" 2>/dev/null || break
                        sleep 0.1
                done
                stop_sshd
                grep -Eq "Address already in use|Cannot bind any address" "$S/sshd.log" && continue
                cat "$S/sshd.log" >&2
                fail "sshd did not start"
        done
        fail "sshd found no free port in 10 tries"
}
start_sshd
log "sshd on 127.0.0.1:$port"
echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$S/host_ed25519.pub")" >"$S/known_hosts"

cat >"$S/askpass" <<EOF
#!/bin/sh
echo "\$1" >>"$S/askpass.log"
cat "$S/pin"
EOF
chmod 0755 "$S/askpass"

# ssh_login: ssh -I MODULE ... true, with the PIN in $S/pin; no config, no
# agent, no key file of the user's, the host key pinned.
ssh_login() {
        : >"$S/askpass.log"
        (
                unset SSH_AUTH_SOCK DISPLAY
                export SSH_ASKPASS="$S/askpass" SSH_ASKPASS_REQUIRE=force
                foreign ssh -F none -I "$MODULE" -p "$port" -T \
                -o IdentityFile="$S/no-such-key" -o IdentityAgent=none \
                -o UserKnownHostsFile="$S/known_hosts" -o GlobalKnownHostsFile=/dev/null \
                -o StrictHostKeyChecking=yes -o HostKeyAlgorithms=ssh-ed25519 \
                -o PreferredAuthentications=publickey -o PasswordAuthentication=no \
                -o KbdInteractiveAuthentication=no -o ConnectTimeout=20 \
                "$user@127.0.0.1" "echo netca-ssh-login-ok" </dev/null
        )
}

# fingerprint LABEL: the SHA256 fingerprint of the token key LABEL.
fingerprint() { ssh-keygen -l -E sha256 -f "$T/$1.ssh" | awk '{ print $2 }'; }

for k in test-rsa test-ec; do
        authorized_keys "$k"
        printf '%s\n' "$USER_PIN" >"$S/pin"
        before=$(wc -l <"$S/sshd.log")
        ssh_login >"$S/login-$k.out" 2>&1 || { cat "$S/login-$k.out" "$S/sshd.log"; fail "ssh -I login with $k"; }
        cat "$S/login-$k.out"
        assert_file_contains "$S/login-$k.out" "^netca-ssh-login-ok\$" "ssh -I login with $k"
        assert_file_contains "$S/askpass.log" "PIN" "ssh's PIN prompt (SSH_ASKPASS) for $k"
        # sshd accepted this very key (its log is VERBOSE).
        fp=$(fingerprint "$k")
        tail -n +"$((before + 1))" "$S/sshd.log" >"$S/sshd-$k.log"
        # (sshd -e ends its lines with CR LF; a fingerprint may hold a '+'.)
        assert_file_contains "$S/sshd-$k.log" "Accepted publickey for $user from 127\.0\.0\.1 .* ${fp//+/\\+}"$'\r'"?\$" \
                "sshd log of the $k login"
done

# A wrong PIN: C_Login fails with CKR_PIN_INCORRECT (ssh: "PIN incorrect")
# and ssh gives up (exit 255; sshd takes only publickey).  Both keys are
# authorized: each is tried with the wrong PIN (2 tries of the soft token's
# count), then the right PIN works again.
cp "$S/token_keys" "$S/authorized_keys"
printf '000000\n' >"$S/pin"
before=$(wc -l <"$S/sshd.log")
expect_fail -s 255 -o "$S/wrong-pin.out" "ssh -I with a wrong PIN" "PKCS#11 login failed: PIN incorrect" ssh_login
assert_file_contains "$S/wrong-pin.out" "Permission denied \(publickey\)" "ssh -I with a wrong PIN"
assert_file_not_contains "$S/wrong-pin.out" "netca-ssh-login-ok" "ssh -I with a wrong PIN"
tail -n +"$((before + 1))" "$S/sshd.log" >"$S/sshd-wrong.log"
assert_file_not_contains "$S/sshd-wrong.log" "Accepted publickey" "sshd log of the wrong-PIN attempt"
printf '%s\n' "$USER_PIN" >"$S/pin"
ssh_login >"$S/again.out" 2>&1 || { cat "$S/again.out"; fail "ssh -I login with the right PIN after a wrong one"; }
assert_file_contains "$S/again.out" "^netca-ssh-login-ok\$" "ssh -I login after a wrong PIN"
stop_sshd
echo "ok"
