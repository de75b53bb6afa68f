/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* CCID over libusb: readers, the APDU transport, hotplug discovery.  See usb.h. */
#include "usb.h"

#include <errno.h>
#include <libusb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ccid.h"
#include "common/log.h"

#define USB_OUT_TIMEOUT_MS 5000
/* A card computing (RSA key generation) sends time extensions; a reader that
 * says nothing for this long is broken. */
#define USB_IN_TIMEOUT_MS 60000

struct usb_reader {
        pthread_mutex_t io_lock; /* one CCID exchange at a time */
        atomic_int refs;
        libusb_context *ctx;
        bool own_ctx; /* usb_transport_open: libusb_exit on free */
        libusb_device *dev;
        libusb_device_handle *h;
        uint8_t ifnum, ep_out, ep_in, ep_intr;
        uint16_t in_packet;
        unsigned in_timeout_ms; /* USB_IN_TIMEOUT_MS; short when closing */
        struct ccid_slot slot;
        char name[160];
        char serial[64];
        atomic_bool gone; /* unplugged: everything -ENODEV */
        atomic_bool card_present;
        atomic_uint card_gen; /* bumped at each power-on: a transport serves one insertion */
        /* Owned by the discovery thread: */
        struct usb_discovery *disc;
        struct libusb_transfer *intr;
        atomic_bool intr_active;
        uint8_t intr_buf[16];
        struct token *token; /* handed to the host, NULL when none */
        struct usb_reader *next;
};

struct usb_transport {
        struct apdu_transport base;
        struct usb_reader *r;
        unsigned gen; /* the card insertion it was made for */
};

enum ev_kind { EV_ARRIVED, EV_LEFT, EV_CARD };

struct ev {
        enum ev_kind kind;
        libusb_device *dev; /* referenced */
        struct ev *next;
};

struct usb_discovery {
        libusb_context *ctx;
        struct driver_host *host;
        apdu_token_factory_fn factory;
        void *factory_ud;
        pthread_t thread;
        bool thread_running;
        atomic_bool stop;
        bool hotplug;
        libusb_hotplug_callback_handle hp;
        pthread_mutex_t lock; /* the event queue */
        struct ev *queue, **queue_tail;
        struct usb_reader *readers; /* thread only */
};

static int errno_from_libusb(int e) {
        switch (e) {
        case LIBUSB_SUCCESS: return 0;
        case LIBUSB_ERROR_NO_DEVICE: return -ENODEV;
        case LIBUSB_ERROR_TIMEOUT: return -ETIMEDOUT;
        case LIBUSB_ERROR_NO_MEM: return -ENOMEM;
        case LIBUSB_ERROR_NOT_FOUND: return -ENOENT;
        case LIBUSB_ERROR_ACCESS: return -EACCES;
        case LIBUSB_ERROR_BUSY: return -EBUSY;
        default: return -EIO;
        }
}

/* ------------------------------------------------------------ reader I/O */

static void reader_gone(struct usb_reader *r);

/* One bulk transfer on ep (dir "OUT" or "IN", for the log): a stall is
 * cleared, a vanished device marks the reader gone; 0 or the error as an
 * errno. */
static int reader_bulk(struct usb_reader *r, uint8_t ep, const char *dir, unsigned char *buf, int len, int *done,
                       unsigned timeout_ms) {
        int e = libusb_bulk_transfer(r->h, ep, buf, len, done, timeout_ms);
        if (e == LIBUSB_ERROR_PIPE)
                libusb_clear_halt(r->h, ep);
        if (e == LIBUSB_ERROR_NO_DEVICE)
                reader_gone(r);
        if (e) {
                log_debug(LOG_SUB_USB, "usb %s: bulk %s: %s", r->name, dir, libusb_error_name(e));
                return errno_from_libusb(e);
        }
        return 0;
}

