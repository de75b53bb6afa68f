#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""netcad serving a virtual PIV card in the emulated USB CCID reader of
tests/usb/ccid-harness.py, while one command runs against it.

    umockdev-wrapper /usr/bin/python3 usbenv.py --harness CCID-HARNESS.PY \
        --card-exe VPIV-CARD --netcad NETCAD (--card-dir DIR | --make-card MAKE-CARD.SH) \
        [--delay-ms N] -- COMMAND [ARGS...]

COMMAND gets NETCA_SOCKET (the daemon's socket), NETCA_AUTOSTART=0,
USBENV_CARD_DIR, USBENV_NETCAD_LOG and USBENV_APDU_LOG ("CLA INS P1 P2 Lc SW"
of each APDU the card got, never its data), and runs without the umockdev preload
(it only talks to netcad).  With --card-dir the card's state (PINs, counters)
is saved back to DIR when the card stops: give each run its own copy.
The exit status is COMMAND's; it is 1 when netcad does not exit cleanly or
its log holds a sanitizer report.

The reader, usbfs emulation and card process are the harness's own classes
(imported, not copied); this only adds "serve this card directory, run this".
"""
import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time


def load_harness(path):
    spec = importlib.util.spec_from_file_location('ccid_harness', path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--harness', required=True)
    ap.add_argument('--card-exe', required=True)
    ap.add_argument('--netcad', required=True)
    ap.add_argument('--card-dir')
    ap.add_argument('--make-card')
    ap.add_argument('--delay-ms', type=int)
    ap.add_argument('--timeout', type=float, default=30)
    ap.add_argument('--report-ready', action='store_true',
                    help='print "USBENV ready_ms=N" (plug to the token served) on stderr, for bench/piv-enum.sh')
    ap.add_argument('cmd', nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd[:1] == ['--'] else a.cmd
    if not cmd or not (a.card_dir or a.make_card):
        ap.error('COMMAND and --card-dir or --make-card needed')
    if 'libumockdev-preload' not in os.environ.get('LD_PRELOAD', ''):
        sys.exit('usbenv: run me under umockdev-wrapper')
    h = load_harness(a.harness)
    from gi.repository import UMockdev

    tmp = tempfile.mkdtemp(prefix='usbenv.')
    card = daemon = None
    rc = 1
    try:
        card_dir = a.card_dir
        if not card_dir:
            card_dir = os.path.join(tmp, 'card')
            subprocess.run([a.make_card, card_dir], check=True, stdout=subprocess.DEVNULL)
        tb = UMockdev.Testbed.new()
        tb.add_from_string(h.hub_description())
        cfg = h.ReaderConfig()
        card = h.Card(a.card_exe, card_dir, a.delay_ms)
        # Every APDU the card gets, as "CLA INS P1 P2 Lc SW" (never the data:
        # PINs pass here), for tests that check what reached the card.
        apdu_log = os.path.join(tmp, 'apdu.log')
        card_apdu = card.apdu

        def logged_apdu(capdu):
            rapdu = card_apdu(capdu)
            with open(apdu_log, 'a') as f:
                f.write('%s %d %s\n' % (capdu[:4].hex(' ').upper(), capdu[4] if len(capdu) > 5 else 0,
                                        rapdu[-2:].hex().upper()))
            return rapdu
        card.apdu = logged_apdu
        reader = h.UsbfsReader(cfg, card)
        tb.attach_ioctl(h.DEVNODE, reader)
        t_plug = time.monotonic()
        tb.add_from_string(h.reader_description(cfg))

        env = dict(os.environ)
        env['UMOCKDEV_DIR'] = tb.get_root_dir()
        env.setdefault('ASAN_OPTIONS', 'verify_asan_link_order=0')
        if 'verify_asan_link_order' not in env['ASAN_OPTIONS']:
            env['ASAN_OPTIONS'] += ':verify_asan_link_order=0'
        sock = os.path.join(tmp, 'netcad.sock')
        log_path = os.path.join(tmp, 'netcad.log')
        with open(log_path, 'w') as logf:
            daemon = subprocess.Popen([a.netcad, '--foreground', '--socket', sock, '--data-dir',
                                       os.path.join(tmp, 'data')], env=env, stdout=logf,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        # Ready when the token is in: netcad logs "token ... added".
        end = time.monotonic() + a.timeout
        while time.monotonic() < end:
            if daemon.poll() is not None:
                break
            with open(log_path) as f:
                if 'added' in f.read():
                    break
            time.sleep(0.02)
        with open(log_path) as f:
            text = f.read()
        if daemon.poll() is not None or 'added' not in text:
            sys.stderr.write(text)
            sys.exit('usbenv: netcad did not serve the card')
        if a.report_ready:
            print('USBENV ready_ms=%.1f' % ((time.monotonic() - t_plug) * 1e3), file=sys.stderr, flush=True)

        cenv = dict(os.environ, NETCA_SOCKET=sock, NETCA_AUTOSTART='0', USBENV_CARD_DIR=card_dir,
                    USBENV_NETCAD_LOG=log_path, USBENV_APDU_LOG=apdu_log)
        cenv['LD_PRELOAD'] = ':'.join(x for x in cenv.get('LD_PRELOAD', '').split(':')
                                      if x and 'umockdev' not in x)
        cenv.pop('UMOCKDEV_DIR', None)
        if not cenv['LD_PRELOAD']:
            del cenv['LD_PRELOAD']
        rc = subprocess.run(cmd, env=cenv).returncode

        daemon.terminate()
        try:
            st = daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
            st = -9
        with open(log_path) as f:
            text = f.read()
        bad = 'ERROR: AddressSanitizer' in text or 'ERROR: LeakSanitizer' in text or 'runtime error:' in text
        if st != 0 or bad:
            sys.stderr.write('usbenv: netcad exit status %d%s; its log:\n%s' %
                             (st, ', sanitizer report' if bad else '', text[-6000:]))
            rc = rc or 1
        if reader.ccid.errors:
            sys.stderr.write('usbenv: the reader saw protocol errors: %s\n' % reader.ccid.errors)
            rc = rc or 1
    finally:
        if daemon and daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        if card:
            card.close()         # stdin EOF: the card saves its state to its directory
        shutil.rmtree(tmp, ignore_errors=True)
    return rc


if __name__ == '__main__':
    sys.exit(main())
