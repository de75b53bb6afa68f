/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The PIV token inside the daemon core: added with core_add_token, used
 * through core_* calls as a PKCS#11 client would (token info, find, login,
 * combined hash-and-sign mechanisms with the core hashing and the driver
 * padding, 9C's CKU_CONTEXT_SPECIFIC, verify by the core with the public key
 * object), checked against the certificate with mbedTLS; and a card that
 * vanishes gives CKR_DEVICE_REMOVED. */
#include <mbedtls/sha256.h>
#include <unistd.h>

#include "common/pkcrypto.h"
#include "common/util.h"
#include "daemon/core.h"
#include "daemon/pincache.h"
#include "drivers/piv/piv.h"
#include "piv-test.h"

#define CHECK_CKR(expr, want)                                                                   \
        do {                                                                                    \
                CK_RV _rv = (expr);                                                             \
                if (_rv != (CK_RV) (want)) {                                                    \
                        fprintf(stderr, "%s:%d: %s = 0x%lx, want 0x%lx\n", __FILE__, __LINE__, #expr, \
                                (unsigned long) _rv, (unsigned long) (want));                   \
                        exit(EXIT_FAILURE);                                                     \
                }                                                                               \
        } while (0)

static CK_OBJECT_HANDLE find1(struct core_client *cl, CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls, uint8_t id) {
        CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof cls }, { CKA_ID, &id, 1 } };
        CK_OBJECT_HANDLE h[4];
        CK_ULONG n = 0;
        CHECK_CKR(core_find_objects_init(cl, s, t, 2), CKR_OK);
        CHECK_CKR(core_find_objects(cl, s, h, 4, &n), CKR_OK);
        CHECK_CKR(core_find_objects_final(cl, s), CKR_OK);
        return n == 1 ? h[0] : CK_INVALID_HANDLE;
}

/* The certificate's key, read through the core. */
static void cert_pk(struct core_client *cl, CK_SESSION_HANDLE s, uint8_t id, mbedtls_pk_context *pk) {
        CK_OBJECT_HANDLE h = find1(cl, s, CKO_CERTIFICATE, id);
        CHECK(h != CK_INVALID_HANDLE);
        uint8_t der[8192];
        CK_ATTRIBUTE a = { CKA_VALUE, der, sizeof der };
        CHECK_CKR(core_get_attribute_value(cl, s, h, &a, 1), CKR_OK);
        struct nattrs at;
        nattrs_init(&at);
        CHECK_OK(nattrs_set_ulong(&at, CKA_CLASS, CKO_CERTIFICATE));
        CHECK_OK(nattrs_set(&at, CKA_VALUE, der, a.ulValueLen));
        mbedtls_pk_init(pk);
        CHECK_OK(pkc_pk_from_attrs(&at, pk));
        nattrs_done(&at);
}

