#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# A scripted pinentry speaking Assuan, for the PIN tests.  What it does at
# GETPIN comes from the file named by FAKE_PINENTRY_CONTROL (read at start):
#   answer:TEXT   answers TEXT (percent-escaped as Assuan requires)
#   cancel        answers ERR 83886179 (GPG_ERR_CANCELED), as a user's Cancel
#   hang          never answers (the daemon's time limit must end it)
# Every command it receives is appended to CONTROL.log (they hold no PIN:
# the PIN only goes the other way).
import os
import sys
import time

ctl = os.environ.get("FAKE_PINENTRY_CONTROL", "")
mode = open(ctl).read().strip() if ctl and os.path.exists(ctl) else "cancel"
log = open(ctl + ".log", "a") if ctl else open(os.devnull, "w")


def out(s):
    sys.stdout.write(s + "\n")
    sys.stdout.flush()


out("OK Pleased to meet you")
for line in sys.stdin:
    line = line.rstrip("\n")
    log.write(line + "\n")
    log.flush()
    cmd = line.split(" ", 1)[0]
    if cmd == "GETPIN":
        if mode.startswith("answer:"):
            pin = mode[len("answer:"):]
            out("D " + pin.replace("%", "%25").replace("\n", "%0A").replace("\r", "%0D"))
            out("OK")
        elif mode == "hang":
            time.sleep(3600)
        else:
            out("ERR 83886179 Operation cancelled <Pinentry>")
    elif cmd == "BYE":
        out("OK closing connection")
        break
    else:
        out("OK")
