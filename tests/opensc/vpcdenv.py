#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A private pcscd with a vpcd reader holding the virtual PIV card.

As a module: `with VpcdCard(vpiv_card, card_dir, tmpdir) as vc:` then run
PC/SC clients (OpenSC) with `vc.env` (PCSCLITE_CSOCK_NAME, OPENSC_CONF, HOME).
As a program, for benchmarks and by hand:

    vpcdenv.py VPIV_CARD CARD_DIR [--delay-ms N] -- COMMAND [ARGS...]

runs COMMAND in that environment and exits with its status.

Debian's pcscd 1.9.9 ignores PCSCLITE_CSOCK_NAME on the daemon side (only
libpcsclite reads it), so pcscd is socket-activated: the socket is bound
here and handed over as fd 3 with LISTEN_FDS=1/LISTEN_PID; the reader comes
from a private reader.conf.d (pcscd -c) with one vpcd reader on a free port
(vpcd listens on port and port + 1, one per slot).  Nothing touches
/run/pcscd, so several instances and a system pcscd can run side by side.
"""
import os
import socket
import subprocess
import sys
import tempfile
import time

VPCD_DRIVER = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"
PCSCD = "/usr/sbin/pcscd"
MODULE_CANDIDATES = ["/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so", "/usr/lib/x86_64-linux-gnu/pkcs11/opensc-pkcs11.so"]


class VpcdError(Exception):
    pass


def opensc_module():
    return next((m for m in MODULE_CANDIDATES if os.path.exists(m)), None)


def free_port_pair():
    for _ in range(50):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s2 = socket.socket()
        try:
            s2.bind(("127.0.0.1", port + 1))
        except OSError:
            s.close()
            continue
        finally:
            s2.close()
        s.close()
        return port
    raise VpcdError("no free port pair for vpcd")


class VpcdCard:
    """pcscd + vpcd + vpiv-card; the card inserted when __enter__ returns."""

    def __init__(self, vpiv_card, card_dir, workdir, delay_ms=None, opensc_conf_extra="", timeout=30):
        self.vpiv_card, self.card_dir, self.workdir = vpiv_card, card_dir, workdir
        self.delay_ms, self.timeout = delay_ms, timeout
        self.opensc_conf_extra = opensc_conf_extra
        self.pcscd = self.card = None
        for path, pkg in [(PCSCD, "pcscd"), (VPCD_DRIVER, "vsmartcard-vpcd")]:
            if not os.path.exists(path):
                raise VpcdError("%s missing (install %s: scripts/install-deps.sh)" % (path, pkg))

    def log(self, which):
        try:
            return open(os.path.join(self.workdir, which + ".log")).read()
        except OSError:
            return ""

    def __enter__(self):
        try:
            self._start()
        except BaseException:
            self.stop_all()
            raise
        return self

    def __exit__(self, *exc):
        self.stop_all()

    def _start(self):
        w = self.workdir
        self.port = free_port_pair()
        confdir = os.path.join(w, "reader.conf.d")
        os.makedirs(confdir, exist_ok=True)
        with open(os.path.join(confdir, "vpcd"), "w") as f:
            f.write('FRIENDLYNAME "vpiv test reader"\nDEVICENAME /dev/null:0x%X\nLIBPATH %s\nCHANNELID 0x%X\n'
                    % (self.port, VPCD_DRIVER, self.port))
        self.sockpath = os.path.join(w, "pcscd.comm")
        if os.path.exists(self.sockpath):
            os.unlink(self.sockpath)
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lsock.bind(self.sockpath)
        lsock.listen(16)
        # The shell moves the socket to fd 3 (subprocess closes other fds
        # after preexec_fn) and keeps its pid through exec: LISTEN_PID=$$.
        lfd = lsock.fileno()
        move = "" if lfd == 3 else "exec 3<&%d %d<&-; " % (lfd, lfd)
        with open(os.path.join(w, "pcscd.log"), "w") as log:
            self.pcscd = subprocess.Popen(
                ["/bin/sh", "-c", move + 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" --foreground -c "$1"', PCSCD, confdir],
                pass_fds=(lfd,), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        lsock.close()
        args = [self.vpiv_card, "--dir", self.card_dir, "--vpcd", "127.0.0.1:%d" % self.port]
        if self.delay_ms is not None:
            args += ["--delay-ms", str(self.delay_ms)]
        with open(os.path.join(w, "card.log"), "w") as log:
            self.card = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        opensc_conf = os.path.join(w, "opensc.conf")
        with open(opensc_conf, "w") as f:
            # No file cache (each card is new); OpenSC unblocks a PIV PIN with
            # the PUK only in this style (its default is none).
            f.write("app default {\n  framework pkcs15 {\n    use_file_caching = no;\n  }\n"
                    "  pkcs11 {\n    user_pin_unblock_style = set_pin_in_unlogged_session;\n  }\n%s}\n"
                    % self.opensc_conf_extra)
        self.env = dict(os.environ, PCSCLITE_CSOCK_NAME=self.sockpath, OPENSC_CONF=opensc_conf, HOME=w)
        self._wait_inserted()

    def _wait_inserted(self):
        # opensc-tool -l shows "Yes" in the Card column once vpcd has the card.
        deadline = time.monotonic() + self.timeout
        out = ""
        while time.monotonic() < deadline:
            if self.pcscd.poll() is not None:
                raise VpcdError("pcscd exited %d:\n%s" % (self.pcscd.returncode, self.log("pcscd")))
            if self.card.poll() is not None:
                raise VpcdError("vpiv-card exited %d:\n%s" % (self.card.returncode, self.log("card")))
            p = subprocess.run(["opensc-tool", "-l"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env=self.env, timeout=self.timeout)
            out = p.stdout.decode(errors="replace")
            if any(l.split()[1:2] == ["Yes"] for l in out.splitlines() if l[:1].isdigit()):
                return
            time.sleep(0.1)
        raise VpcdError("the card did not appear in the vpcd reader within %ds:\n%s\npcscd log:\n%s\ncard log:\n%s"
                        % (self.timeout, out, self.log("pcscd")[-4000:], self.log("card")))

    def stop_card(self):
        """SIGTERM to vpiv-card (it saves its state); returns its exit status."""
        if self.card is None:
            return None
        if self.card.poll() is None:
            self.card.terminate()
            try:
                self.card.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                self.card.kill()
                self.card.wait()
                raise VpcdError("vpiv-card did not exit on SIGTERM")
        return self.card.returncode

    def stop_all(self):
        for p in (self.card, self.pcscd):
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def main():
    argv = sys.argv[1:]
    if "--" not in argv or len(argv) < 4:
        print("usage: vpcdenv.py VPIV_CARD CARD_DIR [--delay-ms N] -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    sep = argv.index("--")
    opts, cmd = argv[:sep], argv[sep + 1:]
    delay = None
    if len(opts) == 4 and opts[2] == "--delay-ms":
        delay = int(opts[3])
    elif len(opts) != 2:
        print("usage: vpcdenv.py VPIV_CARD CARD_DIR [--delay-ms N] -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="vpcdenv-") as w:
        try:
            with VpcdCard(opts[0], opts[1], w, delay_ms=delay) as vc:
                return subprocess.run(cmd, env=vc.env).returncode
        except VpcdError as e:
            print("vpcdenv: %s" % e, file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
