/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* PIV writes: card management key authentication (9B), GENERATE ASYMMETRIC
 * KEY PAIR, certificates written and deleted with PUT DATA (see piv.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/aes.h>
#include <mbedtls/des.h>
#include <mbedtls/platform_util.h>

#include "common/log.h"
#include "common/pkcrypto.h"
#include "common/secmem.h"
#include "common/util.h"
#include "piv-internal.h"

#define INS_GEN_AUTH 0x87
#define INS_GEN_KEYPAIR 0x47
#define REF_MGMT 0x9B
#define RESP_MAX 4096

static const uint8_t oid_p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
static const uint8_t oid_p384[] = { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22 };

/* ---------------------------------------------------------------- management key */

/* One block of the management key's cipher, ECB. */
static int mgmt_block(struct token *t, bool enc, const uint8_t *in, uint8_t *out) {
        int rc;
        if (t->mgmt_alg == PIV_MGMT_3DES) {
                mbedtls_des3_context c;
                mbedtls_des3_init(&c);
                rc = enc ? mbedtls_des3_set3key_enc(&c, t->mgmt_key) : mbedtls_des3_set3key_dec(&c, t->mgmt_key);
                if (rc == 0)
                        rc = mbedtls_des3_crypt_ecb(&c, in, out);
                mbedtls_des3_free(&c);
        } else {
                mbedtls_aes_context c;
                mbedtls_aes_init(&c);
                unsigned bits = (unsigned) t->mgmt_len * 8;
                rc = enc ? mbedtls_aes_setkey_enc(&c, t->mgmt_key, bits) : mbedtls_aes_setkey_dec(&c, t->mgmt_key, bits);
                if (rc == 0)
                        rc = mbedtls_aes_crypt_ecb(&c, enc ? MBEDTLS_AES_ENCRYPT : MBEDTLS_AES_DECRYPT, in, out);
                mbedtls_aes_free(&c);
        }
        return rc == 0 ? 0 : -EIO;
}

/* GENERAL AUTHENTICATE with 9B: data 7C {...} in; in the answer's 7C, the
 * element tag of bs bytes to *ret (it points into resp, RESP_MAX bytes).  A
 * refusal is logged as "PIV card: <refused> (<status>)<hint>". */
static int mgmt_exchange(struct token *t, const uint8_t *data, size_t len, uint8_t *resp, uint8_t tag, size_t bs,
                         const char *refused, const char *hint, struct apdu_tlv *ret) {
        size_t rlen = 0;
        uint16_t sw;
        struct apdu_tlv x;
        int r = piv_cmd(t, INS_GEN_AUTH, (uint8_t) t->mgmt_alg, REF_MGMT, data, len, APDU_LE_MAX, resp, RESP_MAX,
                        &rlen, &sw);
        if (r < 0)
                return r;
        if (sw != APDU_SW_OK) {
                log_notice("PIV card: %s (%04x)%s", refused, sw, hint);
                return sw == 0x6983 ? -EKEYREVOKED : -EROFS;
        }
        if (apdu_tlv_find(resp, rlen, 0x7C, &x) < 0 || apdu_tlv_find(x.value, x.len, tag, ret) < 0 || ret->len != bs)
                return -EIO;
        return 0;
}

/* Mutual authentication (SP 800-73-4 Appendix A.3 / part 2 3.2.4): the card
 * sends a witness encrypted under the key, we return it decrypted together
 * with our challenge, the card answers our challenge encrypted, which we
 * check (so a card that does not know the key is caught too). */
int piv_mgmt_auth(struct token *t) {
        size_t bs = t->mgmt_alg == PIV_MGMT_3DES ? 8 : 16;
        uint8_t cmd[64], witness[16], chal[16], expect[16];
        uint8_t *resp = malloc(RESP_MAX);
        size_t n = 0;
        struct apdu_tlv y;
        int r;

        if (!resp)
                return -ENOMEM;
        static const uint8_t ask[] = { 0x7C, 0x02, 0x80, 0x00 };
        r = mgmt_exchange(t, ask, sizeof ask, resp, 0x80, bs, "management key authentication refused",
                          ": wrong algorithm?", &y);
        if (r < 0)
                goto out;
        r = mgmt_block(t, false, y.value, witness);
        if (r >= 0)
                r = pkc_random(chal, bs);
        if (r >= 0)
                r = mgmt_block(t, true, chal, expect);
        if (r < 0)
                goto out;
        n = apdu_tlv_put_header(cmd, 0x7C, 2 * (2 + bs));
        cmd[n++] = 0x80;
        cmd[n++] = (uint8_t) bs;
        memcpy(cmd + n, witness, bs);
        n += bs;
        cmd[n++] = 0x81;
        cmd[n++] = (uint8_t) bs;
        memcpy(cmd + n, chal, bs);
        n += bs;
        r = mgmt_exchange(t, cmd, n, resp, 0x82, bs, "the management key was not accepted", "", &y);
        if (r < 0)
                goto out;
        unsigned diff = 0;
        for (size_t i = 0; i < bs; i++)
                diff |= y.value[i] ^ expect[i];
        if (diff) {
                log_warning("PIV card: the card's answer to our challenge is wrong: not the expected card");
                r = -EIO;
                goto out;
        }
        r = 0;
out:
        mbedtls_platform_zeroize(witness, sizeof witness);
        mbedtls_platform_zeroize(cmd, sizeof cmd);
        free(resp);
        return r;
}

/* ---------------------------------------------------------------- slot choice */

/* The slot named by a template's one-byte CKA_ID; NULL with *bad set when
 * it names none. */
static struct piv_key *slot_from_id(struct token *t, const struct nattrs *a, bool *bad) {
        const struct nattr *id = nattrs_get(a, CKA_ID);
        *bad = false;
        if (!id)
                return NULL;
        if (id->len == 1)
                for (size_t i = 0; i < PIV_NSLOTS; i++)
                        if (t->keys[i].def->id == id->value[0])
                                return &t->keys[i];
        *bad = true;
        return NULL;
}

static bool same_pubkey(const mbedtls_pk_context *a, const mbedtls_pk_context *b) {
        uint8_t da[1200], db[1200];
        int la = mbedtls_pk_write_pubkey_der((mbedtls_pk_context *) a, da, sizeof da);
        int lb = mbedtls_pk_write_pubkey_der((mbedtls_pk_context *) b, db, sizeof db);
        return la > 0 && la == lb && memcmp(da + sizeof da - la, db + sizeof db - lb, (size_t) la) == 0;
}

/* ---------------------------------------------------------------- certificates */

static int write_cert(struct token *t, struct piv_key *k, const uint8_t *der, size_t len) {
        size_t cap = len + 16;
        uint8_t *obj = malloc(cap);
        if (!obj)
                return -ENOMEM;
        size_t n = apdu_tlv_put_header(obj, 0x70, len);
        memcpy(obj + n, der, len);
        n += len;
        static const uint8_t tail[] = { 0x71, 0x01, 0x00, 0xFE, 0x00 }; /* uncompressed, no LRC */
        memcpy(obj + n, tail, sizeof tail);
        n += sizeof tail;
        int r = piv_put_data(t, k->def->tag, obj, n);
        free(obj);
        return r;
}

int piv_create_object(struct token *t, const CK_ATTRIBUTE *tmpl, CK_ULONG n, bool persistent, struct dobj *ret) {
        struct nattrs a, parsed;
        mbedtls_pk_context pk;
        CK_ULONG cls, ct;
        bool bad;
        int r;

        nattrs_init(&a);
        nattrs_init(&parsed);
        mbedtls_pk_init(&pk);
        pthread_mutex_lock(&t->lock);
        r = nattrs_from_template(&a, tmpl, n);
        if (r < 0)
                goto out;
        if (t->gone) {
                r = -ENODEV;
                goto out;
        }
        if (!nattrs_get_ulong(&a, CKA_CLASS, &cls)) {
                r = -ENODATA;
                goto out;
        }
        if (cls != CKO_CERTIFICATE) {
                /* PIV stores certificates; keys are only generated on the card. */
                r = -EDOM;
                goto out;
        }
        if (nattrs_get(&a, CKA_CERTIFICATE_TYPE) && (!nattrs_get_ulong(&a, CKA_CERTIFICATE_TYPE, &ct) || ct != CKC_X_509)) {
                r = -EDOM;
                goto out;
        }
        if (!persistent || nattrs_get_bool(&a, CKA_PRIVATE, false)) {
                /* Every PIV certificate is a public token object. */
                r = -EINVAL;
                goto out;
        }
        const struct nattr *v = nattrs_get(&a, CKA_VALUE);
        if (!v || !v->len) {
                r = -ENODATA;
                goto out;
        }
        r = pkc_cert_attrs(v->value, v->len, &parsed);
        if (r >= 0)
                r = pkc_pk_from_attrs(&parsed, &pk);
        if (r < 0) {
                r = r == -ENOMEM ? r : -EDOM;
                goto out;
        }
        struct piv_key *k = slot_from_id(t, &a, &bad);
        /* An id that names no slot (such as the SHA-1 of the public key,
         * which tools commonly use) leaves the choice to the key: the slot
         * whose key the certificate certifies. */
        if (!k)
                for (size_t i = 0; i < PIV_NSLOTS && !k; i++)
                        if (t->keys[i].present && same_pubkey(&t->keys[i].pk, &pk))
                                k = &t->keys[i];
        if (!k && bad) {
                r = -EDOM;
                goto out;
        }
        if (!k) {
                log_notice("PIV card: no key slot for this certificate (give CKA_ID 01-18)");
                r = -EINVAL;
                goto out;
        }
        if (k->present && k->local && !same_pubkey(&k->pk, &pk)) {
                /* We know the slot's key: a certificate for another key would
                 * make the slot unusable. */
                r = -EINVAL;
                goto out;
        }
        r = piv_mgmt_auth(t);
        if (r >= 0)
                r = write_cert(t, k, v->value, v->len);
        if (r < 0)
                goto out;
        bool local = k->local && k->present;
        r = piv_key_set_cert(k, v->value, v->len);
        if (r < 0) {
                /* Written, yet unusable for us (an algorithm PIV cannot use). */
                goto out;
        }
        k->local = local;
        r = piv_build_object(t, PIV_OBJ_CERT << 8 | k->def->ref, ret);
out:
        pthread_mutex_unlock(&t->lock);
        mbedtls_pk_free(&pk);
        nattrs_done(&parsed);
        nattrs_done(&a);
        return r;
}

int piv_destroy_object(struct token *t, uint64_t id) {
        int r;
        pthread_mutex_lock(&t->lock);
        struct piv_key *k = piv_key_by_ref(t, (uint8_t) id);
        if (t->gone)
                r = -ENODEV;
        else if (!k || !k->present || (id >> 8) < PIV_OBJ_CERT || (id >> 8) > PIV_OBJ_PRIV ||
                 ((id >> 8) == PIV_OBJ_CERT && !k->cert))
                r = -ENOENT;
        else if ((id >> 8) != PIV_OBJ_CERT)
                r = -EROFS; /* PIV cannot delete a key */
        else {
                r = piv_mgmt_auth(t);
                if (r >= 0)
                        r = piv_put_data(t, k->def->tag, NULL, 0);
                if (r >= 0) {
                        /* The key stays on the card and in the listing until
                         * removal (its public part is still known). */
                        free(k->cert);
                        k->cert = NULL;
                        k->cert_len = 0;
                }
        }
        pthread_mutex_unlock(&t->lock);
        return r;
}

/* ---------------------------------------------------------------- key generation */

/* Public key from a 7F49 template: 81 modulus, 82 exponent, or 86 point. */
static int pk_from_7f49(const uint8_t *resp, size_t len, uint8_t alg, mbedtls_pk_context *pk) {
        struct apdu_tlv tpl, a, b;
        struct nattrs at;
        if (apdu_tlv_find(resp, len, 0x7F49, &tpl) < 0)
                return -EIO;
        nattrs_init(&at);
        int r = nattrs_set_ulong(&at, CKA_CLASS, CKO_PUBLIC_KEY);
        if (alg == PIV_ALG_ECC256 || alg == PIV_ALG_ECC384) {
                if (apdu_tlv_find(tpl.value, tpl.len, 0x86, &a) < 0) {
                        r = -EIO;
                        goto out;
                }
                if (r >= 0) r = nattrs_set_ulong(&at, CKA_KEY_TYPE, CKK_EC);
                if (r >= 0)
                        r = alg == PIV_ALG_ECC256 ? nattrs_set(&at, CKA_EC_PARAMS, oid_p256, sizeof oid_p256)
                                                  : nattrs_set(&at, CKA_EC_PARAMS, oid_p384, sizeof oid_p384);
                if (r >= 0) r = nattrs_set(&at, CKA_EC_POINT, a.value, a.len);
        } else {
                if (apdu_tlv_find(tpl.value, tpl.len, 0x81, &a) < 0 || apdu_tlv_find(tpl.value, tpl.len, 0x82, &b) < 0) {
                        r = -EIO;
                        goto out;
                }
                if (r >= 0) r = nattrs_set_ulong(&at, CKA_KEY_TYPE, CKK_RSA);
                if (r >= 0) r = nattrs_set(&at, CKA_MODULUS, a.value, a.len);
                if (r >= 0) r = nattrs_set(&at, CKA_PUBLIC_EXPONENT, b.value, b.len);
        }
        if (r >= 0)
                r = pkc_pk_from_attrs(&at, pk);
        if (r < 0 && r != -ENOMEM)
                r = -EIO;
out:
        nattrs_done(&at);
        return r;
}

int piv_generate_key_pair(struct token *t, const CK_MECHANISM *mech, const CK_ATTRIBUTE *pub_tmpl, CK_ULONG pub_n,
                          const CK_ATTRIBUTE *priv_tmpl, CK_ULONG priv_n, struct dobj *ret_pub,
                          struct dobj *ret_priv) {
        struct nattrs pub, priv;
        mbedtls_pk_context pk;
        uint8_t *resp = NULL;
        size_t rlen = 0;
        uint16_t sw;
        uint8_t alg;
        bool bad;
        int r;

        if (!mech)
                return -EINVAL;
        if (mech->mechanism != CKM_RSA_PKCS_KEY_PAIR_GEN && mech->mechanism != CKM_EC_KEY_PAIR_GEN)
                return -ENOTSUP;
        nattrs_init(&pub);
        nattrs_init(&priv);
        mbedtls_pk_init(&pk);
        pthread_mutex_lock(&t->lock);
        r = nattrs_from_template(&pub, pub_tmpl, pub_n);
        if (r >= 0)
                r = nattrs_from_template(&priv, priv_tmpl, priv_n);
        if (r < 0)
                goto out;
        if (t->gone) {
                r = -ENODEV;
                goto out;
        }
        if (!t->user_logged) {
                r = -EPERM;
                goto out;
        }
        if (mech->mechanism == CKM_RSA_PKCS_KEY_PAIR_GEN) {
                CK_ULONG bits;
                if (!nattrs_get(&pub, CKA_MODULUS_BITS)) {
                        r = -ENODATA;
                        goto out;
                }
                if (!nattrs_get_ulong(&pub, CKA_MODULUS_BITS, &bits) || (bits != 2048 && bits != 1024)) {
                        r = -EDOM;
                        goto out;
                }
                const struct nattr *e = nattrs_get(&pub, CKA_PUBLIC_EXPONENT);
                if (e && e->len) {
                        /* The card picks 65537. */
                        size_t i = 0;
                        while (i < e->len && e->value[i] == 0)
                                i++;
                        if (e->len - i != 3 || e->value[i] != 1 || e->value[i + 1] != 0 || e->value[i + 2] != 1) {
                                r = -EDOM;
                                goto out;
                        }
                }
                alg = bits == 2048 ? PIV_ALG_RSA2048 : PIV_ALG_RSA1024;
        } else {
                const struct nattr *par = nattrs_get(&pub, CKA_EC_PARAMS);
                if (!par)
                        par = nattrs_get(&priv, CKA_EC_PARAMS);
                if (!par || !par->len) {
                        r = -ENODATA;
                        goto out;
                }
                if (par->len == sizeof oid_p256 && memcmp(par->value, oid_p256, par->len) == 0)
                        alg = PIV_ALG_ECC256;
                else if (par->len == sizeof oid_p384 && memcmp(par->value, oid_p384, par->len) == 0)
                        alg = PIV_ALG_ECC384;
                else {
                        r = -EDOM;
                        goto out;
                }
        }
        struct piv_key *k = slot_from_id(t, &priv, &bad);
        if (!k && !bad)
                k = slot_from_id(t, &pub, &bad);
        if (bad) {
                r = -EDOM;
                goto out;
        }
        for (size_t i = 0; !k && i < PIV_NSLOTS; i++)
                if (!t->keys[i].present)
                        k = &t->keys[i];
        if (!k) {
                r = -ENOSPC;
                goto out;
        }
        r = piv_mgmt_auth(t);
        if (r < 0)
                goto out;
        resp = malloc(RESP_MAX);
        if (!resp) {
                r = -ENOMEM;
                goto out;
        }
        uint8_t cmd[] = { 0xAC, 0x03, 0x80, 0x01, alg };
        r = piv_cmd_fit(t, INS_GEN_KEYPAIR, 0x00, k->def->ref, cmd, sizeof cmd, resp, RESP_MAX, &rlen, &sw);
        if (r < 0)
                goto out;
        r = piv_errno_from_sw(sw);
        if (r < 0) {
                log_notice("PIV card: key generation in slot %02X failed (%04x)", k->def->ref, sw);
                r = r == -EPERM ? -EROFS : r == -ENOTSUP || r == -EBADMSG ? -EDOM : -EIO;
                goto out;
        }
        r = pk_from_7f49(resp, rlen, alg, &pk);
        if (r < 0)
                goto out;
        bool had_cert = k->cert != NULL;
        piv_key_clear(k);
        k->pk = pk;
        mbedtls_pk_init(&pk);
        k->present = true;
        k->local = true;
        r = piv_key_set_alg(k);
        if (r < 0) {
                piv_key_clear(k);
                r = -EIO;
                goto out;
        }
        if (had_cert) {
                /* The old certificate certifies a key that no longer exists. */
                if (piv_put_data(t, k->def->tag, NULL, 0) < 0)
                        log_notice("PIV card: the old certificate of slot %02X could not be deleted",
                                   k->def->ref);
        }
        r = piv_build_object(t, PIV_OBJ_PUB << 8 | k->def->ref, ret_pub);
        if (r >= 0) {
                r = piv_build_object(t, PIV_OBJ_PRIV << 8 | k->def->ref, ret_priv);
                if (r < 0)
                        dobj_done(ret_pub);
        }
out:
        pthread_mutex_unlock(&t->lock);
        free(resp);
        mbedtls_pk_free(&pk);
        nattrs_done(&pub);
        nattrs_done(&priv);
        return r;
}