static int reader_send(void *ud, const uint8_t *buf, size_t len) {
        struct usb_reader *r = ud;
        if (atomic_load(&r->gone))
                return -ENODEV;
        int done = 0;
        int err = reader_bulk(r, r->ep_out, "OUT", (unsigned char *)buf, (int)len, &done, USB_OUT_TIMEOUT_MS);
        if (err < 0)
                return err;
        if ((size_t)done != len)
                return -EIO;
        log_debug(LOG_SUB_USB, "usb %s: -> type 0x%02x seq %u len %zu", r->name, buf[0], buf[6], len);
        return 0;
}

static int reader_recv(void *ud, uint8_t *buf, size_t cap, size_t *ret_len) {
        struct usb_reader *r = ud;
        if (atomic_load(&r->gone))
                return -ENODEV;
        /* A whole number of packets, so a reader sending its longest message
         * never overflows the transfer. */
        size_t want = cap - cap % (r->in_packet ? r->in_packet : 64);
        int done = 0;
        int err = reader_bulk(r, r->ep_in, "IN", buf, (int)want, &done, r->in_timeout_ms);
        if (err < 0)
                return err;
        log_debug(LOG_SUB_USB, "usb %s: <- type 0x%02x seq %u status 0x%02x error 0x%02x len %d", r->name,
                  done > 0 ? buf[0] : 0, done > 6 ? buf[6] : 0, done > 7 ? buf[7] : 0, done > 8 ? buf[8] : 0, done);
        *ret_len = (size_t)done;
        return 0;
}

static struct usb_reader *reader_ref(struct usb_reader *r) {
        atomic_fetch_add(&r->refs, 1);
        return r;
}

static void LIBUSB_CALL on_interrupt(struct libusb_transfer *xfer);

static void reader_unref(struct usb_reader *r) {
        if (!r || atomic_fetch_sub(&r->refs, 1) > 1)
                return;
        if (r->intr) {
                /* Wait for a cancelled interrupt transfer before closing:
                 * libusb requires it.  Bounded: a vanished device completes
                 * it with NO_DEVICE at once. */
                if (atomic_load(&r->intr_active))
                        libusb_cancel_transfer(r->intr);
                for (int i = 0; i < 50 && atomic_load(&r->intr_active); i++) {
                        struct timeval tv = { 0, 100000 };
                        libusb_handle_events_timeout_completed(r->ctx, &tv, NULL);
                }
                if (!atomic_load(&r->intr_active))
                        libusb_free_transfer(r->intr);
        }
        if (r->h) {
                if (!atomic_load(&r->gone)) {
                        /* Power off so the card's security state goes; a
                         * reader that stopped answering must not hold up
                         * the daemon's exit for a minute. */
                        struct ccid_slot *s = &r->slot;
                        r->in_timeout_ms = 1000;
                        if (s->buf && atomic_load(&r->card_present))
                                (void)ccid_power_off(s);
                }
                libusb_release_interface(r->h, r->ifnum);
                libusb_close(r->h);
        }
        ccid_slot_done(&r->slot);
        if (r->dev)
                libusb_unref_device(r->dev);
        if (r->own_ctx)
                libusb_exit(r->ctx);
        pthread_mutex_destroy(&r->io_lock);
        free(r);
}

