/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The PIV driver through its ops table, against the virtual PIV card in
 * process: objects against the card's files, PIN login/lock/unblock/change,
 * RSA and ECDSA signatures verified with mbedTLS against the certificates,
 * RSA decryption, 9C's PIN-always, key generation and PUT DATA (3DES and AES
 * management keys), command chaining and GET RESPONSE with a large
 * certificate over a short-APDU transport, and a device vanishing
 * mid-operation. */
#include <mbedtls/sha256.h>
#include <mbedtls/x509_crt.h>
#include <mbedtls/x509_csr.h>

#include "common/pkcrypto.h"
#include "common/util.h"
#include "drivers/piv/piv.h"
#include "piv-test.h"

static const char PIN[] = "123456", PUK[] = "12345678";

static char card_dir[1100];

struct objs {
        struct dobj *v;
        size_t n;
};

static struct token *open_token(struct vpiv *card, size_t max_data, struct test_tr **ret_tr) {
        struct test_tr *tr = test_tr_new(card, max_data);
        struct token *t = NULL;
        char *key = NULL;
        CHECK_OK(piv_token_new(&tr->base, NULL, "test reader", &t, &key));
        CHECK(key && strncmp(key, "usb:", 4) == 0);
        free(key);
        if (ret_tr)
                *ret_tr = tr;
        return t;
}

static void load(struct token *t, struct objs *o) {
        CHECK_OK(piv_ops.load_objects(t, &o->v, &o->n));
}

static void objs_done(struct objs *o) {
        dobj_free_array(o->v, o->n);
        o->v = NULL;
        o->n = 0;
}

static const struct dobj *find(const struct objs *o, CK_OBJECT_CLASS cls, uint8_t id) {
        for (size_t i = 0; i < o->n; i++) {
                CK_ULONG c;
                const struct nattr *a = nattrs_get(&o->v[i].attrs, CKA_ID);
                if (nattrs_get_ulong(&o->v[i].attrs, CKA_CLASS, &c) && c == cls && a && a->len == 1 &&
                    a->value[0] == id)
                        return &o->v[i];
        }
        return NULL;
}

static void cert_file_der(const char *slot, mbedtls_x509_crt *crt) {
        char path[1200];
        snprintf(path, sizeof path, "%s/%s.crt.pem", card_dir, slot);
        mbedtls_x509_crt_init(crt);
        CHECK(mbedtls_x509_crt_parse_file(crt, path) == 0);
}

static void pk_of(const struct dobj *o, mbedtls_pk_context *pk) {
        mbedtls_pk_init(pk);
        CHECK_OK(pkc_pk_from_attrs(&o->attrs, pk));
}

/* Signs hash(msg) with the key of CKA_ID id and checks it with the
 * certificate's (or the public key object's) key. */
static int sign_and_verify(struct token *t, const struct objs *o, uint8_t id, CK_MECHANISM_TYPE mech, bool use_cert) {
        const struct dobj *key = find(o, CKO_PRIVATE_KEY, id);
        const struct dobj *pub = use_cert ? find(o, CKO_CERTIFICATE, id) : find(o, CKO_PUBLIC_KEY, id);
        CHECK(key && pub);
        uint8_t hash[32], in[512], sig[1024];
        size_t in_len = sizeof in, sig_len = sizeof sig;
        CHECK_OK(pkc_random(hash, sizeof hash));
        CK_RSA_PKCS_PSS_PARAMS pss = { CKM_SHA256, CKG_MGF1_SHA256, 32 };
        CK_MECHANISM m = { mech, NULL, 0 };
        switch (mech) {
        case CKM_RSA_PKCS:
                CHECK_OK(pkc_digest_info(CKM_SHA256, hash, sizeof hash, in, &in_len));
                break;
        case CKM_RSA_PKCS_PSS:
                m.pParameter = &pss;
                m.ulParameterLen = sizeof pss;
                /* fall through */
        default:
                memcpy(in, hash, sizeof hash);
                in_len = sizeof hash;
        }
        size_t need = 0;
        int r = piv_ops.sign(t, key->id, &m, in, in_len, NULL, &need);
        if (r < 0)
                return r;
        r = piv_ops.sign(t, key->id, &m, in, in_len, sig, &sig_len);
        if (r < 0)
                return r;
        CHECK(sig_len == need);
        mbedtls_pk_context pk;
        pk_of(pub, &pk);
        CHECK_OK(pkc_verify(&pk, &m, in, in_len, sig, sig_len));
        /* And a changed message does not verify. */
        in[in_len - 1] ^= 1;
        CHECK(pkc_verify(&pk, &m, in, in_len, sig, sig_len) == -EBADMSG);
        mbedtls_pk_free(&pk);
        return 0;
}

