/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Helpers shared by the soft token unit tests. */
#pragma once

#include "unit.h"

#include "common/pkcrypto.h"
#include "drivers/soft/soft.h"

#define USER_PIN "123456"
#define SO_PIN "12345678"

static inline struct token *soft_new(const char *dir, const char *label, unsigned max_tries, char **ret_path) {
        char *path = NULL;
        struct token *t = NULL;
        CHECK_OK(soft_token_create(dir, label, USER_PIN, strlen(USER_PIN), SO_PIN, strlen(SO_PIN), max_tries, &path));
        CHECK_OK(soft_token_open(path, &t));
        if (ret_path)
                *ret_path = path;
        else
                free(path);
        return t;
}

static inline int soft_login(struct token *t, CK_USER_TYPE u, const char *pin) {
        return soft_ops.login(t, u, pin, strlen(pin));
}

static inline struct token_desc soft_info(struct token *t) {
        struct token_desc d;
        CHECK_OK(soft_ops.get_info(t, &d));
        return d;
}

static inline const struct dobj *find_obj(const struct dobj *v, size_t n, uint64_t id) {
        for (size_t i = 0; i < n; i++)
                if (v[i].id == id)
                        return &v[i];
        return NULL;
}

/* Generates a key pair: kind "rsa2048", "p256", "p384". */
static inline void soft_keygen(struct token *t, const char *kind, bool token, const char *id,
                               struct dobj *pub, struct dobj *priv) {
        CK_BBOOL tok = token ? CK_TRUE : CK_FALSE;
        CK_ULONG bits = 2048;
        static const uint8_t p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
        static const uint8_t p384[] = { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22 };
        CK_ATTRIBUTE pt[4], vt[4];
        CK_ULONG pn = 0, vn = 0;
        CK_MECHANISM m = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
        pt[pn++] = (CK_ATTRIBUTE){ CKA_TOKEN, &tok, sizeof tok };
        vt[vn++] = (CK_ATTRIBUTE){ CKA_TOKEN, &tok, sizeof tok };
        if (id) {
                pt[pn++] = (CK_ATTRIBUTE){ CKA_ID, (void *) id, strlen(id) };
                vt[vn++] = (CK_ATTRIBUTE){ CKA_LABEL, (void *) id, strlen(id) };
        }
        if (strcmp(kind, "rsa2048") == 0) {
                m.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
                pt[pn++] = (CK_ATTRIBUTE){ CKA_MODULUS_BITS, &bits, sizeof bits };
        } else if (strcmp(kind, "p256") == 0)
                pt[pn++] = (CK_ATTRIBUTE){ CKA_EC_PARAMS, (void *) p256, sizeof p256 };
        else
                pt[pn++] = (CK_ATTRIBUTE){ CKA_EC_PARAMS, (void *) p384, sizeof p384 };
        memset(pub, 0, sizeof *pub);
        memset(priv, 0, sizeof *priv);
        CHECK_OK(soft_ops.generate_key_pair(t, &m, pt, pn, vt, vn, pub, priv));
}

/* Signs a random hash with the token and checks it with pkc_verify against
 * the public object's attributes; a flipped bit must fail. */
static inline void sign_and_verify(struct token *t, const struct dobj *pub, uint64_t priv_id, CK_MECHANISM_TYPE mt) {
        mbedtls_pk_context pk;
        uint8_t hash[32], in[64], sig[1024];
        size_t in_len, sl = 0;
        CK_RSA_PKCS_PSS_PARAMS pp = { CKM_SHA256, CKG_MGF1_SHA256, 32 };
        CK_MECHANISM m = { mt, NULL, 0 };

        mbedtls_pk_init(&pk);
        CHECK_OK(pkc_pk_from_attrs(&pub->attrs, &pk));
        CHECK_OK(pkc_random(hash, sizeof hash));
        if (mt == CKM_RSA_PKCS) {
                in_len = sizeof in;
                CHECK_OK(pkc_digest_info(CKM_SHA256, hash, 32, in, &in_len));
        } else {
                memcpy(in, hash, 32);
                in_len = 32;
        }
        if (mt == CKM_RSA_PKCS_PSS) {
                m.pParameter = &pp;
                m.ulParameterLen = sizeof pp;
        }
        size_t want;
        CHECK_OK(pkc_key_size(&pk, NULL, &want));
        CHECK_OK(soft_ops.sign(t, priv_id, &m, in, in_len, NULL, &sl));
        CHECK(sl == want);
        sl = 8;
        CHECK_RC(soft_ops.sign(t, priv_id, &m, in, in_len, sig, &sl), -ENOBUFS);
        CHECK(sl == want);
        sl = sizeof sig;
        CHECK_OK(soft_ops.sign(t, priv_id, &m, in, in_len, sig, &sl));
        CHECK(sl == want);
        CHECK_OK(pkc_verify(&pk, &m, in, in_len, sig, sl));
        sig[sl - 3] ^= 0x10;
        CHECK_RC(pkc_verify(&pk, &m, in, in_len, sig, sl), -EBADMSG);
        mbedtls_pk_free(&pk);
}
