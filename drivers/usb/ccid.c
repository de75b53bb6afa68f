/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* CCID message layer and APDU exchange; see ccid.h. */
#include "ccid.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

static uint32_t get_le32(const uint8_t *p) {
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v) {
        p[0] = (uint8_t)v;
        p[1] = (uint8_t)(v >> 8);
        p[2] = (uint8_t)(v >> 16);
        p[3] = (uint8_t)(v >> 24);
}

/* ------------------------------------------------------------ descriptor */

int ccid_desc_parse(const uint8_t *extra, size_t len, struct ccid_desc *ret) {
        if (!extra || !ret)
                return -EINVAL;
        size_t off = 0;
        while (off + 2 <= len) {
                uint8_t l = extra[off], type = extra[off + 1];
                if (l < 2)
                        return -EBADMSG; /* a zero length would loop forever */
                if (type == CCID_DESC_TYPE || (type == 0xFF && l == CCID_DESC_LEN)) {
                        /* Some readers declare bLength > 54 (vendor bytes after); never fewer. */
                        if (l < CCID_DESC_LEN || off + CCID_DESC_LEN > len)
                                return -EBADMSG;
                        const uint8_t *p = extra + off;
                        struct ccid_desc d = {
                                .bcd_ccid = (uint16_t)(p[2] | p[3] << 8),
                                .max_slot_index = p[4],
                                .voltage_support = p[5],
                                .protocols = get_le32(p + 6),
                                .max_ifsd = get_le32(p + 28),
                                .features = get_le32(p + 40),
                                .max_msg_len = get_le32(p + 44),
                                .class_get_response = p[48],
                                .class_envelope = p[49],
                                .pin_support = p[52],
                                .max_busy_slots = p[53],
                        };
                        *ret = d;
                        return 0;
                }
                off += l;
        }
        return -ENOENT;
}

enum ccid_level ccid_desc_level(const struct ccid_desc *d) {
        switch (d->features & CCID_FEAT_LEVEL_MASK) {
        case CCID_FEAT_LEVEL_CHAR: return CCID_LEVEL_CHARACTER;
        case CCID_FEAT_LEVEL_TPDU: return CCID_LEVEL_TPDU;
        case CCID_FEAT_LEVEL_SHORT_APDU: return CCID_LEVEL_SHORT_APDU;
        case CCID_FEAT_LEVEL_EXT_APDU: return CCID_LEVEL_EXTENDED_APDU;
        default: return CCID_LEVEL_UNKNOWN;
        }
}

const char *ccid_level_name(enum ccid_level l) {
        switch (l) {
        case CCID_LEVEL_CHARACTER: return "character";
        case CCID_LEVEL_TPDU: return "TPDU";
        case CCID_LEVEL_SHORT_APDU: return "short APDU";
        case CCID_LEVEL_EXTENDED_APDU: return "extended APDU";
        default: return "unknown";
        }
}

bool ccid_desc_verdict(const struct ccid_desc *d, uint8_t interface_protocol, uint8_t n_endpoints,
                       const char **ret_reason) {
        const char *why = NULL;
        if (interface_protocol == 1 || interface_protocol == 2)
                why = "ICCD (control transfers) not supported";
        else if (interface_protocol != 0)
                why = "unknown bInterfaceProtocol";
        else if (n_endpoints < 2)
                why = "no bulk endpoint pair";
        else {
                switch (ccid_desc_level(d)) {
                case CCID_LEVEL_CHARACTER: why = "character level exchange not supported"; break;
                case CCID_LEVEL_TPDU: why = "TPDU level exchange not supported (needs T=0/T=1 in the host)"; break;
                case CCID_LEVEL_UNKNOWN: why = "unknown exchange level in dwFeatures"; break;
                case CCID_LEVEL_SHORT_APDU:
                        /* A case-4 short APDU is 261 bytes, its response 258. */
                        if (d->max_msg_len < CCID_HDR_LEN + 261)
                                why = "dwMaxCCIDMessageLength too small for short APDUs";
                        break;
                case CCID_LEVEL_EXTENDED_APDU:
                        /* Longer messages are chained (wLevelParameter), but a
                         * chunk must hold at least a header and some data. */
                        if (d->max_msg_len < CCID_HDR_LEN + 16)
                                why = "dwMaxCCIDMessageLength too small";
                        break;
                }
        }
        if (ret_reason)
                *ret_reason = why ? why
                                  : (ccid_desc_level(d) == CCID_LEVEL_EXTENDED_APDU ? "supported (extended APDU)"
                                                                                    : "supported (short APDU)");
        return why == NULL;
}

