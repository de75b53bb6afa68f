/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* ISO 7816-4 exchange helpers and BER-TLV parsing (see apdu.h). */
#include "apdu.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/secmem.h"

/* A card that keeps saying 61xx or 6Cxx is broken: bound the rounds. */
#define APDU_MAX_GET_RESPONSE 1024
#define APDU_MAX_6C 3
#define APDU_SHORT_MAX 255
#define APDU_EXT_MAX 65535

struct apdu_transport *apdu_transport_free(struct apdu_transport *t) {
        if (t && t->ops && t->ops->free)
                t->ops->free(t);
        return NULL;
}

void apdu_buf_free(void *p, size_t n) {
        if (!p)
                return;
        secure_wipe(p, n);
        free(p);
}

/* Encodes one command APDU into out (room for 9 + len bytes). */
static size_t apdu_build(uint8_t *out, uint8_t cla, uint8_t ins, uint8_t p1, uint8_t p2, const uint8_t *data,
                         size_t len, size_t le, bool ext) {
        size_t n = 0;
        out[n++] = cla;
        out[n++] = ins;
        out[n++] = p1;
        out[n++] = p2;
        if (ext) {
                if (len) {
                        out[n++] = 0;
                        out[n++] = (uint8_t) (len >> 8);
                        out[n++] = (uint8_t) len;
                        memcpy(out + n, data, len);
                        n += len;
                }
                if (le) {
                        if (!len)
                                out[n++] = 0;
                        size_t l = le >= APDU_LE_MAX ? 0 : le;
                        out[n++] = (uint8_t) (l >> 8);
                        out[n++] = (uint8_t) l;
                }
        } else {
                if (len) {
                        out[n++] = (uint8_t) len;
                        memcpy(out + n, data, len);
                        n += len;
                }
                if (le)
                        out[n++] = le >= 256 ? 0 : (uint8_t) le;
        }
        return n;
}

/* One exchange: the response data stays in rbuf, *sw and *dlen out. */
static int apdu_xmit(struct apdu_transport *t, const uint8_t *cmd, size_t clen, uint8_t *rbuf, size_t rcap,
                     size_t *dlen, uint16_t *sw) {
        size_t rlen = 0;
        if (log_enabled(LOG_SUB_PIV)) {
                /* Header and lengths only: the data may be a PIN or a key. */
                log_debug(LOG_SUB_PIV, "apdu > %02x %02x %02x %02x (%zu bytes)", cmd[0], cmd[1], cmd[2], cmd[3],
                          clen);
        }
        int r = t->ops->transmit(t, cmd, clen, rbuf, rcap, &rlen);
        if (r < 0) {
                log_debug(LOG_SUB_PIV, "apdu transport error: %s", strerror(-r));
                if (r == -ENODEV || r == -ETIMEDOUT || r == -ENOMEM)
                        return r;
                return -EIO;
        }
        if (rlen < 2 || rlen > rcap) {
                log_debug(LOG_SUB_PIV, "apdu: malformed response of %zu bytes", rlen);
                return -EIO;
        }
        *sw = (uint16_t) (rbuf[rlen - 2] << 8 | rbuf[rlen - 1]);
        *dlen = rlen - 2;
        log_debug(LOG_SUB_PIV, "apdu < %04x (%zu bytes)", *sw, *dlen);
        return 0;
}

