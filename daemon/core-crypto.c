/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* PKCS#11 semantics over the drivers, mechanisms (a token's own and the
 * combined hash-then-sign ones) and the operations: sign, verify, encrypt,
 * decrypt, digest, random.  See core.h, and core-internal.h for the locks
 * and the state the files share. */
#include "core-internal.h"

#include <assert.h>
#include <errno.h>
#include <mbedtls/constant_time.h>
#include <mbedtls/md.h>
#include <mbedtls/platform_util.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/pkcrypto.h"
#include "common/secmem.h"
#include "audit.h"
#include "common/ckr.h"
#include "pincache.h"
#include "peer.h"
#include "pinentry.h"
#include "common/util.h"


/* ------------------------------------------------------------ mechanisms */

struct combined {
        CK_MECHANISM_TYPE mech, raw;
};

static const struct combined combined_mechs[] = {
        { CKM_SHA1_RSA_PKCS, CKM_RSA_PKCS },         { CKM_SHA224_RSA_PKCS, CKM_RSA_PKCS },
        { CKM_SHA256_RSA_PKCS, CKM_RSA_PKCS },       { CKM_SHA384_RSA_PKCS, CKM_RSA_PKCS },
        { CKM_SHA512_RSA_PKCS, CKM_RSA_PKCS },       { CKM_SHA1_RSA_PKCS_PSS, CKM_RSA_PKCS_PSS },
        { CKM_SHA224_RSA_PKCS_PSS, CKM_RSA_PKCS_PSS }, { CKM_SHA256_RSA_PKCS_PSS, CKM_RSA_PKCS_PSS },
        { CKM_SHA384_RSA_PKCS_PSS, CKM_RSA_PKCS_PSS }, { CKM_SHA512_RSA_PKCS_PSS, CKM_RSA_PKCS_PSS },
        { CKM_ECDSA_SHA1, CKM_ECDSA },               { CKM_ECDSA_SHA224, CKM_ECDSA },
        { CKM_ECDSA_SHA256, CKM_ECDSA },             { CKM_ECDSA_SHA384, CKM_ECDSA },
        { CKM_ECDSA_SHA512, CKM_ECDSA },
};

static const CK_MECHANISM_TYPE digest_mechs[] = {
        CKM_SHA_1, CKM_SHA224, CKM_SHA256, CKM_SHA384, CKM_SHA512,
};

static int mech_add(struct tok *k, CK_MECHANISM_TYPE type, CK_ULONG min, CK_ULONG max, CK_FLAGS flags) {
        for (size_t i = 0; i < k->nmechs; i++)
                if (k->mech_types[i] == type) {
                        k->mech_info[i].flags |= flags;
                        return 0;
                }
        CK_MECHANISM_TYPE *nt = realloc(k->mech_types, (k->nmechs + 1) * sizeof *nt);
        if (!nt)
                return -ENOMEM;
        k->mech_types = nt;
        CK_MECHANISM_INFO *ni = realloc(k->mech_info, (k->nmechs + 1) * sizeof *ni);
        if (!ni)
                return -ENOMEM;
        k->mech_info = ni;
        k->mech_types[k->nmechs] = type;
        k->mech_info[k->nmechs] = (CK_MECHANISM_INFO){ min, max, flags };
        k->nmechs++;
        return 0;
}

const CK_MECHANISM_INFO *mech_lookup(const struct tok *k, CK_MECHANISM_TYPE type) {
        for (size_t i = 0; i < k->nmechs; i++)
                if (k->mech_types[i] == type)
                        return &k->mech_info[i];
        return NULL;
}

/* The token's full mechanism list: its raw ones (plus verify/encrypt done
 * here), the combined ones built on them, and digests. */
int tok_build_mechs(struct tok *k) {
        const struct driver_mech *dm = NULL;
        size_t n = 0;
        int r = k->ops->get_mechanisms(k->t, &dm, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                CK_FLAGS f = dm[i].flags;
                switch (dm[i].type) {
                case CKM_RSA_PKCS:
                case CKM_RSA_X_509:
                        if (f & CKF_SIGN)
                                f |= CKF_VERIFY | CKF_SIGN_RECOVER | CKF_VERIFY_RECOVER;
                        if (f & CKF_DECRYPT)
                                f |= CKF_ENCRYPT;
                        break;
                case CKM_RSA_PKCS_OAEP:
                        if (f & CKF_DECRYPT)
                                f |= CKF_ENCRYPT;
                        break;
                case CKM_RSA_PKCS_PSS:
                case CKM_ECDSA:
                        if (f & CKF_SIGN)
                                f |= CKF_VERIFY;
                        break;
                default:
                        break;
                }
                if ((r = mech_add(k, dm[i].type, dm[i].min_key, dm[i].max_key, f)) < 0)
                        return r;
        }
        for (size_t i = 0; i < ELEMENTSOF(combined_mechs); i++) {
                const CK_MECHANISM_INFO *raw = mech_lookup(k, combined_mechs[i].raw);
                if (!raw || !(raw->flags & CKF_SIGN))
                        continue;
                CK_FLAGS f = (raw->flags & (CKF_HW | CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS)) |
                             CKF_SIGN | CKF_VERIFY;
                if ((r = mech_add(k, combined_mechs[i].mech, raw->ulMinKeySize, raw->ulMaxKeySize, f)) < 0)
                        return r;
        }
        for (size_t i = 0; i < ELEMENTSOF(digest_mechs); i++)
                if ((r = mech_add(k, digest_mechs[i], 0, 0, CKF_DIGEST)) < 0)
                        return r;
        return 0;
}

