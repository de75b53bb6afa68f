#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""OpenSC reads the virtual PIV card (suite 'opensc').

    opensc-piv.py VPIV_CARD MAKE_CARD

Starts a private pcscd with a vpcd reader and vpiv-card --vpcd in it
(vpcdenv.py: how and why), and checks with OpenSC's opensc-pkcs11.so through
pkcs11-tool:
  - the token lists the certificates of 9A 9C 9D 9E 82 and their public keys,
    byte-identical to the card directory's certificate files;
  - SHA256-RSA-PKCS with 9A and ECDSA-SHA256 with 9C (PIN always, twice)
    and 9E verify with openssl against the certificate files; RSA-PKCS
    decryption with 9D returns what openssl encrypted to its certificate;
  - a wrong PIN is refused, --change-pin works (old PIN refused afterwards),
    three wrong PINs lock, --unlock-pin with the PUK unblocks (opensc.conf:
    user_pin_unblock_style = set_pin_in_unlogged_session), and the card
    saves the new PIN when it gets SIGTERM.
Fails (never skips) when pcscd, vpcd or OpenSC are missing or do not work.
"""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vpcdenv  # noqa: E402

TIMEOUT = 30

failures = []
procs = []


def fail(msg):
    print("FAIL: " + msg, flush=True)
    failures.append(msg)


def die(msg):
    fail(msg)
    raise SystemExit(1)


def run(args, check=True, env=None, input=None):
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, input=input,
                       timeout=TIMEOUT)
    out = p.stdout.decode(errors="replace")
    if check and p.returncode != 0:
        die("%s exited %d:\n%s" % (" ".join(args), p.returncode, out))
    return p.returncode, out


def main():
    if len(sys.argv) != 3:
        die("usage: opensc-piv.py VPIV_CARD MAKE_CARD")
    vpiv_card, make_card = sys.argv[1], sys.argv[2]
    module = vpcdenv.opensc_module()
    if not module:
        die("opensc-pkcs11.so missing (install opensc-pkcs11: scripts/install-deps.sh)")

    tmp = tempfile.mkdtemp(prefix="vpiv-opensc-")
    card = os.path.join(tmp, "card")
    run([make_card, card])
    try:
        vc = vpcdenv.VpcdCard(vpiv_card, card, tmp, timeout=TIMEOUT).__enter__()
    except vpcdenv.VpcdError as e:
        die(str(e))
    procs.append(vc)
    env = vc.env

    p11 = ["pkcs11-tool", "--module", module]

    rc, listing = run(p11 + ["-L"], env=env)
    if "token label" not in listing:
        die("OpenSC sees no token:\n" + listing)
    print(listing)

    # Serial: OpenSC takes the CHUID GUID (agency code 9999) as the token serial.
    guid = [l.split("=")[1].strip() for l in open(os.path.join(card, "card.conf")) if l.startswith("guid")][0]
    serial_line = [l for l in listing.splitlines() if "serial num" in l]
    if not serial_line or serial_line[0].split(":")[1].strip().lower() not in guid.lower():
        fail("token serial %r is not from the GUID %s" % (serial_line, guid))

    rc, objs = run(p11 + ["-O"], env=env)
    print(objs)
    # slot -> (PKCS#11 id OpenSC gives it, public key description)
    slots = {"9a": ("01", "RSA 2048 bits"), "9c": ("02", "EC  EC_POINT 256 bits"),
             "9d": ("03", "RSA 2048 bits"), "9e": ("04", "EC  EC_POINT 256 bits"),
             "82": ("05", "EC  EC_POINT 384 bits")}
    for slot, (oid, keydesc) in slots.items():
        want_cert = os.path.join(tmp, slot + ".der")
        run(["openssl", "x509", "-in", os.path.join(card, slot + ".crt.pem"), "-outform", "DER", "-out", want_cert])
        got_cert = os.path.join(tmp, slot + ".got.der")
        run(p11 + ["--read-object", "--type", "cert", "--id", oid, "-o", got_cert], env=env)
        if open(want_cert, "rb").read() != open(got_cert, "rb").read():
            fail("certificate of %s (id %s) differs from %s.crt.pem" % (slot, oid, slot))
        if "Public Key Object; " + keydesc not in objs:
            fail("no public key '%s' listed for %s" % (keydesc, slot))
        # The public key OpenSC reads equals the certificate's.
        want_pub = os.path.join(tmp, slot + ".pub.der")
        rc, pem = run(["openssl", "x509", "-in", os.path.join(card, slot + ".crt.pem"), "-pubkey", "-noout"])
        run(["openssl", "pkey", "-pubin", "-outform", "DER", "-out", want_pub], input=pem.encode())
        got_pub = os.path.join(tmp, slot + ".gotpub.der")
        spki = open(want_pub, "rb").read()
        if keydesc.startswith("EC"):
            # pkcs11-tool 0.23 cannot export some EC keys ("cannot create
            # EVP_PKEY" for P-384): compare CKA_EC_POINT as listed, a DER
            # OCTET STRING around the uncompressed point that ends the SPKI.
            plen = 65 if "256" in keydesc else 97
            want_point = (bytes([0x04, plen]) + spki[-plen:]).hex()
            if "EC_POINT:   " + want_point not in objs:
                fail("EC point of %s (id %s) differs from the certificate's" % (slot, oid))
        else:
            run(p11 + ["--read-object", "--type", "pubkey", "--id", oid, "-o", got_pub], env=env)
            if spki != open(got_pub, "rb").read():
                fail("public key of %s (id %s) differs from the certificate's" % (slot, oid))
        subj = run(["openssl", "x509", "-in", os.path.join(card, slot + ".crt.pem"), "-noout", "-subject"])[1]
        cn = subj.split("CN = ")[-1].strip()
        if cn not in objs:
            fail("certificate subject %r not listed" % cn)

    data = os.path.join(tmp, "data.bin")
    with open(data, "wb") as f:
        f.write(b"signed by OpenSC through pcscd and vpcd\n" * 3)

    def pubkey_pem(slot):
        path = os.path.join(tmp, slot + ".pub.pem")
        run(["openssl", "x509", "-in", os.path.join(card, slot + ".crt.pem"), "-pubkey", "-noout", "-out", path])
        return path

    def sign_and_verify(slot, mech, pin, extra=()):
        oid = slots[slot][0]
        sig = os.path.join(tmp, "sig-" + slot)
        if os.path.exists(sig):
            os.unlink(sig)
        args = p11 + ["--sign", "--id", oid, "-m", mech, "-i", data, "-o", sig] + list(extra)
        if pin is not None:
            args += ["--login", "--pin", pin]
        rc, out = run(args, check=False, env=env)
        if rc != 0:
            fail("pkcs11-tool --sign with %s (%s) exited %d:\n%s" % (slot, mech, rc, out))
            return
        rc, out = run(["openssl", "dgst", "-sha256", "-verify", pubkey_pem(slot), "-signature", sig, data],
                      check=False)
        if rc != 0 or "Verified OK" not in out:
            fail("openssl does not verify the %s signature of %s: %s" % (mech, slot, out))
        else:
            print("ok: %s signature of %s verifies against %s.crt.pem" % (mech, slot, slot))

    sign_and_verify("9a", "SHA256-RSA-PKCS", "123456")
    sign_and_verify("9c", "ECDSA-SHA256", "123456", ["--signature-format", "openssl"])
    sign_and_verify("9c", "ECDSA-SHA256", "123456", ["--signature-format", "openssl"])  # PIN always: again
    # 9E needs no PIN on the card, but pkcs11-tool logs in on a token that
    # requires login, so it is given one.
    sign_and_verify("9e", "ECDSA-SHA256", "123456", ["--signature-format", "openssl"])

    # 9D: decrypt what openssl encrypted to the certificate.
    secret = os.path.join(tmp, "secret.bin")
    with open(secret, "wb") as f:
        f.write(b"key transport test 0123456789")
    ct = os.path.join(tmp, "secret.enc")
    run(["openssl", "pkeyutl", "-encrypt", "-pubin", "-inkey", pubkey_pem("9d"), "-in", secret, "-out", ct])
    pt = os.path.join(tmp, "secret.dec")
    rc, out = run(p11 + ["--decrypt", "--id", "03", "-m", "RSA-PKCS", "-i", ct, "-o", pt, "--login", "--pin",
                         "123456"], check=False, env=env)
    if rc != 0 or open(pt, "rb").read() != open(secret, "rb").read():
        fail("RSA-PKCS decryption with 9D failed (rc %d): %s" % (rc, out))
    else:
        print("ok: 9D decrypts what openssl encrypted to its certificate")

    # Wrong PIN is refused, and does not lock (one try).
    rc, out = run(p11 + ["--login", "--pin", "000000", "--list-objects", "--type", "privkey"], check=False, env=env)
    if rc == 0 or "CKR_PIN_INCORRECT" not in out:
        fail("a wrong PIN was not refused with CKR_PIN_INCORRECT (rc %d): %s" % (rc, out))

    # Change the PIN; the old one is refused, the new one signs.
    rc, out = run(p11 + ["--login", "--pin", "123456", "--change-pin", "--new-pin", "654321"], check=False, env=env)
    if rc != 0:
        fail("--change-pin exited %d: %s" % (rc, out))
    rc, out = run(p11 + ["--login", "--pin", "123456", "--list-objects", "--type", "privkey"], check=False, env=env)
    if rc == 0:
        fail("the old PIN still works after --change-pin")
    sign_and_verify("9a", "SHA256-RSA-PKCS", "654321")

    # Lock the PIN (the third wrong one), then unblock it with the PUK.
    outs = [run(p11 + ["--login", "--pin", "000000", "--list-objects", "--type", "privkey"], check=False, env=env)
            for _ in range(3)]
    if any(rc == 0 for rc, _ in outs) or "CKR_PIN_LOCKED" not in outs[2][1] + outs[1][1]:
        fail("three wrong PINs did not lock the PIN: " + outs[2][1])
    rc, out = run(p11 + ["--login", "--pin", "654321", "--list-objects", "--type", "privkey"], check=False, env=env)
    if rc == 0:
        fail("the right PIN works on a locked card")
    rc, out = run(p11 + ["--unlock-pin", "--puk", "12345678", "--new-pin", "246810"], check=False, env=env)
    if rc != 0:
        fail("--unlock-pin with the PUK exited %d: %s" % (rc, out))
    sign_and_verify("9a", "SHA256-RSA-PKCS", "246810")

    # SIGTERM: the card saves its state (the new PIN, counters reset by the success).
    try:
        rc = vc.stop_card()
    except vpcdenv.VpcdError as e:
        die(str(e))
    if rc != 0:
        fail("vpiv-card exited %d on SIGTERM" % rc)
    conf = open(os.path.join(card, "card.conf")).read()
    if "pin = 246810" not in conf or "pin_tries_left = 3" not in conf or "puk_tries_left = 3" not in conf:
        fail("the card did not save the new PIN and counters:\n" + conf)

    if failures:
        print("pcscd log:\n" + vc.log("pcscd")[-4000:])
        print("card log:\n" + vc.log("card")[-4000:])
        raise SystemExit(1)
    subprocess.run(["rm", "-rf", tmp])
    print("opensc: all checks passed")


if __name__ == "__main__":
    try:
        main()
    finally:
        for vc in procs:
            vc.stop_all()
