/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Mechanism parameters on the wire.
 *
 * An 'M' field carries a mechanism type and a parameter blob.  Parameters
 * that are C structs are never sent as raw memory (CK_RSA_PKCS_OAEP_PARAMS
 * holds a pointer); they travel in this explicit big-endian form:
 *
 *   RSA PSS family (CKM_RSA_PKCS_PSS, CKM_SHA*_RSA_PKCS_PSS):
 *       u64 hashAlg, u64 mgf, u64 sLen                    (24 bytes)
 *   CKM_RSA_PKCS_OAEP:
 *       u64 hashAlg, u64 mgf, u64 source, blob pSourceData (NULL marker ok)
 *   CKM_AES_GCM:
 *       blob pIv, u64 ulIvBits, blob pAAD, u64 ulTagBits
 *
 * Every other mechanism's parameter is a plain byte string and is sent as
 * it is.  The module encodes (mechparam_encode), the daemon's dispatcher
 * decodes back into the native struct (mechparam_decode).  Header-only so
 * that both sides share it without the module linking the daemon. */
#pragma once

#include <stdbool.h>
#include <string.h>

#include "common/buffer.h"
#include "common/p11.h"

enum mechparam_kind {
        MECHPARAM_RAW,
        MECHPARAM_PSS,
        MECHPARAM_OAEP,
        MECHPARAM_GCM,
};

static inline enum mechparam_kind mechparam_kind(CK_MECHANISM_TYPE t) {
        switch (t) {
        case CKM_RSA_PKCS_PSS:
        case CKM_SHA1_RSA_PKCS_PSS:
        case CKM_SHA224_RSA_PKCS_PSS:
        case CKM_SHA256_RSA_PKCS_PSS:
        case CKM_SHA384_RSA_PKCS_PSS:
        case CKM_SHA512_RSA_PKCS_PSS:
                return MECHPARAM_PSS;
        case CKM_RSA_PKCS_OAEP:
                return MECHPARAM_OAEP;
        case CKM_AES_GCM:
                return MECHPARAM_GCM;
        default:
                return MECHPARAM_RAW;
        }
}

/* Client side.  For a struct parameter, writes its wire form into out
 * (nbuf_init'd by the caller) and points ret->pParameter at out's data; for
 * a raw one, *ret = *in.  false: the parameter has the wrong size for its
 * mechanism (CKR_MECHANISM_PARAM_INVALID). */
static inline bool mechparam_encode(const CK_MECHANISM *in, struct nbuf *out, CK_MECHANISM *ret) {
        *ret = *in;
        switch (mechparam_kind(in->mechanism)) {
        case MECHPARAM_PSS: {
                if (!in->pParameter || in->ulParameterLen != sizeof(CK_RSA_PKCS_PSS_PARAMS))
                        return false;
                const CK_RSA_PKCS_PSS_PARAMS *p = in->pParameter;
                nbuf_put_u64(out, p->hashAlg);
                nbuf_put_u64(out, p->mgf);
                nbuf_put_u64(out, p->sLen);
                break;
        }
        case MECHPARAM_OAEP: {
                if (!in->pParameter || in->ulParameterLen != sizeof(CK_RSA_PKCS_OAEP_PARAMS))
                        return false;
                const CK_RSA_PKCS_OAEP_PARAMS *p = in->pParameter;
                if (!p->pSourceData && p->ulSourceDataLen)
                        return false;
                nbuf_put_u64(out, p->hashAlg);
                nbuf_put_u64(out, p->mgf);
                nbuf_put_u64(out, p->source);
                nbuf_put_blob(out, p->pSourceData, p->pSourceData ? p->ulSourceDataLen : 0);
                break;
        }
        case MECHPARAM_GCM: {
                if (!in->pParameter || in->ulParameterLen != sizeof(CK_GCM_PARAMS))
                        return false;
                const CK_GCM_PARAMS *p = in->pParameter;
                if ((!p->pIv && p->ulIvLen) || (!p->pAAD && p->ulAADLen))
                        return false;
                nbuf_put_blob(out, p->pIv, p->pIv ? p->ulIvLen : 0);
                nbuf_put_u64(out, p->ulIvBits);
                nbuf_put_blob(out, p->pAAD, p->pAAD ? p->ulAADLen : 0);
                nbuf_put_u64(out, p->ulTagBits);
                break;
        }
        default:
                return true;
        }
        if (nbuf_failed(out))
                return false;
        ret->pParameter = out->data;
        ret->ulParameterLen = out->len;
        return true;
}

/* Storage for a decoded parameter. */
union mechparam_native {
        CK_RSA_PKCS_PSS_PARAMS pss;
        CK_RSA_PKCS_OAEP_PARAMS oaep;
        CK_GCM_PARAMS gcm;
};

/* Server side: mech->pParameter points at the wire form (inside the request
 * frame); on success a struct parameter is rewritten into *storage and mech
 * points at it (pSourceData points into the frame).  false: malformed. */
static inline bool mechparam_decode(CK_MECHANISM *mech, union mechparam_native *storage) {
        struct nbuf b;
        uint64_t a, m, s;
        memset(storage, 0, sizeof *storage);
        switch (mechparam_kind(mech->mechanism)) {
        case MECHPARAM_PSS:
                if (!mech->pParameter)
                        return false;
                nbuf_init_const(&b, mech->pParameter, mech->ulParameterLen);
                if (!nbuf_get_u64(&b, &a) || !nbuf_get_u64(&b, &m) || !nbuf_get_u64(&b, &s) ||
                    nbuf_remaining(&b) != 0)
                        return false;
                storage->pss.hashAlg = a;
                storage->pss.mgf = m;
                storage->pss.sLen = s;
                mech->pParameter = &storage->pss;
                mech->ulParameterLen = sizeof storage->pss;
                return true;
        case MECHPARAM_OAEP: {
                const uint8_t *p;
                size_t n;
                if (!mech->pParameter)
                        return false;
                nbuf_init_const(&b, mech->pParameter, mech->ulParameterLen);
                if (!nbuf_get_u64(&b, &a) || !nbuf_get_u64(&b, &m) || !nbuf_get_u64(&b, &s) ||
                    !nbuf_get_blob(&b, &p, &n) || nbuf_remaining(&b) != 0)
                        return false;
                storage->oaep.hashAlg = a;
                storage->oaep.mgf = m;
                storage->oaep.source = s;
                storage->oaep.pSourceData = (void *)p;
                storage->oaep.ulSourceDataLen = n;
                mech->pParameter = &storage->oaep;
                mech->ulParameterLen = sizeof storage->oaep;
                return true;
        }
        case MECHPARAM_GCM: {
                const uint8_t *iv, *aad;
                size_t iv_n, aad_n;
                if (!mech->pParameter)
                        return false;
                nbuf_init_const(&b, mech->pParameter, mech->ulParameterLen);
                if (!nbuf_get_blob(&b, &iv, &iv_n) || !nbuf_get_u64(&b, &a) || !nbuf_get_blob(&b, &aad, &aad_n) ||
                    !nbuf_get_u64(&b, &s) || nbuf_remaining(&b) != 0)
                        return false;
                storage->gcm.pIv = iv_n ? (void *)iv : NULL;
                storage->gcm.ulIvLen = iv_n;
                storage->gcm.ulIvBits = a;
                storage->gcm.pAAD = aad_n ? (void *)aad : NULL;
                storage->gcm.ulAADLen = aad_n;
                storage->gcm.ulTagBits = s;
                mech->pParameter = &storage->gcm;
                mech->ulParameterLen = sizeof storage->gcm;
                return true;
        }
        default:
                return true;
        }
}
