/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The libusb side of the umockdev CCID tests: drives drivers/usb against the
 * reader that ccid-harness.py emulates (the card behind it is vpiv-card).
 * Each mode is one test case; it prints what the harness checks and exits
 * non-zero on the first failed expectation.
 *
 *   usb-client enum        open the reader, print name, level and ATR
 *   usb-client transfer    SELECT PIV + GET DATA (CHUID), GetParameters
 *   usb-client getresp     raw 61xx from the card, then the whole object
 *                          through apdu_transceive (GET RESPONSE)
 *   usb-client wrongle     a 6Cxx answer is retried with the right Le
 *   usb-client ext         extended APDUs over a 271-byte reader: command and
 *                          response split over several XfrBlocks
 *   usb-client timeext     time extensions are read through
 *   usb-client badseq      a reply with the wrong bSeq is rejected (-EIO)
 *   usb-client discover [--op-loop]
 *                          hotplug discovery; prints "ADDED <key>" and
 *                          "REMOVED <key>"; with --op-loop, keeps an APDU in
 *                          flight on the newest token and prints
 *                          "OP-ERR <errno name>" when it fails.  Ends at EOF
 *                          on stdin. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "drivers/apdu.h"
#include "drivers/usb/usb.h"

static const uint8_t select_piv[] = { 0x00, 0xA4, 0x04, 0x00, 0x09, 0xA0, 0x00, 0x00,
                                      0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x00 };
static const uint8_t tag_chuid[] = { 0x5C, 0x03, 0x5F, 0xC1, 0x02 };
static const uint8_t tag_cert_9a[] = { 0x5C, 0x03, 0x5F, 0xC1, 0x05 };

#define FAIL(...)                                                  \
        do {                                                       \
                fprintf(stderr, "usb-client: FAIL: " __VA_ARGS__); \
                fputc('\n', stderr);                               \
                exit(1);                                           \
        } while (0)

static void out(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        putchar('\n');
        fflush(stdout);
}

static struct apdu_transport *open_reader(char **name) {
        struct apdu_transport *t = NULL;
        uint8_t atr[64];
        size_t atr_len = 0;
        int r = usb_transport_open(NULL, &t, name, atr, &atr_len);
        if (r < 0)
                FAIL("usb_transport_open: %s", strerror(-r));
        char hex[2 * sizeof atr + 1];
        for (size_t i = 0; i < atr_len; i++)
                sprintf(hex + 2 * i, "%02X", atr[i]);
        hex[2 * atr_len] = '\0';
        out("ATR %s", hex);
        return t;
}

static uint16_t raw(struct apdu_transport *t, const uint8_t *c, size_t n, uint8_t *rsp, size_t cap, size_t *rlen) {
        int r = t->ops->transmit(t, c, n, rsp, cap, rlen);
        if (r < 0)
                FAIL("transmit: %s", strerror(-r));
        if (*rlen < 2)
                FAIL("response of %zu bytes", *rlen);
        return (uint16_t)(rsp[*rlen - 2] << 8 | rsp[*rlen - 1]);
}

static void select_app(struct apdu_transport *t) {
        uint8_t rsp[258];
        size_t n = 0;
        uint16_t sw = raw(t, select_piv, sizeof select_piv, rsp, sizeof rsp, &n);
        if (sw != 0x9000)
                FAIL("SELECT PIV: SW %04X", sw);
        if (n < 4 || rsp[0] != 0x61) /* the application property template */
                FAIL("SELECT PIV: no APT in the answer (%zu bytes)", n);
        out("SELECT 9000");
}

/* GET DATA through apdu_transceive; returns the object length. */
static size_t get_data(struct apdu_transport *t, const uint8_t *tag, size_t tag_len, size_t le, uint8_t *buf,
                       size_t cap) {
        size_t n = 0;
        uint16_t sw = 0;
        int r = apdu_transceive(t, 0x00, 0xCB, 0x3F, 0xFF, tag, tag_len, le, buf, cap, &n, &sw);
        if (r < 0)
                FAIL("apdu_transceive GET DATA: %s", strerror(-r));
        if (sw != 0x9000)
                FAIL("GET DATA: SW %04X", sw);
        if (n < 2 || buf[0] != 0x53)
                FAIL("GET DATA: not a 53 template (%zu bytes)", n);
        return n;
}