/* ------------------------------------------------------------ operations */

static CK_FLAGS op_flag(enum op_kind kind) {
        switch (kind) {
        case OP_SIGN: return CKF_SIGN;
        case OP_VERIFY: return CKF_VERIFY;
        case OP_ENCRYPT: return CKF_ENCRYPT;
        case OP_DECRYPT: return CKF_DECRYPT;
        case OP_SIGN_RECOVER: return CKF_SIGN_RECOVER;
        case OP_VERIFY_RECOVER: return CKF_VERIFY_RECOVER;
        default: return CKF_DIGEST;
        }
}

static CK_ATTRIBUTE_TYPE op_attr(enum op_kind kind) {
        switch (kind) {
        case OP_SIGN: return CKA_SIGN;
        case OP_VERIFY: return CKA_VERIFY;
        case OP_ENCRYPT: return CKA_ENCRYPT;
        case OP_SIGN_RECOVER: return CKA_SIGN_RECOVER;
        case OP_VERIFY_RECOVER: return CKA_VERIFY_RECOVER;
        default: return CKA_DECRYPT;
        }
}

static bool mech_key_type_ok(CK_MECHANISM_TYPE raw, CK_KEY_TYPE kt) {
        switch (raw) {
        case CKM_RSA_PKCS:
        case CKM_RSA_X_509:
        case CKM_RSA_PKCS_PSS:
        case CKM_RSA_PKCS_OAEP:
                return kt == CKK_RSA;
        case CKM_ECDSA:
                return kt == CKK_EC;
        case CKM_SHA_1_HMAC:
        case CKM_SHA256_HMAC:
        case CKM_SHA384_HMAC:
        case CKM_SHA512_HMAC:
                return kt == CKK_GENERIC_SECRET;
        case CKM_AES_ECB:
        case CKM_AES_CBC:
        case CKM_AES_CBC_PAD:
        case CKM_AES_CTR:
        case CKM_AES_GCM:
                return kt == CKK_AES;
        default:
                return false;
        }
}

/* The parameter of a secret-key mechanism: an IV of a block for CBC, a
 * counter of 1 to 128 bits for CTR, an IV of at least 12 bytes and a tag
 * of 96 to 128 bits for GCM, none for ECB, HMAC and the AES key wraps
 * (their default IV only). */
bool sym_param_ok(const CK_MECHANISM *m) {
        switch (m->mechanism) {
        case CKM_AES_CBC:
        case CKM_AES_CBC_PAD:
                return m->ulParameterLen == 16;
        case CKM_AES_CTR: {
                const CK_AES_CTR_PARAMS *p = m->pParameter;
                return m->ulParameterLen == sizeof *p && p->ulCounterBits >= 1 && p->ulCounterBits <= 128;
        }
        case CKM_AES_GCM: {
                const CK_GCM_PARAMS *p = m->pParameter;
                return m->ulParameterLen == sizeof *p && p->pIv && p->ulIvLen >= 12 && p->ulIvLen <= 256 &&
                       (p->pAAD || !p->ulAADLen) && p->ulAADLen <= MAX_ACCUMULATE && p->ulTagBits >= 96 &&
                       p->ulTagBits <= 128 && p->ulTagBits % 8 == 0;
        }
        case CKM_AES_ECB:
        case CKM_AES_KEY_WRAP:
        case CKM_AES_KEY_WRAP_PAD:
        case CKM_SHA_1_HMAC:
        case CKM_SHA256_HMAC:
        case CKM_SHA384_HMAC:
        case CKM_SHA512_HMAC:
                return m->ulParameterLen == 0;
        default:
                return true;
        }
}

/* Keeps a copy of the mechanism's parameter for the operation; GCM's
 * IV and AAD are copied with it, behind the struct, so that it holds no
 * pointer to the caller's memory. */
static CK_RV param_keep(struct op *o, const CK_MECHANISM *mech) {
        const CK_GCM_PARAMS *g = mech->mechanism == CKM_AES_GCM ? mech->pParameter : NULL;
        size_t extra = g ? g->ulIvLen + g->ulAADLen : 0;
        if (!mech->ulParameterLen)
                return CKR_OK;
        o->param = malloc(mech->ulParameterLen + extra);
        if (!o->param)
                return CKR_HOST_MEMORY;
        memcpy(o->param, mech->pParameter, mech->ulParameterLen);
        o->param_len = mech->ulParameterLen;
        if (g) {
                CK_GCM_PARAMS *c = (CK_GCM_PARAMS *)o->param;
                c->pIv = o->param + sizeof *c;
                memcpy(c->pIv, g->pIv, g->ulIvLen);
                c->pAAD = g->ulAADLen ? c->pIv + g->ulIvLen : NULL;
                if (g->ulAADLen)
                        memcpy(c->pAAD, g->pAAD, g->ulAADLen);
        }
        return CKR_OK;
}