/* Finds the CCID interface of a device and its class descriptor. */
static int find_ccid_interface(libusb_device *dev, struct ccid_desc *ret_desc, uint8_t *ret_if, uint8_t *ret_out,
                               uint8_t *ret_in, uint8_t *ret_intr, uint16_t *ret_in_packet, const char **ret_why) {
        struct libusb_config_descriptor *cfg = NULL;
        int e = libusb_get_active_config_descriptor(dev, &cfg);
        if (e)
                e = libusb_get_config_descriptor(dev, 0, &cfg);
        if (e)
                return errno_from_libusb(e);
        int r = -ENOENT;
        for (int i = 0; i < cfg->bNumInterfaces && r == -ENOENT; i++) {
                if (cfg->interface[i].num_altsetting < 1)
                        continue;
                const struct libusb_interface_descriptor *id = &cfg->interface[i].altsetting[0];
                if (id->bInterfaceClass != CCID_CLASS)
                        continue;
                struct ccid_desc d;
                int p = ccid_desc_parse(id->extra, (size_t)id->extra_length, &d);
                /* Some readers attach it to an endpoint instead. */
                for (int k = 0; p < 0 && k < id->bNumEndpoints; k++)
                        p = ccid_desc_parse(id->endpoint[k].extra, (size_t)id->endpoint[k].extra_length, &d);
                if (p < 0) {
                        *ret_why = "CCID interface without a class descriptor";
                        r = -ENOTSUP;
                        break;
                }
                uint8_t out = 0, in = 0, intr = 0;
                uint16_t in_packet = 64;
                for (int k = 0; k < id->bNumEndpoints; k++) {
                        const struct libusb_endpoint_descriptor *ep = &id->endpoint[k];
                        int type = ep->bmAttributes & LIBUSB_TRANSFER_TYPE_MASK;
                        bool is_in = ep->bEndpointAddress & LIBUSB_ENDPOINT_IN;
                        if (type == LIBUSB_TRANSFER_TYPE_BULK && !is_in)
                                out = ep->bEndpointAddress;
                        else if (type == LIBUSB_TRANSFER_TYPE_BULK) {
                                in = ep->bEndpointAddress;
                                in_packet = ep->wMaxPacketSize ? ep->wMaxPacketSize : 64;
                        } else if (type == LIBUSB_TRANSFER_TYPE_INTERRUPT && is_in)
                                intr = ep->bEndpointAddress;
                }
                if (!ccid_desc_verdict(&d, id->bInterfaceProtocol, (uint8_t)((out && in) ? id->bNumEndpoints : 0),
                                       ret_why)) {
                        r = -ENOTSUP;
                        break;
                }
                *ret_desc = d;
                *ret_if = id->bInterfaceNumber;
                *ret_out = out;
                *ret_in = in;
                *ret_intr = intr;
                *ret_in_packet = in_packet;
                r = 0;
        }
        libusb_free_config_descriptor(cfg);
        return r;
}

static void get_string(libusb_device_handle *h, uint8_t idx, char *out, size_t cap) {
        out[0] = '\0';
        if (!idx)
                return;
        unsigned char buf[128];
        int n = libusb_get_string_descriptor_ascii(h, idx, buf, sizeof buf);
        if (n <= 0)
                return;
        size_t k = 0;
        for (int i = 0; i < n && k + 1 < cap; i++)
                out[k++] = (buf[i] >= 0x20 && buf[i] < 0x7F) ? (char)buf[i] : '?';
        out[k] = '\0';
}

