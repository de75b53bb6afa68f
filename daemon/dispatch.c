/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Server side of the PKCS#11 ops: request frame -> core_* -> reply frame.
 *
 * Every handler decodes the request fields in signature order, checks that
 * nothing is left over (wire_msg_read_done) before calling the core, and
 * then writes the reply: the CK_RV first, then every reply field, zero or
 * empty when the call failed.  A request that does not decode gets an error
 * reply (WIRE_F_REPLY | WIRE_F_ERROR, CKR_ARGUMENTS_BAD) and never reaches
 * the core.
 *
 * Pointers handed to the core for input data (PINs, data to sign, templates)
 * point into the request frame: nothing is copied, so nothing secret is left
 * behind here; the server wipes and frees the frame.  Output buffers are
 * allocated here at the client's capacity (capped) and wiped before they are
 * freed, since decrypt output may be secret. */
#include "dispatch.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "core.h"
#include "common/mechparam.h"

/* Decoding failed: the handler returns this and dispatch_p11 builds the
 * error reply. */
#define BAD_REQUEST 1

/* Largest output buffer allocated for one 'q' request. */
#define OUT_CAP_MAX WIRE_FRAME_MAX

bool dispatch_is_p11_op(uint16_t op) {
        const struct wire_op *o = wire_op_lookup(op);
        return o && o->kind == WIRE_KIND_P11;
}

/* An output byte buffer for a 'q' request. */
struct outbuf {
        bool is_null;
        CK_ULONG cap;     /* capacity given to the core (capped) */
        CK_ULONG len;     /* in: cap; out: what the core says */
        uint8_t *data;    /* NULL iff is_null */
};

static bool outbuf_get(struct wire_msg *req, struct outbuf *o) {
        bool is_null;
        uint64_t cap;
        if (!wire_get_outreq(req, &is_null, &cap))
                return false;
        o->is_null = is_null;
        o->cap = is_null ? 0 : (CK_ULONG)(cap > OUT_CAP_MAX ? OUT_CAP_MAX : cap);
        o->len = o->cap;
        o->data = NULL;
        return true;
}

/* After read_done: allocate the buffer.  false on -ENOMEM. */
static bool outbuf_alloc(struct outbuf *o) {
        if (o->is_null)
                return true;
        o->data = malloc(o->cap ? o->cap : 1);
        return o->data != NULL;
}

static void outbuf_done(struct outbuf *o) {
        if (o->data) {
                explicit_bzero(o->data, o->cap ? o->cap : 1);
                free(o->data);
        }
        o->data = NULL;
}

/* The 'Z' reply field for an output buffer after the core returned rv. */
static void outbuf_put(struct wire_msg *rep, CK_RV rv, const struct outbuf *o) {
        if (rv == CKR_OK && !o->is_null && o->len <= o->cap)
                wire_put_outbytes(rep, o->len, o->data);
        else if (rv == CKR_OK || rv == CKR_BUFFER_TOO_SMALL)
                wire_put_outbytes(rep, o->len, NULL);
        else
                wire_put_outbytes(rep, 0, NULL);
}

static void reply_start(struct wire_msg *req, struct wire_msg *rep, CK_RV rv) {
        wire_msg_init_write(rep, req->opnum, req->id, WIRE_F_REPLY);
        /* Wiped on every reallocation and when freed. */
        if (req->op && req->op->secret)
                rep->buf.secure = true;
        wire_put_u64(rep, rv);
}

/* ---- handlers: return 0 (reply written, not finished), BAD_REQUEST, or
 * -ENOMEM ---- */

/* GetSlotList ("yq") and GetMechanismList ("uq") -> "uL": the list at the
 * client's capacity (capped), after arg, the request's first field, was
 * read. */
static int h_ulong_list(struct core_client *cl, struct wire_msg *req, struct wire_msg *rep, CK_ULONG arg,
                        CK_RV (*fn)(struct core_client *, CK_ULONG, CK_ULONG_PTR, CK_ULONG_PTR)) {
        bool is_null;
        uint64_t cap;
        if (!wire_get_outreq(req, &is_null, &cap) || wire_msg_read_done(req) < 0)
                return BAD_REQUEST;
        CK_ULONG count = is_null ? 0 : (CK_ULONG)(cap > WIRE_MAX_LIST ? WIRE_MAX_LIST : cap);
        _cleanup_free_ CK_ULONG *list = NULL;
        if (!is_null) {
                list = calloc(count ? count : 1, sizeof *list);
                if (!list)
                        return -ENOMEM;
        }
        CK_RV rv = fn(cl, arg, list, &count);
        reply_start(req, rep, rv);
        if (rv == CKR_OK && list)
                wire_put_outlist(rep, count, list, count);
        else if (rv == CKR_OK || rv == CKR_BUFFER_TOO_SMALL)
                wire_put_outlist(rep, count, NULL, 0);
        else
                wire_put_outlist(rep, 0, NULL, 0);
        return 0;
}