/* Sets up an operation: checks the mechanism and key, fills *o. */
static CK_RV op_setup(struct core_client *cl, struct session *s, enum op_kind kind, const CK_MECHANISM *mech,
                      CK_OBJECT_HANDLE key, struct op *o) {
        struct tok *k = s->tok;
        const CK_MECHANISM_INFO *mi = mech_lookup(k, mech->mechanism);
        if (!mi || !(mi->flags & op_flag(kind)))
                return CKR_MECHANISM_INVALID;
        if (mech->ulParameterLen && !mech->pParameter)
                return CKR_ARGUMENTS_BAD;
        CK_MECHANISM_TYPE h_, raw_ = mech->mechanism;
        pkc_combined_mech(mech->mechanism, &h_, &raw_);
        if (raw_ == CKM_RSA_PKCS_PSS && mech->ulParameterLen != sizeof(CK_RSA_PKCS_PSS_PARAMS))
                return CKR_MECHANISM_PARAM_INVALID;
        if (!sym_param_ok(mech))
                return CKR_MECHANISM_PARAM_INVALID;
        if (raw_ == CKM_RSA_PKCS_OAEP) {
                /* Only an empty label: the copy kept below must hold no pointer. */
                const CK_RSA_PKCS_OAEP_PARAMS *op = mech->pParameter;
                if (mech->ulParameterLen != sizeof *op || op->ulSourceDataLen != 0)
                        return CKR_MECHANISM_PARAM_INVALID;
        }
        o->mech = mech->mechanism;
        o->raw = mech->mechanism;
        if (kind == OP_DIGEST) {
                o->md = mbedtls_md_info_from_type(pkc_md_type(mech->mechanism));
                if (!o->md)
                        return CKR_MECHANISM_INVALID;
        } else {
                CK_MECHANISM_TYPE hash;
                if (pkc_combined_mech(mech->mechanism, &hash, &o->raw)) {
                        if (kind != OP_SIGN && kind != OP_VERIFY)
                                return CKR_MECHANISM_INVALID;
                        o->md = mbedtls_md_info_from_type(pkc_md_type(hash));
                        if (!o->md)
                                return CKR_MECHANISM_INVALID;
                }
        }
        if (o->md) {
                mbedtls_md_init(&o->mdctx);
                o->md_started = true;
                if (mbedtls_md_setup(&o->mdctx, o->md, 0) != 0 || mbedtls_md_starts(&o->mdctx) != 0)
                        return CKR_HOST_MEMORY;
        }
        if (param_keep(o, mech) != CKR_OK)
                return CKR_HOST_MEMORY;
        nbuf_init(&o->data, MAX_ACCUMULATE);
        o->data.secure = true;
        if (kind == OP_DIGEST)
                return CKR_OK;

        CK_RV rv = tok_load(k);
        if (rv != CKR_OK)
                return rv;
        bool user = is_user(cl, k);
        core_lock(cl->core);
        struct cobj *ko = obj_find_locked(k, key, cl, user);
        CK_ULONG cls = 0, kt = 0;
        bool allowed = false, priv = false;
        struct nattrs attrs;
        nattrs_init(&attrs);
        if (ko) {
                nattrs_get_ulong(&ko->attrs, CKA_CLASS, &cls);
                nattrs_get_ulong(&ko->attrs, CKA_KEY_TYPE, &kt);
                allowed = nattrs_get_bool(&ko->attrs, op_attr(kind), true);
                priv = nattrs_get_bool(&ko->attrs, CKA_PRIVATE, false);
                o->key_private = priv;
                o->always_auth = nattrs_get_bool(&ko->attrs, CKA_ALWAYS_AUTHENTICATE, false);
                o->key_id = ko->id;
                if (op_kind_public(kind))
                        rv = nattrs_copy(&attrs, &ko->attrs) < 0 ? CKR_HOST_MEMORY : CKR_OK;
        }
        core_unlock(cl->core);
        if (!ko)
                return CKR_KEY_HANDLE_INVALID;
        if (rv != CKR_OK)
                goto out;
        o->key = key;
        o->key_type = kt;
        o->secret = cls == CKO_SECRET_KEY;
        if (o->secret) {
                if (kind == OP_SIGN_RECOVER || kind == OP_VERIFY_RECOVER)
                        rv = CKR_KEY_TYPE_INCONSISTENT;
                else if (priv && !user)
                        rv = CKR_USER_NOT_LOGGED_IN;
        } else if (op_kind_private(kind)) {
                if (cls != CKO_PRIVATE_KEY)
                        rv = CKR_KEY_TYPE_INCONSISTENT;
                else if (priv && !user)
                        rv = CKR_USER_NOT_LOGGED_IN;
        } else if (cls != CKO_PUBLIC_KEY && cls != CKO_PRIVATE_KEY)
                rv = CKR_KEY_TYPE_INCONSISTENT;
        if (rv == CKR_OK && !allowed)
                rv = CKR_KEY_FUNCTION_NOT_PERMITTED;
        if (rv == CKR_OK && !mech_key_type_ok(o->raw, kt))
                rv = CKR_KEY_TYPE_INCONSISTENT;
        if (rv == CKR_OK && op_kind_public(kind) && !o->secret) {
                mbedtls_pk_init(&o->pk);
                o->has_pk = true;
                int r = pkc_pk_from_attrs(&attrs, &o->pk);
                if (r < 0)
                        rv = r == -ENOMEM ? CKR_HOST_MEMORY : CKR_KEY_TYPE_INCONSISTENT;
        }
out:
        nattrs_done(&attrs);
        return rv;
}

