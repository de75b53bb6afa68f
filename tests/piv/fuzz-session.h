/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The PIV fuzz target's session, shared with the corpus generator: the
 * driver opens a card and runs every kind of operation, so that a card's
 * answers (the fuzz input) reach every parser: ISO 7816-4 response chaining,
 * BER-TLV, certificates, 7F49 public keys, ECDSA signatures, management-key
 * authentication, PIN status words.
 *
 * Input format (card answers, in order): byte 0 selects the transport
 * (bit 0 set: short APDUs only), then records of u16 big-endian length and
 * that many bytes, each the whole response APDU to one exchange.  When the
 * records run out the card is gone (-ENODEV). */
#pragma once

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "drivers/piv/piv.h"

static inline void fuzz_piv_session(struct apdu_transport *tr) {
        struct token *t = NULL;
        char *key = NULL;
        if (piv_token_new(tr, NULL, "fuzz", &t, &key) < 0)
                return;
        free(key);

        struct token_desc d;
        (void) piv_ops.get_info(t, &d);
        struct dobj *v = NULL;
        size_t n = 0;
        (void) piv_ops.login(t, CKU_USER, "123456", 6);
        if (piv_ops.load_objects(t, &v, &n) == 0) {
                for (size_t i = 0; i < n; i++) {
                        CK_ULONG cls = 0, kt = 0;
                        if (!nattrs_get_ulong(&v[i].attrs, CKA_CLASS, &cls) || cls != CKO_PRIVATE_KEY)
                                continue;
                        (void) nattrs_get_ulong(&v[i].attrs, CKA_KEY_TYPE, &kt);
                        uint8_t in[256], out[1024];
                        size_t ol = sizeof out;
                        memset(in, 0x42, sizeof in);
                        CK_MECHANISM m = { kt == CKK_RSA ? CKM_RSA_PKCS : CKM_ECDSA, NULL, 0 };
                        (void) piv_ops.sign(t, v[i].id, &m, in, 32, out, &ol);
                        if (kt == CKK_RSA) {
                                CK_MECHANISM dm = { CKM_RSA_PKCS, NULL, 0 };
                                ol = sizeof out;
                                (void) piv_ops.decrypt(t, v[i].id, &dm, in, sizeof in, out, &ol);
                                CK_RSA_PKCS_OAEP_PARAMS op = { CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, NULL, 0 };
                                CK_MECHANISM om = { CKM_RSA_PKCS_OAEP, &op, sizeof op };
                                ol = sizeof out;
                                (void) piv_ops.decrypt(t, v[i].id, &om, in, sizeof in, out, &ol);
                        }
                }
                /* A certificate write: the first certificate back into its slot. */
                for (size_t i = 0; i < n; i++) {
                        CK_ULONG cls = 0;
                        const struct nattr *val = nattrs_get(&v[i].attrs, CKA_VALUE);
                        if (!nattrs_get_ulong(&v[i].attrs, CKA_CLASS, &cls) || cls != CKO_CERTIFICATE || !val)
                                continue;
                        CK_ATTRIBUTE tmpl[] = { { CKA_CLASS, &cls, sizeof cls }, { CKA_VALUE, val->value, val->len } };
                        struct dobj o = { 0 };
                        if (piv_ops.create_object(t, tmpl, ELEMENTSOF(tmpl), true, &o) == 0)
                                dobj_done(&o);
                        break;
                }
                dobj_free_array(v, n);
        }
        static const uint8_t p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
        uint8_t id = 0x07;
        CK_ATTRIBUTE pt[] = { { CKA_EC_PARAMS, (void *) p256, sizeof p256 } };
        CK_ATTRIBUTE kt[] = { { CKA_ID, &id, 1 } };
        CK_MECHANISM gen = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
        struct dobj pub = { 0 }, priv = { 0 };
        if (piv_ops.generate_key_pair(t, &gen, pt, 1, kt, 1, &pub, &priv) == 0) {
                dobj_done(&pub);
                dobj_done(&priv);
        }
        (void) piv_ops.set_pin(t, CKU_USER, "123456", 6, "654321", 6);
        (void) piv_ops.logout(t);
        (void) piv_ops.login(t, CKU_SO, "12345678", 8);
        (void) piv_ops.init_pin(t, "123456", 6);
        (void) piv_ops.logout(t);
        (void) piv_ops.get_info(t, &d);
        piv_ops.free(t);
}