int apdu_transceive(struct apdu_transport *t, uint8_t cla, uint8_t ins, uint8_t p1, uint8_t p2,
                    const uint8_t *data, size_t len, size_t le, uint8_t *out, size_t outcap, size_t *outlen,
                    uint16_t *sw) {
        if (!t || !t->ops || !t->ops->transmit || (!data && len) || (!out && outcap) || !outlen || !sw ||
            le > APDU_LE_MAX || len > (size_t) 16 << 20)
                return -EINVAL;

        size_t maxd = t->ops->max_data ? t->ops->max_data(t) : APDU_SHORT_MAX;
        bool ext_ok = maxd > APDU_SHORT_MAX;
        size_t chunk = maxd == 0 ? APDU_SHORT_MAX : maxd > APDU_EXT_MAX ? APDU_EXT_MAX : maxd;
        size_t first = len < chunk ? len : chunk;
        size_t cmdcap = 9 + first, rcap = (ext_ok ? APDU_LE_MAX : 256) + 2;
        uint8_t *cmd = malloc(cmdcap), *rbuf = malloc(rcap);
        size_t off = 0, total = 0, dlen = 0;
        uint16_t s = 0;
        bool overflow = false;
        int r = 0;

        if (!cmd || !rbuf) {
                r = -ENOMEM;
                goto out_free;
        }

        /* Command chaining: all but the last piece with CLA | 0x10. */
        while (len - off > chunk) {
                size_t n = apdu_build(cmd, cla | 0x10, ins, p1, p2, data + off, chunk, APDU_LE_NONE,
                                      chunk > APDU_SHORT_MAX);
                r = apdu_xmit(t, cmd, n, rbuf, rcap, &dlen, &s);
                if (r < 0)
                        goto out_free;
                if (s != APDU_SW_OK) {
                        *outlen = 0;
                        *sw = s;
                        goto out_free;
                }
                off += chunk;
        }

        /* The last (or only) piece, then GET RESPONSE rounds; cur_* is
         * the command in flight, rebuilt when 6Cxx corrects its Le. */
        uint8_t cur_cla = cla, cur_ins = ins, cur_p1 = p1, cur_p2 = p2;
        const uint8_t *cur_data = data + off;
        size_t cur_len = len - off;
        bool ext = ext_ok && (cur_len > APDU_SHORT_MAX || le > 256);
        size_t cur_le = ext ? le : (le > 256 ? 256 : le);
        unsigned rounds_61 = 0, rounds_6c = 0;
        for (;;) {
                size_t n = apdu_build(cmd, cur_cla, cur_ins, cur_p1, cur_p2, cur_data, cur_len, cur_le, ext);
                r = apdu_xmit(t, cmd, n, rbuf, rcap, &dlen, &s);
                if (r < 0)
                        goto out_free;
                uint8_t sw1 = (uint8_t) (s >> 8), sw2 = (uint8_t) s;
                if (sw1 == 0x6C && rounds_6c < APDU_MAX_6C) {
                        /* Wrong Le: the card says how much it has; ask again. */
                        rounds_6c++;
                        cur_le = sw2 ? sw2 : 256;
                        ext = ext_ok && cur_len > APDU_SHORT_MAX;
                        continue;
                }
                if (overflow || total + dlen > outcap)
                        overflow = true;
                else if (dlen) {
                        memcpy(out + total, rbuf, dlen);
                        total += dlen;
                }
                if (sw1 != 0x61)
                        break;
                if (++rounds_61 > APDU_MAX_GET_RESPONSE) {
                        r = -EIO;
                        goto out_free;
                }
                /* More data waiting: GET RESPONSE for it (SW2 00: 256 or more). */
                cur_cla = cla & (uint8_t) ~0x10;
                cur_ins = 0xC0;
                cur_p1 = cur_p2 = 0;
                cur_data = NULL;
                cur_len = 0;
                cur_le = sw2 ? sw2 : 256;
                ext = false;
                rounds_6c = 0;
        }
        *outlen = total;
        *sw = s;
        r = overflow ? -ENOBUFS : 0;
out_free:
        apdu_buf_free(cmd, cmdcap);
        /* Responses may be key material too (GENERAL AUTHENTICATE). */
        apdu_buf_free(rbuf, rcap);
        return r;
}

/* ---------------------------------------------------------------- BER-TLV */

int apdu_tlv_next(const uint8_t **pp, const uint8_t *end, struct apdu_tlv *ret) {
        if (!pp || !*pp || !end || !ret || *pp > end)
                return -EINVAL;
        const uint8_t *p = *pp;
        while (p < end && (*p == 0x00 || *p == 0xFF))
                p++;
        if (p == end) {
                *pp = p;
                return -ENODATA;
        }
        uint32_t tag = *p++;
        bool constructed = tag & 0x20;
        if ((tag & 0x1F) == 0x1F) {
                /* Subsequent tag bytes: bit 8 set means another one follows. */
                unsigned nb = 0;
                for (;;) {
                        if (p == end || nb == 3)
                                return -EBADMSG;
                        uint8_t b = *p++;
                        tag = tag << 8 | b;
                        nb++;
                        if (!(b & 0x80))
                                break;
                }
        }
        if (p == end)
                return -EBADMSG;
        size_t len = *p++;
        if (len & 0x80) {
                size_t nb = len & 0x7F;
                if (nb == 0 || nb > 4)
                        return -EBADMSG; /* indefinite, or absurdly long */
                len = 0;
                for (size_t i = 0; i < nb; i++) {
                        if (p == end)
                                return -EBADMSG;
                        len = len << 8 | *p++;
                }
        }
        if (len > (size_t) (end - p))
                return -EBADMSG;
        ret->tag = tag;
        ret->value = p;
        ret->len = len;
        ret->constructed = constructed;
        *pp = p + len;
        return 0;
}

int apdu_tlv_find(const uint8_t *buf, size_t len, uint32_t tag, struct apdu_tlv *ret) {
        if (!buf && len)
                return -EINVAL;
        if (!buf)
                return -ENOENT;
        const uint8_t *p = buf, *end = buf + len;
        struct apdu_tlv x;
        for (;;) {
                int r = apdu_tlv_next(&p, end, &x);
                if (r == -ENODATA)
                        return -ENOENT;
                if (r < 0)
                        return r;
                if (x.tag == tag) {
                        *ret = x;
                        return 0;
                }
        }
}

size_t apdu_tlv_put_header(uint8_t *out, uint32_t tag, size_t len) {
        size_t n = 0;
        if (tag > 0xFFFFFF)
                out[n++] = (uint8_t) (tag >> 24);
        if (tag > 0xFFFF)
                out[n++] = (uint8_t) (tag >> 16);
        if (tag > 0xFF)
                out[n++] = (uint8_t) (tag >> 8);
        out[n++] = (uint8_t) tag;
        if (len < 0x80)
                out[n++] = (uint8_t) len;
        else if (len <= 0xFF) {
                out[n++] = 0x81;
                out[n++] = (uint8_t) len;
        } else if (len <= 0xFFFF) {
                out[n++] = 0x82;
                out[n++] = (uint8_t) (len >> 8);
                out[n++] = (uint8_t) len;
        } else {
                out[n++] = 0x83;
                out[n++] = (uint8_t) (len >> 16);
                out[n++] = (uint8_t) (len >> 8);
                out[n++] = (uint8_t) len;
        }
        return n;
}