/* core_get_slot_list with its CK_BBOOL as h_ulong_list's argument. */
static CK_RV slot_list(struct core_client *cl, CK_ULONG present, CK_ULONG_PTR list, CK_ULONG_PTR count) {
        return core_get_slot_list(cl, present ? CK_TRUE : CK_FALSE, list, count);
}

static int h_get_slot_list(struct core_client *cl, struct wire_msg *req, struct wire_msg *rep) {
        uint8_t present;
        if (!wire_get_u8(req, &present))
                return BAD_REQUEST;
        return h_ulong_list(cl, req, rep, present, slot_list);
}

static int h_get_mechanism_list(struct core_client *cl, struct wire_msg *req, struct wire_msg *rep) {
        CK_ULONG slot;
        if (!wire_get_ulong(req, &slot))
                return BAD_REQUEST;
        return h_ulong_list(cl, req, rep, slot, core_get_mechanism_list);
}

/* What h_info_query asks for: the info struct of a slot, a token, a
 * session, or a slot's mechanism. */
enum info_query { INFO_SLOT, INFO_TOKEN, INFO_SESSION, INFO_MECHANISM };

union info {
        CK_SLOT_INFO slot;
        CK_TOKEN_INFO token;
        CK_SESSION_INFO session;
        CK_MECHANISM_INFO mechanism;
};

/* GetSlotInfo, GetTokenInfo ("u" -> "uI", "uT"), GetSessionInfo ("u" ->
 * "uS"), GetMechanismInfo ("uu" -> "uN"): the info is all zero when the
 * call failed. */
static int h_info_query(struct core_client *cl, struct wire_msg *req, struct wire_msg *rep, enum info_query q) {
        CK_ULONG h, type = 0;
        if (!wire_get_ulong(req, &h) || (q == INFO_MECHANISM && !wire_get_ulong(req, &type)) ||
            wire_msg_read_done(req) < 0)
                return BAD_REQUEST;
        union info info;
        memset(&info, 0, sizeof info);
        CK_RV rv;
        switch (q) {
        case INFO_SLOT:
                rv = core_get_slot_info(cl, h, &info.slot);
                break;
        case INFO_TOKEN:
                rv = core_get_token_info(cl, h, &info.token);
                break;
        case INFO_SESSION:
                rv = core_get_session_info(cl, h, &info.session);
                break;
        default:
                rv = core_get_mechanism_info(cl, h, type, &info.mechanism);
                break;
        }
        if (rv != CKR_OK)
                memset(&info, 0, sizeof info);
        reply_start(req, rep, rv);
        switch (q) {
        case INFO_SLOT:
                wire_put_slot_info(rep, &info.slot);
                break;
        case INFO_TOKEN:
                wire_put_token_info(rep, &info.token);
                break;
        case INFO_SESSION:
                wire_put_session_info(rep, &info.session);
                break;
        default:
                wire_put_mech_info(rep, &info.mechanism);
                break;
        }
        return 0;
}

static int h_init_token(struct core_client *cl, struct wire_msg *req, struct wire_msg *rep) {
        CK_ULONG slot;
        const uint8_t *pin, *label;
        size_t pin_len, label_len;
        if (!wire_get_ulong(req, &slot) || !wire_get_blob(req, &pin, &pin_len) ||
            !wire_get_blob(req, &label, &label_len) || wire_msg_read_done(req) < 0)
                return BAD_REQUEST;
        /* The label is a 32-byte blank-padded field. */
        CK_UTF8CHAR lbl[32];
        if (label) {
                memset(lbl, ' ', sizeof lbl);
                memcpy(lbl, label, label_len < sizeof lbl ? label_len : sizeof lbl);
        }
        CK_RV rv = core_init_token(cl, slot, (CK_UTF8CHAR_PTR)pin, pin_len, label ? lbl : NULL);
        reply_start(req, rep, rv);
        return 0;
}

