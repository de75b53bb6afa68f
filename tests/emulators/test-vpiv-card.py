#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""vpiv-card's transports (suite piv-emulator).

    test-vpiv-card.py VPIV_CARD MAKE_CARD

--stdio: vpcd framing on stdin/stdout; control messages (ATR, power off/on),
APDUs, and EOF saving the card state.
--vpcd: against a fake vpcd (a TCP server here) that, like Debian's vpcd,
writes the 2-byte length and the APDU separately; the card reconnects when
the server drops it (a new connection is a new insertion: security state
cleared) and saves its state on SIGTERM.  Prints the mean APDU round trip
for information (no assertion on it).
"""
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

TIMEOUT = 30
AID = bytes.fromhex("A000000308000010000100")


def check(cond, msg):
    if not cond:
        print("FAIL: " + msg, flush=True)
        raise SystemExit(1)


def pin_block(pin):
    return pin.encode() + b"\xff" * (8 - len(pin))


def read_exact(read, n):
    buf = b""
    while len(buf) < n:
        chunk = read(n - len(buf))
        check(chunk, "EOF from vpiv-card after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return buf


class Stdio:
    def __init__(self, exe, card):
        self.p = subprocess.Popen([exe, "--dir", card, "--stdio"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def send(self, payload, answer=True):
        self.p.stdin.write(struct.pack(">H", len(payload)) + payload)
        self.p.stdin.flush()
        if not answer:
            return None
        n = struct.unpack(">H", read_exact(self.p.stdout.read, 2))[0]
        return read_exact(self.p.stdout.read, n)


def sw(resp):
    return resp[-2] << 8 | resp[-1]


def stdio_tests(exe, card):
    s = Stdio(exe, card)
    atr = s.send(b"\x04")
    check(len(atr) >= 4 and atr[0] == 0x3B, "ATR %s" % atr.hex())
    check(s.send(b"\x01", answer=False) is None, "power on")
    r = s.send(bytes([0, 0xA4, 4, 0, len(AID)]) + AID + b"\x00")
    check(sw(r) == 0x9000 and r[0] == 0x61, "SELECT: %s" % r.hex())
    check(sw(s.send(bytes.fromhex("0020008008") + pin_block("123456"))) == 0x9000, "VERIFY")
    check(sw(s.send(bytes.fromhex("00200080"))) == 0x9000, "VERIFY status after VERIFY")
    s.send(b"\x00", answer=False)       # power off
    s.send(b"\x01", answer=False)
    check(sw(s.send(bytes.fromhex("00200080"))) == 0x63C3, "power cycle keeps the PIN verified")
    check(sw(s.send(bytes.fromhex("0020008008") + pin_block("999999"))) == 0x63C2, "wrong PIN")
    s.send(b"\x02", answer=False)       # reset
    check(sw(s.send(bytes.fromhex("00200080"))) == 0x63C2, "the counter survives a reset")
    # A certificate through GET RESPONSE chaining.
    r = s.send(bytes.fromhex("00CB3FFF055C035FC10500"))
    data = r[:-2]
    while r[-2] == 0x61:
        r = s.send(bytes([0, 0xC0, 0, 0, r[-1]]))
        data += r[:-2]
    check(sw(r) == 0x9000 and data[0] == 0x53 and len(data) > 300, "GET DATA 9A certificate: %d bytes" % len(data))
    s.p.stdin.close()
    check(s.p.wait(timeout=TIMEOUT) == 0, "vpiv-card --stdio exit status at EOF")
    conf = open(os.path.join(card, "card.conf")).read()
    check("pin_tries_left = 2" in conf, "EOF did not save the PIN counter:\n" + conf)
    print("ok: --stdio")


def vpcd_tests(exe, card):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(TIMEOUT)
    port = srv.getsockname()[1]
    p = subprocess.Popen([exe, "--dir", card, "--vpcd", "127.0.0.1:%d" % port], stderr=subprocess.PIPE)
    try:
        conn, _ = srv.accept()
        conn.settimeout(TIMEOUT)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def xfer(payload, answer=True):
            # Two writes, as Debian's vpcd does.
            conn.sendall(struct.pack(">H", len(payload)))
            conn.sendall(payload)
            if not answer:
                return None
            n = struct.unpack(">H", read_exact(conn.recv, 2))[0]
            return read_exact(conn.recv, n)

        check(xfer(b"\x04")[0] == 0x3B, "ATR over vpcd")
        xfer(b"\x01", answer=False)
        check(sw(xfer(bytes([0, 0xA4, 4, 0, len(AID)]) + AID + b"\x00")) == 0x9000, "SELECT over vpcd")
        check(sw(xfer(bytes.fromhex("0020008008") + pin_block("123456"))) == 0x9000, "VERIFY over vpcd")
        n = 200
        t0 = time.monotonic()
        for _ in range(n):
            check(sw(xfer(bytes.fromhex("00200080"))) == 0x9000, "VERIFY status over vpcd")
        rtt = (time.monotonic() - t0) / n * 1000
        print("info: mean APDU round trip over TCP (two-write framing): %.3f ms" % rtt)
        # vpcd goes away: the card reconnects; a new insertion clears the PIN state.
        conn.close()
        conn, _ = srv.accept()
        conn.settimeout(TIMEOUT)
        check(sw(xfer(bytes.fromhex("00200080"))) == 0x63C3, "state after reconnect")
        check(sw(xfer(bytes.fromhex("0020008008") + pin_block("000000"))) == 0x63C2, "wrong PIN over vpcd")
        p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=TIMEOUT)
        check(rc == 0, "vpiv-card --vpcd exit status on SIGTERM: %d" % rc)
        conf = open(os.path.join(card, "card.conf")).read()
        check("pin_tries_left = 2" in conf, "SIGTERM did not save the PIN counter:\n" + conf)
        conn.close()
        print("ok: --vpcd (reconnect, SIGTERM)")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def main():
    check(len(sys.argv) == 3, "usage: test-vpiv-card.py VPIV_CARD MAKE_CARD")
    exe, make_card = sys.argv[1], sys.argv[2]
    tmp = tempfile.mkdtemp(prefix="vpiv-card-test-")
    card = os.path.join(tmp, "card")
    subprocess.run([make_card, card], check=True, timeout=TIMEOUT)
    # Bad usage: a clear error, exit 2.
    r = subprocess.run([exe, "--dir", card], stderr=subprocess.PIPE, timeout=TIMEOUT)
    check(r.returncode == 2 and b"usage" in r.stderr, "no transport given")
    r = subprocess.run([exe, "--dir", os.path.join(tmp, "nope"), "--stdio"], stderr=subprocess.PIPE,
                       stdin=subprocess.DEVNULL, timeout=TIMEOUT)
    check(r.returncode == 1 and b"nope" in r.stderr, "missing card dir")
    stdio_tests(exe, card)
    vpcd_tests(exe, card)
    subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
