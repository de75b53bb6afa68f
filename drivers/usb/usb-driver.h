/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The USB driver (drivers/table.c): CCID discovery (usb.h) whose cards
 * become tokens through PIV's one transport binding, piv_token_factory with
 * kind "usb" (slot keys "usb:<PIV serial>").  NETCA_USB=0 in the daemon's
 * environment turns it off. */
#pragma once

#include "drivers/driver.h"

extern const struct driver usb_driver;