static int h_open_session(struct core_client *cl, struct wire_msg *req, struct wire_msg *rep) {
        CK_ULONG slot, flags;
        if (!wire_get_ulong(req, &slot) || !wire_get_ulong(req, &flags) || wire_msg_read_done(req) < 0)
                return BAD_REQUEST;
        CK_SESSION_HANDLE h = 0;
        CK_RV rv = core_open_session(cl, slot, flags, &h);
        reply_start(req, rep, rv);
        wire_put_u64(rep, rv == CKR_OK ? h : 0);
        return 0;
}

/* The ops whose request is just a session (or slot) handle and whose reply
 * is just the CK_RV. */
static int h_handle_only(struct core_client *cl, struct wire_msg *req, struct wire_msg *rep,
                         CK_RV (*fn)(struct core_client *, CK_ULONG)) {
        CK_ULONG h;
        if (!wire_get_ulong(req, &h) || wire_msg_read_done(req) < 0)
                return BAD_REQUEST;
        CK_RV rv = fn(cl, h);
        reply_start(req, rep, rv);
        return 0;
}

static int h_login(struct core_client *cl, struct wire_msg *req, struct wire_msg *rep) {
        CK_ULONG s, user;
        const uint8_t *pin;
        size_t pin_len;
        if (!wire_get_ulong(req, &s) || !wire_get_ulong(req, &user) || !wire_get_blob(req, &pin, &pin_len) ||
            wire_msg_read_done(req) < 0)
                return BAD_REQUEST;
        CK_RV rv = core_login(cl, s, user, (CK_UTF8CHAR_PTR)pin, pin_len);
        reply_start(req, rep, rv);
        return 0;
}

/* "uA" (create) or "uuA" (copy: the object copied) -> "uu": a new object. */
static int h_object_made(struct core_client *cl, struct wire_msg *req, struct wire_msg *rep, bool copy) {
        CK_ULONG s, from = 0, n;
        _cleanup_free_ CK_ATTRIBUTE *t = NULL;
        if (!wire_get_ulong(req, &s) || (copy && !wire_get_ulong(req, &from)) || !wire_get_attrs(req, &t, &n) ||
            wire_msg_read_done(req) < 0)
                return BAD_REQUEST;
        CK_OBJECT_HANDLE obj = 0;
        CK_RV rv = copy ? core_copy_object(cl, s, from, t, n, &obj) : core_create_object(cl, s, t, n, &obj);
        reply_start(req, rep, rv);
        wire_put_u64(rep, rv == CKR_OK ? obj : 0);
        return 0;
}

static int h_create_object(struct core_client *cl, struct wire_msg *req, struct wire_msg *rep) {
        return h_object_made(cl, req, rep, false);
}

static int h_copy_object(struct core_client *cl, struct wire_msg *req, struct wire_msg *rep) {
        return h_object_made(cl, req, rep, true);
}

/* "uu" -> "u": a session and one number (an object, an operation). */
static int h_handle_ulong(struct core_client *cl, struct wire_msg *req, struct wire_msg *rep,
                          CK_RV (*fn)(struct core_client *, CK_SESSION_HANDLE, CK_ULONG)) {
        CK_ULONG s, v;
        if (!wire_get_ulong(req, &s) || !wire_get_ulong(req, &v) || wire_msg_read_done(req) < 0)
                return BAD_REQUEST;
        CK_RV rv = fn(cl, s, v);
        reply_start(req, rep, rv);
        return 0;
}