/* Opens and claims a reader.  -ENOTSUP: not a reader we drive (*ret_why). */
static int reader_open(libusb_context *ctx, libusb_device *dev, struct usb_reader **ret, const char **ret_why) {
        struct ccid_desc d;
        uint8_t ifnum = 0, out = 0, in = 0, intr = 0;
        uint16_t in_packet = 64;
        *ret_why = NULL;
        int r = find_ccid_interface(dev, &d, &ifnum, &out, &in, &intr, &in_packet, ret_why);
        if (r < 0)
                return r;
        struct usb_reader *rd = calloc(1, sizeof *rd);
        if (!rd)
                return -ENOMEM;
        pthread_mutex_init(&rd->io_lock, NULL);
        atomic_init(&rd->refs, 1);
        rd->ctx = ctx;
        rd->dev = libusb_ref_device(dev);
        rd->ifnum = ifnum;
        rd->ep_out = out;
        rd->ep_in = in;
        rd->ep_intr = intr;
        rd->in_packet = in_packet;
        rd->in_timeout_ms = USB_IN_TIMEOUT_MS;
        int e = libusb_open(dev, &rd->h);
        if (e) {
                r = errno_from_libusb(e);
                goto out_unref;
        }
        struct libusb_device_descriptor dd;
        libusb_get_device_descriptor(dev, &dd);
        char manu[64], prod[64];
        get_string(rd->h, dd.iManufacturer, manu, sizeof manu);
        get_string(rd->h, dd.iProduct, prod, sizeof prod);
        get_string(rd->h, dd.iSerialNumber, rd->serial, sizeof rd->serial);
        if (!rd->serial[0])
                snprintf(rd->serial, sizeof rd->serial, "bus%u-port%u", libusb_get_bus_number(dev),
                         libusb_get_port_number(dev));
        if (manu[0] || prod[0])
                snprintf(rd->name, sizeof rd->name, "%s%s%s", manu, manu[0] && prod[0] ? " " : "", prod);
        else
                snprintf(rd->name, sizeof rd->name, "USB %04x:%04x", dd.idVendor, dd.idProduct);
        libusb_set_auto_detach_kernel_driver(rd->h, 1);
        if ((e = libusb_claim_interface(rd->h, ifnum))) {
                log_notice("usb: %s: cannot claim interface %u: %s", rd->name, ifnum, libusb_error_name(e));
                r = errno_from_libusb(e);
                goto out_unref;
        }
        struct ccid_io io = { .userdata = rd, .send = reader_send, .recv = reader_recv };
        if ((r = ccid_slot_init(&rd->slot, &io, &d, 0)) < 0)
                goto out_unref;
        if (d.max_slot_index > 0)
                log_notice("usb: %s has %u slots; only slot 0 is used", rd->name, d.max_slot_index + 1u);
        log_debug(LOG_SUB_USB, "usb: opened %s (serial %s), %s level, dwMaxCCIDMessageLength %u", rd->name, rd->serial,
                  ccid_level_name(ccid_desc_level(&d)), d.max_msg_len);
        *ret = rd;
        return 0;
out_unref:
        reader_unref(rd);
        return r;
}

/* ------------------------------------------------------------- transport */

static const struct apdu_transport_ops usb_transport_ops;

static struct usb_transport *as_usb(struct apdu_transport *t) {
        return t && t->ops == &usb_transport_ops ? (struct usb_transport *)t : NULL;
}

static int tr_transmit(struct apdu_transport *t, const uint8_t *capdu, size_t clen, uint8_t *rapdu, size_t rcap,
                       size_t *rlen) {
        struct usb_transport *u = as_usb(t);
        struct usb_reader *r = u->r;
        pthread_mutex_lock(&r->io_lock);
        int ret;
        if (atomic_load(&r->gone) || !atomic_load(&r->card_present) || atomic_load(&r->card_gen) != u->gen)
                ret = -ENODEV;
        else
                ret = ccid_transmit(&r->slot, capdu, clen, rapdu, rcap, rlen);
        if (ret == -ENODEV)
                atomic_store(&r->card_present, false);
        else if (ret == -EMSGSIZE || ret == -ENOTSUP)
                ret = -EIO;
        pthread_mutex_unlock(&r->io_lock);
        return ret;
}

static int tr_reset(struct apdu_transport *t, uint8_t *atr, size_t cap, size_t *atr_len) {
        struct usb_transport *u = as_usb(t);
        struct usb_reader *r = u->r;
        pthread_mutex_lock(&r->io_lock);
        int ret = -ENODEV;
        if (!atomic_load(&r->gone) && atomic_load(&r->card_present) && atomic_load(&r->card_gen) == u->gen) {
                ret = ccid_power_off(&r->slot);
                if (ret >= 0 || ret == -ENOTSUP || ret == -EIO)
                        ret = ccid_power_on(&r->slot, atr, cap, atr_len);
        }
        if (ret == -ENODEV)
                atomic_store(&r->card_present, false);
        pthread_mutex_unlock(&r->io_lock);
        return ret;
}

static size_t tr_max_data(struct apdu_transport *t) {
        return as_usb(t)->r->slot.extended ? 65535 : 255;
}