static CK_RV op_init(struct core_client *cl, CK_SESSION_HANDLE h, enum op_kind kind, CK_MECHANISM_PTR mech,
                     CK_OBJECT_HANDLE key) {
        if (!mech)
                return CKR_ARGUMENTS_BAD;
        struct session *s;
        CK_RV rv = session_get(cl, h, &s);
        if (rv != CKR_OK)
                return rv;
        struct op *o = &s->ops[kind];
        if (o->active) {
                session_put(s);
                return CKR_OPERATION_ACTIVE;
        }
        rv = op_setup(cl, s, kind, mech, key, o);
        if (rv == CKR_OK)
                o->active = true;
        else
                op_reset(o);
        session_put(s);
        return rv;
}

/* Gets the session with an active op of this kind. */
static CK_RV op_get(struct core_client *cl, CK_SESSION_HANDLE h, enum op_kind kind, struct session **ret_s,
                    struct op **ret_o) {
        _cleanup_session_ struct session *s = NULL;
        CK_RV rv = session_get(cl, h, &s);
        if (rv != CKR_OK)
                return rv;
        if (!s->ops[kind].active)
                return CKR_OPERATION_NOT_INITIALIZED;
        *ret_o = &s->ops[kind];
        *ret_s = TAKE_PTR(s);
        return CKR_OK;
}

/* Ends session h's operation of that kind, if one is active. */
static CK_RV op_end(struct core_client *cl, CK_SESSION_HANDLE h, enum op_kind kind) {
        _cleanup_session_ struct session *s = NULL;
        CK_RV rv = session_get(cl, h, &s);
        if (rv != CKR_OK)
                return rv;
        if (s->ops[kind].active)
                op_reset(&s->ops[kind]);
        return CKR_OK;
}

CK_RV core_op_end(struct core_client *cl, CK_SESSION_HANDLE h, CK_ULONG init_op) {
        switch (init_op) {
        case WIRE_OP_SIGN_INIT: return op_end(cl, h, OP_SIGN);
        case WIRE_OP_VERIFY_INIT: return op_end(cl, h, OP_VERIFY);
        case WIRE_OP_ENCRYPT_INIT: return op_end(cl, h, OP_ENCRYPT);
        case WIRE_OP_DECRYPT_INIT: return op_end(cl, h, OP_DECRYPT);
        case WIRE_OP_DIGEST_INIT: return op_end(cl, h, OP_DIGEST);
        case WIRE_OP_SIGN_RECOVER_INIT: return op_end(cl, h, OP_SIGN_RECOVER);
        case WIRE_OP_VERIFY_RECOVER_INIT: return op_end(cl, h, OP_VERIFY_RECOVER);
        default: return CKR_ARGUMENTS_BAD;
        }
}

/* CKR_ARGUMENTS_BAD from a call that would have used the operation of that
 * kind: PKCS#11 has every return but a length query and
 * CKR_BUFFER_TOO_SMALL end it (issue 13 item 2). */
static CK_RV bad_args(struct core_client *cl, CK_SESSION_HANDLE h, enum op_kind kind) {
        (void)op_end(cl, h, kind);
        return CKR_ARGUMENTS_BAD;
}

/* The bytes the raw mechanism gets: for a hashing op, the hash (in a
 * DigestInfo for CKM_RSA_PKCS); else the data itself.  in/in_len is the
 * single-part data, or NULL to use what was accumulated / hashed so far. */
static CK_RV op_input(struct op *o, const uint8_t *in, size_t in_len, uint8_t *buf, size_t bufsize,
                      const uint8_t **ret, size_t *ret_len) {
        if (!o->md) {
                if (in) {
                        *ret = in;
                        *ret_len = in_len;
                } else {
                        *ret = o->data.data ? o->data.data : (const uint8_t *)"";
                        *ret_len = o->data.len;
                }
                return CKR_OK;
        }
        uint8_t hash[MBEDTLS_MD_MAX_SIZE];
        size_t hlen = mbedtls_md_get_size(o->md);
        if (in && mbedtls_md_update(&o->mdctx, in, in_len) != 0)
                return CKR_FUNCTION_FAILED;
        if (mbedtls_md_finish(&o->mdctx, hash) != 0)
                return CKR_FUNCTION_FAILED;
        if (o->raw == CKM_RSA_PKCS) {
                CK_MECHANISM_TYPE hm = CKM_SHA256;
                CK_MECHANISM_TYPE raw;
                pkc_combined_mech(o->mech, &hm, &raw);
                size_t n = bufsize;
                if (pkc_digest_info(hm, hash, hlen, buf, &n) < 0)
                        return CKR_FUNCTION_FAILED;
                *ret_len = n;
        } else {
                memcpy(buf, hash, hlen);
                *ret_len = hlen;
        }
        *ret = buf;
        return CKR_OK;
}

static CK_RV op_update(struct op *o, const uint8_t *part, size_t len) {
        if (!part && len)
                return CKR_ARGUMENTS_BAD;
        o->multipart = true;
        if (o->md)
                return mbedtls_md_update(&o->mdctx, part, len) == 0 ? CKR_OK : CKR_FUNCTION_FAILED;
        nbuf_put_raw(&o->data, part, len);
        return nbuf_failed(&o->data) ? CKR_DATA_LEN_RANGE : CKR_OK;
}