/* ---------------------------------------------------------------- tests */

static void test_objects(struct vpiv *card) {
        struct token *t = open_token(card, 65535, NULL);
        struct objs o;
        load(t, &o);
        /* 5 slots with certificates: 9A 9C 9D 9E 82 -> 15 objects. */
        CHECK(o.n == 15);
        static const struct {
                const char *file;
                uint8_t id;
                CK_KEY_TYPE kt;
                const char *label;
        } want[] = {
                { "9a", 0x01, CKK_RSA, "PIV AUTH key" },       { "9c", 0x02, CKK_EC, "SIGN key" },
                { "9d", 0x03, CKK_RSA, "KEY MAN key" },        { "9e", 0x04, CKK_EC, "CARD AUTH key" },
                { "82", 0x05, CKK_EC, "RETIRED KEY MAN 1 key" },
        };
        for (size_t i = 0; i < ELEMENTSOF(want); i++) {
                const struct dobj *c = find(&o, CKO_CERTIFICATE, want[i].id);
                const struct dobj *p = find(&o, CKO_PUBLIC_KEY, want[i].id);
                const struct dobj *k = find(&o, CKO_PRIVATE_KEY, want[i].id);
                CHECK(c && p && k);
                mbedtls_x509_crt crt;
                cert_file_der(want[i].file, &crt);
                const struct nattr *v = nattrs_get(&c->attrs, CKA_VALUE);
                CHECK(v && v->len == crt.raw.len && memcmp(v->value, crt.raw.p, v->len) == 0);
                mbedtls_x509_crt_free(&crt);
                CHECK(!nattrs_get_bool(&c->attrs, CKA_PRIVATE, true));
                CHECK(!nattrs_get_bool(&p->attrs, CKA_PRIVATE, true));
                CHECK(nattrs_get_bool(&k->attrs, CKA_PRIVATE, false));
                CHECK(nattrs_get_bool(&k->attrs, CKA_SENSITIVE, false));
                CK_ULONG kt;
                CHECK(nattrs_get_ulong(&k->attrs, CKA_KEY_TYPE, &kt) && kt == want[i].kt);
                const struct nattr *l = nattrs_get(&k->attrs, CKA_LABEL);
                CHECK(l && l->len == strlen(want[i].label) && memcmp(l->value, want[i].label, l->len) == 0);
                CHECK(nattrs_get_bool(&k->attrs, CKA_ALWAYS_AUTHENTICATE, true) == (want[i].id == 0x02));
                /* The public key object is the certificate's key. */
                mbedtls_pk_context a, b;
                pk_of(c, &a);
                pk_of(p, &b);
                uint8_t da[1200], db[1200];
                int la = mbedtls_pk_write_pubkey_der(&a, da, sizeof da), lb = mbedtls_pk_write_pubkey_der(&b, db, sizeof db);
                CHECK(la > 0 && la == lb && memcmp(da + sizeof da - la, db + sizeof db - lb, (size_t) la) == 0);
                mbedtls_pk_free(&a);
                mbedtls_pk_free(&b);
        }
        /* Capabilities per slot: 9D decrypts, 9C and 9E do not. */
        CHECK(nattrs_get_bool(&find(&o, CKO_PRIVATE_KEY, 0x03)->attrs, CKA_DECRYPT, false));
        CHECK(!nattrs_get_bool(&find(&o, CKO_PRIVATE_KEY, 0x02)->attrs, CKA_DECRYPT, true));
        CHECK(nattrs_get_bool(&find(&o, CKO_PRIVATE_KEY, 0x04)->attrs, CKA_SIGN, false));

        /* Serial: the GUID of card.conf, first 8 bytes. */
        char path[1200], line[256], guid[40] = "";
        snprintf(path, sizeof path, "%s/card.conf", card_dir);
        FILE *f = fopen(path, "re");
        CHECK(f);
        while (fgets(line, sizeof line, f))
                if (sscanf(line, "guid = %32s", guid) == 1)
                        break;
        fclose(f);
        struct token_desc d;
        CHECK_OK(piv_ops.get_info(t, &d));
        for (size_t i = 0; i < 16; i++)
                CHECK(d.serial[i] == (char) (guid[i] >= 'a' ? guid[i] - 32 : guid[i]));
        CHECK(d.serial[16] == '\0');
        CHECK(d.user_tries_left == 3);
        CHECK(d.flags & CKF_LOGIN_REQUIRED);
        CHECK(strcmp(d.kind, "usb") == 0);
        objs_done(&o);
        piv_ops.free(t);

        /* The same card through the transport binding every APDU discovery
         * uses, as a BLE key would: kind and slot key name the transport,
         * the serial stays the card's. */
        const struct driver_ops *ops = NULL;
        char *key = NULL;
        CHECK_OK(piv_token_factory((void *) "ble", &test_tr_new(card, 65535)->base, "BLE key", &ops, &t, &key));
        CHECK(ops == &piv_ops);
        CHECK(key && strncmp(key, "ble:", 4) == 0 && strcmp(key + 4, d.serial) == 0);
        char serial[sizeof d.serial];
        memcpy(serial, d.serial, sizeof serial);
        CHECK_OK(ops->get_info(t, &d));
        CHECK(strcmp(d.kind, "ble") == 0);
        CHECK(strcmp(d.serial, serial) == 0);
        free(key);
        ops->free(t);
}

