/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The token factory the daemon gives USB discovery: the PIV application. */
#include "usb-piv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "drivers/piv/piv.h"

int usb_piv_factory(void *userdata, struct apdu_transport *t, const char *reader_name,
                    const struct driver_ops **ret_ops, struct token **ret_token, char **ret_slot_key) {
        struct token *tok = NULL;
        char *piv_key = NULL;
        int r = piv_token_new(t, reader_name, &tok, &piv_key);
        if (r < 0)
                return r;
        /* "piv:<serial>" -> "usb:<serial>": the same card in a BLE key would
         * be another slot, so the transport names the key. */
        const char *serial = piv_key && strncmp(piv_key, "piv:", 4) == 0 ? piv_key + 4 : piv_key;
        char *key = NULL;
        if (asprintf(&key, "usb:%s", serial ? serial : "") < 0) {
                free(piv_key);
                piv_ops.free(tok);
                return -ENOMEM;
        }
        free(piv_key);
        piv_token_set_kind(tok, "usb");
        *ret_ops = &piv_ops;
        *ret_token = tok;
        *ret_slot_key = key;
        return 0;
}

/* The driver: USB discovery with this factory.  NETCA_USB=0 turns it off. */
static int usb_start(struct driver_host *h) {
        const char *e = secure_getenv("NETCA_USB");
        if (e && strcmp(e, "0") == 0)
                return -ECANCELED;
        struct usb_discovery *d = NULL;
        int r = usb_discovery_new(h, usb_piv_factory, NULL, &d);
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