static int mode_enum(void) {
        char *name = NULL;
        struct apdu_transport *t = open_reader(&name);
        out("NAME %s", name);
        out("EXTENDED %d", usb_transport_extended(t));
        out("MAXDATA %zu", t->ops->max_data(t));
        free(name);
        t->ops->free(t);
        return 0;
}

static int mode_transfer(void) {
        struct apdu_transport *t = open_reader(NULL);
        uint8_t proto = 0xFF;
        int r = usb_transport_get_protocol(t, &proto);
        if (r < 0)
                FAIL("GetParameters: %s", strerror(-r));
        out("PROTOCOL T=%u", proto);
        select_app(t);
        uint8_t cmd[5 + sizeof tag_chuid + 1] = { 0x00, 0xCB, 0x3F, 0xFF, sizeof tag_chuid };
        memcpy(cmd + 5, tag_chuid, sizeof tag_chuid);
        cmd[sizeof cmd - 1] = 0x00;
        uint8_t rsp[258];
        size_t n = 0;
        uint16_t sw = raw(t, cmd, sizeof cmd, rsp, sizeof rsp, &n);
        if (sw != 0x9000 || n < 4 || rsp[0] != 0x53)
                FAIL("GET DATA CHUID: SW %04X, %zu bytes", sw, n);
        out("CHUID %zu", n - 2);
        /* The reset op powers the card off and on: a new ATR, still answering. */
        uint8_t atr[64];
        size_t atr_len = 0;
        if ((r = t->ops->reset(t, atr, sizeof atr, &atr_len)) < 0 || atr_len < 2)
                FAIL("reset: %s", strerror(-r));
        select_app(t);
        t->ops->free(t);
        return 0;
}

static int mode_getresp(void) {
        struct apdu_transport *t = open_reader(NULL);
        select_app(t);
        /* Short Le 00 for a 1 KiB certificate: the card answers 61xx. */
        uint8_t cmd[5 + sizeof tag_cert_9a + 1] = { 0x00, 0xCB, 0x3F, 0xFF, sizeof tag_cert_9a };
        memcpy(cmd + 5, tag_cert_9a, sizeof tag_cert_9a);
        cmd[sizeof cmd - 1] = 0x00;
        uint8_t rsp[258];
        size_t n = 0;
        uint16_t sw = raw(t, cmd, sizeof cmd, rsp, sizeof rsp, &n);
        if ((sw >> 8) != 0x61 || n != 258)
                FAIL("raw GET DATA cert: SW %04X with %zu bytes, expected 256 bytes and 61xx", sw, n);
        out("RAW 61%02X", sw & 0xFF);
        static uint8_t buf[65536];
        size_t len = get_data(t, tag_cert_9a, sizeof tag_cert_9a, APDU_LE_MAX, buf, sizeof buf);
        if (len <= 256)
                FAIL("certificate of %zu bytes, expected more than one response", len);
        out("CERT %zu", len);
        t->ops->free(t);
        return 0;
}

static int mode_wrongle(void) {
        struct apdu_transport *t = open_reader(NULL);
        select_app(t);
        uint8_t buf[512];
        size_t len = get_data(t, tag_chuid, sizeof tag_chuid, 256, buf, sizeof buf);
        out("CHUID %zu", len);
        t->ops->free(t);
        return 0;
}

static int mode_ext(void) {
        struct apdu_transport *t = open_reader(NULL);
        if (!usb_transport_extended(t) || t->ops->max_data(t) != 65535)
                FAIL("reader not at the extended level");
        select_app(t);
        static uint8_t buf[65536];
        size_t len = get_data(t, tag_cert_9a, sizeof tag_cert_9a, APDU_LE_MAX, buf, sizeof buf);
        out("CERT %zu", len);
        /* A 700-byte command (longer than two reader messages): PUT DATA
         * without management authentication, which the card refuses; what
         * counts is that it arrives whole. */
        static uint8_t data[700];
        data[0] = 0x5C;
        data[1] = 0x03;
        data[2] = 0x5F;
        data[3] = 0xC1;
        data[4] = 0x0A;
        data[5] = 0x53;
        data[6] = 0x82;
        data[7] = (sizeof data - 8) >> 8;
        data[8] = (sizeof data - 8) & 0xFF;
        size_t n = 0;
        uint16_t sw = 0;
        int r = apdu_transceive(t, 0x00, 0xDB, 0x3F, 0xFF, data, sizeof data, APDU_LE_NONE, NULL, 0, &n, &sw);
        if (r < 0)
                FAIL("PUT DATA: %s", strerror(-r));
        out("PUTDATA %04X", sw);
        unsigned te = 0, chained = 0;
        usb_transport_stats(t, &te, &chained);
        if (chained < 1)
                FAIL("the long command was not split over XfrBlocks");
        out("CHAINED %u", chained);
        t->ops->free(t);
        return 0;
}