static void test_pins(struct vpiv *card) {
        struct token *t = open_token(card, 65535, NULL);
        struct token_desc d;

        CHECK_RC(piv_ops.login(t, CKU_USER, "12345", 5), -EMSGSIZE);
        CHECK_RC(piv_ops.login(t, CKU_USER, "000000", 6), -EACCES);
        CHECK_OK(piv_ops.get_info(t, &d));
        CHECK(d.user_tries_left == 2);
        CHECK(d.flags & CKF_USER_PIN_COUNT_LOW);
        CHECK_OK(piv_ops.login(t, CKU_USER, PIN, 6));
        CHECK_OK(piv_ops.get_info(t, &d));
        CHECK(d.user_tries_left == 3);
        CHECK(!(d.flags & (CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_LOCKED)));
        CHECK_OK(piv_ops.logout(t));

        /* Change, use, change back. */
        CHECK_RC(piv_ops.set_pin(t, CKU_USER, "999999", 6, "111111", 6), -EACCES);
        CHECK_OK(piv_ops.set_pin(t, CKU_USER, PIN, 6, "11111111", 8));
        CHECK_RC(piv_ops.login(t, CKU_USER, PIN, 6), -EACCES);
        CHECK_OK(piv_ops.login(t, CKU_USER, "11111111", 8));
        CHECK_OK(piv_ops.set_pin(t, CKU_USER, "11111111", 8, PIN, 6));
        CHECK_OK(piv_ops.logout(t));

        /* Lock: the third wrong PIN, then even the right one is refused. */
        CHECK_RC(piv_ops.login(t, CKU_USER, "000000", 6), -EACCES);
        CHECK_RC(piv_ops.login(t, CKU_USER, "000000", 6), -EACCES);
        CHECK_OK(piv_ops.get_info(t, &d));
        CHECK(d.user_tries_left == 1 && (d.flags & CKF_USER_PIN_FINAL_TRY));
        int r = piv_ops.login(t, CKU_USER, "000000", 6);
        CHECK(r == -EACCES || r == -EKEYREVOKED);
        CHECK_RC(piv_ops.login(t, CKU_USER, PIN, 6), -EKEYREVOKED);
        CHECK_OK(piv_ops.get_info(t, &d));
        CHECK(d.user_tries_left == 0 && (d.flags & CKF_USER_PIN_LOCKED));

        /* Unblock with the PUK: SO login, then init_pin (RESET RETRY COUNTER). */
        CHECK_RC(piv_ops.init_pin(t, "222222", 6), -EPERM);
        CHECK_RC(piv_ops.login(t, CKU_SO, "87654321", 8), -EACCES);
        CHECK_OK(piv_ops.get_info(t, &d));
        CHECK(d.so_tries_left == 2 && (d.flags & CKF_SO_PIN_COUNT_LOW));
        CHECK_OK(piv_ops.login(t, CKU_SO, PUK, 8));
        CHECK_OK(piv_ops.init_pin(t, "222222", 6));
        CHECK_OK(piv_ops.get_info(t, &d));
        CHECK(d.user_tries_left == 3 && !(d.flags & CKF_USER_PIN_LOCKED));
        CHECK_OK(piv_ops.logout(t));
        CHECK_OK(piv_ops.login(t, CKU_USER, "222222", 6));
        CHECK_OK(piv_ops.set_pin(t, CKU_USER, "222222", 6, PIN, 6));
        CHECK_OK(piv_ops.logout(t));

        /* The PUK itself: changed by the SO, and back. */
        CHECK_OK(piv_ops.login(t, CKU_SO, PUK, 8));
        CHECK_OK(piv_ops.set_pin(t, CKU_SO, PUK, 8, "87654321", 8));
        CHECK_OK(piv_ops.logout(t));
        CHECK_RC(piv_ops.login(t, CKU_SO, PUK, 8), -EACCES);
        CHECK_OK(piv_ops.login(t, CKU_SO, "87654321", 8));
        CHECK_OK(piv_ops.set_pin(t, CKU_SO, "87654321", 8, PUK, 8));
        CHECK_OK(piv_ops.logout(t));
        piv_ops.free(t);
}

