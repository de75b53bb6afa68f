#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""An emulated USB CCID reader for the tests of drivers/usb, through umockdev.

The reader exists only in a umockdev testbed: sysfs entries and a device node
/dev/bus/usb/001/002 whose usbfs ioctls (SUBMITURB, REAPURB, DISCARDURB, ...)
are answered by UsbfsReader below, so that libusb runs its real Linux backend
against it.  The card in the reader is a `vpiv-card --stdio` subprocess (the
project's virtual PIV card); the reader speaks CCID to the host and the vpcd
framing (2-byte big-endian length + payload) to the card.

Try the USB path by hand (netcad serving the virtual card until Ctrl-C):
    umockdev-wrapper /usr/bin/python3 tests/usb/ccid-harness.py \
        --card-exe build/tests/emulators/vpiv-card --make-card tests/emulators/make-card.sh \
        --netcad build/daemon/netcad serve

Usage (each test case is one scenario; see SCENARIOS at the bottom):
    umockdev-wrapper /usr/bin/python3 ccid-harness.py --card-exe VPIV-CARD \
        --make-card MAKE-CARD.SH --client USB-CLIENT [--tool NETCA-TOOL] SCENARIO

Pitfalls (umockdev 0.17, libusb 1.0.26, found the hard way):
  - The harness itself must run under the umockdev preload (umockdev-wrapper):
    Testbed.uevent() resolves devices through libudev, which only sees the
    mocked /sys under the preload; without it no hotplug event is delivered.
  - Testbed.new() sets UMOCKDEV_DIR with g_setenv, which os.environ does not
    see: the client gets it explicitly.
  - Never call UMockdev.in_mock_environment() before a testbed exists: it
    caches "no", and add_from_string() then sends no "add" uevents.
  - The ioctl handler runs in umockdev's thread and must never block: the
    card is driven from its own thread, and replies are queued like a real
    reader's bulk-IN data, matched to IN URBs as they are submitted.
  - remove_device() sends no uevent: send "remove" for the interface and the
    device first.
  - After an unplug, pending URBs complete with -ESHUTDOWN and stay reapable
    (USBDEVFS_CAP_REAP_AFTER_DISCONNECT), other ioctls fail with ENODEV:
    libusb reports LIBUSB_ERROR_NO_DEVICE for both.
  - IoctlBase.client_connected is called when a process opens the node, but
    client_vanished is never emitted (nor the client's "connected" notified):
    "the host let go" is its RELEASEINTERFACE ioctl, seen even when refused.

Synchronisation: no sleeps.  The harness waits for an event (a client line,
a netcad log line, something the emulated reader did: a command received, a
command held unanswered, its interface released) with a hang guard
(STEP_TIMEOUT) that is a failure.  After every scenario, every reader's list
of host protocol violations must be empty (Bench.check_readers).
"""
import argparse
import collections
import json
import os
import queue
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time

import gi
gi.require_version('UMockdev', '1.0')
from gi.repository import UMockdev  # noqa: E402

DEBUG = os.environ.get('CCID_HARNESS_DEBUG') == '1'
STEP_TIMEOUT = 20          # seconds to wait for one expected event (a hang guard, never a sync)


def log(*a):
    print('[harness]', *a, file=sys.stderr, flush=True)


def dbg(*a):
    if DEBUG:
        print('[usbfs]', *a, file=sys.stderr, flush=True)


# --------------------------------------------------------------- the card
class Card:
    """vpiv-card --stdio: vpcd messages over its stdin/stdout."""

    def __init__(self, exe, card_dir, delay_ms=None):
        argv = [exe, '--dir', card_dir, '--stdio']
        if delay_ms is not None:
            argv += ['--delay-ms', str(delay_ms)]
        # The card needs no mocked /sys; and an ASan-built card must not get
        # the preload before its sanitizer runtime.
        env = dict(os.environ)
        env['LD_PRELOAD'] = ':'.join(x for x in env.get('LD_PRELOAD', '').split(':')
                                     if x and 'umockdev' not in x)
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.lock = threading.Lock()

    def _send(self, payload):
        try:
            self.p.stdin.write(struct.pack('>H', len(payload)) + payload)
            self.p.stdin.flush()
        except BrokenPipeError:
            raise EOFError('card closed')

    def _recv(self):
        hdr = self.p.stdout.read(2)
        if len(hdr) != 2:
            raise EOFError('card closed')
        n, = struct.unpack('>H', hdr)
        data = self.p.stdout.read(n)
        if len(data) != n:
            raise EOFError('card closed')
        return data

    def power_on(self):
        with self.lock:
            self._send(b'\x01')
            self._send(b'\x04')
            return self._recv()

    def power_off(self):
        with self.lock:
            self._send(b'\x00')

    def apdu(self, capdu):
        with self.lock:
            self._send(capdu)
            return self._recv()

    def close(self):
        try:
            self.p.stdin.close()
            self.p.wait(timeout=10)
        except Exception:
            self.p.kill()


# ------------------------------------------------------------ descriptors
VID, PID = 0x1209, 0x7E57


class ReaderConfig:
    def __init__(self, serial='NCT0001', features=0x000400FE, max_msg=271, card_present=True,
                 faults=()):
        self.serial = serial
        self.features = features
        self.max_msg = max_msg
        self.card_present = card_present
        self.faults = set(faults)          # 'timeext', 'badseq', 'wrongle'
        self.manufacturer = 'NETCA Test'
        self.product = 'Emulated CCID Key'

    def strings(self):
        return {1: self.manufacturer, 2: self.product, 3: self.serial}

    def device_descriptor(self):
        return struct.pack('<BBHBBBBHHHBBBB', 18, 1, 0x0200, 0, 0, 0, 64, VID, PID, 0x0123, 1, 2, 3, 1)

    def ccid_descriptor(self):
        d = struct.pack('<BBHBBIIIBIIBIIIIIBBHBB',
                        54, 0x21, 0x0110, 0, 0x07, 0x00000002,   # T=1 only
                        4000, 4000, 0, 10752, 250000, 0,
                        254, 0, 0, self.features, self.max_msg,
                        0xFF, 0xFF, 0, 0, 1)
        assert len(d) == 54
        return d

    def config_descriptor(self):
        body = struct.pack('<BBBBBBBBB', 9, 4, 0, 0, 3, 0x0B, 0, 0, 0) + self.ccid_descriptor()
        body += struct.pack('<BBBBHB', 7, 5, 0x02, 0x02, 64, 0)      # bulk OUT
        body += struct.pack('<BBBBHB', 7, 5, 0x81, 0x02, 64, 0)      # bulk IN
        body += struct.pack('<BBBBHB', 7, 5, 0x83, 0x03, 8, 24)      # interrupt IN
        return struct.pack('<BBHBBBBB', 9, 2, 9 + len(body), 1, 1, 0, 0x80, 50) + body


EP_OUT, EP_IN, EP_INTR = 0x02, 0x81, 0x83
HUB_SYS = '/devices/pci0000:00/0000:00:14.0/usb1'
DEV_SYS = HUB_SYS + '/1-1'
DEVNODE = '/dev/bus/usb/001/002'


def hub_description():
    dev = struct.pack('<BBHBBBBHHHBBBB', 18, 1, 0x0200, 9, 0, 1, 64, 0x1d6b, 0x0002, 0x0601, 3, 2, 1, 1)
    cfg = struct.pack('<BBHBBBBB', 9, 2, 25, 1, 1, 0, 0xE0, 0)
    cfg += struct.pack('<BBBBBBBBB', 9, 4, 0, 0, 1, 9, 0, 0, 0)
    cfg += struct.pack('<BBBBHB', 7, 5, 0x81, 0x03, 4, 12)
    desc = (dev + cfg).hex().upper()
    attrs = dict(busnum=1, devnum=1, speed=480, bConfigurationValue=1, bNumConfigurations=1,
                 bNumInterfaces=' 1', bDeviceClass='09', idVendor='1d6b', idProduct='0002',
                 devpath=0, maxchild=1)
    return (f'P: {HUB_SYS}\nN: bus/usb/001/001={desc}\nE: DEVNAME=/dev/bus/usb/001/001\n'
            'E: DEVTYPE=usb_device\nE: DRIVER=usb\nE: SUBSYSTEM=usb\nE: BUSNUM=001\nE: DEVNUM=001\n'
            'E: MAJOR=189\nE: MINOR=0\nA: dev=189:0\n'
            + ''.join(f'A: {k}={v}\\n\n' for k, v in attrs.items())
            + f'H: descriptors={desc}\n\n')


def reader_description(cfg):
    desc = (cfg.device_descriptor() + cfg.config_descriptor()).hex().upper()
    attrs = dict(busnum=1, devnum=2, speed=12, version=' 2.00', bConfigurationValue=1,
                 bNumConfigurations=1, bNumInterfaces=' 1', bDeviceClass='00', bDeviceSubClass='00',
                 bDeviceProtocol='00', bMaxPacketSize0=64, bmAttributes=80, bMaxPower='100mA',
                 idVendor=f'{VID:04x}', idProduct=f'{PID:04x}', bcdDevice='0123',
                 manufacturer=cfg.manufacturer, product=cfg.product, serial=cfg.serial,
                 devpath=1, maxchild=0, authorized=1)
    s = (f'P: {DEV_SYS}\nN: bus/usb/001/002={desc}\nE: DEVNAME={DEVNODE}\nE: DEVTYPE=usb_device\n'
         f'E: DRIVER=usb\nE: SUBSYSTEM=usb\nE: BUSNUM=001\nE: DEVNUM=002\nE: MAJOR=189\nE: MINOR=1\n'
         f'E: PRODUCT={VID:x}/{PID:x}/123\nE: TYPE=0/0/0\nE: ID_USB_INTERFACES=:0b0000:\nA: dev=189:1\n'
         + ''.join(f'A: {k}={v}\\n\n' for k, v in attrs.items())
         + f'H: descriptors={desc}\n\n')
    s += (f'P: {DEV_SYS}/1-1:1.0\nE: DEVTYPE=usb_interface\nE: DRIVER=usbfs\nE: SUBSYSTEM=usb\n'
          f'E: INTERFACE=11/0/0\nE: PRODUCT={VID:x}/{PID:x}/123\n'
          'A: bInterfaceClass=0b\\n\nA: bInterfaceNumber=00\\n\nA: bInterfaceSubClass=00\\n\n'
          'A: bInterfaceProtocol=00\\n\nA: bNumEndpoints=03\\n\nA: bAlternateSetting= 0\\n\n\n')
    return s


# ------------------------------------------------------- the CCID reader
class Held(Exception):
    """A held command ends with the reader: no answer."""


class CcidReader:
    """CCID slot 0 at the short/extended APDU level, the card behind it.
    Commands are handled on a worker thread; replies go out through
    `emit(ep, bytes)`."""

    def __init__(self, cfg, card, emit):
        self.cfg = cfg
        self.card = card if cfg.card_present else None
        self.spare_card = card
        self.emit = emit
        self.powered = False
        self.cmdq = queue.Queue()
        self.n_xfr = 0
        self.chain_in = b''        # command APDU being assembled (wLevelParameter 1/3)
        self.chain_out = b''       # response APDU still to send (bChainParameter)
        self.pending_6c = {}       # APDU -> real answer, for the 'wrongle' fault
        self.stats = collections.Counter()
        # Host protocol violations seen (every scenario asserts none beyond
        # the ones it expects: Bench.check_readers).
        self.errors = []
        # Guards stats (waited on by the harness), the hold gate and the
        # count of commands not yet answered.
        self.cond = threading.Condition()
        self.outstanding = 0
        self.hold_pred = None      # hold(): the next command APDU matching it is held
        self.held = None           # ... and here once it arrived
        self.gone = False          # unplugged: a held command is dropped
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def submit(self, msg):
        with self.cond:
            # bMaxCCIDBusySlots is 1: a command before the previous one's
            # answer is a host error (or a lost reply).
            if self.outstanding:
                self.errors.append(f'command {msg[:10].hex()} sent while {self.outstanding} unanswered')
            self.outstanding += 1
        self.cmdq.put(msg)

    def stop(self):
        self.cmdq.put(None)

    def unplugged(self):
        with self.cond:
            self.gone = True
            self.cond.notify_all()
        self.stop()

    def note(self, what):
        with self.cond:
            self.stats[what] += 1
            self.cond.notify_all()

    def wait_until(self, pred, what, timeout=STEP_TIMEOUT):
        """Waits until pred(stats) holds (the reader did something)."""
        with self.cond:
            if not self.cond.wait_for(lambda: pred(self.stats), timeout):
                raise AssertionError(f'timed out waiting until the reader {what} ({dict(self.stats)})')

    def hold(self, pred):
        """The next command APDU for which pred(apdu) is true reaches the
        reader but never the card, and is never answered: the host waits for
        it until the reader is unplugged.  wait_held() returns it."""
        with self.cond:
            self.hold_pred, self.held = pred, None

    def wait_held(self, timeout=STEP_TIMEOUT):
        with self.cond:
            if not self.cond.wait_for(lambda: self.held is not None, timeout):
                raise AssertionError('timed out waiting for the host to send the command to hold')
            return self.held

    def _reply(self, mtype, slot, seq, status, error, param, data=b''):
        if status & 0xC0 != 0x80:          # not a time extension: the command is answered
            with self.cond:
                self.outstanding -= 1
        self.emit(EP_IN, struct.pack('<BIBBBBB', mtype, len(data), slot, seq, status, error, param) + data)

    def _icc(self):
        if not self.card:
            return 2
        return 0 if self.powered else 1

    def _run(self):
        while True:
            msg = self.cmdq.get()
            if msg is None:
                return
            try:
                self._command(msg)
            except Held:
                log('reader unplugged with a held command')
            except EOFError:
                self.errors.append('the card process died')
                log('the card process died: the reader goes silent')
                return
            except Exception as e:  # the test fails, but the client gets no hang
                import traceback
                traceback.print_exc()
                self.errors.append(repr(e))

    def _command(self, msg):
        if len(msg) < 10:
            self.errors.append(f'short CCID message {msg.hex()}')
            return
        mtype, length, slot, seq, b7, w8 = struct.unpack_from('<BIBBBH', msg)
        data = msg[10:]
        if len(data) != length:
            self.errors.append(f'dwLength {length} but {len(data)} bytes')
        if len(msg) > self.cfg.max_msg:
            self.errors.append(f'message of {len(msg)} bytes over dwMaxCCIDMessageLength {self.cfg.max_msg}')
        if slot != 0:
            return self._reply(0x81, slot, seq, 0x40 | self._icc(), 5, 0)
        if mtype == 0x62:                                   # IccPowerOn
            if not self.card:
                return self._reply(0x80, 0, seq, 0x42, 0xFE, 0)
            atr = self.card.power_on()
            self.powered = True
            return self._reply(0x80, 0, seq, 0x00, 0, 0, atr)
        if mtype == 0x63:                                   # IccPowerOff
            if self.card and self.powered:
                self.card.power_off()
            self.powered = False
            return self._reply(0x81, 0, seq, self._icc(), 0, 0)
        if mtype == 0x65:                                   # GetSlotStatus
            self.note('slot_status_' + ('active', 'inactive', 'absent')[self._icc()])
            return self._reply(0x81, 0, seq, self._icc(), 0, 0)
        if mtype == 0x6C:                                   # GetParameters: T=1
            if not self.card:
                return self._reply(0x82, 0, seq, 0x42, 0xFE, 1)
            return self._reply(0x82, 0, seq, self._icc(), 0, 1, bytes.fromhex('1110FE0000FE00'))
        if mtype == 0x6F:
            return self._xfr(seq, w8, data)
        return self._reply(0x81, 0, seq, 0x40 | self._icc(), 0x00, 0)   # CMD_NOT_SUPPORTED

    def _xfr(self, seq, level, data):
        if not self.card or not self.powered:
            return self._reply(0x80, 0, seq, 0x40 | self._icc(), 0xFE, 0)
        self.n_xfr += 1
        if 'timeext' in self.cfg.faults:
            for _ in range(2):
                self._reply(0x80, 0, seq, 0x80 | self._icc(), 1, 0)
                self.stats['timeext'] += 1
        extended = (self.cfg.features & 0x70000) == 0x40000
        # wLevelParameter chaining of the command (extended level only)
        if level in (1, 3):
            if not extended or (level == 3 and not self.chain_in) or (level == 1 and self.chain_in):
                self.errors.append(f'unexpected wLevelParameter {level}')
            self.chain_in += data
            self.stats['cmd_chunks'] += 1
            return self._reply(0x80, 0, seq, 0x00, 0, 0x10)
        if level == 2:
            if not self.chain_in:
                self.errors.append('wLevelParameter 2 without a chain')
            data = self.chain_in + data
            self.chain_in = b''
            self.stats['cmd_chunks'] += 1
            self.stats['cmd_chained'] += 1
        elif level == 0x10:
            if not self.chain_out:
                self.errors.append('wLevelParameter 0x10 with no response pending')
            return self._send_response(seq, continuation=True)
        elif level != 0:
            self.errors.append(f'bad wLevelParameter {level}')
        rapdu = self._card_apdu(bytes(data))
        if 'badseq' in self.cfg.faults and self.n_xfr == 2:
            self.stats['badseq'] += 1
            return self._reply(0x80, 0, (seq + 7) & 0xFF, 0x00, 0, 0, rapdu)
        self.chain_out = rapdu
        return self._send_response(seq, continuation=False)

    def _send_response(self, seq, continuation):
        room = self.cfg.max_msg - 10
        part, self.chain_out = self.chain_out[:room], self.chain_out[room:]
        if self.chain_out:
            param = 0x03 if continuation else 0x01
            self.stats['rsp_chunks'] += 1
        else:
            param = 0x02 if continuation else 0x00
        return self._reply(0x80, 0, seq, 0x00, 0, param, part)

    def _card_apdu(self, capdu):
        with self.cond:
            if self.hold_pred and self.hold_pred(capdu):
                self.hold_pred, self.held = None, capdu
                self.cond.notify_all()
                log(f'holding command APDU {capdu[:4].hex()}')
                if not self.cond.wait_for(lambda: self.gone, 3 * STEP_TIMEOUT):
                    self.errors.append('a held command: the reader was never unplugged')
                raise Held()
        self.stats['apdus'] += 1
        if ('wrongle' in self.cfg.faults and capdu[1] == 0xCB and len(capdu) == 5 + capdu[4] + 1 and capdu[4]
                and capdu[-1] == 0):
            # A short case-4 command asking for 256 bytes: answer 6Cxx with
            # the real length first, like a card that insists on an exact Le.
            rapdu = self.card.apdu(capdu)
            if rapdu[-2:] == b'\x90\x00' and len(rapdu) - 2 < 256:
                self.stats['6c'] += 1
                self.pending_6c[capdu[:-1]] = rapdu
                return bytes([0x6C, len(rapdu) - 2])
            return rapdu
        if capdu[:-1] in self.pending_6c and len(capdu) > 5:
            want = self.pending_6c.pop(capdu[:-1])
            if capdu[-1] == len(want) - 2:
                self.stats['6c_retried'] += 1
                return want
        return self.card.apdu(capdu)

    def insert(self):
        self.card = self.spare_card
        self.powered = False

    def remove(self):
        if self.card and self.powered:
            self.card.power_off()
        self.card = None
        self.powered = False


# --------------------------------------------------------- usbfs emulation
# struct usbdevfs_urb (x86-64): type u8 @0, endpoint u8 @1, status int @4,
# flags uint @8, buffer ptr @16, buffer_length int @24, actual_length @28 ...
URB_SIZE = 56
EPIPE, ENOENT, EAGAIN, ENODATA, ENOTTY, EINVAL, ENODEV, ESHUTDOWN = 32, 2, 11, 61, 25, 22, 19, 108
IOC_NR = {0: 'CONTROL', 2: 'BULK', 3: 'RESETEP', 4: 'SETINTERFACE', 5: 'SETCONFIGURATION',
          8: 'GETDRIVER', 10: 'SUBMITURB', 11: 'DISCARDURB', 12: 'REAPURB', 13: 'REAPURBNDELAY',
          15: 'CLAIMINTERFACE', 16: 'RELEASEINTERFACE', 17: 'CONNECTINFO', 18: 'IOCTL', 20: 'RESET',
          21: 'CLEAR_HALT', 26: 'GET_CAPABILITIES', 27: 'DISCONNECT_CLAIM', 31: 'GET_SPEED'}
# ZERO_PACKET | BULK_CONTINUATION | NO_PACKET_SIZE_LIM | BULK_SCATTER_GATHER | REAP_AFTER_DISCONNECT
CAPABILITIES = 0x1F


class Urb:
    def __init__(self, ioctl_data):
        self.d = ioctl_data
        raw = bytes(ioctl_data.retrieve())
        self.type, self.ep = raw[0], raw[1]
        self.length, = struct.unpack_from('<i', raw, 24)
        self.buf = ioctl_data.resolve(16, self.length) if self.length > 0 else None

    def payload(self):
        return bytes(self.buf.retrieve()) if self.buf else b''

    def complete(self, status, data=b'', offset=0, actual=None):
        if data:
            self.buf.update(offset, data[:max(0, self.length - offset)])
        if actual is None:
            actual = len(data)
        self.d.update(4, struct.pack('<i', status))
        self.d.update(28, struct.pack('<i', actual))


class UsbfsReader(UMockdev.IoctlBase):
    """The usbfs device node of the reader."""

    def __init__(self, cfg, card):
        super().__init__()
        self.cfg = cfg
        self.lock = threading.RLock()
        self.inq = collections.defaultdict(collections.deque)       # ep -> queued IN messages
        self.waiting = collections.defaultdict(collections.deque)   # ep -> IN URBs submitted
        self.done = collections.deque()                             # URBs to reap
        self.unplugged = False
        self.ccid = CcidReader(cfg, card, self.push_in)
        self.opens = 0             # the device node opened (by anyone), ever

    # umockdev calls this when a process opens the device node.  (It never
    # emits client-vanished in 0.17, and the client's "connected" property
    # is not notified either: the host letting go is seen as the release of
    # its interface, which drivers/usb does right before libusb_close.)
    def do_client_connected(self, client):
        with self.ccid.cond:
            self.opens += 1

    def wait_released(self, timeout=STEP_TIMEOUT):
        """Waits until the host has released the interface (closing it)."""
        self.ccid.wait_until(lambda s: s['ioctl_RELEASEINTERFACE'] >= 1, 'saw the interface released', timeout)

    def push_in(self, ep, msg):
        with self.lock:
            dbg('IN  ep %02x' % ep, msg.hex())
            self.inq[ep].append(msg)
            self._match(ep)

    def _match(self, ep):
        while self.waiting[ep] and self.inq[ep]:
            urb, msg = self.waiting[ep].popleft(), self.inq[ep].popleft()
            if len(msg) > urb.length:
                # A real device would send the rest in the next transfer.
                self.inq[ep].appendleft(msg[urb.length:])
                msg = msg[:urb.length]
            urb.complete(0, msg)
            self.done.append(urb)

    def notify(self, present):
        self.push_in(EP_INTR, bytes([0x50, 0x03 if present else 0x02]))

    def unplug(self):
        with self.lock:
            self.unplugged = True
            for q in self.waiting.values():
                while q:
                    urb = q.popleft()
                    urb.complete(-ESHUTDOWN)
                    self.done.append(urb)
        self.ccid.unplugged()

    def _control(self, urb):
        setup = urb.payload()[:8]
        bm, req, wval, widx, wlen = struct.unpack('<BBHHH', setup)
        if bm == 0x80 and req == 6:                          # GET_DESCRIPTOR
            kind, idx = wval >> 8, wval & 0xFF
            d = None
            if kind == 1:
                d = self.cfg.device_descriptor()
            elif kind == 2:
                d = self.cfg.config_descriptor()
            elif kind == 3 and idx == 0:
                d = b'\x04\x03\x09\x04'
            elif kind == 3 and idx in self.cfg.strings():
                s = self.cfg.strings()[idx].encode('utf-16-le')
                d = bytes([2 + len(s), 3]) + s
            if d is not None:
                return urb.complete(0, d[:wlen], offset=8)
        urb.complete(-EPIPE)

    def do_handle_ioctl(self, client):
        req = client.get_request()
        name = IOC_NR.get(req & 0xFF, hex(req)) if ((req >> 8) & 0xFF) == ord('U') else hex(req)
        arg = client.get_arg()
        if name not in ('REAPURB', 'REAPURBNDELAY', 'SUBMITURB'):
            self.ccid.note('ioctl_' + name)        # even when refused (unplugged)
        with self.lock:
            try:
                res, err = self._ioctl(name, arg)
            except Exception as e:
                import traceback
                traceback.print_exc()
                self.ccid.errors.append(f'ioctl {name}: {e!r}')
                res, err = -1, EINVAL
        if name != 'REAPURBNDELAY' or res == 0:
            dbg(name, res, err)
        client.complete(res, err)
        return True

    def _ioctl(self, name, arg):
        if self.unplugged and not (name in ('REAPURB', 'REAPURBNDELAY') and self.done):
            return -1, ENODEV
        if name == 'GET_CAPABILITIES':
            arg.resolve(0, 4).update(0, struct.pack('<I', CAPABILITIES))
            return 0, 0
        if name in ('CLAIMINTERFACE', 'RELEASEINTERFACE', 'CLEAR_HALT', 'RESETEP', 'RESET',
                    'SETINTERFACE', 'SETCONFIGURATION', 'DISCONNECT_CLAIM'):
            return 0, 0
        if name == 'GETDRIVER':
            return -1, ENODATA
        if name == 'SUBMITURB':
            urb = Urb(arg.resolve(0, URB_SIZE))
            if urb.type == 2:                                   # control
                self._control(urb)
                self.done.append(urb)
            elif urb.ep & 0x80:
                self.waiting[urb.ep].append(urb)
                self._match(urb.ep)
            else:
                msg = urb.payload()
                dbg('OUT ep %02x' % urb.ep, msg.hex())
                urb.complete(0, actual=urb.length)
                self.done.append(urb)
                if urb.ep == EP_OUT:
                    self.ccid.submit(msg)
            return 0, 0
        if name in ('REAPURB', 'REAPURBNDELAY'):
            if not self.done:
                return -1, EAGAIN
            arg.resolve(0, 8).set_ptr(0, self.done.popleft().d)
            return 0, 0
        if name == 'DISCARDURB':
            addr, = struct.unpack('<Q', bytes(arg.retrieve())[:8])
            for q in self.waiting.values():
                for urb in list(q):
                    if urb.d.client_addr == addr:
                        q.remove(urb)
                        urb.complete(-ENOENT)
                        self.done.append(urb)
                        return 0, 0
            return -1, EINVAL
        return -1, ENOTTY


# ------------------------------------------------------------ test bench
class Lines:
    """The lines of a child's output, read on a thread (and copied to sink).
    Waits are on lines, in the order they came; a timeout is a hang guard and
    a failure."""

    def __init__(self, stream, sink, name):
        self.name = name
        self.all = []
        self.consumed = set()
        self.eof = False
        self.cond = threading.Condition()
        threading.Thread(target=self._read, args=(stream, sink), daemon=True).start()

    def _read(self, stream, sink):
        for line in stream:
            sink.write(line)
            sink.flush()
            with self.cond:
                self.all.append(line.rstrip('\n'))
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def _wait(self, find, what, timeout):
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                r = find()
                if r is not None:
                    return r
                if self.eof:
                    raise AssertionError(f'{self.name} ended while waiting for {what}')
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f'timed out waiting for {what} from {self.name}')
                self.cond.wait(left)

    def expect(self, prefix, timeout=STEP_TIMEOUT):
        """The first line not returned yet that starts with prefix.  Lines
        that come first are kept, not dropped: events from two client threads
        arrive in either order."""
        def find():
            for i, line in enumerate(self.all):
                if i not in self.consumed and line.startswith(prefix):
                    self.consumed.add(i)
                    return line
        return self._wait(find, f'"{prefix}"', timeout)

    def expect_next(self, prefix, timeout=STEP_TIMEOUT):
        """The next line not returned yet must start with prefix: nothing
        else came before it."""
        def find():
            for i, line in enumerate(self.all):
                if i not in self.consumed:
                    if not line.startswith(prefix):
                        raise AssertionError(f'"{line}" from {self.name} where "{prefix}" was due')
                    self.consumed.add(i)
                    return line
        return self._wait(find, f'"{prefix}"', timeout)

    def find(self, *texts, start=0, timeout=STEP_TIMEOUT):
        """Index of the first line from start on that contains all texts."""
        def find():
            for i in range(start, len(self.all)):
                if all(t in self.all[i] for t in texts):
                    return i
        return self._wait(find, ' and '.join(f'"{t}"' for t in texts), timeout)

    def grep(self, text, end=None):
        with self.cond:
            return [line for line in self.all[:end] if text in line]


class Bench:
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix='ccid-harness.')
        self.card_dir = os.path.join(self.tmp, 'card')
        subprocess.run([args.make_card, self.card_dir] + (['--guid', args.guid] if args.guid else []),
                       check=True, stdout=subprocess.DEVNULL)
        self.tb = UMockdev.Testbed.new()
        self.tb.add_from_string(hub_description())
        self.reader = None
        self.readers = []          # every reader plugged, for check_readers
        self.expected_errors = []  # protocol errors a scenario provokes on purpose
        self.cards = []
        self.client = None
        self.out = None            # Lines of the client's stdout
        self.daemon = None
        self.dlog = None           # Lines of netcad's log (stderr)

    def card(self, delay_ms=None):
        c = Card(self.args.card_exe, self.card_dir, delay_ms)
        self.cards.append(c)
        return c

    def plug(self, cfg, delay_ms=None):
        r = UsbfsReader(cfg, self.card(delay_ms))
        try:
            self.tb.detach_ioctl(DEVNODE)
        except Exception:
            pass
        # remove_device() leaves the /sys/bus/usb/devices links behind, and
        # adding the device again asserts on them.
        for name in ('1-1', '1-1:1.0'):
            link = os.path.join(self.tb.get_root_dir(), 'sys/bus/usb/devices', name)
            if os.path.islink(link):
                os.unlink(link)
        self.tb.attach_ioctl(DEVNODE, r)
        self.tb.add_from_string(reader_description(cfg))
        self.reader = r
        self.readers.append(r)
        return r

    def unplug(self):
        r = self.reader
        r.unplug()
        self.tb.uevent('/sys' + DEV_SYS + '/1-1:1.0', 'remove')
        self.tb.uevent('/sys' + DEV_SYS, 'remove')
        self.tb.remove_device('/sys' + DEV_SYS)
        self.reader = None
        return r

    def env(self):
        env = dict(os.environ)
        env['UMOCKDEV_DIR'] = self.tb.get_root_dir()
        pre = env.get('LD_PRELOAD', '')
        if 'libumockdev-preload' not in pre:
            env['LD_PRELOAD'] = 'libumockdev-preload.so.0' + (':' + pre if pre else '')
        # ASan builds: the preload comes before the sanitizer runtime.
        env.setdefault('ASAN_OPTIONS', 'verify_asan_link_order=0')
        if 'verify_asan_link_order' not in env['ASAN_OPTIONS']:
            env['ASAN_OPTIONS'] += ':verify_asan_link_order=0'
        return env

    def run(self, argv, timeout=60, extra_env=None):
        log('run', ' '.join(argv))
        env = self.env()
        env.update(extra_env or {})
        p = subprocess.run(argv, env=env, stdout=subprocess.PIPE, timeout=timeout, text=True)
        sys.stdout.write(p.stdout)
        return p.returncode, p.stdout

    def start(self, argv, extra_env=None):
        log('start', ' '.join(argv))
        env = self.env()
        env.update(extra_env or {})
        self.client = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True)
        self.out = Lines(self.client.stdout, sys.stdout, os.path.basename(argv[0]))

    def expect(self, prefix, timeout=STEP_TIMEOUT):
        return self.out.expect(prefix, timeout)

    def expect_next(self, prefix, timeout=STEP_TIMEOUT):
        return self.out.expect_next(prefix, timeout)

    def finish(self, timeout=30):
        self.client.stdin.close()
        rc = self.client.wait(timeout=timeout)
        return rc

    def start_daemon(self, extra_env=None):
        """netcad on its own socket and data directory; returns once it logs
        "serving" (everything it does before serving, USB discovery started
        or not, is in self.dlog by then)."""
        check(self.args.netcad, '--netcad needed')
        self.sock = os.path.join(self.tmp, 'netcad.sock')
        env = self.env()
        env['NETCA_SOCKET'] = self.sock
        env['NETCA_DEBUG'] = 'usb'
        env.pop('NETCA_LOG_FILE', None)
        env.update(extra_env or {})
        log('start netcad', ' '.join(f'{k}={env[k]}' for k in sorted(extra_env or {})))
        self.daemon = subprocess.Popen([self.args.netcad, '--foreground', '--socket', self.sock, '--data-dir',
                                        os.path.join(self.tmp, 'data')],
                                       env=env, stderr=subprocess.PIPE, text=True)
        self.dlog = Lines(self.daemon.stderr, sys.stderr, 'netcad')
        return self.dlog.find(f'serving {self.sock}')

    def stop_daemon(self):
        self.daemon.terminate()
        check(self.daemon.wait(timeout=30) == 0, 'netcad exit status')
        with self.dlog.cond:   # its log, to the end
            self.dlog.cond.wait_for(lambda: self.dlog.eof, STEP_TIMEOUT)

    def check_readers(self):
        """Every reader, in every scenario: no CCID protocol violation by the
        host beyond the ones the scenario expects (self.expected_errors)."""
        errors = []
        for r in self.readers:
            r.ccid.stop()      # after what the host sent so far
            r.ccid.t.join(timeout=STEP_TIMEOUT)
            if r.ccid.t.is_alive():
                errors.append('the reader is stuck in a command')
            errors += r.ccid.errors
        check(sorted(errors) == sorted(self.expected_errors),
              f'{len(errors)} reader protocol errors {errors[:5]}{" ..." if len(errors) > 5 else ""}, '
              f'expected {self.expected_errors}')

    def close(self):
        if self.client and self.client.poll() is None:
            self.client.kill()
        if self.daemon and self.daemon.poll() is None:
            self.daemon.kill()
            self.daemon.wait()
        for r in self.readers:
            r.ccid.unplugged()     # releases a held command
        for c in self.cards:
            c.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


# --------------------------------------------------------------- scenarios
def simple(mode, **cfg_kw):
    def scenario(b):
        r = b.plug(ReaderConfig(**cfg_kw))
        rc, out = b.run([b.args.client, mode])
        check(rc == 0, f'usb-client {mode} exited {rc}')
        return r, out
    return scenario


def sc_enum(b):
    r, out = simple('enum')(b)
    atr = r.ccid.spare_card.power_on().hex().upper()
    check(f'ATR {atr}' in out, f'ATR is not the card\'s ({atr})')
    check('NAME NETCA Test Emulated CCID Key' in out, 'reader name from the string descriptors')
    check('EXTENDED 1' in out and 'MAXDATA 65535' in out, 'extended APDU level from dwFeatures')
    # The same reader at the short APDU level.
    b.unplug()
    r, out = simple('enum', features=0x000200FE)(b)
    check('EXTENDED 0' in out and 'MAXDATA 255' in out, 'short APDU level from dwFeatures')


def sc_transfer(b):
    r, out = simple('transfer', max_msg=3072)(b)
    check('PROTOCOL T=1' in out, 'GetParameters')


def sc_getresp(b):
    r, out = simple('getresp', features=0x000200FE)(b)
    check(r.ccid.stats['apdus'] >= 5, 'GET RESPONSE rounds reached the card')


def sc_wrongle(b):
    r, out = simple('wrongle', faults={'wrongle'})(b)
    check(r.ccid.stats['6c'] >= 1 and r.ccid.stats['6c_retried'] >= 1, f'6Cxx path not taken: {r.ccid.stats}')


def sc_ext(b):
    r, out = simple('ext', max_msg=271)(b)
    s = r.ccid.stats
    check(s['cmd_chained'] >= 1 and s['cmd_chunks'] >= 3, f'command chaining over XfrBlocks: {s}')
    check(s['rsp_chunks'] >= 1, f'response chaining over XfrBlocks: {s}')
    check('PUTDATA 6982' in out or 'PUTDATA 6A80' in out or 'PUTDATA 6A' in out or 'PUTDATA 69' in out,
          'the long PUT DATA reached the card and was refused')


def sc_timeext(b):
    r, out = simple('timeext', faults={'timeext'})(b)
    check(r.ccid.stats['timeext'] >= 2, 'time extensions sent')


def sc_badseq(b):
    r, out = simple('badseq', faults={'badseq'})(b)
    check(r.ccid.stats['badseq'] == 1, 'bad bSeq sent once')


def sc_hotplug(b):
    b.start([b.args.client, 'discover'])
    # READY comes after usb_discovery_new(): libusb's uevent monitor and the
    # hotplug callback exist, and the list of devices present was taken.  A
    # reader plugged now can only arrive through a hotplug event.
    b.expect_next('READY')
    log('plug')
    b.plug(ReaderConfig())
    added = b.expect_next('ADDED usb:')
    log('unplug')
    b.unplug()
    removed = b.expect_next('REMOVED usb:')
    check(added.split()[1] == removed.split()[1], 'the same token left')
    check(b.finish() == 0, 'client exit status')
    b.expect_next('DONE')


def sc_replug(b):
    b.start([b.args.client, 'discover'])
    b.expect_next('READY')
    b.plug(ReaderConfig())
    first = b.expect_next('ADDED usb:').split()[1]
    old = b.unplug()
    b.expect_next('REMOVED usb:')
    # The client is done with the old device once it has released it.
    old.wait_released()
    b.plug(ReaderConfig())
    again = b.expect_next('ADDED usb:').split()[1]
    check(first == again, f'replugged key has another identity: {first} vs {again}')
    b.unplug()
    b.expect_next('REMOVED usb:')
    check(b.finish() == 0, 'client exit status')
    b.expect_next('DONE')


def sc_cardswap(b):
    """A reader present at start, without a card: NotifySlotChange in and out."""
    r = b.plug(ReaderConfig(card_present=False))
    b.start([b.args.client, 'discover'])
    b.expect_next('READY')
    # The discovery asked the slot status and was told "no card": it decided
    # on this reader.  Its next event is the card inserted below; the first
    # line after READY must be that token (expect_next), none before it.
    r.ccid.wait_until(lambda s: sum(s[f'slot_status_{k}'] for k in ('absent', 'inactive', 'active')),
                      'answered GetSlotStatus')
    check(r.ccid.stats['slot_status_absent'] >= 1 and r.ccid.stats['apdus'] == 0,
          f'the reader had a card at start: {dict(r.ccid.stats)}')
    for i in range(2):
        log('card in')
        r.ccid.insert()
        r.notify(True)
        b.expect_next('ADDED usb:')
        log('card out')
        r.ccid.remove()
        r.notify(False)
        b.expect_next('REMOVED usb:')
    check(b.finish() == 0, 'client exit status')
    b.expect_next('DONE')


GET_DATA = 0xCB
GENERAL_AUTHENTICATE = 0x87


def sc_unplug_op(b):
    """Unplug while an APDU is in flight: the reader holds the client's
    next GET DATA unanswered, and is unplugged with it."""
    b.start([b.args.client, 'discover', '--op-loop'])
    b.expect('READY')
    r = b.plug(ReaderConfig())
    b.expect('ADDED usb:')
    b.expect('OP-OK')
    r.ccid.hold(lambda apdu: apdu[1] == GET_DATA)
    r.ccid.wait_held()
    log('unplug during an APDU')
    b.unplug()
    line = b.expect('OP-ERR')
    check(line == 'OP-ERR ENODEV', f'the APDU in flight failed with {line}, not ENODEV')
    b.expect('REMOVED usb:')
    check(b.finish() == 0, 'client exit status')


def sc_dump(b):
    check(b.args.tool, '--tool needed')
    b.plug(ReaderConfig(max_msg=3072))
    rc, out = b.run([b.args.tool, 'usb', 'dump'])
    check(rc == 0, f'netca-tool usb dump exited {rc}')
    for want in ('idVendor: 0x1209', 'idProduct: 0x7E57', 'iSerialNumber: NCT0001',
                 'bInterfaceClass: 0x0B', 'dwFeatures: 0x000400FE', 'dwMaxCCIDMessageLength: 3072',
                 'extended APDU', 'verdict: supported'):
        check(want.lower() in out.lower(), f'"{want}" missing from the dump')
    rc, out = b.run([b.args.tool, '--json', 'usb', 'dump'])
    j = json.loads(out)
    check(j['readers'][0]['ccid']['dwMaxCCIDMessageLength'] == 3072, 'JSON dump')


NO_READER = 'No CCID reader or USB key attached.'


def sc_dump_none(b):
    """netca-tool usb dump with no CCID device (only the root hub), as
    netca-tool(1) documents it: "No CCID reader or USB key attached.", exit
    status 0; with --json an empty "readers" array.  Between two such runs
    a plugged reader is listed: the tool does see the emulated bus."""
    check(b.args.tool, '--tool needed')

    def none(when):
        rc, out = b.run([b.args.tool, 'usb', 'dump'])
        check(rc == 0, f'{when}: netca-tool usb dump exited {rc}')
        check(out.strip() == NO_READER, f'{when}: the dump says {out!r}, not "{NO_READER}"')
        rc, out = b.run([b.args.tool, '--json', 'usb', 'dump'])
        check(rc == 0, f'{when}: netca-tool --json usb dump exited {rc}')
        check(json.loads(out) == {'readers': []}, f'{when}: JSON dump {out!r}')

    none('no reader yet')
    b.plug(ReaderConfig())
    rc, out = b.run([b.args.tool, 'usb', 'dump'])
    check(rc == 0 and 'iSerialNumber: NCT0001' in out and NO_READER not in out, 'the plugged reader is not listed')
    b.unplug()
    none('reader unplugged')


def sc_disabled(b):
    """NETCA_USB=0 (netcad(8)): no USB discovery.  netcad starts discovery
    before it logs "serving": its log up to there says "driver usb: turned
    off" and has no other "usb:" line, and no token, with a reader and a card
    present.  Over the daemon's whole
    life the reader's device node is never opened.  The same daemon without
    NETCA_USB=0 then logs "usb: discovery started" before "serving" and
    serves the key: the check sees what it looks for."""
    check(b.args.tool, '--tool needed')
    r = b.plug(ReaderConfig())
    serving = b.start_daemon({'NETCA_USB': '0'})
    off = 'driver usb: turned off'
    check(b.dlog.grep(off, end=serving), f'no "{off}" before "serving"')
    usb_lines = [l for l in b.dlog.grep('usb:', end=serving) + b.dlog.grep('USB', end=serving) if off not in l]
    check(not usb_lines, f'netcad with NETCA_USB=0 logged {usb_lines}')
    rc, out = b.run([b.args.tool, '--json', 'daemon', 'status'], extra_env={'NETCA_SOCKET': b.sock})
    check(rc == 0, f'netca-tool daemon status exited {rc}')
    check(json.loads(out)['tokens'] == 0, f'tokens with NETCA_USB=0: {out}')
    b.stop_daemon()
    check(r.opens == 0, f'netcad with NETCA_USB=0 opened the reader {r.opens} times')
    usb_lines = [l for l in b.dlog.grep('usb:') + b.dlog.grep('USB') if off not in l]
    check(not usb_lines, f'netcad with NETCA_USB=0 logged {usb_lines}')

    log('control: the same daemon without NETCA_USB=0')
    serving = b.start_daemon()
    check(b.dlog.grep('usb: discovery started', end=serving), 'no "usb: discovery started" before "serving"')
    b.dlog.find('usb: token ', ' added', start=serving)
    rc, out = b.run([b.args.tool, '--json', 'daemon', 'status'], extra_env={'NETCA_SOCKET': b.sock})
    check(rc == 0 and json.loads(out)['tokens'] == 1, f'the control daemon serves no token: {out}')
    check(r.opens >= 1, 'the control daemon did not open the reader')
    b.stop_daemon()


def sc_p11_unplug(b):
    """netcad serves the key; a C_Sign through netca-pkcs11.so is in flight
    when the key is pulled: CKR_DEVICE_REMOVED, a C_WaitForSlotEvent waiter
    wakes, and the key plugged again comes back in the same slot."""
    check(b.args.netcad and b.args.module and b.args.p11_client, '--netcad, --module, --p11-client needed')
    r = b.plug(ReaderConfig())
    b.start_daemon()
    b.start([b.args.p11_client, b.args.module], extra_env={'NETCA_SOCKET': b.sock})
    slot = b.expect('SLOT ').split()[1]
    b.expect('SIGN-OK', timeout=30)
    # The reader holds the next signature's GENERAL AUTHENTICATE: the key is
    # pulled while netcad waits for its answer.
    r.ccid.hold(lambda apdu: apdu[1] == GENERAL_AUTHENTICATE)
    r.ccid.wait_held()
    log('unplug during C_Sign')
    b.unplug()
    rv = b.expect('SIGN-RV')
    check(rv == 'SIGN-RV 0x32', f'C_Sign in flight: {rv}, expected CKR_DEVICE_REMOVED (0x32)')
    ev = b.expect('EVENT ')
    check(ev.split()[1] == slot, f'slot event for slot {ev.split()[1]}, expected {slot}')
    # netcad has dropped the token and released the old device.
    b.dlog.find('usb: token in ', ' removed')
    r.wait_released()
    log('replug')
    b.plug(ReaderConfig())
    again = b.expect('SLOT ', timeout=30).split()[1]
    check(again == slot, f'replugged key in slot {again}, it was in {slot}')
    b.expect('SIGN-OK', timeout=30)
    b.expect('DONE')
    check(b.client.wait(timeout=30) == 0, 'client exit status')
    b.stop_daemon()


def sc_serve(b):
    """Not a test: the virtual PIV card in the emulated reader, with netcad
    serving it, until Ctrl-C.  Socket: $NETCA_SOCKET, else one in a temp dir."""
    check(b.args.netcad, '--netcad needed')
    sock = os.environ.get('NETCA_SOCKET') or os.path.join(b.tmp, 'netcad.sock')
    b.plug(ReaderConfig(), delay_ms=3)
    env = b.env()
    env['NETCA_SOCKET'] = sock
    b.daemon = subprocess.Popen([b.args.netcad, '--foreground', '--socket', sock, '--data-dir',
                                 os.path.join(b.tmp, 'data')], env=env)
    print(f'netcad serves the virtual PIV card (PIN 123456, PUK 12345678) in an emulated USB reader.\n'
          f'In another shell:\n  export NETCA_SOCKET={sock}\n'
          f'  pkcs11-tool --module BUILD/pkcs11/netca-pkcs11.so -L\nCtrl-C stops.', flush=True)
    try:
        b.daemon.wait()
    except KeyboardInterrupt:
        b.daemon.terminate()
        b.daemon.wait(timeout=30)


SCENARIOS = {
    'serve': sc_serve,
    'p11-unplug': sc_p11_unplug,
    'enum': sc_enum, 'transfer': sc_transfer, 'getresp': sc_getresp, 'wrongle': sc_wrongle,
    'ext': sc_ext, 'timeext': sc_timeext, 'badseq': sc_badseq, 'hotplug': sc_hotplug,
    'replug': sc_replug, 'cardswap': sc_cardswap, 'unplug-op': sc_unplug_op, 'dump': sc_dump,
    'dump-none': sc_dump_none, 'disabled': sc_disabled,
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--card-exe', required=True)
    ap.add_argument('--make-card', required=True)
    ap.add_argument('--client')
    ap.add_argument('--tool')
    ap.add_argument('--guid')
    ap.add_argument('--netcad')
    ap.add_argument('--module')
    ap.add_argument('--p11-client')
    ap.add_argument('scenario', choices=sorted(SCENARIOS) + ['list'])
    args = ap.parse_args()
    if 'libumockdev-preload' not in os.environ.get('LD_PRELOAD', ''):
        sys.exit('ccid-harness: run me under umockdev-wrapper (see the pitfalls at the top)')
    b = Bench(args)
    try:
        SCENARIOS[args.scenario](b)
        b.check_readers()
    except AssertionError as e:
        log('FAIL', args.scenario + ':', e)
        return 1
    finally:
        b.close()
    log('PASS', args.scenario)
    return 0


if __name__ == '__main__':
    sys.exit(main())
