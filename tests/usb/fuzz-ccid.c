/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzz target: everything drivers/usb parses from a reader.
 *
 * Input: byte 0 picks the part, the rest is its input.
 *   0  class descriptor (ccid_desc_parse + ccid_desc_verdict)
 *   1  one bulk-IN reply (ccid_reply_parse + ccid_reply_check)
 *   2  interrupt message (ccid_notify_parse, slots 0..7)
 *   3  a whole exchange: byte 1 dwFeatures level (0 short, else extended),
 *      bytes 2-3 dwMaxCCIDMessageLength (LE), byte 4 flags (bit 0: keep
 *      the reader's bSeq as given, else patch in the expected one; bit 1:
 *      iso_auto), byte 5 which command (power on, status, parameters, or an
 *      APDU of a length picked by byte 6..7), then the reader's replies, each
 *      a 2-byte LE length and that many bytes.  The replay main runs
 *      tests/usb/corpus/fuzz-ccid. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/usb/ccid.h"

struct feed {
        const uint8_t *p, *end;
        bool keep_seq;
        uint8_t last_seq;
};

static int f_send(void *ud, const uint8_t *buf, size_t len) {
        struct feed *f = ud;
        if (len < CCID_HDR_LEN)
                abort(); /* the exchange never sends less than a header */
        f->last_seq = buf[6];
        return 0;
}

static int f_recv(void *ud, uint8_t *buf, size_t cap, size_t *ret_len) {
        struct feed *f = ud;
        if (f->end - f->p < 2)
                return -ETIMEDOUT; /* the reader says nothing more */
        size_t n = (size_t)f->p[0] | (size_t)f->p[1] << 8;
        f->p += 2;
        if (n > (size_t)(f->end - f->p))
                n = (size_t)(f->end - f->p);
        if (n > cap)
                n = cap;
        memcpy(buf, f->p, n);
        f->p += n;
        if (!f->keep_seq && n > 6)
                buf[6] = f->last_seq;
        *ret_len = n;
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1)
                return 0;
        const uint8_t *in = data + 1;
        size_t n = size - 1;
        switch (data[0] % 4) {
        case 0: {
                struct ccid_desc d;
                const char *why = NULL;
                if (ccid_desc_parse(in, n, &d) == 0) {
                        (void)ccid_desc_verdict(&d, 0, 3, &why);
                        (void)ccid_level_name(ccid_desc_level(&d));
                        if (!why)
                                abort();
                }
                break;
        }
        case 1: {
                struct ccid_reply r;
                if (ccid_reply_parse(in, n, &r) == 0) {
                        if (r.data + r.len != in + n)
                                abort();
                        (void)ccid_reply_check(&r, CCID_RDR_TO_PC_DATA_BLOCK, 0, 0);
                        (void)ccid_error_name(r.error);
                }
                break;
        }
        case 2:
                for (unsigned s = 0; s < 8; s++) {
                        bool present, changed;
                        (void)ccid_notify_parse(in, n, s, &present, &changed);
                }
                break;
        case 3: {
                if (n < 7)
                        return 0;
                struct ccid_desc d = { .features = in[0] ? CCID_FEAT_LEVEL_EXT_APDU : CCID_FEAT_LEVEL_SHORT_APDU,
                                       .max_msg_len = (uint32_t)in[1] | (uint32_t)in[2] << 8,
                                       .class_get_response = 0xFF };
                struct feed f = { .p = in + 7, .end = in + n, .keep_seq = in[3] & 1 };
                struct ccid_io io = { .userdata = &f, .send = f_send, .recv = f_recv };
                struct ccid_slot s;
                if (ccid_slot_init(&s, &io, &d, 0) < 0)
                        return 0;
                s.iso_auto = in[3] & 2;
                s.max_time_ext = 50;
                uint8_t small[64];
                size_t len = 0;
                uint8_t icc, proto;
                switch (in[4] % 4) {
                case 0: (void)ccid_power_on(&s, small, sizeof small, &len); break;
                case 1: (void)ccid_slot_status(&s, &icc); break;
                case 2: (void)ccid_get_parameters(&s, &proto, small, sizeof small, &len); break;
                case 3: {
                        /* A case 4 APDU, short or extended, of the chosen length. */
                        size_t lc = (size_t)in[5] << 4 | (in[6] & 0x0F);
                        static uint8_t capdu[4 + 3 + 4096 + 2];
                        size_t cl = 0;
                        capdu[cl++] = 0x00;
                        capdu[cl++] = 0xCB;
                        capdu[cl++] = 0x3F;
                        capdu[cl++] = 0xFF;
                        if (lc == 0)
                                capdu[cl++] = 0x00;
                        else if (lc <= 255 && !(in[6] & 0x10)) {
                                capdu[cl++] = (uint8_t)lc;
                                memset(capdu + cl, 0x5A, lc);
                                cl += lc;
                                capdu[cl++] = 0x00;
                        } else {
                                capdu[cl++] = 0x00;
                                capdu[cl++] = (uint8_t)(lc >> 8);
                                capdu[cl++] = (uint8_t)lc;
                                memset(capdu + cl, 0x5A, lc);
                                cl += lc;
                                capdu[cl++] = 0x00;
                                capdu[cl++] = 0x00;
                        }
                        size_t rcap = (in[6] & 0x20) ? 300 : CCID_MAX_RAPDU;
                        uint8_t *rapdu = malloc(rcap);
                        if (rapdu) {
                                size_t rlen = 0;
                                if (ccid_transmit(&s, capdu, cl, rapdu, rcap, &rlen) == 0 && (rlen < 2 || rlen > rcap))
                                        abort();
                                free(rapdu);
                        }
                        break;
                }
                }
                ccid_slot_done(&s);
                break;
        }
        }
        return 0;
}