static void test_sign_decrypt(struct vpiv *card) {
        struct token *t = open_token(card, 65535, NULL);
        struct objs o;
        load(t, &o);

        /* Not logged in: refused before the card is asked. */
        CHECK_RC(sign_and_verify(t, &o, 0x01, CKM_RSA_PKCS, true), -EPERM);
        CHECK_OK(piv_ops.login(t, CKU_USER, PIN, 6));
        CHECK_OK(sign_and_verify(t, &o, 0x01, CKM_RSA_PKCS, true));
        CHECK_OK(sign_and_verify(t, &o, 0x01, CKM_RSA_PKCS_PSS, true));
        CHECK_OK(sign_and_verify(t, &o, 0x01, CKM_RSA_X_509, false));
        CHECK_OK(sign_and_verify(t, &o, 0x04, CKM_ECDSA, true));   /* 9E P-256 */
        CHECK_OK(sign_and_verify(t, &o, 0x05, CKM_ECDSA, true));   /* 82 P-384 */
        CHECK_OK(sign_and_verify(t, &o, 0x03, CKM_RSA_PKCS, true)); /* 9D RSA */
        /* Wrong mechanism for the key type, buffer too small. */
        CHECK_RC(sign_and_verify(t, &o, 0x04, CKM_RSA_PKCS, true), -ENOKEY);
        {
                CK_MECHANISM m = { CKM_ECDSA, NULL, 0 };
                uint8_t h[32] = { 1 }, sig[10];
                size_t sl = sizeof sig;
                CHECK_RC(piv_ops.sign(t, find(&o, CKO_PRIVATE_KEY, 0x04)->id, &m, h, 32, sig, &sl), -ENOBUFS);
                CHECK(sl == 64);
        }

        /* 9C: PIN always.  One VERIFY allows one signature (the user
         * login's VERIFY is still unused here): after that, only a
         * context-specific login allows the next one. */
        CHECK_OK(sign_and_verify(t, &o, 0x02, CKM_ECDSA, true));
        CHECK_RC(sign_and_verify(t, &o, 0x02, CKM_ECDSA, true), -EPERM);
        CHECK_OK(piv_ops.login(t, CKU_CONTEXT_SPECIFIC, PIN, 6));
        CHECK_OK(sign_and_verify(t, &o, 0x02, CKM_ECDSA, true));
        CHECK_RC(sign_and_verify(t, &o, 0x02, CKM_ECDSA, true), -EPERM);

        /* Decrypt with 9D: PKCS#1 v1.5, OAEP, raw. */
        const struct dobj *key = find(&o, CKO_PRIVATE_KEY, 0x03), *crt = find(&o, CKO_CERTIFICATE, 0x03);
        mbedtls_pk_context pk;
        pk_of(crt, &pk);
        static const uint8_t msg[] = "a secret session key, 32 bytes.";
        CK_RSA_PKCS_OAEP_PARAMS oaep = { CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, NULL, 0 };
        CK_MECHANISM mechs[] = { { CKM_RSA_PKCS, NULL, 0 }, { CKM_RSA_PKCS_OAEP, &oaep, sizeof oaep } };
        for (size_t i = 0; i < ELEMENTSOF(mechs); i++) {
                uint8_t ct[256], pt[256];
                size_t cl = sizeof ct, pl = sizeof pt;
                /* A fresh key each time: pkc_encrypt's OAEP goes wrong on a
                 * context already used for another operation (see report). */
                mbedtls_pk_free(&pk);
                pk_of(crt, &pk);
                CHECK_OK(pkc_encrypt(&pk, &mechs[i], msg, sizeof msg, ct, &cl));
                CHECK(cl == 256);
                CHECK_OK(piv_ops.decrypt(t, key->id, &mechs[i], ct, cl, pt, &pl));
                CHECK(pl == sizeof msg && memcmp(pt, msg, pl) == 0);
                /* A damaged ciphertext is refused, not decrypted to garbage. */
                ct[10] ^= 0x55;
                pl = sizeof pt;
                CHECK_RC(piv_ops.decrypt(t, key->id, &mechs[i], ct, cl, pt, &pl), -EBADMSG);
                CHECK_RC(piv_ops.decrypt(t, key->id, &mechs[i], ct, 100, pt, &pl), -ERANGE);
        }
        {
                CK_MECHANISM raw = { CKM_RSA_X_509, NULL, 0 };
                uint8_t ct[256], pt[256], m2[256];
                size_t cl = sizeof ct, pl = sizeof pt;
                memset(m2, 0, sizeof m2);
                memcpy(m2 + 256 - sizeof msg, msg, sizeof msg);
                CHECK_OK(pkc_encrypt(&pk, &raw, m2, sizeof m2, ct, &cl));
                CHECK_OK(piv_ops.decrypt(t, key->id, &raw, ct, cl, pt, &pl));
                CHECK(pl == 256 && memcmp(pt, m2, 256) == 0);
        }
        mbedtls_pk_free(&pk);
        /* 9C cannot decrypt; an unknown object is unknown. */
        {
                CK_MECHANISM m = { CKM_RSA_PKCS, NULL, 0 };
                uint8_t ct[256] = { 0 }, pt[256];
                size_t pl = sizeof pt;
                CHECK_RC(piv_ops.decrypt(t, find(&o, CKO_PRIVATE_KEY, 0x02)->id, &m, ct, 256, pt, &pl), -ENOKEY);
                CHECK_RC(piv_ops.decrypt(t, find(&o, CKO_PRIVATE_KEY, 0x01)->id + 0x10000, &m, ct, 256, pt, &pl),
                         -ENOENT);
        }
        /* Logout really drops the card's PIN state. */
        CHECK_OK(piv_ops.logout(t));
        CHECK_OK(piv_ops.login(t, CKU_USER, PIN, 6));
        CHECK_OK(sign_and_verify(t, &o, 0x01, CKM_RSA_PKCS, true));
        CHECK_OK(piv_ops.logout(t));
        objs_done(&o);
        piv_ops.free(t);
}