/* C_*Update: feeds the operation; out_len (encrypt/decrypt) is set to 0,
 * as RSA gives all its output with the final call.  An error ends it. */
static CK_RV update_run(struct core_client *cl, CK_SESSION_HANDLE h, enum op_kind kind, const uint8_t *part,
                        size_t len, CK_ULONG_PTR out_len) {
        struct session *s;
        struct op *o;
        CK_RV rv = op_get(cl, h, kind, &s, &o);
        if (rv != CKR_OK)
                return rv;
        rv = op_update(o, part, len);
        if (rv != CKR_OK)
                op_reset(o);
        else if (out_len)
                *out_len = 0;
        session_put(s);
        return rv;
}

/* Runs an operation in the driver: sign or decrypt with a private key,
 * any with a secret key. */
static int drv_private_op(struct tok *k, enum op_kind kind, struct op *o, const uint8_t *in, size_t in_len,
                          uint8_t *out, size_t *outlen) {
        CK_MECHANISM m = { o->raw, o->param, o->param_len };
        _cleanup_tok_unlock_ struct tok *held = k->ops->parallel_crypto ? NULL : tok_lock(k);
        if (kind == OP_ENCRYPT)
                return k->ops->encrypt ? k->ops->encrypt(k->t, o->key_id, &m, in, in_len, out, outlen) : -ENOTSUP;
        if (kind != OP_DECRYPT)
                return k->ops->sign(k->t, o->key_id, &m, in, in_len, out, outlen);
        return k->ops->decrypt(k->t, o->key_id, &m, in, in_len, out, outlen);
}

/* The token says a logged-in client is not logged in: the card lost its
 * verified state (reset by something else, or power-cycled).  The client's
 * cached PIN, if any, is presented again; true when the token took it.
 * Keys that want the PIN for each use (CKA_ALWAYS_AUTHENTICATE) never come
 * here. */
static bool represent_pin(struct core_client *cl, struct tok *k) {
        if (!is_user(cl, k))
                return false;
        char *pin = NULL;
        size_t len = 0;
        if (cached_pin(cl, k, &pin, &len) != CKR_OK)
                return false;
        tok_lock(k);
        int r = k->ops->login(k->t, CKU_USER, pin, len);
        tok_unlock(k);
        pin_judged(cl, k, r, true, NULL, 0);
        secure_free(pin);
        log_notice("slot %lu: the token had lost its login; the cached PIN was presented again: %s",
                   (unsigned long)k->slot, r == 0 ? "accepted" : "refused");
        audit(cl, k, "login", NULL, rv_from_errno(r), "the token had lost its login: cached PIN presented again");
        return r == 0;
}

/* Shared tail of sign / decrypt (single-part and final): length queries and
 * a too-small buffer keep the operation; anything else ends it. */
static CK_RV private_op(struct core_client *cl, CK_SESSION_HANDLE h, enum op_kind kind, const uint8_t *in,
                        size_t in_len, bool final, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
        if (!out_len || (!final && !in && in_len))
                return bad_args(cl, h, kind);
        struct session *s;
        struct op *o;
        CK_RV rv = op_get(cl, h, kind, &s, &o);
        if (rv != CKR_OK)
                return rv;
        struct tok *k = s->tok;
        bool keep = false;
        if (!final && o->multipart) {
                rv = CKR_OPERATION_ACTIVE;
                keep = true;
                goto out;
        }
        if (o->key_private && !is_user(cl, k)) {
                rv = CKR_USER_NOT_LOGGED_IN;
                goto out;
        }
        if (o->always_auth && !o->context_ok) {
                rv = CKR_USER_NOT_LOGGED_IN;
                keep = true;
                goto out;
        }
        uint8_t buf[128];
        const uint8_t *input = NULL;
        size_t input_len = 0;
        /* Without a hash, the input is at hand already: a secret key's
         * output size depends on it. */
        if (!o->md && (rv = op_input(o, final ? NULL : in, in_len, buf, sizeof buf, &input, &input_len)) != CKR_OK)
                goto out;
        size_t need = 0;
        int r = drv_private_op(k, kind, o, input, input_len, NULL, &need);
        if (r < 0) {
                rv = r == -ERANGE && kind == OP_DECRYPT ? CKR_ENCRYPTED_DATA_LEN_RANGE : rv_from_errno(r);
                goto out;
        }
        if (!out) {
                *out_len = need;
                keep = true;
                goto out;
        }
        /* Hashing consumes the digest context: only do it once we know the
         * output fits (length checks above use the key size). */
        if (*out_len < need && kind != OP_DECRYPT) {
                *out_len = need;
                rv = CKR_BUFFER_TOO_SMALL;
                keep = true;
                goto out;
        }
        if (o->md && (rv = op_input(o, final ? NULL : in, in_len, buf, sizeof buf, &input, &input_len)) != CKR_OK)
                goto out;
        size_t ol = *out_len;
        r = drv_private_op(k, kind, o, input, input_len, out, &ol);
        if (r == -EPERM && !o->always_auth && represent_pin(cl, k)) {
                ol = *out_len;
                r = drv_private_op(k, kind, o, input, input_len, out, &ol);
        }
        if (r == -ENOBUFS) {
                *out_len = ol;
                rv = CKR_BUFFER_TOO_SMALL;
                keep = !o->md; /* a consumed hash cannot be replayed */
                goto out;
        }
        if (r == -EBADMSG && kind == OP_DECRYPT)
                rv = CKR_ENCRYPTED_DATA_INVALID;
        else if (r == -ERANGE && kind == OP_DECRYPT)
                rv = CKR_ENCRYPTED_DATA_LEN_RANGE;
        else
                rv = rv_from_errno(r);
        if (rv == CKR_OK)
                *out_len = ol;
        explicit_bzero(buf, sizeof buf);
out:
        if (!keep)
                op_reset(o);
        session_put(s);
        return rv;
}

