/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The USB driver: CCID discovery, cards bound to PIV. */
#include "usb-driver.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "drivers/piv/piv.h"
#include "usb.h"

/* USB discovery with PIV's transport binding; the slot keys say "usb".  NETCA_USB=0 turns it off. */
static int usb_start(struct driver_host *h) {
        const char *e = secure_getenv("NETCA_USB");
        if (e && strcmp(e, "0") == 0)
                return -ECANCELED;
        struct usb_discovery *d = NULL;
        int r = usb_discovery_new(h, piv_token_factory, (void *) "usb", &d);
        if (r < 0)
                return r;
        h->driver_data = d;
        return 0;
}

static void usb_stop(struct driver_host *h) {
        usb_discovery_stop(h->driver_data);
}

static void usb_free(struct driver_host *h) {
        h->driver_data = usb_discovery_free(h->driver_data);
}

const struct driver usb_driver = {
        .name = "usb",
        .start = usb_start,
        .stop = usb_stop,
        .free = usb_free,
};