static void tr_free(struct apdu_transport *t) {
        struct usb_transport *u = as_usb(t);
        if (!u)
                return;
        reader_unref(u->r);
        free(u);
}

static const struct apdu_transport_ops usb_transport_ops = {
        .transmit = tr_transmit,
        .reset = tr_reset,
        .max_data = tr_max_data,
        .free = tr_free,
};

static int transport_new(struct usb_reader *r, struct apdu_transport **ret) {
        struct usb_transport *u = calloc(1, sizeof *u);
        if (!u)
                return -ENOMEM;
        u->base.ops = &usb_transport_ops;
        u->r = reader_ref(r);
        u->gen = atomic_load(&r->card_gen);
        *ret = &u->base;
        return 0;
}

int usb_transport_stats(struct apdu_transport *t, unsigned *ret_time_ext, unsigned *ret_xfr_chained) {
        struct usb_transport *u = as_usb(t);
        if (!u)
                return -EINVAL;
        pthread_mutex_lock(&u->r->io_lock);
        *ret_time_ext = u->r->slot.n_time_ext;
        *ret_xfr_chained = u->r->slot.n_xfr_chained;
        pthread_mutex_unlock(&u->r->io_lock);
        return 0;
}

int usb_transport_get_protocol(struct apdu_transport *t, uint8_t *ret_protocol) {
        struct usb_transport *u = as_usb(t);
        if (!u)
                return -EINVAL;
        pthread_mutex_lock(&u->r->io_lock);
        int r = ccid_get_parameters(&u->r->slot, ret_protocol, NULL, 0, NULL);
        pthread_mutex_unlock(&u->r->io_lock);
        return r;
}

bool usb_transport_extended(struct apdu_transport *t) {
        struct usb_transport *u = as_usb(t);
        return u && u->r->slot.extended;
}

/* Powers the card on (io_lock not needed: no transport exists yet, or the
 * old one's token is gone). */
static int card_power_on(struct usb_reader *r, uint8_t *atr, size_t cap, size_t *atr_len) {
        pthread_mutex_lock(&r->io_lock);
        int ret = ccid_power_on(&r->slot, atr, cap, atr_len);
        if (ret >= 0) {
                atomic_store(&r->card_present, true);
                atomic_fetch_add(&r->card_gen, 1);
        }
        pthread_mutex_unlock(&r->io_lock);
        return ret;
}

int usb_transport_open(const char *name_match, struct apdu_transport **ret, char **ret_name, uint8_t *ret_atr,
                       size_t *ret_atr_len) {
        libusb_context *ctx = NULL;
        if (libusb_init(&ctx))
                return -EIO;
        libusb_device **list = NULL;
        ssize_t n = libusb_get_device_list(ctx, &list);
        if (n < 0) {
                libusb_exit(ctx);
                return errno_from_libusb((int)n);
        }
        struct usb_reader *found = NULL;
        int r = -ENOENT;
        for (ssize_t i = 0; i < n && !found; i++) {
                struct usb_reader *rd = NULL;
                const char *why = NULL;
                if (reader_open(ctx, list[i], &rd, &why) < 0) {
                        if (why)
                                log_debug(LOG_SUB_USB, "usb: device %zd: %s", i, why);
                        continue;
                }
                char hay[256];
                snprintf(hay, sizeof hay, "%s %s", rd->name, rd->serial);
                if (name_match && !strstr(hay, name_match)) {
                        reader_unref(rd);
                        continue;
                }
                found = rd;
        }
        libusb_free_device_list(list, 1);
        if (!found) {
                libusb_exit(ctx);
                return r;
        }
        found->own_ctx = true;
        uint8_t atr[64];
        size_t atr_len = 0;
        r = card_power_on(found, atr, sizeof atr, &atr_len);
        if (r < 0)
                goto out_unref;
        struct apdu_transport *t = NULL;
        if ((r = transport_new(found, &t)) < 0)
                goto out_unref;
        if (ret_name && !(*ret_name = strdup(found->name))) {
                tr_free(t);
                r = -ENOMEM;
                goto out_unref;
        }
        if (ret_atr) {
                memcpy(ret_atr, atr, atr_len);
                *ret_atr_len = atr_len;
        }
        reader_unref(found); /* the transport holds it */
        *ret = t;
        return 0;
out_unref:
        reader_unref(found);
        return r;
}

