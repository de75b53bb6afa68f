/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The USB driver (drivers/table.c): discovery with usb_piv_factory.
 * NETCA_USB=0 in the daemon's environment turns it off. */
extern const struct driver usb_driver;

/* The usb_token_factory_fn of the daemon: opens the PIV application on the
 * card (piv_token_new) and names the slot "usb:<PIV serial>", so that the
 * same key comes back in the same slot.  userdata unused. */
#pragma once

#include "usb.h"

int usb_piv_factory(void *userdata, struct apdu_transport *t, const char *reader_name,
                    const struct driver_ops **ret_ops, struct token **ret_token, char **ret_slot_key);