/* -------------------------------------------------------------- messages */

void ccid_header(uint8_t hdr[CCID_HDR_LEN], uint8_t type, uint32_t len, uint8_t slot, uint8_t seq, uint8_t b7,
                 uint16_t w8) {
        hdr[0] = type;
        put_le32(hdr + 1, len);
        hdr[5] = slot;
        hdr[6] = seq;
        hdr[7] = b7;
        hdr[8] = (uint8_t)w8;
        hdr[9] = (uint8_t)(w8 >> 8);
}

int ccid_reply_parse(const uint8_t *buf, size_t n, struct ccid_reply *ret) {
        if (!buf || !ret || n < CCID_HDR_LEN)
                return -EBADMSG;
        uint32_t len = get_le32(buf + 1);
        if ((size_t)len != n - CCID_HDR_LEN)
                return -EBADMSG;
        struct ccid_reply r = {
                .type = buf[0],
                .slot = buf[5],
                .seq = buf[6],
                .status = buf[7],
                .error = buf[8],
                .param = buf[9],
                .data = buf + CCID_HDR_LEN,
                .len = len,
        };
        *ret = r;
        return 0;
}

const char *ccid_error_name(uint8_t e) {
        switch (e) {
        case 0x00: return "CMD_NOT_SUPPORTED";
        case 0xFF: return "CMD_ABORTED";
        case 0xFE: return "ICC_MUTE";
        case 0xFD: return "XFR_PARITY_ERROR";
        case 0xFC: return "XFR_OVERRUN";
        case 0xFB: return "HW_ERROR";
        case 0xF8: return "BAD_ATR_TS";
        case 0xF7: return "BAD_ATR_TCK";
        case 0xF6: return "ICC_PROTOCOL_NOT_SUPPORTED";
        case 0xF5: return "ICC_CLASS_NOT_SUPPORTED";
        case 0xF4: return "PROCEDURE_BYTE_CONFLICT";
        case 0xF3: return "DEACTIVATED_PROTOCOL";
        case 0xF2: return "BUSY_WITH_AUTO_SEQUENCE";
        case 0xF0: return "PIN_TIMEOUT";
        case 0xEF: return "PIN_CANCELLED";
        case 0xE0: return "CMD_SLOT_BUSY";
        default: return e < 0x80 ? "bad parameter" : "reserved";
        }
}

int ccid_reply_check(const struct ccid_reply *r, uint8_t type, uint8_t slot, uint8_t seq) {
        if (r->seq != seq) {
                log_debug(LOG_SUB_USB, "ccid: bSeq %u in reply, expected %u", r->seq, seq);
                return -EIO;
        }
        if (r->slot != slot) {
                log_debug(LOG_SUB_USB, "ccid: reply for slot %u, expected %u", r->slot, slot);
                return -EIO;
        }
        unsigned cmd_status = r->status >> 6, icc = r->status & 3;
        if (cmd_status == 2)
                return CCID_REPLY_TIME_EXTENSION;
        if (cmd_status == 1) {
                log_debug(LOG_SUB_USB, "ccid: command failed, bError 0x%02x %s, ICC status %u", r->error,
                          ccid_error_name(r->error), icc);
                if (icc == CCID_ICC_ABSENT)
                        return -ENODEV;
                if (r->error == 0xFE)
                        return -ETIMEDOUT;
                if (r->error == 0x00)
                        return -ENOTSUP;
                return -EIO;
        }
        if (cmd_status != 0)
                return -EIO;
        if (r->type != type) {
                log_debug(LOG_SUB_USB, "ccid: reply type 0x%02x, expected 0x%02x", r->type, type);
                return -EIO;
        }
        return CCID_REPLY_OK;
}