/* A certificate for pub, issued by a throwaway CA, with a large extension
 * (so that writing and reading it needs chaining on a short-APDU reader). */
static size_t make_cert(const struct dobj *pub, size_t pad, uint8_t *out, size_t cap) {
        mbedtls_pk_context subj, ca;
        mbedtls_x509write_cert w;
        mbedtls_mpi serial;
        pk_of(pub, &subj);
        mbedtls_pk_init(&ca);
        CHECK(mbedtls_pk_setup(&ca, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)) == 0);
        CHECK(mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(ca), pkc_rng, NULL) == 0);
        mbedtls_x509write_crt_init(&w);
        mbedtls_mpi_init(&serial);
        CHECK(mbedtls_mpi_lset(&serial, 4242) == 0);
        mbedtls_x509write_crt_set_version(&w, MBEDTLS_X509_CRT_VERSION_3);
        mbedtls_x509write_crt_set_md_alg(&w, MBEDTLS_MD_SHA256);
        CHECK(mbedtls_x509write_crt_set_serial(&w, &serial) == 0);
        CHECK(mbedtls_x509write_crt_set_validity(&w, "20250101000000", "20350101000000") == 0);
        CHECK(mbedtls_x509write_crt_set_subject_name(&w, "O=NETCA test,CN=generated on the card") == 0);
        CHECK(mbedtls_x509write_crt_set_issuer_name(&w, "O=NETCA test,CN=throwaway CA") == 0);
        mbedtls_x509write_crt_set_subject_key(&w, &subj);
        mbedtls_x509write_crt_set_issuer_key(&w, &ca);
        if (pad) {
                /* A private, non-critical extension: an OCTET STRING of pad bytes. */
                uint8_t *ext = malloc(pad + 4);
                CHECK(ext);
                ext[0] = 0x04;
                ext[1] = 0x82;
                ext[2] = (uint8_t) (pad >> 8);
                ext[3] = (uint8_t) pad;
                memset(ext + 4, 0x5A, pad);
                static const char oid[] = "\x2b\x06\x01\x04\x01\x82\x37\x63\x01"; /* 1.3.6.1.4.1.311.99.1 */
                CHECK(mbedtls_x509write_crt_set_extension(&w, oid, sizeof oid - 1, 0, ext, pad + 4) == 0);
                free(ext);
        }
        int len = mbedtls_x509write_crt_der(&w, out, cap, pkc_rng, NULL);
        CHECK(len > 0);
        memmove(out, out + cap - (size_t) len, (size_t) len);
        mbedtls_x509write_crt_free(&w);
        mbedtls_mpi_free(&serial);
        mbedtls_pk_free(&subj);
        mbedtls_pk_free(&ca);
        return (size_t) len;
}