/* ------------------------------------------------------------- discovery */

static void queue_push(struct usb_discovery *d, enum ev_kind kind, libusb_device *dev) {
        struct ev *e = calloc(1, sizeof *e);
        if (!e) {
                log_error("usb: out of memory, USB event lost");
                return;
        }
        e->kind = kind;
        e->dev = libusb_ref_device(dev);
        pthread_mutex_lock(&d->lock);
        *d->queue_tail = e;
        d->queue_tail = &e->next;
        pthread_mutex_unlock(&d->lock);
}

static int LIBUSB_CALL on_hotplug(libusb_context *ctx, libusb_device *dev, libusb_hotplug_event event, void *ud) {
        /* No I/O here (libusb forbids blocking calls in this callback): the
         * thread does the work after handle_events returns. */
        queue_push(ud, event == LIBUSB_HOTPLUG_EVENT_DEVICE_ARRIVED ? EV_ARRIVED : EV_LEFT, dev);
        return 0;
}

static void LIBUSB_CALL on_interrupt(struct libusb_transfer *xfer) {
        struct usb_reader *r = xfer->user_data;
        if (xfer->status == LIBUSB_TRANSFER_COMPLETED) {
                bool present = false, changed = false;
                int p = ccid_notify_parse(xfer->buffer, (size_t)xfer->actual_length, r->slot.slot, &present, &changed);
                if (p == 0) {
                        log_debug(LOG_SUB_USB, "usb %s: NotifySlotChange: card %s%s", r->name,
                                  present ? "present" : "absent", changed ? " (changed)" : "");
                        queue_push(r->disc, EV_CARD, r->dev);
                } else if (p == -ENOMSG)
                        log_notice("usb %s: reader reports a hardware error", r->name);
                if (!atomic_load(&r->gone) && libusb_submit_transfer(xfer) == 0)
                        return;
        } else if (xfer->status == LIBUSB_TRANSFER_TIMED_OUT) {
                if (libusb_submit_transfer(xfer) == 0)
                        return;
        } else if (xfer->status == LIBUSB_TRANSFER_NO_DEVICE) {
                reader_gone(r);
        }
        atomic_store(&r->intr_active, false);
}

/* The device answered NO_DEVICE: everything fails from now on, and the
 * discovery thread treats it as a departure even if the hotplug event never
 * comes (so that the same key plugged again finds its slot free). */
static void reader_gone(struct usb_reader *r) {
        if (atomic_exchange(&r->gone, true))
                return;
        if (r->disc)
                queue_push(r->disc, EV_LEFT, r->dev);
}

static struct usb_reader *reader_find(struct usb_discovery *d, libusb_device *dev) {
        for (struct usb_reader *r = d->readers; r; r = r->next)
                if (r->dev == dev)
                        return r;
        return NULL;
}

static void card_removed(struct usb_discovery *d, struct usb_reader *r) {
        atomic_store(&r->card_present, false);
        if (!r->token)
                return;
        log_notice("usb: token in %s removed", r->name);
        struct token *t = r->token;
        r->token = NULL;
        d->host->token_removed(d->host, t);
}