int ccid_notify_parse(const uint8_t *buf, size_t n, unsigned slot, bool *ret_present, bool *ret_changed) {
        if (!buf || n < 1)
                return -EBADMSG;
        if (buf[0] == CCID_RDR_TO_PC_HARDWARE_ERROR)
                return -ENOMSG;
        if (buf[0] != CCID_RDR_TO_PC_NOTIFY_SLOT_CHANGE)
                return -EBADMSG;
        size_t byte = 1 + slot / 4;
        if (byte >= n)
                return -EBADMSG;
        unsigned bits = buf[byte] >> ((slot % 4) * 2);
        *ret_present = bits & 1;
        *ret_changed = bits & 2;
        return 0;
}

/* ---------------------------------------------------------------- slots */

int ccid_slot_init(struct ccid_slot *s, const struct ccid_io *io, const struct ccid_desc *desc, uint8_t slot) {
        memset(s, 0, sizeof *s);
        s->io = *io;
        s->desc = *desc;
        s->slot = slot;
        s->extended = ccid_desc_level(desc) == CCID_LEVEL_EXTENDED_APDU;
        /* A reader declaring more than we ever buffer is held to our cap;
         * one declaring too little for a header is treated as the minimum
         * that works (the verdict has already warned). */
        s->max_msg = desc->max_msg_len;
        if (s->max_msg > CCID_MAX_MSG)
                s->max_msg = CCID_MAX_MSG;
        if (s->max_msg < CCID_HDR_LEN + 16)
                s->max_msg = CCID_HDR_LEN + 16;
        s->max_time_ext = 1000;
        s->buf = malloc(CCID_MAX_MSG);
        if (!s->buf)
                return -ENOMEM;
        return 0;
}

void ccid_slot_done(struct ccid_slot *s) {
        if (!s)
                return;
        if (s->buf)
                explicit_bzero(s->buf, CCID_MAX_MSG); /* may have carried a VERIFY */
        free(s->buf);
        s->buf = NULL;
}

/* One command, one reply (after any time extensions).  The reply's data
 * points into s->buf, valid until the next exchange. */
static int exchange(struct ccid_slot *s, uint8_t type, uint8_t b7, uint16_t w8, const uint8_t *data, size_t len,
                    uint8_t reply_type, struct ccid_reply *ret) {
        if (len > s->max_msg - CCID_HDR_LEN)
                return -EMSGSIZE;
        uint8_t seq = s->seq++;
        ccid_header(s->buf, type, (uint32_t)len, s->slot, seq, b7, w8);
        if (len)
                memcpy(s->buf + CCID_HDR_LEN, data, len);
        int r = s->io.send(s->io.userdata, s->buf, CCID_HDR_LEN + len);
        if (r < 0)
                return r;
        for (unsigned ext = 0;; ext++) {
                size_t n = 0;
                r = s->io.recv(s->io.userdata, s->buf, CCID_MAX_MSG, &n);
                if (r < 0)
                        return r;
                struct ccid_reply rep;
                if ((r = ccid_reply_parse(s->buf, n, &rep)) < 0) {
                        log_debug(LOG_SUB_USB, "ccid: malformed reply (%zu bytes)", n);
                        return -EIO;
                }
                r = ccid_reply_check(&rep, reply_type, s->slot, seq);
                if (r == CCID_REPLY_TIME_EXTENSION) {
                        s->n_time_ext++;
                        if (ext >= s->max_time_ext) {
                                log_debug(LOG_SUB_USB, "ccid: too many time extensions");
                                return -ETIMEDOUT;
                        }
                        continue;
                }
                if (r < 0)
                        return r;
                *ret = rep;
                return 0;
        }
}