/* private_op, with a usage record for each signature or decryption made or
 * refused (not for length queries and short buffers, which the caller
 * repeats). */
static CK_RV private_op_recorded(struct core_client *cl, CK_SESSION_HANDLE h, enum op_kind kind, const uint8_t *in,
                                 size_t in_len, bool final, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
        char label[65] = "";
        struct tok *k = NULL;
        struct session *s;
        if (session_get(cl, h, &s) == CKR_OK) {
                core_lock(cl->core);
                k = s->tok;
                k->refs++;
                if (s->ops[kind].active)
                        obj_label_locked(k, s->ops[kind].key, label, sizeof label);
                core_unlock(cl->core);
                session_put(s);
        }
        CK_RV rv = private_op(cl, h, kind, in, in_len, final, out, out_len);
        if (k) {
                if (out && rv != CKR_BUFFER_TOO_SMALL && rv != CKR_SESSION_HANDLE_INVALID)
                        audit(cl, k, kind == OP_DECRYPT ? "decrypt" : "sign", label, rv, NULL);
                tok_unref(k);
        }
        return rv;
}

CK_RV core_sign_init(struct core_client *cl, CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key) {
        return op_init(cl, h, OP_SIGN, mech, key);
}

CK_RV core_sign(struct core_client *cl, CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig,
                CK_ULONG_PTR sig_len) {
        if (!data && len)
                return bad_args(cl, h, OP_SIGN);
        return private_op_recorded(cl, h, OP_SIGN, data ? data : (CK_BYTE_PTR) "", len, false, sig, sig_len);
}

CK_RV core_sign_update(struct core_client *cl, CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG len) {
        return update_run(cl, h, OP_SIGN, part, len, NULL);
}

CK_RV core_sign_final(struct core_client *cl, CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len) {
        return private_op_recorded(cl, h, OP_SIGN, NULL, 0, true, sig, sig_len);
}

CK_RV core_decrypt_init(struct core_client *cl, CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key) {
        return op_init(cl, h, OP_DECRYPT, mech, key);
}

CK_RV core_decrypt(struct core_client *cl, CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR out,
                   CK_ULONG_PTR out_len) {
        if (!data && len)
                return bad_args(cl, h, OP_DECRYPT);
        return private_op_recorded(cl, h, OP_DECRYPT, data ? data : (CK_BYTE_PTR) "", len, false, out, out_len);
}

CK_RV core_decrypt_update(struct core_client *cl, CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG len,
                          CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
        if (!out_len)
                return bad_args(cl, h, OP_DECRYPT);
        return update_run(cl, h, OP_DECRYPT, part, len, out_len);
}

CK_RV core_decrypt_final(struct core_client *cl, CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
        return private_op_recorded(cl, h, OP_DECRYPT, NULL, 0, true, out, out_len);
}

CK_RV core_verify_init(struct core_client *cl, CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key) {
        return op_init(cl, h, OP_VERIFY, mech, key);
}

/* Verification with a secret key: the driver computes the MAC, compared
 * here in constant time. */
static CK_RV mac_verify(struct core_client *cl, struct tok *k, struct op *o, const uint8_t *in, size_t in_len,
                        const uint8_t *sig, size_t sig_len) {
        uint8_t mac[MBEDTLS_MD_MAX_SIZE];
        size_t n = sizeof mac;
        if (o->key_private && !is_user(cl, k))
                return CKR_USER_NOT_LOGGED_IN;
        int r = drv_private_op(k, OP_SIGN, o, in, in_len, mac, &n);
        CK_RV rv = rv_from_errno(r);
        if (rv == CKR_OK && n != sig_len)
                rv = CKR_SIGNATURE_LEN_RANGE;
        else if (rv == CKR_OK && mbedtls_ct_memcmp(mac, sig, n) != 0)
                rv = CKR_SIGNATURE_INVALID;
        mbedtls_platform_zeroize(mac, sizeof mac);
        return rv;
}