static int mode_timeext(void) {
        struct apdu_transport *t = open_reader(NULL);
        select_app(t);
        uint8_t buf[512];
        size_t len = get_data(t, tag_chuid, sizeof tag_chuid, APDU_LE_MAX, buf, sizeof buf);
        unsigned te = 0, chained = 0;
        usb_transport_stats(t, &te, &chained);
        if (te < 2)
                FAIL("%u time extensions seen, the harness sends 2 per XfrBlock", te);
        out("CHUID %zu TIMEEXT %u", len, te);
        t->ops->free(t);
        return 0;
}

static int mode_badseq(void) {
        struct apdu_transport *t = open_reader(NULL);
        select_app(t); /* XfrBlock 1 */
        uint8_t rsp[258];
        size_t n = 0;
        int r = t->ops->transmit(t, select_piv, sizeof select_piv, rsp, sizeof rsp, &n); /* XfrBlock 2: bad bSeq */
        if (r != -EIO)
                FAIL("a reply with the wrong bSeq was %s", r == 0 ? "accepted" : strerror(-r));
        out("BADSEQ rejected");
        select_app(t); /* the next exchange works again */
        t->ops->free(t);
        return 0;
}

/* ------------------------------------------------------------ discovery */

struct token {
        struct apdu_transport *t;
        char key[80];
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct token *current; /* newest token, for --op-loop */
static atomic_bool quit;

static int tok_get_info(struct token *t, struct token_desc *ret) {
        memset(ret, 0, sizeof *ret);
        snprintf(ret->label, sizeof ret->label, "test");
        ret->kind = "usb";
        return 0;
}

static void tok_free(struct token *t) {
        if (!t)
                return;
        t->t->ops->free(t->t);
        free(t);
}

static const struct driver_ops test_ops = { .name = "test", .get_info = tok_get_info, .free = tok_free };

/* The token identity the PIV driver would use: the CHUID GUID (tag 34). */
static int factory(void *ud, struct apdu_transport *t, const char *reader, const struct driver_ops **ret_ops,
                   struct token **ret, char **ret_key) {
        uint8_t buf[1024];
        size_t n = 0;
        uint16_t sw = 0;
        static const uint8_t aid[] = { 0xA0, 0x00, 0x00, 0x03, 0x08 };
        int r = apdu_transceive(t, 0x00, 0xA4, 0x04, 0x00, aid, sizeof aid, 256, buf, sizeof buf, &n, &sw);
        if (r == 0 && sw == 0x9000)
                r = apdu_transceive(t, 0x00, 0xCB, 0x3F, 0xFF, tag_chuid, sizeof tag_chuid, APDU_LE_MAX, buf,
                                    sizeof buf, &n, &sw);
        if (r == 0 && sw != 0x9000)
                r = -ENOTSUP;
        struct apdu_tlv outer, guid;
        if (r == 0 && (apdu_tlv_find(buf, n, 0x53, &outer) < 0 ||
                       apdu_tlv_find(outer.value, outer.len, 0x34, &guid) < 0 || guid.len != 16))
                r = -ENOTSUP;
        struct token *tok = r == 0 ? calloc(1, sizeof *tok) : NULL;
        if (r == 0 && !tok)
                r = -ENOMEM;
        if (r < 0) {
                t->ops->free(t);
                return r;
        }
        tok->t = t;
        strcpy(tok->key, "usb:");
        for (size_t i = 0; i < 16; i++)
                sprintf(tok->key + 4 + 2 * i, "%02x", guid.value[i]);
        *ret_key = strdup(tok->key);
        *ret_ops = &test_ops;
        *ret = tok;
        return 0;
}

static int host_added(struct driver_host *h, const struct driver_ops *ops, struct token *t, const char *key,
                      CK_SLOT_ID *ret_slot) {
        pthread_mutex_lock(&mu);
        if (current)
                FAIL("a second token while one is present");
        current = t;
        pthread_mutex_unlock(&mu);
        out("ADDED %s", key);
        return 0;
}

static void host_removed(struct driver_host *h, struct token *t) {
        pthread_mutex_lock(&mu);
        if (current != t)
                FAIL("removal of an unknown token");
        current = NULL;
        out("REMOVED %s", t->key);
        /* The op-loop thread may still hold the token: it frees it. */
        pthread_mutex_unlock(&mu);
        tok_free(t);
}

static void *op_loop(void *arg) {
        uint8_t cmd[5 + sizeof tag_chuid + 1] = { 0x00, 0xCB, 0x3F, 0xFF, sizeof tag_chuid };
        memcpy(cmd + 5, tag_chuid, sizeof tag_chuid);
        while (!atomic_load(&quit)) {
                pthread_mutex_lock(&mu);
                /* Keep the lock across the exchange: removal waits for it,
                 * as the daemon's token lock makes token_removed wait for an
                 * op in flight (core_remove_token only drops references). */
                struct token *t = current;
                if (!t) {
                        pthread_mutex_unlock(&mu);
                        usleep(20000);
                        continue;
                }
                uint8_t rsp[258];
                size_t n = 0;
                struct timespec a, b;
                clock_gettime(CLOCK_MONOTONIC, &a);
                int r = t->t->ops->transmit(t->t, cmd, sizeof cmd, rsp, sizeof rsp, &n);
                clock_gettime(CLOCK_MONOTONIC, &b);
                pthread_mutex_unlock(&mu);
                if (r < 0) {
                        long ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
                        out("OP-ERR %s", r == -ENODEV ? "ENODEV" : strerror(-r));
                        fprintf(stderr, "usb-client: failed op took %ld ms\n", ms);
                        while (!atomic_load(&quit)) {
                                pthread_mutex_lock(&mu);
                                bool gone = current != t;
                                pthread_mutex_unlock(&mu);
                                if (gone)
                                        break;
                                usleep(20000);
                        }
                } else
                        out("OP-OK");
        }
        return NULL;
}

static int mode_discover(bool op) {
        struct driver_host host = { .token_added = host_added, .token_removed = host_removed };
        struct usb_discovery *d = NULL;
        int r = usb_discovery_new(&host, factory, NULL, &d);
        if (r < 0)
                FAIL("usb_discovery_new: %s", strerror(-r));
        pthread_t th;
        if (op && pthread_create(&th, NULL, op_loop, NULL))
                FAIL("pthread_create");
        out("READY");
        char line[64];
        while (fgets(line, sizeof line, stdin))
                ;
        atomic_store(&quit, true);
        if (op)
                pthread_join(th, NULL);
        usb_discovery_stop(d);
        pthread_mutex_lock(&mu);
        struct token *t = current;
        current = NULL;
        pthread_mutex_unlock(&mu);
        tok_free(t);
        usb_discovery_free(d);
        out("DONE");
        return 0;
}

int main(int argc, char **argv) {
        log_setup("usb-client");
        const char *mode = argc > 1 ? argv[1] : "";
        if (!strcmp(mode, "enum"))
                return mode_enum();
        if (!strcmp(mode, "transfer"))
                return mode_transfer();
        if (!strcmp(mode, "getresp"))
                return mode_getresp();
        if (!strcmp(mode, "wrongle"))
                return mode_wrongle();
        if (!strcmp(mode, "ext"))
                return mode_ext();
        if (!strcmp(mode, "timeext"))
                return mode_timeext();
        if (!strcmp(mode, "badseq"))
                return mode_badseq();
        if (!strcmp(mode, "discover"))
                return mode_discover(argc > 2 && !strcmp(argv[2], "--op-loop"));
        fprintf(stderr, "usage: usb-client enum|transfer|getresp|wrongle|ext|timeext|badseq|discover [--op-loop]\n");
        return 2;
}