int ccid_power_on(struct ccid_slot *s, uint8_t *atr, size_t cap, size_t *ret_len) {
        struct ccid_reply rep;
        int r = exchange(s, CCID_PC_TO_RDR_ICC_POWER_ON, 0 /* automatic voltage */, 0, NULL, 0,
                         CCID_RDR_TO_PC_DATA_BLOCK, &rep);
        if (r < 0)
                return r;
        if (rep.len > cap || rep.len == 0)
                return rep.len ? -ENOBUFS : -EIO;
        memcpy(atr, rep.data, rep.len);
        *ret_len = rep.len;
        return 0;
}

int ccid_power_off(struct ccid_slot *s) {
        struct ccid_reply rep;
        return exchange(s, CCID_PC_TO_RDR_ICC_POWER_OFF, 0, 0, NULL, 0, CCID_RDR_TO_PC_SLOT_STATUS, &rep);
}

int ccid_slot_status(struct ccid_slot *s, uint8_t *ret_icc) {
        struct ccid_reply rep;
        int r = exchange(s, CCID_PC_TO_RDR_GET_SLOT_STATUS, 0, 0, NULL, 0, CCID_RDR_TO_PC_SLOT_STATUS, &rep);
        if (r == -ENODEV) {
                /* "failed, no ICC" is a valid answer to GetSlotStatus. */
                *ret_icc = CCID_ICC_ABSENT;
                return 0;
        }
        if (r < 0)
                return r;
        *ret_icc = rep.status & 3;
        return 0;
}

int ccid_get_parameters(struct ccid_slot *s, uint8_t *ret_protocol, uint8_t *params, size_t cap, size_t *ret_len) {
        struct ccid_reply rep;
        int r = exchange(s, CCID_PC_TO_RDR_GET_PARAMETERS, 0, 0, NULL, 0, CCID_RDR_TO_PC_PARAMETERS, &rep);
        if (r < 0)
                return r;
        if (rep.param > 1)
                return -EIO;
        if (params) {
                if (rep.len > cap)
                        return -ENOBUFS;
                memcpy(params, rep.data, rep.len);
        }
        if (ret_len)
                *ret_len = rep.len;
        *ret_protocol = rep.param;
        return 0;
}

/* --------------------------------------------------------------- APDUs */

struct apdu {
        uint8_t hdr[4];
        const uint8_t *data;
        size_t lc;
        size_t le; /* 0: no Le field; else 1..65536 */
        bool ext;
};

/* ISO 7816-3 12.1.3: cases 1, 2S, 3S, 4S, 2E, 3E, 4E. */
static int apdu_parse(const uint8_t *c, size_t n, struct apdu *a) {
        memset(a, 0, sizeof *a);
        if (n < 4)
                return -EINVAL;
        memcpy(a->hdr, c, 4);
        if (n == 4)
                return 0;
        if (n == 5) {
                a->le = c[4] ? c[4] : 256;
                return 0;
        }
        if (c[4] != 0) {
                a->lc = c[4];
                a->data = c + 5;
                if (n == 5 + a->lc)
                        return 0;
                if (n == 6 + a->lc) {
                        a->le = c[n - 1] ? c[n - 1] : 256;
                        return 0;
                }
                return -EINVAL;
        }
        a->ext = true;
        if (n == 7) {
                size_t le = (size_t)c[5] << 8 | c[6];
                a->le = le ? le : 65536;
                return 0;
        }
        a->lc = (size_t)c[5] << 8 | c[6];
        if (a->lc == 0)
                return -EINVAL;
        a->data = c + 7;
        if (n == 7 + a->lc)
                return 0;
        if (n == 9 + a->lc) {
                size_t le = (size_t)c[n - 2] << 8 | c[n - 1];
                a->le = le ? le : 65536;
                return 0;
        }
        return -EINVAL;
}