static CK_RV verify_run(struct core_client *cl, CK_SESSION_HANDLE h, const uint8_t *data, size_t len, bool final,
                        const uint8_t *sig, size_t sig_len) {
        if (!sig && sig_len)
                return bad_args(cl, h, OP_VERIFY);
        struct session *s;
        struct op *o;
        CK_RV rv = op_get(cl, h, OP_VERIFY, &s, &o);
        if (rv != CKR_OK)
                return rv;
        if (!final && o->multipart) {
                session_put(s);
                return CKR_OPERATION_ACTIVE;
        }
        uint8_t buf[128];
        const uint8_t *input;
        size_t input_len;
        rv = op_input(o, final ? NULL : data, len, buf, sizeof buf, &input, &input_len);
        if (rv == CKR_OK && o->secret)
                rv = mac_verify(cl, s->tok, o, input, input_len, sig ? sig : (const uint8_t *)"", sig_len);
        else if (rv == CKR_OK) {
                CK_MECHANISM m = { o->raw, o->param, o->param_len };
                int r = pkc_verify(&o->pk, &m, input, input_len, sig ? sig : (const uint8_t *)"", sig_len);
                if (r == -EBADMSG)
                        rv = CKR_SIGNATURE_INVALID;
                else if (r == -ERANGE)
                        rv = CKR_SIGNATURE_LEN_RANGE;
                else
                        rv = rv_from_errno(r);
        }
        op_reset(o);
        session_put(s);
        return rv;
}

CK_RV core_verify(struct core_client *cl, CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig,
                  CK_ULONG sig_len) {
        if (!data && len)
                return bad_args(cl, h, OP_VERIFY);
        return verify_run(cl, h, data ? data : (CK_BYTE_PTR) "", len, false, sig, sig_len);
}

CK_RV core_verify_update(struct core_client *cl, CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG len) {
        return update_run(cl, h, OP_VERIFY, part, len, NULL);
}

CK_RV core_verify_final(struct core_client *cl, CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG sig_len) {
        return verify_run(cl, h, NULL, 0, true, sig, sig_len);
}

CK_RV core_sign_recover_init(struct core_client *cl, CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech,
                             CK_OBJECT_HANDLE key) {
        return op_init(cl, h, OP_SIGN_RECOVER, mech, key);
}

CK_RV core_sign_recover(struct core_client *cl, CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig,
                        CK_ULONG_PTR sig_len) {
        if (!data && len)
                return bad_args(cl, h, OP_SIGN_RECOVER);
        return private_op_recorded(cl, h, OP_SIGN_RECOVER, data ? data : (CK_BYTE_PTR) "", len, false, sig, sig_len);
}

CK_RV core_verify_recover_init(struct core_client *cl, CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech,
                               CK_OBJECT_HANDLE key) {
        return op_init(cl, h, OP_VERIFY_RECOVER, mech, key);
}

/* Length queries and a too-small buffer keep the operation; anything else
 * ends it. */
CK_RV core_verify_recover(struct core_client *cl, CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG sig_len,
                          CK_BYTE_PTR data, CK_ULONG_PTR data_len) {
        if ((!sig && sig_len) || !data_len)
                return bad_args(cl, h, OP_VERIFY_RECOVER);
        _cleanup_session_ struct session *s = NULL;
        struct op *o;
        CK_RV rv = op_get(cl, h, OP_VERIFY_RECOVER, &s, &o);
        if (rv != CKR_OK)
                return rv;
        CK_MECHANISM m = { o->raw, o->param, o->param_len };
        size_t n = data ? *data_len : 0;
        int r = pkc_verify_recover(&o->pk, &m, sig ? sig : (const uint8_t *)"", sig_len, data, &n);
        if (r == 0 || r == -ENOBUFS)
                *data_len = n;
        if (r == -ENOBUFS)
                return CKR_BUFFER_TOO_SMALL;
        if (r == 0 && !data)
                return CKR_OK;
        rv = r == -EBADMSG ? CKR_SIGNATURE_INVALID : r == -ERANGE ? CKR_SIGNATURE_LEN_RANGE : rv_from_errno(r);
        op_reset(o);
        return rv;
}

CK_RV core_encrypt_init(struct core_client *cl, CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key) {
        return op_init(cl, h, OP_ENCRYPT, mech, key);
}

static CK_RV encrypt_run(struct core_client *cl, CK_SESSION_HANDLE h, const uint8_t *data, size_t len, bool final,
                         CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
        if (!out_len)
                return bad_args(cl, h, OP_ENCRYPT);
        struct session *s;
        struct op *o;
        CK_RV rv = op_get(cl, h, OP_ENCRYPT, &s, &o);
        if (rv != CKR_OK)
                return rv;
        bool keep = false;
        const uint8_t *in = final ? (o->data.data ? o->data.data : (const uint8_t *)"") : data;
        size_t in_len = final ? o->data.len : len;
        CK_MECHANISM m = { o->raw, o->param, o->param_len };
        size_t ol = out ? *out_len : 0;
        int r = !o->secret                               ? pkc_encrypt(&o->pk, &m, in, in_len, out, &ol)
                : o->key_private && !is_user(cl, s->tok) ? -EPERM
                                                         : drv_private_op(s->tok, OP_ENCRYPT, o, in, in_len, out, &ol);
        if (!out && r == 0) {
                keep = true;
                *out_len = ol;
        } else if (r == -ENOBUFS) {
                keep = true;
                *out_len = ol;
                rv = CKR_BUFFER_TOO_SMALL;
        } else {
                rv = rv_from_errno(r);
                if (rv == CKR_OK)
                        *out_len = ol;
        }
        if (!keep)
                op_reset(o);
        session_put(s);
        return rv;
}

CK_RV core_encrypt(struct core_client *cl, CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR out,
                   CK_ULONG_PTR out_len) {
        if (!data && len)
                return bad_args(cl, h, OP_ENCRYPT);
        return encrypt_run(cl, h, data ? data : (CK_BYTE_PTR) "", len, false, out, out_len);
}

