/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Every row passes the build-time check (see WIRE_OPS). */
WIRE_OPS(WIRE_OP_CHECK)

/* The table's position of each op, for constant-time lookup. */
enum {
#define WIRE_POS(name, num, req, rep, kind, route, reply, handler) WIRE_POS_##name,
        WIRE_OPS(WIRE_POS)
#undef WIRE_POS
        WIRE_N_OPS
};

static const struct wire_op wire_ops[] = {
#define WIRE_ROW(name, num, req, rep, kind, route, reply, handler)                                      \
        [WIRE_POS_##name] = { num, #name, req, rep, WIRE_KIND_##kind, WIRE_ROUTE_##route,                 \
                              WIRE_REPLY_##reply == WIRE_REPLY_SECRET },
        WIRE_OPS(WIRE_ROW)
#undef WIRE_ROW
};

/* Op number -> position + 1 (0: no such op).  Numbers stay small: the
 * largest is checked to fit. */
#define WIRE_OP_NUM_MAX 512
static const uint8_t wire_index[WIRE_OP_NUM_MAX] = {
#define WIRE_IDX(name, num, req, rep, kind, route, reply, handler) [num] = WIRE_POS_##name + 1,
        WIRE_OPS(WIRE_IDX)
#undef WIRE_IDX
};
#define WIRE_FITS(name, num, req, rep, kind, route, reply, handler) \
        _Static_assert((num) < WIRE_OP_NUM_MAX, #name ": op numbers are below WIRE_OP_NUM_MAX");
WIRE_OPS(WIRE_FITS)
#undef WIRE_FITS
_Static_assert(WIRE_N_OPS < 255, "positions fit wire_index");

static const char error_sig[] = "u";

const struct wire_op *wire_op_lookup(uint16_t op) {
        if (op >= WIRE_OP_NUM_MAX || !wire_index[op])
                return NULL;
        return &wire_ops[wire_index[op] - 1];
}

const char *wire_op_name(uint16_t op) {
        const struct wire_op *o = wire_op_lookup(op);
        return o ? o->name : "UNKNOWN";
}

int wire_hdr_parse(const uint8_t in[WIRE_HDR_SIZE], struct wire_hdr *ret) {
        struct nbuf b;
        struct wire_hdr h;
        nbuf_init_const(&b, in, WIRE_HDR_SIZE);
        nbuf_get_u32(&b, &h.len);
        nbuf_get_u32(&b, &h.id);
        nbuf_get_u16(&b, &h.op);
        nbuf_get_u16(&b, &h.flags);
        if (h.len < 8)
                return -EBADMSG;
        if (h.len > WIRE_FRAME_MAX - 4)
                return -EMSGSIZE;
        *ret = h;
        return 0;
}

int wire_frame_first_u64(const uint8_t *frame, size_t len, uint64_t *ret) {
        if (!frame || len < WIRE_HDR_SIZE + 8)
                return -EBADMSG;
        const struct wire_op *o = wire_op_lookup((uint16_t)(frame[8] << 8 | frame[9]));
        if (!o || o->req[0] != 'u')
                return -EBADMSG;
        struct nbuf b;
        nbuf_init_const(&b, frame + WIRE_HDR_SIZE, 8);
        uint64_t v = 0;
        if (!nbuf_get_u64(&b, &v))
                return -EBADMSG;
        *ret = v;
        return 0;
}

static const char *sig_for(const struct wire_op *op, uint16_t flags) {
        if (!op)
                return NULL;
        if (flags & WIRE_F_ERROR)
                return error_sig;
        if (flags & (WIRE_F_REPLY | WIRE_F_EVENT))
                return op->rep;
        return op->req;
}

void wire_msg_init_write(struct wire_msg *m, uint16_t op, uint32_t id, uint16_t flags) {
        memset(m, 0, sizeof *m);
        nbuf_init(&m->buf, WIRE_FRAME_MAX);
        m->op = wire_op_lookup(op);
        m->sigp = sig_for(m->op, flags);
        /* An error reply ("u") can be made for any op number: the server
         * echoes the number of a request it did not know. */
        if (!m->op && (flags & WIRE_F_REPLY) && (flags & WIRE_F_ERROR))
                m->sigp = error_sig;
        m->id = id;
        m->opnum = op;
        m->flags = flags;
        nbuf_put_u32(&m->buf, 0);
        nbuf_put_u32(&m->buf, id);
        nbuf_put_u16(&m->buf, op);
        nbuf_put_u16(&m->buf, flags);
        if (!m->sigp)
                nbuf_fail(&m->buf);
}

int wire_msg_finish(struct wire_msg *m) {
        if (nbuf_failed(&m->buf))
                return m->buf.len >= m->buf.max ? -EMSGSIZE : -EBADMSG;
        if (!m->sigp || *m->sigp != '\0')
                return -EBADMSG;
        nbuf_set_u32_at(&m->buf, 0, (uint32_t)(m->buf.len - 4));
        return nbuf_failed(&m->buf) ? -EBADMSG : 0;
}

int wire_msg_init_read(struct wire_msg *m, const uint8_t *frame, size_t len) {
        struct wire_hdr h;
        memset(m, 0, sizeof *m);
        nbuf_init_const(&m->buf, frame, len);
        if (len < WIRE_HDR_SIZE || wire_hdr_parse(frame, &h) < 0 || (size_t)h.len + 4 != len) {
                nbuf_fail(&m->buf);
                return -EBADMSG;
        }
        m->id = h.id;
        m->opnum = h.op;
        m->flags = h.flags;
        m->buf.rpos = WIRE_HDR_SIZE;
        m->op = wire_op_lookup(h.op);
        m->sigp = sig_for(m->op, h.flags);
        if (!m->op) {
                nbuf_fail(&m->buf);
                return -ENOTSUP;
        }
        return 0;
}

int wire_msg_read_done(struct wire_msg *m) {
        if (nbuf_failed(&m->buf) || !m->sigp || *m->sigp != '\0' || nbuf_remaining(&m->buf) != 0)
                return -EBADMSG;
        return 0;
}

void wire_msg_done(struct wire_msg *m) {
        nbuf_done(&m->buf);
        m->sigp = NULL;
}

int wire_error_reply(struct wire_msg *m, uint16_t op, uint32_t id, uint64_t rv) {
        wire_msg_init_write(m, op, id, WIRE_F_REPLY | WIRE_F_ERROR);
        wire_put_u64(m, rv);
        if (wire_msg_finish(m) < 0) {
                wire_msg_done(m);
                return -ENOMEM;
        }
        return 0;
}

/* Consume one signature character; fail the message on mismatch. */
static bool sig_next(struct wire_msg *m, char c) {
        if (nbuf_failed(&m->buf))
                return false;
        if (!m->sigp || *m->sigp != c) {
                nbuf_fail(&m->buf);
                return false;
        }
        m->sigp++;
        return true;
}

/* ---- puts ---- */

void wire_put_u64(struct wire_msg *m, uint64_t v) {
        if (sig_next(m, 'u'))
                nbuf_put_u64(&m->buf, v);
}

void wire_put_u8(struct wire_msg *m, uint8_t v) {
        if (sig_next(m, 'y'))
                nbuf_put_u8(&m->buf, v);
}

void wire_put_blob(struct wire_msg *m, const void *p, size_t n) {
        if (sig_next(m, 'z'))
                nbuf_put_blob(&m->buf, p, n);
}

void wire_put_string(struct wire_msg *m, const char *s) {
        if (sig_next(m, 's'))
                nbuf_put_str(&m->buf, s);
}

void wire_put_json(struct wire_msg *m, const char *json) {
        if (sig_next(m, 'j'))
                nbuf_put_str(&m->buf, json);
}

void wire_put_outreq(struct wire_msg *m, bool is_null, uint64_t capacity) {
        if (!sig_next(m, 'q'))
                return;
        nbuf_put_u8(&m->buf, is_null ? 1 : 0);
        nbuf_put_u64(&m->buf, is_null ? 0 : capacity);
}

void wire_put_outbytes(struct wire_msg *m, uint64_t len, const void *p) {
        if (!sig_next(m, 'Z'))
                return;
        nbuf_put_u64(&m->buf, len);
        nbuf_put_blob(&m->buf, p, p ? (size_t)len : 0);
}

/* The u32 count and n u64 of a 'U' or 'L' list. */
static void put_ulongs(struct wire_msg *m, const CK_ULONG *v, size_t n) {
        if (n > WIRE_MAX_LIST) {
                nbuf_fail(&m->buf);
                return;
        }
        nbuf_put_u32(&m->buf, (uint32_t)n);
        for (size_t i = 0; i < n; i++)
                nbuf_put_u64(&m->buf, v[i]);
}

void wire_put_u64_array(struct wire_msg *m, const CK_ULONG *v, size_t n) {
        if (sig_next(m, 'U'))
                put_ulongs(m, v, n);
}

void wire_put_outlist(struct wire_msg *m, uint64_t count, const CK_ULONG *v, size_t n) {
        if (!sig_next(m, 'L'))
                return;
        nbuf_put_u64(&m->buf, count);
        if (!v) {
                nbuf_put_u32(&m->buf, NBUF_NULL);
                return;
        }
        put_ulongs(m, v, n);
}

/* One entry of an attribute list of kind c: 'A' (type, blob value; false
 * for a nested template, which is not carried), 'G' (type, is_null,
 * capacity) or 'R' (type, ulValueLen, blob value unless unavailable). */
static bool put_attr(struct nbuf *b, char c, const CK_ATTRIBUTE *a) {
        switch (c) {
        case 'A':
                if (a->type & CKF_ARRAY_ATTRIBUTE)
                        return false;
                nbuf_put_u64(b, a->type);
                nbuf_put_blob(b, a->pValue, a->pValue ? a->ulValueLen : 0);
                break;
        case 'G':
                nbuf_put_u64(b, a->type);
                nbuf_put_u8(b, a->pValue ? 0 : 1);
                nbuf_put_u64(b, a->pValue ? a->ulValueLen : 0);
                break;
        default: {
                nbuf_put_u64(b, a->type);
                nbuf_put_u64(b, a->ulValueLen);
                bool has = a->pValue && a->ulValueLen != CK_UNAVAILABLE_INFORMATION;
                nbuf_put_blob(b, has ? a->pValue : NULL, has ? a->ulValueLen : 0);
                break;
        }
        }
        return true;
}

/* An attribute list field of kind c ('A', 'G', 'R'): u32 count, then the
 * entries (put_attr). */
static void put_attr_list(struct wire_msg *m, char c, const CK_ATTRIBUTE *t, CK_ULONG n) {
        if (!sig_next(m, c))
                return;
        if (n > WIRE_MAX_ATTRS || (n && !t)) {
                nbuf_fail(&m->buf);
                return;
        }
        nbuf_put_u32(&m->buf, (uint32_t)n);
        for (CK_ULONG i = 0; i < n; i++) {
                if (!put_attr(&m->buf, c, &t[i])) {
                        nbuf_fail(&m->buf);
                        return;
                }
        }
}

void wire_put_attrs(struct wire_msg *m, const CK_ATTRIBUTE *t, CK_ULONG n) {
        put_attr_list(m, 'A', t, n);
}

void wire_put_attr_query(struct wire_msg *m, const CK_ATTRIBUTE *t, CK_ULONG n) {
        put_attr_list(m, 'G', t, n);
}

void wire_put_attr_result(struct wire_msg *m, const CK_ATTRIBUTE *t, CK_ULONG n) {
        put_attr_list(m, 'R', t, n);
}

void wire_put_mechanism(struct wire_msg *m, const CK_MECHANISM *mech) {
        if (!sig_next(m, 'M'))
                return;
        if (!mech) {
                nbuf_fail(&m->buf);
                return;
        }
        nbuf_put_u64(&m->buf, mech->mechanism);
        nbuf_put_blob(&m->buf, mech->pParameter, mech->pParameter ? mech->ulParameterLen : 0);
}

static void put_version(struct nbuf *b, CK_VERSION v) {
        nbuf_put_u8(b, v.major);
        nbuf_put_u8(b, v.minor);
}

void wire_put_slot_info(struct wire_msg *m, const CK_SLOT_INFO *i) {
        if (!sig_next(m, 'I'))
                return;
        nbuf_put_raw(&m->buf, i->slotDescription, sizeof i->slotDescription);
        nbuf_put_raw(&m->buf, i->manufacturerID, sizeof i->manufacturerID);
        nbuf_put_u64(&m->buf, i->flags);
        put_version(&m->buf, i->hardwareVersion);
        put_version(&m->buf, i->firmwareVersion);
}

void wire_put_token_info(struct wire_msg *m, const CK_TOKEN_INFO *i) {
        if (!sig_next(m, 'T'))
                return;
        struct nbuf *b = &m->buf;
        nbuf_put_raw(b, i->label, sizeof i->label);
        nbuf_put_raw(b, i->manufacturerID, sizeof i->manufacturerID);
        nbuf_put_raw(b, i->model, sizeof i->model);
        nbuf_put_raw(b, i->serialNumber, sizeof i->serialNumber);
        nbuf_put_u64(b, i->flags);
        nbuf_put_u64(b, i->ulMaxSessionCount);
        nbuf_put_u64(b, i->ulSessionCount);
        nbuf_put_u64(b, i->ulMaxRwSessionCount);
        nbuf_put_u64(b, i->ulRwSessionCount);
        nbuf_put_u64(b, i->ulMaxPinLen);
        nbuf_put_u64(b, i->ulMinPinLen);
        nbuf_put_u64(b, i->ulTotalPublicMemory);
        nbuf_put_u64(b, i->ulFreePublicMemory);
        nbuf_put_u64(b, i->ulTotalPrivateMemory);
        nbuf_put_u64(b, i->ulFreePrivateMemory);
        put_version(b, i->hardwareVersion);
        put_version(b, i->firmwareVersion);
        nbuf_put_raw(b, i->utcTime, sizeof i->utcTime);
}

void wire_put_session_info(struct wire_msg *m, const CK_SESSION_INFO *i) {
        if (!sig_next(m, 'S'))
                return;
        nbuf_put_u64(&m->buf, i->slotID);
        nbuf_put_u64(&m->buf, i->state);
        nbuf_put_u64(&m->buf, i->flags);
        nbuf_put_u64(&m->buf, i->ulDeviceError);
}

void wire_put_mech_info(struct wire_msg *m, const CK_MECHANISM_INFO *i) {
        if (!sig_next(m, 'N'))
                return;
        nbuf_put_u64(&m->buf, i->ulMinKeySize);
        nbuf_put_u64(&m->buf, i->ulMaxKeySize);
        nbuf_put_u64(&m->buf, i->flags);
}

/* ---- gets ---- */

static bool get_ulong(struct nbuf *b, CK_ULONG *v) {
        uint64_t x;
        if (!nbuf_get_u64(b, &x))
                return false;
        *v = (CK_ULONG)x;
        return true;
}

bool wire_get_u64(struct wire_msg *m, uint64_t *v) {
        return sig_next(m, 'u') && nbuf_get_u64(&m->buf, v);
}

bool wire_get_ulong(struct wire_msg *m, CK_ULONG *v) {
        return sig_next(m, 'u') && get_ulong(&m->buf, v);
}

bool wire_get_u8(struct wire_msg *m, uint8_t *v) {
        return sig_next(m, 'y') && nbuf_get_u8(&m->buf, v);
}

bool wire_get_blob(struct wire_msg *m, const uint8_t **p, size_t *n) {
        return sig_next(m, 'z') && nbuf_get_blob(&m->buf, p, n);
}

static bool get_cstring(struct wire_msg *m, char c, char **ret) {
        const uint8_t *p;
        size_t n;
        if (!sig_next(m, c) || !nbuf_get_blob(&m->buf, &p, &n))
                return false;
        if (!p) {
                *ret = NULL;
                return true;
        }
        if (memchr(p, '\0', n)) {
                nbuf_fail(&m->buf);
                return false;
        }
        char *s = malloc(n + 1);
        if (!s) {
                nbuf_fail(&m->buf);
                return false;
        }
        memcpy(s, p, n);
        s[n] = '\0';
        *ret = s;
        return true;
}

bool wire_get_string(struct wire_msg *m, char **ret) {
        return get_cstring(m, 's', ret);
}

bool wire_get_json(struct wire_msg *m, char **ret) {
        return get_cstring(m, 'j', ret);
}

bool wire_get_outreq(struct wire_msg *m, bool *is_null, uint64_t *capacity) {
        uint8_t n;
        uint64_t c;
        if (!sig_next(m, 'q') || !nbuf_get_u8(&m->buf, &n) || !nbuf_get_u64(&m->buf, &c))
                return false;
        if (n > 1) {
                nbuf_fail(&m->buf);
                return false;
        }
        *is_null = n == 1;
        *capacity = c;
        return true;
}

bool wire_get_outbytes(struct wire_msg *m, uint64_t *len, const uint8_t **p, size_t *n) {
        uint64_t l;
        const uint8_t *d;
        size_t dn;
        if (!sig_next(m, 'Z') || !nbuf_get_u64(&m->buf, &l) || !nbuf_get_blob(&m->buf, &d, &dn))
                return false;
        if (d && dn != l) {
                nbuf_fail(&m->buf);
                return false;
        }
        *len = l;
        *p = d;
        *n = dn;
        return true;
}

/* The n u64 of a 'U' or 'L' list into a malloc'd *ret; *len = n. */
static bool get_ulong_list(struct wire_msg *m, uint32_t n, CK_ULONG **ret, size_t *len) {
        if (n > WIRE_MAX_LIST || (size_t)n * 8 > nbuf_remaining(&m->buf)) {
                nbuf_fail(&m->buf);
                return false;
        }
        CK_ULONG *v = calloc(n ? n : 1, sizeof *v);
        if (!v) {
                nbuf_fail(&m->buf);
                return false;
        }
        for (uint32_t i = 0; i < n; i++)
                get_ulong(&m->buf, &v[i]);
        *ret = v;
        *len = n;
        return true;
}

bool wire_get_u64_array(struct wire_msg *m, CK_ULONG **ret, size_t *n) {
        uint32_t cnt;
        return sig_next(m, 'U') && nbuf_get_u32(&m->buf, &cnt) && get_ulong_list(m, cnt, ret, n);
}

bool wire_get_outlist(struct wire_msg *m, uint64_t *count, CK_ULONG **ret, size_t *n) {
        uint64_t c;
        uint32_t cnt;
        if (!sig_next(m, 'L') || !nbuf_get_u64(&m->buf, &c) || !nbuf_get_u32(&m->buf, &cnt))
                return false;
        *count = c;
        if (cnt != NBUF_NULL)
                return get_ulong_list(m, cnt, ret, n);
        *ret = NULL;
        *n = 0;
        return true;
}

static bool attrs_alloc(struct wire_msg *m, uint32_t n, size_t min_each, CK_ATTRIBUTE **ret) {
        if (n > WIRE_MAX_ATTRS || (size_t)n * min_each > nbuf_remaining(&m->buf)) {
                nbuf_fail(&m->buf);
                return false;
        }
        *ret = calloc(n ? n : 1, sizeof(CK_ATTRIBUTE));
        if (!*ret) {
                nbuf_fail(&m->buf);
                return false;
        }
        return true;
}

static uint8_t query_dummy;

/* One entry of an attribute list of kind c: 'A' (type, blob value; a nested
 * template is refused both ways, its value would be taken for an array of
 * CK_ATTRIBUTE), 'G' (type, is_null, capacity: pValue NULL or a non-NULL
 * dummy) or 'R' (type, ulValueLen, blob value of that length or NULL). */
static bool get_attr(struct nbuf *b, char c, CK_ATTRIBUTE *a) {
        const uint8_t *p;
        size_t len;
        uint8_t is_null;
        if (!get_ulong(b, &a->type))
                return false;
        switch (c) {
        case 'A':
                if (!nbuf_get_blob(b, &p, &len) || (a->type & CKF_ARRAY_ATTRIBUTE))
                        return false;
                a->pValue = (void *)p;
                a->ulValueLen = len;
                return true;
        case 'G':
                if (!nbuf_get_u8(b, &is_null) || !get_ulong(b, &a->ulValueLen) || is_null > 1)
                        return false;
                a->pValue = is_null ? NULL : &query_dummy;
                return true;
        default:
                if (!get_ulong(b, &a->ulValueLen) || !nbuf_get_blob(b, &p, &len) || (p && len != a->ulValueLen))
                        return false;
                a->pValue = (void *)p;
                return true;
        }
}

/* An attribute list field of kind c ('A', 'G', 'R'): u32 count, then the
 * entries (get_attr), each at least min_each bytes. */
static bool get_attr_list(struct wire_msg *m, char c, size_t min_each, CK_ATTRIBUTE **ret, CK_ULONG *n) {
        uint32_t cnt;
        CK_ATTRIBUTE *t;
        if (!sig_next(m, c) || !nbuf_get_u32(&m->buf, &cnt) || !attrs_alloc(m, cnt, min_each, &t))
                return false;
        for (uint32_t i = 0; i < cnt; i++) {
                if (!get_attr(&m->buf, c, &t[i])) {
                        nbuf_fail(&m->buf);
                        free(t);
                        return false;
                }
        }
        *ret = t;
        *n = cnt;
        return true;
}

bool wire_get_attrs(struct wire_msg *m, CK_ATTRIBUTE **ret, CK_ULONG *n) {
        return get_attr_list(m, 'A', 12, ret, n);
}

bool wire_get_attr_query(struct wire_msg *m, CK_ATTRIBUTE **ret, CK_ULONG *n) {
        return get_attr_list(m, 'G', 17, ret, n);
}

bool wire_get_attr_result(struct wire_msg *m, CK_ATTRIBUTE **ret, CK_ULONG *n) {
        return get_attr_list(m, 'R', 20, ret, n);
}

bool wire_get_mechanism(struct wire_msg *m, CK_MECHANISM *mech) {
        const uint8_t *p;
        size_t n;
        if (!sig_next(m, 'M') || !get_ulong(&m->buf, &mech->mechanism) || !nbuf_get_blob(&m->buf, &p, &n))
                return false;
        mech->pParameter = (void *)p;
        mech->ulParameterLen = n;
        return true;
}

static bool get_fixed(struct nbuf *b, void *dst, size_t n) {
        const uint8_t *p;
        if (!nbuf_get_raw(b, n, &p))
                return false;
        memcpy(dst, p, n);
        return true;
}

static bool get_version(struct nbuf *b, CK_VERSION *v) {
        return nbuf_get_u8(b, &v->major) && nbuf_get_u8(b, &v->minor);
}

bool wire_get_slot_info(struct wire_msg *m, CK_SLOT_INFO *i) {
        struct nbuf *b = &m->buf;
        return sig_next(m, 'I') && get_fixed(b, i->slotDescription, sizeof i->slotDescription) &&
               get_fixed(b, i->manufacturerID, sizeof i->manufacturerID) && get_ulong(b, &i->flags) &&
               get_version(b, &i->hardwareVersion) && get_version(b, &i->firmwareVersion);
}

bool wire_get_token_info(struct wire_msg *m, CK_TOKEN_INFO *i) {
        struct nbuf *b = &m->buf;
        return sig_next(m, 'T') && get_fixed(b, i->label, sizeof i->label) &&
               get_fixed(b, i->manufacturerID, sizeof i->manufacturerID) &&
               get_fixed(b, i->model, sizeof i->model) &&
               get_fixed(b, i->serialNumber, sizeof i->serialNumber) && get_ulong(b, &i->flags) &&
               get_ulong(b, &i->ulMaxSessionCount) && get_ulong(b, &i->ulSessionCount) &&
               get_ulong(b, &i->ulMaxRwSessionCount) && get_ulong(b, &i->ulRwSessionCount) &&
               get_ulong(b, &i->ulMaxPinLen) && get_ulong(b, &i->ulMinPinLen) &&
               get_ulong(b, &i->ulTotalPublicMemory) && get_ulong(b, &i->ulFreePublicMemory) &&
               get_ulong(b, &i->ulTotalPrivateMemory) && get_ulong(b, &i->ulFreePrivateMemory) &&
               get_version(b, &i->hardwareVersion) && get_version(b, &i->firmwareVersion) &&
               get_fixed(b, i->utcTime, sizeof i->utcTime);
}

bool wire_get_session_info(struct wire_msg *m, CK_SESSION_INFO *i) {
        struct nbuf *b = &m->buf;
        return sig_next(m, 'S') && get_ulong(b, &i->slotID) && get_ulong(b, &i->state) &&
               get_ulong(b, &i->flags) && get_ulong(b, &i->ulDeviceError);
}

bool wire_get_mech_info(struct wire_msg *m, CK_MECHANISM_INFO *i) {
        struct nbuf *b = &m->buf;
        return sig_next(m, 'N') && get_ulong(b, &i->ulMinKeySize) && get_ulong(b, &i->ulMaxKeySize) &&
               get_ulong(b, &i->flags);
}