/* Encodes an APDU in short or extended form; returns its length. */
static size_t apdu_encode(const struct apdu *a, bool ext, uint8_t *out) {
        size_t n = 0;
        memcpy(out, a->hdr, 4);
        n = 4;
        if (ext && (a->lc || a->le)) {
                out[n++] = 0;
                if (a->lc) {
                        out[n++] = (uint8_t)(a->lc >> 8);
                        out[n++] = (uint8_t)a->lc;
                        memcpy(out + n, a->data, a->lc);
                        n += a->lc;
                }
                if (a->le) {
                        out[n++] = (uint8_t)(a->le >> 8); /* 65536 encodes as 00 00 */
                        out[n++] = (uint8_t)a->le;
                }
                return n;
        }
        if (a->lc) {
                out[n++] = (uint8_t)a->lc;
                memcpy(out + n, a->data, a->lc);
                n += a->lc;
        }
        if (a->le)
                out[n++] = (uint8_t)a->le; /* 256 encodes as 00 */
        return n;
}

/* One APDU through XfrBlock(s): the command split over several XfrBlocks
 * when longer than the reader's messages (extended level, wLevelParameter
 * 1/3/2), the response gathered over bChainParameter 1/3/2/0x10.  The raw
 * response (data + SW) goes to out. */
static int xfr_apdu(struct ccid_slot *s, const uint8_t *cmd, size_t clen, uint8_t *out, size_t cap, size_t *ret_len) {
        size_t chunk = s->max_msg - CCID_HDR_LEN;
        struct ccid_reply rep;
        int r;
        if (clen <= chunk)
                r = exchange(s, CCID_PC_TO_RDR_XFR_BLOCK, 0, 0x0000, cmd, clen, CCID_RDR_TO_PC_DATA_BLOCK, &rep);
        else {
                if (!s->extended)
                        return -EMSGSIZE;
                s->n_xfr_chained++;
                size_t off = 0;
                for (;;) {
                        size_t n = clen - off < chunk ? clen - off : chunk;
                        bool last = off + n == clen;
                        uint16_t level = off == 0 ? 0x0001 : last ? 0x0002 : 0x0003;
                        r = exchange(s, CCID_PC_TO_RDR_XFR_BLOCK, 0, level, cmd + off, n, CCID_RDR_TO_PC_DATA_BLOCK,
                                     &rep);
                        if (r < 0)
                                return r;
                        off += n;
                        if (last)
                                break;
                        /* The reader wants the next part: an empty block, 0x10. */
                        if (rep.param != 0x10 || rep.len != 0) {
                                log_debug(LOG_SUB_USB,
                                          "ccid: reader answered a command chunk with %u bytes, "
                                          "bChainParameter 0x%02x",
                                          rep.len, rep.param);
                                return -EIO;
                        }
                }
        }
        if (r < 0)
                return r;
        size_t got = 0;
        for (unsigned parts = 0;; parts++) {
                if (rep.len > cap - got)
                        return -ENOBUFS;
                memcpy(out + got, rep.data, rep.len);
                got += rep.len;
                if (rep.param == 0x00 || rep.param == 0x02)
                        break;
                if (rep.param != 0x01 && rep.param != 0x03 && rep.param != 0x10) {
                        log_debug(LOG_SUB_USB, "ccid: bad bChainParameter 0x%02x", rep.param);
                        return -EIO;
                }
                if (!s->extended || parts > CCID_MAX_RAPDU / 8) {
                        log_debug(LOG_SUB_USB, "ccid: unexpected response chaining");
                        return -EIO;
                }
                /* Ask for the next part of the response. */
                r = exchange(s, CCID_PC_TO_RDR_XFR_BLOCK, 0, 0x0010, NULL, 0, CCID_RDR_TO_PC_DATA_BLOCK, &rep);
                if (r < 0)
                        return r;
        }
        if (got < 2) {
                log_debug(LOG_SUB_USB, "ccid: response APDU of %zu bytes", got);
                return -EIO;
        }
        *ret_len = got;
        return 0;
}

/* Sends one (possibly rewritten) APDU, with the 6Cxx retry; the raw
 * response lands in s-owned scratch `tmp`. */