static void card_inserted(struct usb_discovery *d, struct usb_reader *r) {
        if (r->token)
                return;
        uint8_t atr[64];
        size_t atr_len = 0;
        int e = card_power_on(r, atr, sizeof atr, &atr_len);
        if (e < 0) {
                if (e != -ENODEV)
                        log_notice("usb: %s: card does not power on: %s", r->name, strerror(-e));
                return;
        }
        struct apdu_transport *t = NULL;
        if ((e = transport_new(r, &t)) < 0)
                return;
        const struct driver_ops *ops = NULL;
        struct token *tok = NULL;
        char *key = NULL;
        e = d->factory(d->factory_ud, t, r->name, &ops, &tok, &key);
        if (e < 0) {
                if (e == -ENOTSUP)
                        log_notice("usb: %s: no card application we serve on this card", r->name);
                else
                        log_notice("usb: %s: cannot open the card: %s", r->name, strerror(-e));
                return;
        }
        r->token = tok;
        e = d->host->token_added(d->host, ops, tok, key, NULL);
        if (e < 0) {
                log_error("usb: %s: token not added: %s", r->name, strerror(-e));
                r->token = NULL; /* the host freed it */
        } else
                log_notice("usb: token %s in %s added", key, r->name);
        free(key);
}

static void device_arrived(struct usb_discovery *d, libusb_device *dev) {
        if (reader_find(d, dev))
                return;
        struct usb_reader *r = NULL;
        const char *why = NULL;
        int e = reader_open(d->ctx, dev, &r, &why);
        if (e == -ENOENT)
                return; /* not a CCID device */
        if (e < 0) {
                struct libusb_device_descriptor dd;
                libusb_get_device_descriptor(dev, &dd);
                log_notice("usb: reader %04x:%04x not used: %s", dd.idVendor, dd.idProduct, why ? why : strerror(-e));
                return;
        }
        r->disc = d;
        r->next = d->readers;
        d->readers = r;
        if (r->ep_intr) {
                r->intr = libusb_alloc_transfer(0);
                if (r->intr) {
                        libusb_fill_interrupt_transfer(r->intr, r->h, r->ep_intr, r->intr_buf, sizeof r->intr_buf,
                                                       on_interrupt, r, 0);
                        if (libusb_submit_transfer(r->intr) == 0)
                                atomic_store(&r->intr_active, true);
                }
        }
        uint8_t icc = CCID_ICC_ABSENT;
        pthread_mutex_lock(&r->io_lock);
        e = ccid_slot_status(&r->slot, &icc);
        pthread_mutex_unlock(&r->io_lock);
        if (e < 0)
                log_notice("usb: %s: GetSlotStatus: %s", r->name, strerror(-e));
        else if (icc != CCID_ICC_ABSENT)
                card_inserted(d, r);
}

static void device_left(struct usb_discovery *d, libusb_device *dev) {
        for (struct usb_reader **pp = &d->readers; *pp; pp = &(*pp)->next) {
                struct usb_reader *r = *pp;
                if (r->dev != dev)
                        continue;
                *pp = r->next;
                atomic_store(&r->gone, true);
                log_debug(LOG_SUB_USB, "usb: %s unplugged", r->name);
                card_removed(d, r);
                reader_unref(r);
                return;
        }
}

static void card_event(struct usb_discovery *d, libusb_device *dev) {
        struct usb_reader *r = reader_find(d, dev);
        if (!r || atomic_load(&r->gone))
                return;
        /* The notification says what changed; the slot status says what is. */
        uint8_t icc = CCID_ICC_ABSENT;
        pthread_mutex_lock(&r->io_lock);
        int e = ccid_slot_status(&r->slot, &icc);
        pthread_mutex_unlock(&r->io_lock);
        if (e < 0)
                return;
        if (icc == CCID_ICC_ABSENT)
                card_removed(d, r);
        else if (!r->token || !atomic_load(&r->card_present)) {
                card_removed(d, r);
                card_inserted(d, r);
        }
}

static void process_queue(struct usb_discovery *d) {
        for (;;) {
                pthread_mutex_lock(&d->lock);
                struct ev *e = d->queue;
                if (e) {
                        d->queue = e->next;
                        if (!d->queue)
                                d->queue_tail = &d->queue;
                }
                pthread_mutex_unlock(&d->lock);
                if (!e)
                        return;
                if (!atomic_load(&d->stop)) {
                        switch (e->kind) {
                        case EV_ARRIVED: device_arrived(d, e->dev); break;
                        case EV_LEFT: device_left(d, e->dev); break;
                        case EV_CARD: card_event(d, e->dev); break;
                        }
                }
                libusb_unref_device(e->dev);
                free(e);
        }
}