static void test_keygen_put_data(struct vpiv *card, const char *alg, const uint8_t *key, size_t key_len) {
        struct test_tr *tr;
        struct token *t = open_token(card, 255, &tr); /* short APDUs only */
        struct dobj pub = { 0 }, priv = { 0 };
        CK_BBOOL yes = CK_TRUE;
        uint8_t id = 0x06; /* retired slot 83 */
        static const uint8_t p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
        CK_ATTRIBUTE pt[] = { { CKA_EC_PARAMS, (void *) p256, sizeof p256 }, { CKA_TOKEN, &yes, sizeof yes } };
        CK_ATTRIBUTE kt[] = { { CKA_ID, &id, 1 }, { CKA_TOKEN, &yes, sizeof yes } };
        CK_MECHANISM gen = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };

        if (key)
                CHECK_OK(piv_token_set_mgmt_key(t, strcmp(alg, "aes128") == 0 ? PIV_MGMT_AES128 : PIV_MGMT_AES256,
                                                key, key_len));
        CHECK_RC(piv_ops.generate_key_pair(t, &gen, pt, 2, kt, 2, &pub, &priv), -EPERM);
        CHECK_OK(piv_ops.login(t, CKU_USER, PIN, 6));
        CHECK_OK(piv_ops.generate_key_pair(t, &gen, pt, 2, kt, 2, &pub, &priv));
        CHECK(nattrs_get_bool(&priv.attrs, CKA_LOCAL, false));
        struct objs o;
        load(t, &o);
        CHECK(o.n == 17);
        CHECK(find(&o, CKO_PRIVATE_KEY, id) && !find(&o, CKO_CERTIFICATE, id));
        CHECK_OK(sign_and_verify(t, &o, id, CKM_ECDSA, false));

        /* PUT DATA a large certificate for it: chained commands. */
        uint8_t der[8192];
        size_t der_len = make_cert(find(&o, CKO_PUBLIC_KEY, id), 3000, der, sizeof der);
        CHECK(der_len > 3000);
        CK_OBJECT_CLASS cc = CKO_CERTIFICATE;
        CK_ATTRIBUTE ct[] = { { CKA_CLASS, &cc, sizeof cc }, { CKA_VALUE, der, der_len } };
        struct dobj cert = { 0 };
        unsigned chained = tr->n_chained;
        CHECK_RC(piv_ops.create_object(t, ct, 2, false, &cert), -EINVAL); /* session object: no */
        CHECK_OK(piv_ops.create_object(t, ct, 2, true, &cert));
        CHECK(tr->n_chained >= chained + 12);
        const struct nattr *cid = nattrs_get(&cert.attrs, CKA_ID);
        CHECK(cid && cid->len == 1 && cid->value[0] == id);
        dobj_done(&cert);
        dobj_done(&pub);
        dobj_done(&priv);
        objs_done(&o);

        /* A wrong management key is refused, and nothing is written. */
        static const uint8_t bad[24] = { 9 };
        CHECK_OK(piv_token_set_mgmt_key(t, PIV_MGMT_3DES, bad, sizeof bad));
        CHECK_RC(piv_ops.generate_key_pair(t, &gen, pt, 2, kt, 2, &pub, &priv), -EROFS);
        piv_ops.free(t);

        /* Re-inserted: read back through GET RESPONSE; the new key signs,
         * checked against the certificate this time. */
        t = open_token(card, 255, &tr);
        CHECK(tr->n_get_response >= 12);
        CHECK(tr->n_ext == 0);
        load(t, &o);
        CHECK(o.n == 18);
        const struct dobj *c = find(&o, CKO_CERTIFICATE, id);
        CHECK(c);
        const struct nattr *v = nattrs_get(&c->attrs, CKA_VALUE);
        CHECK(v && v->len == der_len && memcmp(v->value, der, der_len) == 0);
        CHECK_OK(piv_ops.login(t, CKU_USER, PIN, 6));
        CHECK_OK(sign_and_verify(t, &o, id, CKM_ECDSA, true));

        /* Deleting the certificate (PUT DATA, empty), with the management
         * key from $NETCA_PIV_MGMT_KEY this time. */
        if (key) {
                piv_ops.free(t);
                char env[128];
                size_t n = (size_t) snprintf(env, sizeof env, "%s:", alg);
                for (size_t i = 0; i < key_len; i++)
                        n += (size_t) snprintf(env + n, sizeof env - n, "%02x", key[i]);
                CHECK(setenv("NETCA_PIV_MGMT_KEY", env, 1) == 0);
                t = open_token(card, 65535, NULL);
                CHECK(unsetenv("NETCA_PIV_MGMT_KEY") == 0);
                objs_done(&o);
                load(t, &o);
                c = find(&o, CKO_CERTIFICATE, id);
                CHECK(c);
        }
        CHECK_RC(piv_ops.destroy_object(t, find(&o, CKO_PRIVATE_KEY, id)->id), -EROFS);
        CHECK_OK(piv_ops.destroy_object(t, c->id));
        objs_done(&o);
        piv_ops.free(t);
        t = open_token(card, 65535, NULL);
        load(t, &o);
        CHECK(o.n == 15 && !find(&o, CKO_CERTIFICATE, id));
        objs_done(&o);
        piv_ops.free(t);
}