CK_RV core_encrypt_update(struct core_client *cl, CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG len,
                          CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
        if (!out_len)
                return bad_args(cl, h, OP_ENCRYPT);
        return update_run(cl, h, OP_ENCRYPT, part, len, out_len);
}

CK_RV core_encrypt_final(struct core_client *cl, CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
        return encrypt_run(cl, h, NULL, 0, true, out, out_len);
}

CK_RV core_digest_init(struct core_client *cl, CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech) {
        return op_init(cl, h, OP_DIGEST, mech, CK_INVALID_HANDLE);
}

static CK_RV digest_run(struct core_client *cl, CK_SESSION_HANDLE h, const uint8_t *data, size_t len, bool final,
                        CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
        if (!out_len)
                return bad_args(cl, h, OP_DIGEST);
        _cleanup_session_ struct session *s = NULL;
        struct op *o;
        CK_RV rv = op_get(cl, h, OP_DIGEST, &s, &o);
        if (rv != CKR_OK)
                return rv;
        size_t need = mbedtls_md_get_size(o->md);
        if (!final && o->multipart)
                return CKR_OPERATION_ACTIVE;
        if (!out) {
                *out_len = need;
                return CKR_OK;
        }
        if (*out_len < need) {
                *out_len = need;
                return CKR_BUFFER_TOO_SMALL;
        }
        if (!final && mbedtls_md_update(&o->mdctx, data, len) != 0)
                rv = CKR_FUNCTION_FAILED;
        else if (mbedtls_md_finish(&o->mdctx, out) != 0)
                rv = CKR_FUNCTION_FAILED;
        else
                *out_len = need;
        op_reset(o);
        return rv;
}

CK_RV core_digest(struct core_client *cl, CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR out,
                  CK_ULONG_PTR out_len) {
        if (!data && len)
                return bad_args(cl, h, OP_DIGEST);
        return digest_run(cl, h, data ? data : (CK_BYTE_PTR) "", len, false, out, out_len);
}

CK_RV core_digest_update(struct core_client *cl, CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG len) {
        return update_run(cl, h, OP_DIGEST, part, len, NULL);
}

CK_RV core_digest_final(struct core_client *cl, CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
        return digest_run(cl, h, NULL, 0, true, out, out_len);
}

/* A driver's digest_key hands the key's value to this, for the running
 * digest. */
static int digest_feed(void *ctx, const uint8_t *p, size_t n) {
        return mbedtls_md_update(ctx, p, n) == 0 ? 0 : -EIO;
}

/* C_DigestKey: a secret key's value into the running digest, in the
 * driver (the core never holds it); the operation becomes multi-part.
 * An error ends it. */
CK_RV core_digest_key(struct core_client *cl, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key) {
        _cleanup_session_ struct session *s = NULL;
        struct op *o;
        CK_RV rv = op_get(cl, h, OP_DIGEST, &s, &o);
        if (rv != CKR_OK)
                return rv;
        struct tok *k = s->tok;
        if ((rv = tok_load(k)) == CKR_OK) {
                bool user = is_user(cl, k);
                core_lock(cl->core);
                struct cobj *ko = obj_find_locked(k, key, cl, user);
                CK_ULONG cls = 0;
                uint64_t id = ko ? ko->id : 0;
                bool priv = ko && nattrs_get_bool(&ko->attrs, CKA_PRIVATE, false);
                if (ko)
                        nattrs_get_ulong(&ko->attrs, CKA_CLASS, &cls);
                core_unlock(cl->core);
                if (!ko)
                        rv = CKR_KEY_HANDLE_INVALID;
                else if (cls != CKO_SECRET_KEY || !k->ops->digest_key)
                        rv = CKR_KEY_INDIGESTIBLE;
                else if (priv && !user)
                        rv = CKR_USER_NOT_LOGGED_IN;
                else {
                        tok_lock(k);
                        int r = k->ops->digest_key(k->t, id, digest_feed, &o->mdctx);
                        tok_unlock(k);
                        rv = r == -ENOKEY ? CKR_KEY_INDIGESTIBLE : rv_from_errno(r);
                }
        }
        o->multipart = true;
        if (rv != CKR_OK)
                op_reset(o);
        return rv;
}

CK_RV core_generate_random(struct core_client *cl, CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG len) {
        if (!out && len)
                return CKR_ARGUMENTS_BAD;
        struct session *s;
        CK_RV rv = session_get(cl, h, &s);
        if (rv != CKR_OK)
                return rv;
        struct tok *k = s->tok;
        int r;
        if (k->ops->random) {
                tok_lock(k);
                r = k->ops->random(k->t, out, len);
                tok_unlock(k);
        } else
                r = pkc_random(out, len);
        session_put(s);
        return rv_from_errno(r);
}

CK_RV core_seed_random(struct core_client *cl, CK_SESSION_HANDLE h, CK_BYTE_PTR seed, CK_ULONG len) {
        if (!seed && len)
                return CKR_ARGUMENTS_BAD;
        struct session *s;
        CK_RV rv = session_get(cl, h, &s);
        if (rv != CKR_OK)
                return rv;
        session_put(s);
        /* The DRBG reseeds itself from the OS; extra seed material is mixed in. */
        return rv_from_errno(pkc_seed(seed, len));
}