static void *discovery_thread(void *arg) {
        struct usb_discovery *d = arg;
        if (!d->hotplug) {
                /* No hotplug support in this libusb: what is there at start. */
                libusb_device **list = NULL;
                ssize_t n = libusb_get_device_list(d->ctx, &list);
                for (ssize_t i = 0; i < n; i++)
                        queue_push(d, EV_ARRIVED, list[i]);
                if (n >= 0)
                        libusb_free_device_list(list, 1);
        }
        while (!atomic_load(&d->stop)) {
                process_queue(d);
                struct timeval tv = { 0, 250000 };
                libusb_handle_events_timeout_completed(d->ctx, &tv, NULL);
        }
        return NULL;
}

int usb_discovery_new(struct driver_host *host, apdu_token_factory_fn factory, void *factory_userdata,
                      struct usb_discovery **ret) {
        if (!host || !factory || !ret)
                return -EINVAL;
        struct usb_discovery *d = calloc(1, sizeof *d);
        if (!d)
                return -ENOMEM;
        d->host = host;
        d->factory = factory;
        d->factory_ud = factory_userdata;
        d->queue_tail = &d->queue;
        pthread_mutex_init(&d->lock, NULL);
        if (libusb_init(&d->ctx)) {
                pthread_mutex_destroy(&d->lock);
                free(d);
                return -EIO;
        }
        if (libusb_has_capability(LIBUSB_CAP_HAS_HOTPLUG)) {
                /* Every device: CCID is an interface class, which hotplug
                 * filters cannot express; arrivals are checked in the thread. */
                int e = libusb_hotplug_register_callback(
                        d->ctx, LIBUSB_HOTPLUG_EVENT_DEVICE_ARRIVED | LIBUSB_HOTPLUG_EVENT_DEVICE_LEFT,
                        LIBUSB_HOTPLUG_ENUMERATE, LIBUSB_HOTPLUG_MATCH_ANY, LIBUSB_HOTPLUG_MATCH_ANY,
                        LIBUSB_HOTPLUG_MATCH_ANY, on_hotplug, d, &d->hp);
                d->hotplug = e == 0;
                if (e)
                        log_notice("usb: no hotplug (%s): only devices present now are used", libusb_error_name(e));
        } else
                log_notice("usb: libusb has no hotplug support: only devices present now are used");
        int e = pthread_create(&d->thread, NULL, discovery_thread, d);
        if (e) {
                if (d->hotplug)
                        libusb_hotplug_deregister_callback(d->ctx, d->hp);
                libusb_exit(d->ctx);
                pthread_mutex_destroy(&d->lock);
                free(d);
                return -e;
        }
        d->thread_running = true;
        log_debug(LOG_SUB_USB, "usb: discovery started (%s)", d->hotplug ? "hotplug" : "devices present now");
        *ret = d;
        return 0;
}

void usb_discovery_stop(struct usb_discovery *d) {
        if (!d || !d->thread_running)
                return;
        atomic_store(&d->stop, true);
        libusb_interrupt_event_handler(d->ctx);
        pthread_join(d->thread, NULL);
        d->thread_running = false;
        if (d->hotplug) {
                libusb_hotplug_deregister_callback(d->ctx, d->hp);
                d->hotplug = false;
        }
        process_queue(d); /* drops what is left (stop is set) */
}

struct usb_discovery *usb_discovery_free(struct usb_discovery *d) {
        if (!d)
                return NULL;
        usb_discovery_stop(d);
        while (d->readers) {
                struct usb_reader *r = d->readers;
                d->readers = r->next;
                r->token = NULL; /* the daemon's, already freed */
                reader_unref(r);
        }
        libusb_exit(d->ctx);
        pthread_mutex_destroy(&d->lock);
        free(d);
        return NULL;
}