static int h_get_attribute_value(struct core_client *cl, struct wire_msg *req, struct wire_msg *rep) {
        CK_ULONG s, obj, n;
        _cleanup_free_ CK_ATTRIBUTE *t = NULL;
        if (!wire_get_ulong(req, &s) || !wire_get_ulong(req, &obj) || !wire_get_attr_query(req, &t, &n) ||
            wire_msg_read_done(req) < 0)
                return BAD_REQUEST;

        /* One allocation for every attribute's buffer: each gets the
         * capacity asked for, as long as the total stays under the frame
         * cap (a value that large could not be sent back anyway). */
        size_t total = 0;
        _cleanup_free_ CK_ULONG *caps = calloc(n ? n : 1, sizeof *caps);
        if (!caps)
                return -ENOMEM;
        for (CK_ULONG i = 0; i < n; i++) {
                if (!t[i].pValue)
                        continue;
                CK_ULONG c = t[i].ulValueLen;
                size_t room = OUT_CAP_MAX - total;
                if (c > room)
                        c = room;
                caps[i] = c;
                total += c;
        }
        uint8_t *area = malloc(total ? total : 1);
        if (!area)
                return -ENOMEM;
        size_t off = 0;
        for (CK_ULONG i = 0; i < n; i++) {
                if (!t[i].pValue)
                        continue;
                t[i].pValue = area + off;
                t[i].ulValueLen = caps[i];
                off += caps[i];
        }

        CK_RV rv = core_get_attribute_value(cl, s, obj, t, n);
        reply_start(req, rep, rv);
        if (rv == CKR_OK || rv == CKR_ATTRIBUTE_SENSITIVE || rv == CKR_ATTRIBUTE_TYPE_INVALID ||
            rv == CKR_BUFFER_TOO_SMALL) {
                /* A core that reports more bytes than the buffer holds would
                 * make us read past it: report the attribute unavailable. */
                for (CK_ULONG i = 0; i < n; i++)
                        if (t[i].pValue && t[i].ulValueLen != CK_UNAVAILABLE_INFORMATION && t[i].ulValueLen > caps[i])
                                t[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
                wire_put_attr_result(rep, t, n);
        } else
                wire_put_attr_result(rep, NULL, 0);
        /* Wipe: values of private objects may be in it. */
        explicit_bzero(area, total ? total : 1);
        free(area);
        return 0;
}

static int h_set_attribute_value(struct core_client *cl, struct wire_msg *req, struct wire_msg *rep) {
        CK_ULONG s, obj, n;
        _cleanup_free_ CK_ATTRIBUTE *t = NULL;
        if (!wire_get_ulong(req, &s) || !wire_get_ulong(req, &obj) || !wire_get_attrs(req, &t, &n) ||
            wire_msg_read_done(req) < 0)
                return BAD_REQUEST;
        CK_RV rv = core_set_attribute_value(cl, s, obj, t, n);
        reply_start(req, rep, rv);
        return 0;
}

static int h_find_objects_init(struct core_client *cl, struct wire_msg *req, struct wire_msg *rep) {
        CK_ULONG s, n;
        _cleanup_free_ CK_ATTRIBUTE *t = NULL;
        if (!wire_get_ulong(req, &s) || !wire_get_attrs(req, &t, &n) || wire_msg_read_done(req) < 0)
                return BAD_REQUEST;
        CK_RV rv = core_find_objects_init(cl, s, t, n);
        reply_start(req, rep, rv);
        return 0;
}

static int h_find_objects(struct core_client *cl, struct wire_msg *req, struct wire_msg *rep) {
        CK_ULONG s, max;
        if (!wire_get_ulong(req, &s) || !wire_get_ulong(req, &max) || wire_msg_read_done(req) < 0)
                return BAD_REQUEST;
        if (max > WIRE_MAX_LIST)
                max = WIRE_MAX_LIST;
        _cleanup_free_ CK_OBJECT_HANDLE *v = calloc(max ? max : 1, sizeof *v);
        if (!v)
                return -ENOMEM;
        CK_ULONG count = 0;
        CK_RV rv = core_find_objects(cl, s, v, max, &count);
        if (rv != CKR_OK || count > max)
                count = 0;
        reply_start(req, rep, rv);
        wire_put_u64_array(rep, v, count);
        return 0;
}

/* The "uMu" head of a *Init request: session, mechanism, key. */
struct init_args {
        CK_ULONG s, key;
        CK_MECHANISM mech;
        union mechparam_native param;
};

typedef CK_RV (*init_fn)(struct core_client *, CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE);

static bool init_args_get(struct wire_msg *req, struct init_args *a) {
        return wire_get_ulong(req, &a->s) && wire_get_mechanism(req, &a->mech) && wire_get_ulong(req, &a->key);
}

/* Runs the init (after the whole request was read). */
static CK_RV init_args_run(struct core_client *cl, struct init_args *a, init_fn fn) {
        return mechparam_decode(&a->mech, &a->param) ? fn(cl, a->s, &a->mech, a->key) : CKR_MECHANISM_PARAM_INVALID;
}

/* SignInit, VerifyInit, EncryptInit, DecryptInit: "uMu" -> "u". */
static int h_crypt_init(struct core_client *cl, struct wire_msg *req, struct wire_msg *rep, init_fn fn) {
        struct init_args a;
        if (!init_args_get(req, &a) || wire_msg_read_done(req) < 0)
                return BAD_REQUEST;
        reply_start(req, rep, init_args_run(cl, &a, fn));
        return 0;
}

static int h_digest_init(struct core_client *cl, struct wire_msg *req, struct wire_msg *rep) {
        CK_ULONG s;
        CK_MECHANISM mech;
        union mechparam_native param;
        if (!wire_get_ulong(req, &s) || !wire_get_mechanism(req, &mech) || wire_msg_read_done(req) < 0)
                return BAD_REQUEST;
        CK_RV rv = mechparam_decode(&mech, &param) ? core_digest_init(cl, s, &mech) : CKR_MECHANISM_PARAM_INVALID;
        reply_start(req, rep, rv);
        return 0;
}

/* The "zq" rest of a request that returns bytes: the data and the output
 * request, then the end of the request; the output buffer allocated. */
struct data_out {
        const uint8_t *data;
        size_t len;
        struct outbuf o;
};

static int data_out_get(struct wire_msg *req, struct data_out *d) {
        if (!wire_get_blob(req, &d->data, &d->len) || !outbuf_get(req, &d->o) || wire_msg_read_done(req) < 0)
                return BAD_REQUEST;
        return outbuf_alloc(&d->o) ? 0 : -ENOMEM;
}

/* Replies "uZ" with rv and the output. */
static int data_out_reply(struct wire_msg *req, struct wire_msg *rep, CK_RV rv, struct data_out *d) {
        reply_start(req, rep, rv);
        outbuf_put(rep, rv, &d->o);
        outbuf_done(&d->o);
        return 0;
}

/* Sign, Encrypt, Decrypt, Digest and the Encrypt/Decrypt updates:
 * "uzq" -> "uZ". */
static int h_data_out(struct core_client *cl, struct wire_msg *req, struct wire_msg *rep,
                      CK_RV (*fn)(struct core_client *, CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR,
                                  CK_ULONG_PTR)) {
        CK_ULONG s;
        struct data_out d;
        if (!wire_get_ulong(req, &s))
                return BAD_REQUEST;
        int r = data_out_get(req, &d);
        if (r != 0)
                return r;
        return data_out_reply(req, rep, fn(cl, s, (CK_BYTE_PTR)d.data, d.len, d.o.data, &d.o.len), &d);
}

/* A C_SignInit the module held back, with the C_Sign that followed it
 * (pkcs11/module.c, "One round trip per signature"): "uMuzq" -> "uZ".  The
 * init's error, if any, is the answer; else the signature's. */
static int h_sign_once(struct core_client *cl, struct wire_msg *req, struct wire_msg *rep) {
        struct init_args a;
        struct data_out d;
        if (!init_args_get(req, &a))
                return BAD_REQUEST;
        int r = data_out_get(req, &d);
        if (r != 0)
                return r;
        CK_RV rv = init_args_run(cl, &a, core_sign_init);
        if (rv == CKR_OK)
                rv = core_sign(cl, a.s, (CK_BYTE_PTR)d.data, d.len, d.o.data, &d.o.len);
        return data_out_reply(req, rep, rv, &d);
}

/* The same with the C_SignUpdate that followed: "uMuz" -> "u". */
static int h_sign_init_update(struct core_client *cl, struct wire_msg *req, struct wire_msg *rep) {
        struct init_args a;
        const uint8_t *data;
        size_t len;
        if (!init_args_get(req, &a) || !wire_get_blob(req, &data, &len) || wire_msg_read_done(req) < 0)
                return BAD_REQUEST;
        CK_RV rv = init_args_run(cl, &a, core_sign_init);
        if (rv == CKR_OK)
                rv = core_sign_update(cl, a.s, (CK_BYTE_PTR)data, len);
        reply_start(req, rep, rv);
        return 0;
}

/* SignFinal, EncryptFinal, DecryptFinal, DigestFinal: "uq" -> "uZ". */
static int h_final_out(struct core_client *cl, struct wire_msg *req, struct wire_msg *rep,
                       CK_RV (*fn)(struct core_client *, CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG_PTR)) {
        CK_ULONG s;
        struct outbuf o;
        if (!wire_get_ulong(req, &s) || !outbuf_get(req, &o) || wire_msg_read_done(req) < 0)
                return BAD_REQUEST;
        if (!outbuf_alloc(&o))
                return -ENOMEM;
        CK_RV rv = fn(cl, s, o.data, &o.len);
        reply_start(req, rep, rv);
        outbuf_put(rep, rv, &o);
        outbuf_done(&o);
        return 0;
}

/* SignUpdate, VerifyUpdate, VerifyFinal, DigestUpdate, SeedRandom, InitPIN:
 * "uz" -> "u". */
static int h_data_in(struct core_client *cl, struct wire_msg *req, struct wire_msg *rep,
                     CK_RV (*fn)(struct core_client *, CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG)) {
        CK_ULONG s;
        const uint8_t *data;
        size_t len;
        if (!wire_get_ulong(req, &s) || !wire_get_blob(req, &data, &len) || wire_msg_read_done(req) < 0)
                return BAD_REQUEST;
        CK_RV rv = fn(cl, s, (CK_BYTE_PTR)data, len);
        reply_start(req, rep, rv);
        return 0;
}

/* Verify and SetPIN: "uzz" -> "u". */
static int h_data2_in(struct core_client *cl, struct wire_msg *req, struct wire_msg *rep,
                      CK_RV (*fn)(struct core_client *, CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR,
                                  CK_ULONG)) {
        CK_ULONG s;
        const uint8_t *a, *b;
        size_t a_len, b_len;
        if (!wire_get_ulong(req, &s) || !wire_get_blob(req, &a, &a_len) || !wire_get_blob(req, &b, &b_len) ||
            wire_msg_read_done(req) < 0)
                return BAD_REQUEST;
        CK_RV rv = fn(cl, s, (CK_BYTE_PTR)a, a_len, (CK_BYTE_PTR)b, b_len);
        reply_start(req, rep, rv);
        return 0;
}

static int h_generate_key_pair(struct core_client *cl, struct wire_msg *req, struct wire_msg *rep) {
        CK_ULONG s, pub_n, priv_n;
        CK_MECHANISM mech;
        _cleanup_free_ CK_ATTRIBUTE *pub = NULL;
        _cleanup_free_ CK_ATTRIBUTE *priv = NULL;
        if (!wire_get_ulong(req, &s) || !wire_get_mechanism(req, &mech) || !wire_get_attrs(req, &pub, &pub_n) ||
            !wire_get_attrs(req, &priv, &priv_n) || wire_msg_read_done(req) < 0)
                return BAD_REQUEST;
        CK_OBJECT_HANDLE hpub = 0, hpriv = 0;
        union mechparam_native param;
        CK_RV rv = mechparam_decode(&mech, &param) ?
                core_generate_key_pair(cl, s, &mech, pub, pub_n, priv, priv_n, &hpub, &hpriv) :
                CKR_MECHANISM_PARAM_INVALID;
        reply_start(req, rep, rv);
        wire_put_u64(rep, rv == CKR_OK ? hpub : 0);
        wire_put_u64(rep, rv == CKR_OK ? hpriv : 0);
        return 0;
}

static int h_generate_key(struct core_client *cl, struct wire_msg *req, struct wire_msg *rep) {
        CK_ULONG s, n;
        CK_MECHANISM mech;
        _cleanup_free_ CK_ATTRIBUTE *t = NULL;
        if (!wire_get_ulong(req, &s) || !wire_get_mechanism(req, &mech) || !wire_get_attrs(req, &t, &n) ||
            wire_msg_read_done(req) < 0)
                return BAD_REQUEST;
        CK_OBJECT_HANDLE obj = 0;
        union mechparam_native param;
        CK_RV rv = mechparam_decode(&mech, &param) ? core_generate_key(cl, s, &mech, t, n, &obj)
                                                   : CKR_MECHANISM_PARAM_INVALID;
        reply_start(req, rep, rv);
        wire_put_u64(rep, rv == CKR_OK ? obj : 0);
        return 0;
}

/* "uMuuq" -> "uZ": the wrapping key, the key, the output request. */
static int h_wrap_key(struct core_client *cl, struct wire_msg *req, struct wire_msg *rep) {
        CK_ULONG s, wkey, key;
        CK_MECHANISM mech;
        struct outbuf o;
        if (!wire_get_ulong(req, &s) || !wire_get_mechanism(req, &mech) || !wire_get_ulong(req, &wkey) ||
            !wire_get_ulong(req, &key) || !outbuf_get(req, &o) || wire_msg_read_done(req) < 0)
                return BAD_REQUEST;
        if (!outbuf_alloc(&o))
                return -ENOMEM;
        union mechparam_native param;
        CK_RV rv = mechparam_decode(&mech, &param) ? core_wrap_key(cl, s, &mech, wkey, key, o.data, &o.len)
                                                   : CKR_MECHANISM_PARAM_INVALID;
        reply_start(req, rep, rv);
        outbuf_put(rep, rv, &o);
        outbuf_done(&o);
        return 0;
}

/* "uMuzA" -> "uu": the unwrapping key, the wrapped key, the template. */
static int h_unwrap_key(struct core_client *cl, struct wire_msg *req, struct wire_msg *rep) {
        CK_ULONG s, ukey, n;
        CK_MECHANISM mech;
        const uint8_t *in;
        size_t in_len;
        _cleanup_free_ CK_ATTRIBUTE *t = NULL;
        if (!wire_get_ulong(req, &s) || !wire_get_mechanism(req, &mech) || !wire_get_ulong(req, &ukey) ||
            !wire_get_blob(req, &in, &in_len) || !wire_get_attrs(req, &t, &n) || wire_msg_read_done(req) < 0)
                return BAD_REQUEST;
        CK_OBJECT_HANDLE obj = 0;
        union mechparam_native param;
        CK_RV rv = mechparam_decode(&mech, &param) ?
                core_unwrap_key(cl, s, &mech, ukey, (CK_BYTE_PTR)in, in_len, t, n, &obj) :
                CKR_MECHANISM_PARAM_INVALID;
        reply_start(req, rep, rv);
        wire_put_u64(rep, rv == CKR_OK ? obj : 0);
        return 0;
}

static int h_generate_random(struct core_client *cl, struct wire_msg *req, struct wire_msg *rep) {
        CK_ULONG s, len;
        if (!wire_get_ulong(req, &s) || !wire_get_ulong(req, &len) || wire_msg_read_done(req) < 0)
                return BAD_REQUEST;
        /* A cap on what one request makes the daemon allocate and hold
         * (issue 23); the module splits larger requests. */
        if (len > WIRE_RANDOM_MAX) {
                reply_start(req, rep, CKR_ARGUMENTS_BAD);
                wire_put_blob(rep, NULL, 0);
                return 0;
        }
        _cleanup_free_ uint8_t *buf = malloc(len ? len : 1);
        if (!buf)
                return -ENOMEM;
        CK_RV rv = core_generate_random(cl, s, buf, len);
        reply_start(req, rep, rv);
        if (rv == CKR_OK)
                wire_put_blob(rep, buf, len);
        else
                wire_put_blob(rep, NULL, 0);
        explicit_bzero(buf, len ? len : 1);
        return 0;
}

static int h_get_objects(struct core_client *cl, struct wire_msg *req, struct wire_msg *rep) {
        CK_ULONG s;
        if (!wire_get_ulong(req, &s) || wire_msg_read_done(req) < 0)
                return BAD_REQUEST;
        struct nbuf objs;
        nbuf_init(&objs, WIRE_FRAME_MAX);
        /* Room for the header, the CK_RV and the blob's length. */
        CK_RV rv = core_get_objects(cl, s, WIRE_FRAME_MAX - 64, &objs);
        reply_start(req, rep, rv);
        if (rv == CKR_OK)
                wire_put_blob(rep, objs.data, objs.len);
        else
                wire_put_blob(rep, NULL, 0);
        nbuf_done(&objs);
        return 0;
}

/* The handlers that are one of the shapes above applied to a core call (for
 * h_info_query: to the kind of info asked for). */
#define WITH_CORE(handler, shape, fn)                                                              \
        static int handler(struct core_client *cl, struct wire_msg *req, struct wire_msg *rep) { \
                return shape(cl, req, rep, fn);                                                    \
        }
WITH_CORE(h_get_slot_info, h_info_query, INFO_SLOT)
WITH_CORE(h_get_token_info, h_info_query, INFO_TOKEN)
WITH_CORE(h_get_session_info, h_info_query, INFO_SESSION)
WITH_CORE(h_get_mechanism_info, h_info_query, INFO_MECHANISM)
WITH_CORE(h_init_pin, h_data_in, core_init_pin)
WITH_CORE(h_set_pin, h_data2_in, core_set_pin)
WITH_CORE(h_destroy_object, h_handle_ulong, core_destroy_object)
WITH_CORE(h_op_end, h_handle_ulong, core_op_end)
WITH_CORE(h_digest_key, h_handle_ulong, core_digest_key)
WITH_CORE(h_close_session, h_handle_only, core_close_session)
WITH_CORE(h_close_all_sessions, h_handle_only, core_close_all_sessions)
WITH_CORE(h_logout, h_handle_only, core_logout)
WITH_CORE(h_find_objects_final, h_handle_only, core_find_objects_final)
WITH_CORE(h_sign_init, h_crypt_init, core_sign_init)
WITH_CORE(h_sign, h_data_out, core_sign)
WITH_CORE(h_sign_update, h_data_in, core_sign_update)
WITH_CORE(h_sign_final, h_final_out, core_sign_final)
WITH_CORE(h_verify_init, h_crypt_init, core_verify_init)
WITH_CORE(h_verify, h_data2_in, core_verify)
WITH_CORE(h_verify_update, h_data_in, core_verify_update)
WITH_CORE(h_verify_final, h_data_in, core_verify_final)
WITH_CORE(h_encrypt_init, h_crypt_init, core_encrypt_init)
WITH_CORE(h_encrypt, h_data_out, core_encrypt)
WITH_CORE(h_encrypt_update, h_data_out, core_encrypt_update)
WITH_CORE(h_encrypt_final, h_final_out, core_encrypt_final)
WITH_CORE(h_decrypt_init, h_crypt_init, core_decrypt_init)
WITH_CORE(h_decrypt, h_data_out, core_decrypt)
WITH_CORE(h_decrypt_update, h_data_out, core_decrypt_update)
WITH_CORE(h_decrypt_final, h_final_out, core_decrypt_final)
WITH_CORE(h_sign_recover_init, h_crypt_init, core_sign_recover_init)
WITH_CORE(h_sign_recover, h_data_out, core_sign_recover)
WITH_CORE(h_verify_recover_init, h_crypt_init, core_verify_recover_init)
WITH_CORE(h_verify_recover, h_data_out, core_verify_recover)
WITH_CORE(h_digest, h_data_out, core_digest)
WITH_CORE(h_digest_update, h_data_in, core_digest_update)
WITH_CORE(h_digest_final, h_final_out, core_digest_final)
WITH_CORE(h_seed_random, h_data_in, core_seed_random)
#undef WITH_CORE

typedef int (*p11_handler_fn)(struct core_client *cl, struct wire_msg *req, struct wire_msg *rep);

/* The handler of each P11 row of the op table (common/wire.h). */
static const p11_handler_fn p11_handlers[256] = {
#define ROW(name, num, req, rep, kind, route, reply, handler) ROW_##kind(num, handler)
#define ROW_P11(num, handler) [num] = handler,
#define ROW_LOOP(num, handler)
#define ROW_PUSH(num, handler)
#define ROW_MGMT(num, handler)
        WIRE_OPS(ROW)
#undef ROW
#undef ROW_P11
#undef ROW_LOOP
#undef ROW_PUSH
#undef ROW_MGMT
};

static int dispatch_op(struct core_client *cl, struct wire_msg *req, struct wire_msg *rep) {
        p11_handler_fn fn = req->opnum < ELEMENTSOF(p11_handlers) ? p11_handlers[req->opnum] : NULL;
        return fn ? fn(cl, req, rep) : BAD_REQUEST;
}

static int error_reply(struct wire_msg *req, struct wire_msg *rep, CK_RV rv) {
        return wire_error_reply(rep, req->opnum, req->id, rv);
}

static uint64_t n_dispatched;

uint64_t dispatch_p11_count(void) {
        return __atomic_load_n(&n_dispatched, __ATOMIC_RELAXED);
}

int dispatch_p11(struct core_client *cl, struct wire_msg *req, struct wire_msg *reply) {
        __atomic_add_fetch(&n_dispatched, 1, __ATOMIC_RELAXED);
        struct wire_msg rep;
        memset(&rep, 0, sizeof rep);

        if (!cl || !req || !reply)
                return -EINVAL;

        if (!dispatch_is_p11_op(req->opnum) || !req->op || (req->flags & (WIRE_F_REPLY | WIRE_F_EVENT)) ||
            wire_msg_failed(req)) {
                log_debug(LOG_SUB_WIRE, "bad request op %u flags 0x%x", req->opnum, req->flags);
                return error_reply(req, reply, CKR_ARGUMENTS_BAD);
        }

        int r = dispatch_op(cl, req, &rep);
        if (r == BAD_REQUEST) {
                if (rep.op)
                        wire_msg_done(&rep);
                log_debug(LOG_SUB_WIRE, "request %s (id %u) does not match its signature", wire_op_name(req->opnum),
                          req->id);
                return error_reply(req, reply, CKR_ARGUMENTS_BAD);
        }
        if (r < 0) {
                if (rep.op)
                        wire_msg_done(&rep);
                return error_reply(req, reply, CKR_HOST_MEMORY);
        }
        r = wire_msg_finish(&rep);
        if (r < 0) {
                log_debug(LOG_SUB_WIRE, "reply to %s (id %u) failed: %s", wire_op_name(req->opnum), req->id,
                          strerror(-r));
                wire_msg_done(&rep);
                return error_reply(req, reply, r == -EMSGSIZE ? CKR_DEVICE_MEMORY : CKR_GENERAL_ERROR);
        }
        *reply = rep;
        return 0;
}