static void test_rsa_keygen(struct vpiv *card) {
        struct token *t = open_token(card, 65535, NULL);
        CK_ULONG bits = 2048;
        uint8_t id = 0x03; /* 9D: replaces the key there, its certificate goes */
        CK_ATTRIBUTE pt[] = { { CKA_MODULUS_BITS, &bits, sizeof bits } };
        CK_ATTRIBUTE kt[] = { { CKA_ID, &id, 1 } };
        CK_MECHANISM gen = { CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0 };
        struct dobj pub = { 0 }, priv = { 0 };
        CHECK_OK(piv_ops.login(t, CKU_USER, PIN, 6));
        CHECK_OK(piv_ops.generate_key_pair(t, &gen, pt, 1, kt, 1, &pub, &priv));
        struct objs o;
        load(t, &o);
        CHECK(!find(&o, CKO_CERTIFICATE, id));
        CHECK_OK(sign_and_verify(t, &o, id, CKM_RSA_PKCS, false));
        CK_ULONG mb;
        CHECK(nattrs_get_ulong(&pub.attrs, CKA_MODULUS_BITS, &mb) && mb == 2048);
        /* An unsupported size is refused before the card is asked. */
        bits = 3000;
        struct dobj p2 = { 0 }, k2 = { 0 };
        CHECK_RC(piv_ops.generate_key_pair(t, &gen, pt, 1, kt, 1, &p2, &k2), -EDOM);
        dobj_done(&pub);
        dobj_done(&priv);
        objs_done(&o);
        piv_ops.free(t);
}

static void test_device_gone(struct vpiv *card) {
        unsigned freed = 0;
        struct test_tr *tr;
        struct token *t = open_token(card, 65535, &tr);
        tr->freed = &freed;
        struct objs o;
        load(t, &o);
        CHECK_OK(piv_ops.login(t, CKU_USER, PIN, 6));
        /* Unplugged mid-operation: the next exchange fails. */
        tr->gone_after = (long) tr->n_tx;
        CHECK_RC(sign_and_verify(t, &o, 0x01, CKM_RSA_PKCS, true), -ENODEV);
        CHECK_RC(piv_ops.login(t, CKU_USER, PIN, 6), -ENODEV);
        /* Objects stay readable from memory; info never touches the device. */
        struct objs o2;
        load(t, &o2);
        CHECK(o2.n == o.n);
        struct token_desc d;
        CHECK_OK(piv_ops.get_info(t, &d));
        objs_done(&o2);
        objs_done(&o);
        piv_ops.free(t);
        CHECK(freed == 1);

        /* Gone while being opened: -ENODEV, the transport freed. */
        for (long at = 0; at < 8; at++) {
                struct test_tr *x = test_tr_new(card, 65535);
                unsigned f = 0;
                x->freed = &f;
                x->gone_after = at;
                struct token *t2 = NULL;
                char *key = NULL;
                CHECK_RC(piv_token_new(&x->base, NULL, NULL, &t2, &key), -ENODEV);
                CHECK(f == 1 && !t2 && !key);
        }
        /* In the middle of a chained write. */
        t = open_token(card, 255, &tr);
        CHECK_OK(piv_ops.login(t, CKU_USER, PIN, 6));
        load(t, &o);
        uint8_t der[8192];
        size_t der_len = make_cert(find(&o, CKO_PUBLIC_KEY, 0x01), 2000, der, sizeof der);
        tr->gone_after = (long) tr->n_tx + 5;
        CK_OBJECT_CLASS cc = CKO_CERTIFICATE;
        uint8_t id = 0x01;
        CK_ATTRIBUTE ct[] = { { CKA_CLASS, &cc, sizeof cc }, { CKA_VALUE, der, der_len }, { CKA_ID, &id, 1 } };
        struct dobj cert = { 0 };
        CHECK_RC(piv_ops.create_object(t, ct, 3, true, &cert), -ENODEV);
        objs_done(&o);
        piv_ops.free(t);
}