int main(void) {
        const char *tmp = unit_tmpdir_new();
        char dir[1100];
        snprintf(dir, sizeof dir, "%s/card", tmp);
        test_make_card(dir, NULL);
        struct vpiv *card = test_open_card(dir);

        struct core *c = NULL;
        CHECK_OK(core_new(&c));
        struct test_tr *tr = test_tr_new(card, 255);
        struct token *t = NULL;
        char *key = NULL;
        CHECK_OK(piv_token_new(&tr->base, NULL, "test reader", &t, &key));
        CK_SLOT_ID slot = 0;
        CHECK_OK(core_add_token(c, &piv_ops, t, key, &slot));
        struct core_peer peer = { .pid = getpid() };
        struct core_client *cl = NULL;
        CHECK_OK(core_client_new(c, &peer, &cl));

        CK_TOKEN_INFO ti;
        CHECK_CKR(core_get_token_info(cl, slot, &ti), CKR_OK);
        CHECK(memcmp(ti.serialNumber, key + 4, strlen(key + 4)) == 0);
        CHECK(ti.flags & CKF_LOGIN_REQUIRED);
        free(key);

        CK_SESSION_HANDLE s;
        CHECK_CKR(core_open_session(cl, slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, &s), CKR_OK);
        /* Private keys are hidden until login. */
        CHECK(find1(cl, s, CKO_PRIVATE_KEY, 0x01) == CK_INVALID_HANDLE);
        CHECK_CKR(core_login(cl, s, CKU_USER, (CK_UTF8CHAR_PTR) "000000", 6), CKR_PIN_INCORRECT);
        CHECK_CKR(core_get_token_info(cl, slot, &ti), CKR_OK);
        CHECK(ti.flags & CKF_USER_PIN_COUNT_LOW);
        CHECK_CKR(core_login(cl, s, CKU_USER, (CK_UTF8CHAR_PTR) "123456", 6), CKR_OK);

        static const uint8_t msg[] = "a contract to sign, through the daemon core";
        uint8_t hash[32], sig[512];
        mbedtls_sha256_ret(msg, sizeof msg, hash, 0);

        /* RSA: CKM_SHA256_RSA_PKCS: the core hashes, the driver pads. */
        CK_OBJECT_HANDLE k = find1(cl, s, CKO_PRIVATE_KEY, 0x01), pub = find1(cl, s, CKO_PUBLIC_KEY, 0x01);
        CHECK(k != CK_INVALID_HANDLE && pub != CK_INVALID_HANDLE);
        CK_MECHANISM m = { CKM_SHA256_RSA_PKCS, NULL, 0 };
        CK_ULONG sl = sizeof sig;
        CHECK_CKR(core_sign_init(cl, s, &m, k), CKR_OK);
        CHECK_CKR(core_sign(cl, s, (CK_BYTE_PTR) msg, sizeof msg, sig, &sl), CKR_OK);
        CHECK(sl == 256);
        CHECK_CKR(core_verify_init(cl, s, &m, pub), CKR_OK);
        CHECK_CKR(core_verify(cl, s, (CK_BYTE_PTR) msg, sizeof msg, sig, sl), CKR_OK);
        mbedtls_pk_context pk;
        cert_pk(cl, s, 0x01, &pk);
        uint8_t di[64];
        size_t dl = sizeof di;
        CHECK_OK(pkc_digest_info(CKM_SHA256, hash, sizeof hash, di, &dl));
        CK_MECHANISM raw = { CKM_RSA_PKCS, NULL, 0 };
        CHECK_OK(pkc_verify(&pk, &raw, di, dl, sig, sl));
        mbedtls_pk_free(&pk);

        /* ECDSA with 9C: the core wants CKU_CONTEXT_SPECIFIC before each. */
        k = find1(cl, s, CKO_PRIVATE_KEY, 0x02);
        CHECK(k != CK_INVALID_HANDLE);
        CK_MECHANISM em = { CKM_ECDSA_SHA256, NULL, 0 };
        for (int round = 0; round < 2; round++) {
                sl = sizeof sig;
                CHECK_CKR(core_sign_init(cl, s, &em, k), CKR_OK);
                CHECK_CKR(core_sign(cl, s, (CK_BYTE_PTR) msg, sizeof msg, sig, &sl), CKR_USER_NOT_LOGGED_IN);
                CHECK_CKR(core_login(cl, s, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR_PTR) "123456", 6), CKR_OK);
                CHECK_CKR(core_sign(cl, s, (CK_BYTE_PTR) msg, sizeof msg, sig, &sl), CKR_OK);
                CHECK(sl == 64);
                cert_pk(cl, s, 0x02, &pk);
                CK_MECHANISM ecdsa = { CKM_ECDSA, NULL, 0 };
                CHECK_OK(pkc_verify(&pk, &ecdsa, hash, sizeof hash, sig, sl));
                mbedtls_pk_free(&pk);
        }

        /* The card loses its login behind the daemon's back (reset): the
         * PIN cached at login is presented again and the signature goes
         * through; with no cached PIN it is refused. */
        k = find1(cl, s, CKO_PRIVATE_KEY, 0x01);
        vpiv_reset(card);
        sl = sizeof sig;
        CHECK_CKR(core_sign_init(cl, s, &m, k), CKR_OK);
        CHECK_CKR(core_sign(cl, s, (CK_BYTE_PTR) msg, sizeof msg, sig, &sl), CKR_OK);
        CHECK(pincache_flush_all(core_pin_cache(c)) == 1);
        vpiv_reset(card);
        sl = sizeof sig;
        CHECK_CKR(core_sign_init(cl, s, &m, k), CKR_OK);
        CHECK_CKR(core_sign(cl, s, (CK_BYTE_PTR) msg, sizeof msg, sig, &sl), CKR_USER_NOT_LOGGED_IN);
        CHECK_CKR(core_logout(cl, s), CKR_OK);
        CHECK_CKR(core_login(cl, s, CKU_USER, (CK_UTF8CHAR_PTR) "123456", 6), CKR_OK);

        /* Login belongs to the process, not to the card: another client
         * (process) sees no private key and cannot sign while the card is
         * verified because of cl; when cl logs out, the card is returned
         * to its unverified state. */
        struct core_peer peer_b = { .pid = getpid() + 1 };
        struct core_client *b = NULL;
        CHECK_OK(core_client_new(c, &peer_b, &b));
        CK_SESSION_HANDLE sb;
        CHECK_CKR(core_open_session(b, slot, CKF_SERIAL_SESSION, &sb), CKR_OK);
        CHECK(find1(b, sb, CKO_PRIVATE_KEY, 0x01) == CK_INVALID_HANDLE);
        CK_SESSION_INFO si;
        CHECK_CKR(core_get_session_info(b, sb, &si), CKR_OK);
        CHECK(si.state == CKS_RO_PUBLIC_SESSION);
        CHECK_CKR(core_sign_init(b, sb, &m, k), CKR_KEY_HANDLE_INVALID);
        static const uint8_t pin_status[] = { 0x00, 0x20, 0x00, 0x80 };
        uint8_t rapdu[16];
        size_t rl = 0;
        CHECK_OK(vpiv_transmit(card, pin_status, sizeof pin_status, rapdu, sizeof rapdu, &rl));
        CHECK(rl == 2 && rapdu[0] == 0x90 && rapdu[1] == 0x00); /* verified (for cl) */
        CHECK_CKR(core_logout(cl, s), CKR_OK);
        rl = 0;
        CHECK_OK(vpiv_transmit(card, pin_status, sizeof pin_status, rapdu, sizeof rapdu, &rl));
        CHECK(rl == 2 && rapdu[0] == 0x63); /* not verified: tries left */
        core_client_free(b);
        CHECK_CKR(core_login(cl, s, CKU_USER, (CK_UTF8CHAR_PTR) "123456", 6), CKR_OK);

        /* Unplugged in the middle: CKR_DEVICE_REMOVED, not a device error. */
        k = find1(cl, s, CKO_PRIVATE_KEY, 0x01);
        CHECK_CKR(core_sign_init(cl, s, &m, k), CKR_OK);
        tr->gone_after = (long) tr->n_tx;
        sl = sizeof sig;
        CHECK_CKR(core_sign(cl, s, (CK_BYTE_PTR) msg, sizeof msg, sig, &sl), CKR_DEVICE_REMOVED);

        CHECK_OK(core_remove_token(c, slot));
        core_client_free(cl);
        core_free(c);
        vpiv_free(card);
        printf("piv-core: all tests passed\n");
        return 0;
}
