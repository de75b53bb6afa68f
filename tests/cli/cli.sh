#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# netca-tool against a real netcad and netca-pkcs11.so (tests/lib/fixture.sh
# starts the daemon and creates the soft token "netca-test").  One case per
# meson test: cli.sh CASE.  OpenSSL is the judge of what the tool writes and
# reads (certificates, requests, PKCS#12, signatures made with imported keys).

CASE=${1:?usage: cli.sh CASE}
: "${NETCA_SOURCE_ROOT:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
export P11_TEST_MODULE=netca
# shellcheck source=../lib/fixture.sh
. "$NETCA_SOURCE_ROOT/tests/lib/fixture.sh"

fixture_setup
export NETCA_PKCS11_MODULE="$MODULE"
# shellcheck source=tool.sh
. "$NETCA_SOURCE_ROOT/tests/cli/tool.sh"

P="--pin $USER_PIN"

# A test CA (for certificates issued to token keys) in $T/ca.*
make_ca() {
        openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/ca.key" -out "$T/ca.pem" \
                -subj "/CN=NETCA Test CA/O=NETCA test" -days 30 2>/dev/null
}

# issue CSR OUT KEYUSAGE: a certificate for the request, from the test CA.
issue() {
        printf 'keyUsage=critical,%s\n' "$3" >"$T/ext.cnf"
        openssl x509 -req -in "$1" -CA "$T/ca.pem" -CAkey "$T/ca.key" -set_serial "0x$(openssl rand -hex 8)" \
                -days 10 -extfile "$T/ext.cnf" -out "$2" 2>"$T/x509.err" || {
                cat "$T/x509.err" >&2
                fail "openssl x509 -req failed"
        }
}