static int send_with_retry(struct ccid_slot *s, struct apdu *a, bool ext, uint8_t *cmd, uint8_t *tmp, size_t tcap,
                           size_t *ret_len) {
        size_t clen = apdu_encode(a, ext, cmd);
        int r = xfr_apdu(s, cmd, clen, tmp, tcap, ret_len);
        if (r < 0)
                return r;
        /* 6Cxx: wrong Le, xx is the right one; resend once with it. */
        if (s->iso_auto && *ret_len == 2 && tmp[0] == 0x6C && a->le && !ext) {
                s->n_wrong_le++;
                a->le = tmp[1] ? tmp[1] : 256;
                clen = apdu_encode(a, ext, cmd);
                r = xfr_apdu(s, cmd, clen, tmp, tcap, ret_len);
        }
        return r;
}

int ccid_transmit(struct ccid_slot *s, const uint8_t *capdu, size_t clen, uint8_t *rapdu, size_t rcap,
                  size_t *ret_rlen) {
        if (!s || !capdu || !rapdu || !ret_rlen || rcap < 2)
                return -EINVAL;
        struct apdu a;
        int r = apdu_parse(capdu, clen, &a);
        if (r < 0)
                return r;
        /* Scratch: the command as sent, and one raw response. */
        size_t tcap = CCID_MAX_RAPDU + 64;
        uint8_t *cmd = malloc(clen + 16), *tmp = malloc(tcap);
        size_t tlen = 0, got = 0;
        if (!cmd || !tmp) {
                r = -ENOMEM;
                goto out_free;
        }
        bool ext = a.ext && s->extended;
        if (a.ext && !s->extended) {
                /* Short-only reader: ISO 7816-4 command chaining (CLA bit
                 * 0x10) over 255-byte pieces; Le above 256 is asked for as
                 * 256 and the rest comes with 61xx GET RESPONSE. */
                if (a.lc > 255) {
                        s->n_cmd_chained++;
                        struct apdu part = a;
                        size_t off = 0;
                        while (a.lc - off > 255) {
                                part.hdr[0] = a.hdr[0] | 0x10;
                                part.data = a.data + off;
                                part.lc = 255;
                                part.le = 0;
                                size_t n = apdu_encode(&part, false, cmd);
                                if ((r = xfr_apdu(s, cmd, n, tmp, tcap, &tlen)) < 0)
                                        goto out_free;
                                if (tlen != 2 || tmp[0] != 0x90 || tmp[1] != 0x00)
                                        goto out_copy; /* the card refused a piece: that is the answer */
                                off += 255;
                        }
                        a.data += off;
                        a.lc -= off;
                }
                if (a.le > 256)
                        a.le = 256;
        }
        if ((r = send_with_retry(s, &a, ext, cmd, tmp, tcap, &tlen)) < 0)
                goto out_free;
        /* 61xx: more data waiting; GET RESPONSE until the card is done. */
        for (unsigned rounds = 0; s->iso_auto && tlen >= 2 && tmp[tlen - 2] == 0x61; rounds++) {
                if (rounds > CCID_MAX_RAPDU / 256 + 1) {
                        r = -EIO;
                        goto out_free;
                }
                size_t dlen = tlen - 2;
                if (dlen > rcap - 2 - got) {
                        r = -ENOBUFS;
                        goto out_free;
                }
                memcpy(rapdu + got, tmp, dlen);
                got += dlen;
                s->n_get_response++;
                uint8_t cla =
                        s->desc.class_get_response == 0xFF ? (uint8_t)(a.hdr[0] & ~0x10) : s->desc.class_get_response;
                struct apdu gr = { .hdr = { cla, 0xC0, 0x00, 0x00 }, .le = tmp[tlen - 1] ? tmp[tlen - 1] : 256 };
                if ((r = send_with_retry(s, &gr, false, cmd, tmp, tcap, &tlen)) < 0)
                        goto out_free;
        }
out_copy:
        if (tlen > rcap - got) {
                r = -ENOBUFS;
                goto out_free;
        }
        memcpy(rapdu + got, tmp, tlen);
        *ret_rlen = got + tlen;
        r = 0;
out_free:
        if (tmp)
                explicit_bzero(tmp, tcap);
        if (cmd)
                explicit_bzero(cmd, clen + 16);
        free(tmp);
        free(cmd);
        return r;
}