/* A card without the PIV application: SELECT says 6A82. */
static int nopiv_transmit(struct apdu_transport *t, const uint8_t *c, size_t clen, uint8_t *r, size_t rcap,
                          size_t *rlen) {
        r[0] = 0x6A;
        r[1] = 0x82;
        *rlen = 2;
        return 0;
}

static unsigned nopiv_freed;
static void nopiv_free(struct apdu_transport *t) {
        nopiv_freed++;
        free(t);
}

static void test_not_piv(void) {
        static const struct apdu_transport_ops ops = { .transmit = nopiv_transmit, .free = nopiv_free };
        struct apdu_transport *x = calloc(1, sizeof *x);
        CHECK(x);
        x->ops = &ops;
        struct token *t = NULL;
        CHECK_RC(piv_token_new(x, NULL, "empty", &t, NULL), -ENOTSUP);
        CHECK(nopiv_freed == 1 && !t);
}

/* A blocked PUK is reported as such and the PIN stays as it was. */
static void test_puk_lock(struct vpiv *card) {
        struct token *t = open_token(card, 65535, NULL);
        struct token_desc d;
        for (int i = 0; i < 2; i++)
                CHECK_RC(piv_ops.login(t, CKU_SO, "00000000", 8), -EACCES);
        int r = piv_ops.login(t, CKU_SO, "00000000", 8);
        CHECK(r == -EACCES || r == -EKEYREVOKED);
        CHECK_RC(piv_ops.login(t, CKU_SO, PUK, 8), -EKEYREVOKED);
        CHECK_OK(piv_ops.get_info(t, &d));
        CHECK(d.so_tries_left == 0 && (d.flags & CKF_SO_PIN_LOCKED));
        CHECK_RC(piv_ops.init_pin(t, "333333", 6), -EPERM);
        CHECK_OK(piv_ops.login(t, CKU_USER, PIN, 6));
        CHECK_OK(piv_ops.logout(t));
        piv_ops.free(t);
        /* Seen again after re-insertion. */
        t = open_token(card, 65535, NULL);
        CHECK_OK(piv_ops.get_info(t, &d));
        CHECK(d.so_tries_left == 0 && (d.flags & CKF_SO_PIN_LOCKED));
        piv_ops.free(t);
}

int main(void) {
        const char *tmp = unit_tmpdir_new();
        snprintf(card_dir, sizeof card_dir, "%s/card", tmp);
        test_make_card(card_dir, NULL);
        struct vpiv *card = test_open_card(card_dir);

        test_objects(card);
        test_pins(card);
        test_sign_decrypt(card);
        test_keygen_put_data(card, "3des", NULL, 0);
        test_rsa_keygen(card);
        test_device_gone(card);
        test_not_piv();
        vpiv_free(card);

        /* An AES-128 management key. */
        static const uint8_t aes[16] = { 0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe,
                                         0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef };
        char dir2[1100];
        snprintf(dir2, sizeof dir2, "%s/card-aes", tmp);
        test_make_card(dir2, "--mgmt-alg aes128 --mgmt-key 1032547698badcfe0123456789abcdef");
        card = test_open_card(dir2);
        test_keygen_put_data(card, "aes128", aes, sizeof aes);
        test_puk_lock(card);
        vpiv_free(card);

        printf("piv: all tests passed\n");
        return 0;
}