case_create_soft() {
        assert_file_contains "$T/create-soft.out" "Created soft token \"$TOKEN_LABEL\" in slot [0-9]+" "create-soft output"
        ok token create-soft --label second --pin 11112222 --so-pin 33334444 --max-tries 3 --json
        assert_eq "$(json 'j["label"]')" second "created label"
        local path
        path=$(json 'j["path"]')
        [[ -f "$path" ]] || fail "token file $path does not exist"
        [[ "$path" == "$NETCA_DATA_DIR"/* ]] || fail "token file $path is outside the data dir"

        ok list --json
        assert_eq "$(json 'sorted(t["label"] for t in j["tokens"])')" "['netca-test', 'second']" "tokens listed"

        # Bad requests: no label, PIN too short, label too long, bad max-tries.
        expect_rc 1 token create-soft --pin 11112222 --so-pin 33334444
        expect_rc 1 token create-soft --label x --pin 12 --so-pin 33334444
        assert_file_contains "$T/err" "4 to 64" "short PIN message"
        expect_rc 1 token create-soft --label 0123456789012345678901234567890123 --pin 11112222 --so-pin 33334444
        expect_rc 1 token create-soft --label x --pin 11112222 --so-pin 33334444 --max-tries 0
        # No PIN and no terminal: a usage error, not a hang.
        expect_rc 1 token create-soft --label x </dev/null

        # Two tokens: a command without --token names them.
        expect_rc 1 pin status
        assert_file_contains "$T/err" "second" "token list in the error"

        # Deleting needs --yes without a terminal; then the file is gone.
        expect_rc 1 token delete --token second </dev/null
        [[ -f "$path" ]] || fail "token deleted without --yes"
        ok token delete --token second --yes
        [[ ! -e "$path" ]] || fail "token file $path still exists after delete"
        ok list --json
        assert_eq "$(json 'len(j["tokens"])')" 1 "tokens after delete"
        expect_rc 4 token delete --token second --yes
}

case_daemon_status() {
        ok daemon status
        assert_file_contains "$T/out" "netcad 0\\.1\\.0 \\(pid $NETCAD_PID\\) is running" "daemon status"
        assert_file_contains "$T/out" "socket: +$NETCA_SOCKET" "socket in status"
        ok daemon status --json
        assert_eq "$(json 'j["pid"]')" "$NETCAD_PID" "pid"
        assert_eq "$(json 'j["tokens"]')" 1 "token count"
        assert_eq "$(json 'j["data_dir"]')" "$NETCA_DATA_DIR" "data dir"
        assert_eq "$(json 'j["version"]')" 0.1.0 "version"

        # No daemon: exit 2 with a message naming the socket.
        NETCA_SOCKET="$T/nowhere.sock" expect_rc 2 daemon status
        assert_file_contains "$T/err" "nowhere\\.sock" "unreachable message"
        NETCA_SOCKET="$T/nowhere.sock" expect_rc 2 pin status
        NETCA_SOCKET="$T/nowhere.sock" expect_rc 2 token create-soft --label x --pin 11112222 --so-pin 33334444
}

case_usage() {
        expect_rc 1
        expect_rc 1 frobnicate
        expect_rc 1 key gen $P
        expect_rc 1 key gen --type dsa1024 $P
        # The token makes RSA-1024 keys for PKCS#11 clients (old CA keys), but
        # netca-tool keeps offering 2048 bits and up (issue 13 item 3).
        expect_rc 1 key gen --type rsa1024 $P
        assert_file_contains "$T/err" "rsa2048 or rsa3072" "rsa1024 refused with the offered types"
        expect_rc 1 cert export
        expect_rc 1 --no-such-option list
        expect_rc 0 --help
        assert_file_contains "$T/out" "Exit codes" "help"
        expect_rc 4 cert show
        assert_file_contains "$T/err" "holds no certificate" "no certificate message"
        expect_rc 4 list --token nosuchtoken
        expect_rc 4 import "$T/does-not-exist.pem" $P
}

case_keygen() {
        local type id
        for type in ec-p256 ec-p384 rsa2048; do
                ok key gen --type "$type" --label "k-$type" $P --json
                id=$(json 'j["id"]')
                [[ ${#id} -eq 40 ]] || fail "key id '$id' is not a SHA-1"
                # The token has the pair under that id.  (pkcs11-tool 0.23 cannot
                # export a P-384 public key, so it lists the objects instead.)
                p11 -O --type pubkey --id "$id" >"$T/pub.txt" 2>&1
                assert_file_contains "$T/pub.txt" "label: +k-$type" "public key $type"
                p11 --login --pin "$USER_PIN" -O --type privkey --id "$id" >"$T/priv.txt" 2>&1
                assert_file_contains "$T/priv.txt" "label: +k-$type" "private key $type"
        done
        ok key gen --type ec-p256 --label fixed --id 0a0b0c $P
        assert_file_contains "$T/out" "id 0a0b0c" "key gen with --id"
        ok list
        assert_file_contains "$T/out" "public +key +EC P-384 +id [0-9a-f]{40} +label \"k-ec-p384\"" "list shows keys"
        assert_file_contains "$T/out" "RSA 2048" "list shows the RSA key"
}

case_import_pem() {
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/ec.key" -out "$T/ec.pem" \
                -subj "/CN=PEM Import/O=NETCA test" -days 30 -addext keyUsage=critical,digitalSignature 2>/dev/null
        ok import "$T/ec.pem" --key "$T/ec.key" $P
        assert_file_contains "$T/out" "Imported EC private key" "import output"
        assert_file_contains "$T/out" "Imported certificate \"PEM Import\" \\(sign\\)" "import output"
        ok list --json
        assert_eq "$(json '[c["cn"] for c in j["tokens"][0]["certificates"]]')" "['PEM Import']" "certs"
        assert_eq "$(json 'j["tokens"][0]["certificates"][0]["kind"]')" sign "kind"
        local id
        id=$(json 'j["tokens"][0]["certificates"][0]["id"]')

        # The imported key signs, and OpenSSL verifies with the certificate's key.
        head -c 1000 /dev/urandom >"$T/data"
        p11 --login --pin "$USER_PIN" --sign -m ECDSA-SHA256 --id "$id" --signature-format openssl \
                -i "$T/data" -o "$T/sig" >/dev/null 2>&1 || fail "signing with the imported EC key failed"
        openssl x509 -in "$T/ec.pem" -pubkey -noout >"$T/ec.pub"
        openssl dgst -sha256 -verify "$T/ec.pub" -signature "$T/sig" "$T/data" >/dev/null ||
                fail "signature by the imported key does not verify with the certificate"

        # Importing again adds nothing.
        ok import "$T/ec.pem" --key "$T/ec.key" $P
        assert_file_contains "$T/out" "already on the token" "second import"
        ok list --json
        assert_eq "$(json 'len(j["tokens"][0]["certificates"])')" 1 "certs after second import"

        # A DER certificate alone, and a combined PEM (RSA, keyEncipherment).
        openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/r.key" -out "$T/r.pem" \
                -subj "/CN=RSA Combined" -days 30 -addext keyUsage=keyEncipherment 2>/dev/null
        openssl x509 -in "$T/r.pem" -outform DER -out "$T/r.der"
        cat "$T/r.pem" "$T/r.key" >"$T/combined.pem"
        ok import "$T/combined.pem" $P
        assert_file_contains "$T/out" "Imported RSA private key" "combined import"
        assert_file_contains "$T/out" "\\(encrypt\\)" "encrypt kind"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-384 -nodes -keyout /dev/null \
                -out "$T/only.pem" -subj "/CN=Only Cert" -days 30 2>/dev/null
        openssl x509 -in "$T/only.pem" -outform DER -out "$T/only.der"
        ok import "$T/only.der" $P
        ok list
        assert_file_contains "$T/out" "CN \"Only Cert\" +sign\\+encrypt" "DER-only import"

        # Garbage is refused.
        head -c 300 /dev/urandom >"$T/junk.bin"
        expect_rc 5 import "$T/junk.bin" $P
}

# import_p12 LEGACY(0|1)
import_p12() {
        local legacy=$1 args=() id
        [[ $legacy = 1 ]] && args=(-legacy)
        openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/p.key" -out "$T/p.pem" \
                -subj "/CN=P12 User/O=NETCA test" -days 30 \
                -addext keyUsage=critical,digitalSignature,keyEncipherment 2>/dev/null
        make_ca
        openssl pkcs12 -export "${args[@]}" -in "$T/p.pem" -inkey "$T/p.key" -certfile "$T/ca.pem" \
                -name "p12 key" -out "$T/p.p12" -passout pass:p12secret || fail "openssl pkcs12 -export failed"
        if [[ $legacy = 1 ]]; then
                openssl pkcs12 -in "$T/p.p12" -info -noout -passin pass:p12secret -legacy 2>&1 |
                        grep -q "RC2\|3DES\|TripleDES" || fail "the -legacy file does not use the legacy PBEs"
        else
                openssl pkcs12 -in "$T/p.p12" -info -noout -passin pass:p12secret 2>&1 | grep -q "AES-256-CBC" ||
                        fail "the default file does not use PBES2/AES-256-CBC"
        fi

        # Wrong password: exit 3, nothing imported.
        expect_rc 3 import "$T/p.p12" --password wrong $P
        assert_file_contains "$T/err" "wrong password" "wrong password message"
        ok list --json
        assert_eq "$(json 'len(j["tokens"][0]["certificates"])')" 0 "certs after wrong password"

        printf 'p12secret\n' >"$T/pw"
        ok import "$T/p.p12" --password-file "$T/pw" $P
        assert_file_contains "$T/out" "Imported RSA private key \"p12 key\"" "p12 key import"
        assert_file_contains "$T/out" "Imported certificate \"P12 User\" \\(sign\\+encrypt\\)" "p12 cert import"
        assert_file_contains "$T/out" "Imported certificate \"NETCA Test CA\"" "p12 CA cert import"
        ok cert show --cert "P12 User" --json
        id=$(json 'j["id"]')
        assert_eq "$(json 'j["sha256"]')" "$(openssl x509 -in "$T/p.pem" -noout -fingerprint -sha256 | cut -d= -f2)" \
                "fingerprint of the imported certificate"

        # The imported private key is the certificate's: sign, verify with OpenSSL.
        head -c 1000 /dev/urandom >"$T/data"
        p11 --login --pin "$USER_PIN" --sign -m SHA256-RSA-PKCS --id "$id" -i "$T/data" -o "$T/sig" \
                >/dev/null 2>&1 || fail "signing with the imported RSA key failed"
        openssl x509 -in "$T/p.pem" -pubkey -noout >"$T/p.pub"
        openssl dgst -sha256 -verify "$T/p.pub" -signature "$T/sig" "$T/data" >/dev/null ||
                fail "signature by the imported key does not verify with the certificate"
        # And it is stored sensitive.
        p11 --login --pin "$USER_PIN" -O --type privkey --id "$id" >"$T/priv.txt" 2>&1
        assert_file_contains "$T/priv.txt" "Access: +sensitive" "imported key sensitivity"
}

case_import_p12() { import_p12 0; }
case_import_p12_legacy() { import_p12 1; }

case_cert_show_export() {
        make_ca
        ok key gen --type rsa2048 --label signer $P --json
        ok csr --label signer --subject "CN=Zhang San,O=NETCA test,C=CN" -o "$T/req.pem" $P
        issue "$T/req.pem" "$T/cert.pem" "digitalSignature,nonRepudiation"
        ok import "$T/cert.pem" $P
        ok cert show
        assert_file_contains "$T/out" "^Subject: +CN=Zhang San, O=NETCA test, C=CN$" "subject"
        assert_file_contains "$T/out" "^Issuer: +CN=NETCA Test CA, O=NETCA test$" "issuer"
        assert_file_contains "$T/out" "^Key: +RSA 2048 bits$" "key"
        assert_file_contains "$T/out" "^Key usage: +digitalSignature, nonRepudiation$" "key usage"
        assert_file_contains "$T/out" "^Kind: +sign$" "kind"
        ok cert show --json
        assert_eq "$(json 'j["sha256"]')" "$(openssl x509 -in "$T/cert.pem" -noout -fingerprint -sha256 | cut -d= -f2)" sha256
        assert_eq "$(json 'j["sha1"]')" "$(openssl x509 -in "$T/cert.pem" -noout -fingerprint -sha1 | cut -d= -f2)" sha1
        local serial want
        serial=$(json 'j["serial"].replace(":", "").lstrip("0")')
        want=$(openssl x509 -in "$T/cert.pem" -noout -serial | cut -d= -f2 | sed 's/^0*//')
        assert_eq "$serial" "$want" serial
        want=$(date -u -d "$(openssl x509 -in "$T/cert.pem" -noout -enddate | cut -d= -f2)" +%Y-%m-%dT%H:%M:%SZ)
        assert_eq "$(json 'j["not_after"]')" "$want" "not after"
        assert_eq "$(json 'j["key_bits"]')" 2048 "key bits"

        ok cert export --der -o "$T/out.der"
        openssl x509 -in "$T/cert.pem" -outform DER | cmp -s - "$T/out.der" || fail "DER export differs"
        ok cert export --pem --cert "Zhang San"
        openssl x509 -in "$T/out" -noout -fingerprint -sha256 >"$T/fp1"
        openssl x509 -in "$T/cert.pem" -noout -fingerprint -sha256 >"$T/fp2"
        cmp -s "$T/fp1" "$T/fp2" || fail "PEM export differs"
        expect_rc 1 cert export --pem --der
        expect_rc 4 cert show --cert "Nobody"

        # cert delete asks for the PIN: a wrong one keeps the certificate.
        expect_rc 3 cert delete --pin 000000
        ok list --json
        assert_eq "$(json 'len(j["tokens"][0]["certificates"])')" 1 "certs after failed delete"
        ok cert delete --with-key $P
        ok list --json
        assert_eq "$(json 'len(j["tokens"][0]["certificates"])')" 0 "certs after delete"
        assert_eq "$(json 'len(j["tokens"][0]["keys"])')" 0 "keys after delete --with-key"
}

case_csr() {
        local type
        for type in ec-p256 ec-p384 rsa2048; do
                ok key gen --type "$type" --label "csr-$type" $P
                ok csr --label "csr-$type" --subject "/CN=CSR $type/O=NETCA test/C=CN" -o "$T/$type.csr" $P
                openssl req -in "$T/$type.csr" -verify -noout 2>"$T/verify.txt" ||
                        fail "openssl req -verify rejects the $type request"
                assert_file_contains "$T/verify.txt" "verify OK" "$type request signature"
                assert_eq "$(openssl req -in "$T/$type.csr" -noout -subject)" "subject=CN = CSR $type, O = NETCA test, C = CN" \
                        "$type subject"
        done
        # The request carries the token's key.
        ok list --json
        local id
        id=$(json '[k["id"] for k in j["tokens"][0]["keys"] if k["label"] == "csr-ec-p256"][0]')
        # (pkcs11-tool 0.23's --read-object of an EC key reads freed memory under
        # ASan, so the point is taken from its object listing instead.)
        p11 -O --type pubkey --id "$id" >"$T/pub.txt" 2>&1
        local point req_point
        point=$(sed -n 's/^ *EC_POINT: *0441\([0-9a-f]*\)$/\1/p' "$T/pub.txt")
        [[ ${#point} -eq 130 ]] || { cat "$T/pub.txt" >&2; fail "no EC point for key $id"; }
        req_point=$(openssl req -in "$T/ec-p256.csr" -noout -pubkey | openssl pkey -pubin -outform DER |
                tail -c 65 | od -An -v -tx1 | tr -d ' \n')
        assert_eq "$req_point" "$point" "the request's public key"

        # Renewal: a certificate for the key, then a request from it without --subject.
        make_ca
        issue "$T/ec-p256.csr" "$T/cert.pem" "digitalSignature"
        ok import "$T/cert.pem" $P
        ok csr --cert "CSR ec-p256" -o "$T/renew.csr" $P
        openssl req -in "$T/renew.csr" -verify -noout 2>/dev/null || fail "renewal request does not verify"
        assert_eq "$(openssl req -in "$T/renew.csr" -noout -subject)" \
                "$(openssl x509 -in "$T/cert.pem" -noout -subject)" "renewal subject"
        openssl req -in "$T/renew.csr" -noout -pubkey | cmp -s - <(openssl req -in "$T/ec-p256.csr" -noout -pubkey) ||
                fail "renewal changed the key"
        # Without subject and certificate: a usage error.
        ok key gen --type ec-p256 --label lonely $P
        expect_rc 1 csr --label lonely $P
}

case_pin_change() {
        ok pin change --pin "$USER_PIN" --new-pin 24682468
        assert_file_contains "$T/out" "PIN changed" "pin change output"
        expect_rc 3 key gen --type ec-p256 $P
        ok key gen --type ec-p256 --pin 24682468
        printf '24682468\n' >"$T/pinfile"
        ok pin change --pin-file "$T/pinfile" --new-pin "$USER_PIN"
        ok key gen --type ec-p256 $P
        # Wrong current PIN: exit 3.
        expect_rc 3 pin change --pin 99999999 --new-pin 13571357
        # SO PIN change and back.
        ok pin change --so --so-pin "$SO_PIN" --new-pin 87654321
        ok pin change --so --so-pin 87654321 --new-pin "$SO_PIN"
        ok pin status --json
        assert_eq "$(json 'j["user"]["locked"]')" False "locked"
}

case_wrong_pin() {
        ok token create-soft --label three --pin 11112222 --so-pin 33334444 --max-tries 3
        ok pin status --token three --json
        assert_eq "$(json 'j["user"]["tries_left"]')" 3 "tries at start"
        assert_eq "$(json 'j["user"]["tries_max"]')" 3 "max tries"

        expect_rc 3 key gen --token three --type ec-p256 --pin 00000000
        assert_file_contains "$T/err" "wrong PIN for token \"three\": 2 tries left" "first wrong PIN"
        ok pin status --token three
        assert_file_contains "$T/out" "user PIN: +2 of 3 tries left" "pin status after a wrong PIN"
        expect_rc 3 key gen --token three --type ec-p256 --pin 00000000
        assert_file_contains "$T/err" "1 try left" "second wrong PIN"
        expect_rc 3 key gen --token three --type ec-p256 --pin 00000000
        assert_file_contains "$T/err" "locked.*netca-tool pin unblock" "locked message"
        # Now even the right PIN is refused, with the unblock hint.
        expect_rc 3 key gen --token three --type ec-p256 --pin 11112222
        assert_file_contains "$T/err" "pin unblock" "locked message with the right PIN"
        ok pin status --token three --json
        assert_eq "$(json 'j["user"]["locked"]')" True "locked in pin status"
        ok list --json
        assert_eq "$(json '[t["pin_locked"] for t in j["tokens"] if t["label"] == "three"][0]')" True "list shows locked"
        # A success resets the counter (on the other token).
        expect_rc 3 key gen --type ec-p256 --token "$TOKEN_LABEL" --pin 00000000
        ok key gen --type ec-p256 --token "$TOKEN_LABEL" $P
        ok pin status --token "$TOKEN_LABEL" --json
        [[ "$(json 'j["user"]["tries_left"]')" == "$(json 'j["user"]["tries_max"]')" ]] ||
                fail "a good PIN did not reset the tries"
}

case_pin_unblock() {
        ok token create-soft --label blocked --pin 11112222 --so-pin 33334444 --max-tries 2
        expect_rc 3 key gen --token blocked --type ec-p256 --pin 00000000
        expect_rc 3 key gen --token blocked --type ec-p256 --pin 00000000
        ok pin status --token blocked --json
        assert_eq "$(json 'j["user"]["locked"]')" True "locked"
        # A wrong SO PIN does not unblock.
        expect_rc 3 pin unblock --token blocked --so-pin 99999999 --new-pin 55556666
        ok pin status --token blocked --json
        assert_eq "$(json 'j["user"]["locked"]')" True "still locked"
        ok pin unblock --token blocked --so-pin 33334444 --new-pin 55556666
        assert_file_contains "$T/out" "unblocked" "unblock output"
        ok pin status --token blocked --json
        assert_eq "$(json 'j["user"]["locked"]')" False "unlocked"
        assert_eq "$(json 'j["user"]["tries_left"]')" 2 "tries after unblock"
        ok key gen --token blocked --type ec-p256 --pin 55556666
        expect_rc 3 key gen --token blocked --type ec-p256 --pin 11112222
}

# Usage records (suite audit): what a user does shows in `log show`, with
# reasons, filters, the failed ones marked; never a PIN.
case_audit_records() {
        ok token create-soft --label audited --pin 24682468 --so-pin 13571357 --max-tries 5
        expect_rc 3 key gen --token audited --type ec-p256 --label rec-key --pin 00000000
        ok key gen --token audited --type ec-p256 --label rec-key --pin 24682468
        # A signature by a foreign program (pkcs11-tool) through the module.
        printf 'data to sign' >"$T/data"
        p11 --token-label audited --login --pin 24682468 --sign --mechanism ECDSA-SHA256 \
                --label rec-key --input-file "$T/data" --output-file "$T/sig" >/dev/null 2>&1 ||
                fail "pkcs11-tool --sign failed"
        ok pin change --token audited --pin 24682468 --new-pin 11223344

        ok log show --token audited --json
        cp "$T/out" "$T/all.json"
        local got
        got=$(json '" | ".join(r["op"] + ":" + r["result"] for r in j)')
        log "records: $got"
        [[ $got == *"login:failed"* ]] || fail "the wrong PIN is not recorded: $got"
        [[ $got == *"keygen:ok"* ]] || fail "the key generation is not recorded: $got"
        [[ $got == *"sign:ok"* ]] || fail "the signature is not recorded: $got"
        [[ $got == *"pin-change:ok"* ]] || fail "the PIN change is not recorded: $got"
        assert_eq "$(json '[r["reason"] for r in j if r["result"] == "failed"][0]')" "wrong PIN, 4 tries left" \
                "the failure's reason"
        assert_eq "$(json '[r["object"] for r in j if r["op"] == "sign"][0]')" "rec-key" "the signed-with key"
        assert_eq "$(json '[r["label"] for r in j if r["op"] == "sign"][0]')" "audited" "the token"
        [[ "$(json '[r["exe"] for r in j if r["op"] == "sign"][0]')" == *pkcs11-tool ]] ||
                fail "the signing program is not recorded"
        assert_eq "$(json '[r["pid"] > 0 for r in j][0]')" True "pid"

        # Filters: failures only; another token; a time window in the future.
        ok log show --token audited --failed --json
        assert_eq "$(json 'len(j)')" 1 "failed only"
        ok log show --token "$TOKEN_LABEL" --json
        assert_eq "$(json 'len([r for r in j if r["label"] == "audited"])')" 0 "token filter"
        ok log show --since "$(date -d tomorrow +%Y-%m-%d)" --json
        assert_eq "$(json 'len(j)')" 0 "since tomorrow"
        ok log show --since 1h --json
        [[ "$(json 'len(j)')" -ge 5 ]] || fail "since an hour ago: too few records"
        expect_rc 1 log show --since yesterday-ish

        # The text form marks failures (no colour when not a terminal).
        ok log show --token audited
        assert_file_contains "$T/out" "login +FAILED.*wrong PIN, 4 tries left" "failure line"
        assert_file_not_contains "$T/out" $'\033' "colour codes off a terminal"

        # No PIN in the state database or its journal, nor in any record.
        local f
        for f in "$NETCA_DATA_DIR"/state.db*; do
                for pin in 24682468 11223344 00000000 13571357; do
                        ! grep -aq "$pin" "$f" || fail "a PIN is in $f"
                done
        done
        for pin in 24682468 11223344 00000000; do
                ! grep -q "$pin" "$T/all.json" || fail "a PIN is in the records"
        done

        ok log clear --yes
        ok log show
        assert_file_contains "$T/out" "No usage records" "after clear"

        # The count kept (rotation itself: tests/audit/test-audit.c).
        expect_rc 1 log set --max-records 5
        ok log set --max-records 150
        assert_file_contains "$T/out" "newest 150 usage records" "log set (the daemon's answer)"
}

case_audit_export() {
        expect_rc 3 key gen --type ec-p256 --pin 00000000
        ok key gen --type ec-p256 $P
        ok log enable
        ok key gen --type ec-p256 --label after-enable $P
        ok log export "$T/support.tar.gz"
        assert_file_contains "$T/out" "Wrote .*support.tar.gz: [0-9]+ usage records and the diagnostic log" "export"
        mkdir "$T/x"
        tar -xzf "$T/support.tar.gz" -C "$T/x" || fail "the export is not a gzip tar archive"
        [[ -s "$T/x/records.json" && -s "$T/x/records.txt" && -s "$T/x/diagnostic.log" ]] ||
                fail "the archive lacks records.json, records.txt or diagnostic.log"
        $PY -c 'import json,sys; j=json.load(open(sys.argv[1])); assert any(r["result"]=="failed" for r in j)' \
                "$T/x/records.json" || fail "records.json lacks the failed login"
        assert_file_contains "$T/x/records.txt" "FAILED" "records.txt"
        # The diagnostic log has the daemon's debug lines, and no PIN.
        assert_file_contains "$T/x/diagnostic.log" "core: login slot" "diagnostic log content"
        ! grep -q "$USER_PIN" "$T/x/diagnostic.log" || fail "the PIN is in the diagnostic log"
        ok log disable
        local size
        size=$(stat -c %s "$NETCA_DATA_DIR/diagnostic.log")
        ok key gen --type ec-p256 $P
        assert_eq "$(stat -c %s "$NETCA_DATA_DIR/diagnostic.log")" "$size" "diagnostic log after disable"
}

# key gen --type rsa3072: OpenSSL reads a 3072-bit RSA public key from the
# token, and a request signed with it verifies.
case_keygen_rsa3072() {
        local id
        ok key gen --type rsa3072 --label k-rsa3072 $P --json
        id=$(json 'j["id"]')
        [[ ${#id} -eq 40 ]] || fail "key id '$id' is not a SHA-1"
        fixture_read_pubkey "$id" "$T/k3072.pub"
        openssl pkey -pubin -in "$T/k3072.pub" -noout -text >"$T/k3072.txt" 2>&1 ||
                fail "openssl cannot read the public key"
        assert_file_contains "$T/k3072.txt" "Public-Key: \\(3072 bit\\)" "size of the generated RSA key"
        ok list
        assert_file_contains "$T/out" "RSA 3072 +id $id +label \"k-rsa3072\"" "list shows the RSA 3072 key"
        ok csr --label k-rsa3072 --subject "CN=RSA 3072" -o "$T/k3072.csr" $P
        openssl req -in "$T/k3072.csr" -verify -noout 2>/dev/null || fail "the RSA-3072 request does not verify"
        openssl req -in "$T/k3072.csr" -noout -pubkey | cmp -s - "$T/k3072.pub" ||
                fail "the request does not carry the token's key"
}

# import_encrypted KIND KEYFILE: KEYFILE is encrypted with "keysecret"; the
# certificate $T/enc.pem carries its key.
import_encrypted() {
        local kind=$1 key=$2 id mech
        # Wrong password: exit 3 with a clear message, nothing imported.
        expect_rc 3 import "$T/enc.pem" --key "$key" --password wrong-secret $P
        assert_file_contains "$T/err" "wrong password for .*${key##*/}" "wrong password message ($kind)"
        ok list --json
        assert_eq "$(json 'len(j["tokens"][0]["keys"])')" 0 "keys after a wrong password ($kind)"
        assert_eq "$(json 'len(j["tokens"][0]["certificates"])')" 0 "certificates after a wrong password ($kind)"
        # No password and no terminal: a usage error, not a hang.
        expect_rc 1 import "$T/enc.pem" --key "$key" $P </dev/null
        assert_file_contains "$T/err" "needs a password" "no password message ($kind)"
        # The right one, from a file.
        printf 'keysecret\n' >"$T/keypw"
        ok import "$T/enc.pem" --key "$key" --password-file "$T/keypw" $P
        assert_file_contains "$T/out" "Imported $kind private key" "import of the encrypted $kind key"
        ok cert show --json
        id=$(json 'j["id"]')
        # The key on the token is the certificate's: it signs, OpenSSL verifies.
        head -c 1000 /dev/urandom >"$T/data"
        if [[ $kind = RSA ]]; then mech=SHA256-RSA-PKCS; else mech=ECDSA-SHA256; fi
        p11 --login --pin "$USER_PIN" --sign -m "$mech" --id "$id" --signature-format openssl \
                -i "$T/data" -o "$T/sig" >/dev/null 2>&1 || fail "signing with the imported $kind key failed"
        openssl x509 -in "$T/enc.pem" -pubkey -noout >"$T/enc.pub"
        openssl dgst -sha256 -verify "$T/enc.pub" -signature "$T/sig" "$T/data" >/dev/null ||
                fail "the signature of the imported $kind key does not verify with its certificate"
        ok cert delete --with-key $P
}

# import of encrypted PEM keys (netca-tool(1): "PKCS#1, SEC1 or PKCS#8,
# encrypted or not"), with --password / --password-file: the traditional
# encrypted PEM forms (Proc-Type/DEK-Info, AES-256-CBC) of PKCS#1 and SEC1.
case_import_encrypted() {
        openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/rsa.key" 2>/dev/null
        openssl pkey -in "$T/rsa.key" -traditional -aes256 -passout pass:keysecret -out "$T/rsa1.key" 2>/dev/null
        grep -q "^Proc-Type: 4,ENCRYPTED" "$T/rsa1.key" || fail "openssl did not write a traditional encrypted key"
        grep -q "BEGIN RSA PRIVATE KEY" "$T/rsa1.key" || fail "openssl did not write a PKCS#1 key"
        openssl req -x509 -key "$T/rsa1.key" -passin pass:keysecret -out "$T/enc.pem" \
                -subj "/CN=Encrypted RSA1/O=NETCA test" -days 30 2>/dev/null
        import_encrypted RSA "$T/rsa1.key"
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/ec.key" 2>/dev/null
        openssl pkey -in "$T/ec.key" -traditional -aes256 -passout pass:keysecret -out "$T/sec1.key" 2>/dev/null
        grep -q "BEGIN EC PRIVATE KEY" "$T/sec1.key" || fail "openssl did not write a SEC1 key"
        grep -q "^Proc-Type: 4,ENCRYPTED" "$T/sec1.key" || fail "openssl did not write an encrypted SEC1 key"
        openssl req -x509 -key "$T/sec1.key" -passin pass:keysecret -out "$T/enc.pem" \
                -subj "/CN=Encrypted SEC1/O=NETCA test" -days 30 2>/dev/null
        import_encrypted EC "$T/sec1.key"
}

# Encrypted PKCS#8 as OpenSSL 3 writes it by default (openssl genpkey
# -aes256: PBES2, PBKDF2 with HMAC-SHA-256, AES-256-CBC), RSA and EC.
case_import_encrypted_pkcs8() {
        openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -aes256 -pass pass:keysecret \
                -out "$T/rsa8.key" 2>/dev/null
        grep -q "BEGIN ENCRYPTED PRIVATE KEY" "$T/rsa8.key" || fail "openssl did not write an encrypted PKCS#8 key"
        openssl asn1parse -in "$T/rsa8.key" | grep -q "hmacWithSHA256" || fail "not PBKDF2 with HMAC-SHA-256"
        openssl req -x509 -key "$T/rsa8.key" -passin pass:keysecret -out "$T/enc.pem" \
                -subj "/CN=Encrypted RSA/O=NETCA test" -days 30 2>/dev/null
        import_encrypted RSA "$T/rsa8.key"
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -aes256 -pass pass:keysecret \
                -out "$T/ec8.key" 2>/dev/null
        openssl req -x509 -key "$T/ec8.key" -passin pass:keysecret -out "$T/enc.pem" \
                -subj "/CN=Encrypted EC/O=NETCA test" -days 30 2>/dev/null
        import_encrypted EC "$T/ec8.key"
}

# PINs from files: --pin-file, --new-pin-file, --so-pin-file (the first line
# of the file; "-" is standard input).  The new PIN is the one that logs in.
case_pin_files() {
        printf '%s\n' "$USER_PIN" >"$T/old"
        printf '24682468\nnot this line\n' >"$T/new"
        ok pin change --pin-file "$T/old" --new-pin-file "$T/new"
        assert_file_contains "$T/out" "PIN changed" "pin change with files"
        expect_rc 3 key gen --type ec-p256 $P
        ok key gen --type ec-p256 --pin 24682468
        # --new-pin-file - : the new PIN on standard input.
        printf '%s\n' "$USER_PIN" | tool pin change --pin 24682468 --new-pin-file -
        [[ $RC -eq 0 ]] || { cat "$T/out" "$T/err" >&2; fail "pin change --new-pin-file - exited $RC"; }
        ok key gen --type ec-p256 $P
        # A missing file is an error, and changes nothing.
        tool pin change --pin "$USER_PIN" --new-pin-file "$T/nonexistent"
        [[ $RC -ne 0 ]] || fail "pin change with a missing --new-pin-file succeeded"
        ok key gen --type ec-p256 $P

        # The SO PIN from a file, changed to one from a file.
        printf '%s\n' "$SO_PIN" >"$T/so"
        printf '87654321\n' >"$T/newso"
        ok pin change --so --so-pin-file "$T/so" --new-pin-file "$T/newso"
        expect_rc 3 pin change --so --so-pin-file "$T/so" --new-pin 11111111
        printf '99999999\n' >"$T/wrongso"
        expect_rc 3 pin change --so --so-pin-file "$T/wrongso" --new-pin 11111111

        # Unblock a locked PIN with the SO PIN and the new PIN from files.
        ok token create-soft --label lockme --pin 11112222 --so-pin 33334444 --max-tries 2
        expect_rc 3 key gen --token lockme --type ec-p256 --pin 00000000
        expect_rc 3 key gen --token lockme --type ec-p256 --pin 00000000
        ok pin status --token lockme --json
        assert_eq "$(json 'j["user"]["locked"]')" True "locked"
        printf '33334444\n' >"$T/so2"
        printf '55556666\n' >"$T/new2"
        printf '99999999\n' >"$T/wrongso2"
        expect_rc 3 pin unblock --token lockme --so-pin-file "$T/wrongso2" --new-pin-file "$T/new2" </dev/null
        ok pin unblock --token lockme --so-pin-file "$T/so2" --new-pin-file "$T/new2" </dev/null
        assert_file_contains "$T/out" "unblocked" "unblock output"
        ok pin status --token lockme --json
        assert_eq "$(json 'j["user"]["locked"]')" False "unlocked"
        ok key gen --token lockme --type ec-p256 --pin 55556666
        expect_rc 3 key gen --token lockme --type ec-p256 --pin 11112222

        # --puk-file on a soft token: refused (PIV keys only), with a clear
        # message.  (The PIV flow: cli-piv-puk-file.)
        printf '12345678\n' >"$T/puk"
        expect_rc 1 pin unblock --token lockme --puk-file "$T/puk" --new-pin 77778888
        assert_file_contains "$T/err" "is not a PIV key" "--puk-file on a soft token"
}

# A certificate past its notAfter is marked EXPIRED (list, cert show, JSON);
# a valid one is not.  The certificates are made with python3-cryptography
# (OpenSSL 3.0's x509/req cannot set a notAfter in the past).
case_cert_expired() {
        $PY - "$T" <<'PYEOF' || fail "python3-cryptography could not make the test certificates"
import datetime, sys
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
d = sys.argv[1]
now = datetime.datetime.utcnow()
for name, nb, na in (("Old Cert", datetime.datetime(2020, 1, 1), datetime.datetime(2021, 1, 1)),
                     ("Fresh Cert", now - datetime.timedelta(days=1), now + datetime.timedelta(days=30)),
                     ("Just Expired", now - datetime.timedelta(days=2), now - datetime.timedelta(minutes=5))):
    k = ec.generate_private_key(ec.SECP256R1())
    n = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    c = (x509.CertificateBuilder().subject_name(n).issuer_name(n).public_key(k.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(nb).not_valid_after(na)
         .sign(k, hashes.SHA256()))
    open("%s/%s.der" % (d, name.replace(" ", "_")), "wb").write(c.public_bytes(serialization.Encoding.DER))
PYEOF
        # OpenSSL agrees which one is expired.
        openssl x509 -inform DER -in "$T/Old_Cert.der" -noout -checkend 0 >/dev/null && fail "openssl: Old Cert valid?"
        openssl x509 -inform DER -in "$T/Fresh_Cert.der" -noout -checkend 0 >/dev/null || fail "openssl: Fresh Cert expired?"
        local c
        for c in Old_Cert Fresh_Cert Just_Expired; do
                ok import "$T/$c.der" $P
        done
        ok list
        assert_file_contains "$T/out" "CN \"Old Cert\" .* expires 2021-01-01.* \\(EXPIRED\\)" "list: the expired certificate"
        assert_file_contains "$T/out" "CN \"Just Expired\" .*\\(EXPIRED\\)" "list: the certificate expired minutes ago"
        assert_file_not_contains "$T/out" "CN \"Fresh Cert\" .*EXPIRED" "list: the valid certificate"
        ok list --json
        assert_eq "$(json 'sorted((c["cn"], c["expired"]) for c in j["tokens"][0]["certificates"])')" \
                "[('Fresh Cert', False), ('Just Expired', True), ('Old Cert', True)]" "expired in the JSON list"
        ok cert show --cert "Old Cert"
        assert_file_contains "$T/out" "^Not after: .*\\(EXPIRED\\)$" "cert show: expired"
        ok cert show --cert "Fresh Cert"
        assert_file_not_contains "$T/out" "EXPIRED" "cert show: valid"
}

# log show --until: records after WHEN are left out; with --since, a window.
case_log_until() {
        ok key gen --type ec-p256 --label early $P
        ok log show --json
        local n_early t_mid
        n_early=$(json 'len(j)')
        [[ $n_early -ge 1 ]] || fail "no usage record of the first key generation"
        sleep 1.2
        t_mid=$(date '+%Y-%m-%d %H:%M:%S')
        sleep 1.2
        expect_rc 3 key gen --type ec-p256 --label late --pin 00000000
        ok key gen --type ec-p256 --label late $P
        ok log show --json
        local n_all
        n_all=$(json 'len(j)')
        ((n_all >= n_early + 2)) || fail "the later operations are not recorded ($n_all records)"

        ok log show --until "$t_mid" --json
        assert_eq "$(json 'len(j)')" "$n_early" "records until $t_mid"
        assert_eq "$(json 'sorted(set(r["object"] for r in j if r["op"] == "keygen"))')" "['early']" "keygen until $t_mid"
        ok log show --since "$t_mid" --json
        assert_eq "$(json 'len(j)')" "$((n_all - n_early))" "records since $t_mid"
        ok log show --since "$t_mid" --until "$(date -d tomorrow +%Y-%m-%d)" --failed --json
        assert_eq "$(json '[r["op"] + ":" + r["result"] for r in j]')" "['login:failed']" "window and --failed"
        # A time ago, and a date before everything.
        ok log show --until 1h --json
        assert_eq "$(json 'len(j)')" 0 "records until an hour ago"
        ok log show --until 2000-01-01 --json
        assert_eq "$(json 'len(j)')" 0 "records until 2000"
        ok log show --until "$t_mid"
        assert_file_contains "$T/out" "keygen" "text form with --until"
        assert_file_not_contains "$T/out" "FAILED" "text form with --until"
        ok log show --until 2000-01-01
        assert_file_contains "$T/out" "No usage records" "text form, nothing until 2000"
        expect_rc 1 log show --until someday
        assert_file_contains "$T/err" "--since/--until take a date" "bad --until"
}

fn="case_${CASE//-/_}"
declare -F "$fn" >/dev/null || fail "unknown case $CASE"
"$fn"
log "$CASE: ok"
