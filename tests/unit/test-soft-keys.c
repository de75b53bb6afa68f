/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Soft token keys and objects: key generation (RSA 2048, EC P-256/P-384)
 * with their attributes, sign (PKCS#1, PSS, X.509, ECDSA) verified by
 * pkc_verify, RSA decrypt (PKCS#1, OAEP SHA-1/SHA-256) of pkc_encrypt
 * output, import of RSA and EC private keys, public keys, certificates and
 * data objects, set_attributes rules, destroy, persistence across reopen,
 * session objects vanishing, a byte scan of the file for secrets, parallel
 * signing from several threads. */
#include "soft-helpers.h"

#include <pthread.h>

#include <mbedtls/ecp.h>
#include <mbedtls/rsa.h>

static const uint8_t oid_p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };

static bool attr_is(const struct dobj *o, CK_ATTRIBUTE_TYPE type, bool v) {
        const struct nattr *a = nattrs_get(&o->attrs, type);
        return a && a->len == 1 && (a->value[0] != 0) == v;
}

static CK_ULONG attr_ulong(const struct dobj *o, CK_ATTRIBUTE_TYPE type) {
        CK_ULONG v = 0xdeadbeef;
        CHECK(nattrs_get_ulong(&o->attrs, type, &v));
        return v;
}

static void check_key_attrs(const struct dobj *pub, const struct dobj *priv, CK_KEY_TYPE kt, bool local) {
        CHECK(attr_ulong(pub, CKA_CLASS) == CKO_PUBLIC_KEY);
        CHECK(attr_ulong(priv, CKA_CLASS) == CKO_PRIVATE_KEY);
        CHECK(attr_ulong(pub, CKA_KEY_TYPE) == kt && attr_ulong(priv, CKA_KEY_TYPE) == kt);
        CHECK(attr_is(priv, CKA_SENSITIVE, true));
        CHECK(attr_is(priv, CKA_EXTRACTABLE, false));
        CHECK(attr_is(priv, CKA_ALWAYS_SENSITIVE, local));
        CHECK(attr_is(priv, CKA_NEVER_EXTRACTABLE, local));
        CHECK(attr_is(priv, CKA_LOCAL, local));
        CHECK(attr_is(priv, CKA_PRIVATE, true));
        CHECK(attr_is(priv, CKA_SIGN, true));
        CHECK(attr_is(priv, CKA_DECRYPT, kt == CKK_RSA));
        CHECK(attr_is(priv, CKA_ALWAYS_AUTHENTICATE, false));
        CHECK(attr_is(priv, CKA_DERIVE, false));
        CHECK(attr_is(priv, CKA_MODIFIABLE, true));
        CHECK(attr_is(priv, CKA_DESTROYABLE, true));
        CHECK(attr_is(pub, CKA_VERIFY, true));
        CHECK(attr_is(pub, CKA_ENCRYPT, kt == CKK_RSA));
        CHECK(attr_is(pub, CKA_PRIVATE, false));
        CHECK(nattrs_get(&priv->attrs, CKA_START_DATE) && nattrs_get(&priv->attrs, CKA_END_DATE));
        CHECK(nattrs_get(&priv->attrs, CKA_SUBJECT) && nattrs_get(&pub->attrs, CKA_SUBJECT));
        CHECK(nattrs_get(&priv->attrs, CKA_LABEL) && nattrs_get(&pub->attrs, CKA_LABEL));
        CHECK(nattrs_get(&priv->attrs, CKA_PUBLIC_KEY_INFO));
        if (local)
                CHECK(attr_ulong(priv, CKA_KEY_GEN_MECHANISM) ==
                      (kt == CKK_RSA ? CKM_RSA_PKCS_KEY_PAIR_GEN : CKM_EC_KEY_PAIR_GEN));
        else
                CHECK(attr_ulong(priv, CKA_KEY_GEN_MECHANISM) == CK_UNAVAILABLE_INFORMATION);
        const struct nattr *i1 = nattrs_get(&pub->attrs, CKA_ID), *i2 = nattrs_get(&priv->attrs, CKA_ID);
        CHECK(i1 && i2 && i1->len == i2->len && i1->len > 0 && memcmp(i1->value, i2->value, i1->len) == 0);
        /* No secret on the list. */
        static const CK_ATTRIBUTE_TYPE secret[] = { CKA_PRIVATE_EXPONENT, CKA_PRIME_1, CKA_PRIME_2, CKA_EXPONENT_1,
                                                    CKA_EXPONENT_2, CKA_COEFFICIENT, CKA_VALUE };
        for (size_t i = 0; i < sizeof secret / sizeof secret[0]; i++)
                CHECK(!nattrs_get(&priv->attrs, secret[i]));
        if (kt == CKK_RSA) {
                const struct nattr *m1 = nattrs_get(&pub->attrs, CKA_MODULUS), *m2 = nattrs_get(&priv->attrs, CKA_MODULUS);
                CHECK(m1 && m2 && m1->len == m2->len && memcmp(m1->value, m2->value, m1->len) == 0);
                CHECK(nattrs_get(&priv->attrs, CKA_PUBLIC_EXPONENT));
                CHECK(attr_ulong(pub, CKA_MODULUS_BITS) == m1->len * 8);
        } else {
                CHECK(nattrs_get(&priv->attrs, CKA_EC_PARAMS) && nattrs_get(&priv->attrs, CKA_EC_POINT));
                CHECK(nattrs_get(&pub->attrs, CKA_EC_PARAMS) && nattrs_get(&pub->attrs, CKA_EC_POINT));
        }
}

static void decrypt_check(struct token *t, const struct dobj *pub, uint64_t priv_id) {
        mbedtls_pk_context pk;
        uint8_t ct[512], pt[512];
        size_t cn, pn;
        const uint8_t msg[] = "a session key, say";
        CK_RSA_PKCS_OAEP_PARAMS o1 = { CKM_SHA_1, CKG_MGF1_SHA1, CKZ_DATA_SPECIFIED, NULL, 0 };
        CK_RSA_PKCS_OAEP_PARAMS o256 = { CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, NULL, 0 };
        CK_MECHANISM mechs[] = {
                { CKM_RSA_PKCS, NULL, 0 },
                { CKM_RSA_PKCS_OAEP, &o1, sizeof o1 },
                { CKM_RSA_PKCS_OAEP, &o256, sizeof o256 },
        };

        mbedtls_pk_init(&pk);
        CHECK_OK(pkc_pk_from_attrs(&pub->attrs, &pk));
        for (size_t i = 0; i < 3; i++) {
                cn = sizeof ct;
                CHECK_OK(pkc_encrypt(&pk, &mechs[i], msg, sizeof msg, ct, &cn));
                pn = 0;
                CHECK_OK(soft_ops.decrypt(t, priv_id, &mechs[i], ct, cn, NULL, &pn));
                CHECK(pn == cn);
                pn = 4;
                CHECK_RC(soft_ops.decrypt(t, priv_id, &mechs[i], ct, cn, pt, &pn), -ENOBUFS);
                CHECK(pn == sizeof msg);
                pn = sizeof pt;
                CHECK_OK(soft_ops.decrypt(t, priv_id, &mechs[i], ct, cn, pt, &pn));
                CHECK(pn == sizeof msg && memcmp(pt, msg, pn) == 0);
                ct[cn / 2] ^= 0x40;
                pn = sizeof pt;
                CHECK_RC(soft_ops.decrypt(t, priv_id, &mechs[i], ct, cn, pt, &pn), -EBADMSG);
                pn = sizeof pt;
                CHECK_RC(soft_ops.decrypt(t, priv_id, &mechs[i], ct, cn - 1, pt, &pn), -ERANGE);
        }
        /* Raw RSA round trip. */
        CK_MECHANISM raw = { CKM_RSA_X_509, NULL, 0 };
        cn = sizeof ct;
        CHECK_OK(pkc_encrypt(&pk, &raw, msg, sizeof msg, ct, &cn));
        pn = sizeof pt;
        CHECK_OK(soft_ops.decrypt(t, priv_id, &raw, ct, cn, pt, &pn));
        CHECK(pn == cn && memcmp(pt + pn - sizeof msg, msg, sizeof msg) == 0);
        /* OAEP with a label is not supported: parameter error. */
        CK_RSA_PKCS_OAEP_PARAMS lab = { CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, (void *) "L", 1 };
        CK_MECHANISM ml = { CKM_RSA_PKCS_OAEP, &lab, sizeof lab };
        pn = sizeof pt;
        CHECK_RC(soft_ops.decrypt(t, priv_id, &ml, ct, cn, pt, &pn), -EBADR);
        mbedtls_pk_free(&pk);
}

/* Imports mbedTLS-generated keys through create_object; returns the secrets
 * (private exponent and EC scalar) for the byte scan. */
static void import_keys(struct token *t, uint8_t *ret_d, size_t *ret_dn, uint8_t *ret_n, size_t *ret_nn,
                        uint8_t *ret_scalar, uint64_t *ret_rsa_id, uint64_t *ret_ec_id, struct dobj *ret_rsa_pub,
                        struct dobj *ret_ec_pub) {
        mbedtls_pk_context pk;
        mbedtls_mpi N, P, Q, D, E, DP, DQ, QP;
        uint8_t n[256], p[128], q[128], d[256], e[3], dp[128], dq[128], qp[128];
        CK_OBJECT_CLASS priv_cls = CKO_PRIVATE_KEY, pub_cls = CKO_PUBLIC_KEY;
        CK_KEY_TYPE rsa_kt = CKK_RSA, ec_kt = CKK_EC;
        CK_BBOOL tru = CK_TRUE;
        struct dobj o;

        mbedtls_pk_init(&pk);
        CHECK(mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_RSA)) == 0);
        CHECK(mbedtls_rsa_gen_key(mbedtls_pk_rsa(pk), pkc_rng, NULL, 2048, 65537) == 0);
        mbedtls_mpi_init(&N); mbedtls_mpi_init(&P); mbedtls_mpi_init(&Q); mbedtls_mpi_init(&D);
        mbedtls_mpi_init(&E); mbedtls_mpi_init(&DP); mbedtls_mpi_init(&DQ); mbedtls_mpi_init(&QP);
        CHECK(mbedtls_rsa_export(mbedtls_pk_rsa(pk), &N, &P, &Q, &D, &E) == 0);
        CHECK(mbedtls_rsa_export_crt(mbedtls_pk_rsa(pk), &DP, &DQ, &QP) == 0);
        CHECK(mbedtls_mpi_write_binary(&N, n, 256) == 0 && mbedtls_mpi_write_binary(&P, p, 128) == 0 &&
              mbedtls_mpi_write_binary(&Q, q, 128) == 0 && mbedtls_mpi_write_binary(&D, d, 256) == 0 &&
              mbedtls_mpi_write_binary(&E, e, 3) == 0 && mbedtls_mpi_write_binary(&DP, dp, 128) == 0 &&
              mbedtls_mpi_write_binary(&DQ, dq, 128) == 0 && mbedtls_mpi_write_binary(&QP, qp, 128) == 0);
        CK_ATTRIBUTE rt[] = {
                { CKA_CLASS, &priv_cls, sizeof priv_cls }, { CKA_KEY_TYPE, &rsa_kt, sizeof rsa_kt },
                { CKA_TOKEN, &tru, sizeof tru }, { CKA_LABEL, "imported rsa", 12 }, { CKA_ID, "\xaa\x01", 2 },
                { CKA_MODULUS, n, 256 }, { CKA_PUBLIC_EXPONENT, e, 3 }, { CKA_PRIVATE_EXPONENT, d, 256 },
                { CKA_PRIME_1, p, 128 }, { CKA_PRIME_2, q, 128 }, { CKA_EXPONENT_1, dp, 128 },
                { CKA_EXPONENT_2, dq, 128 }, { CKA_COEFFICIENT, qp, 128 },
        };
        CHECK_OK(soft_ops.create_object(t, rt, sizeof rt / sizeof rt[0], true, &o));
        *ret_rsa_id = o.id;
        /* And its public half as a public key object. */
        CK_ATTRIBUTE rp[] = {
                { CKA_CLASS, &pub_cls, sizeof pub_cls }, { CKA_KEY_TYPE, &rsa_kt, sizeof rsa_kt },
                { CKA_TOKEN, &tru, sizeof tru }, { CKA_ID, "\xaa\x01", 2 },
                { CKA_MODULUS, n, 256 }, { CKA_PUBLIC_EXPONENT, e, 3 },
        };
        CHECK_OK(soft_ops.create_object(t, rp, sizeof rp / sizeof rp[0], true, ret_rsa_pub));
        check_key_attrs(ret_rsa_pub, &o, CKK_RSA, false);
        dobj_done(&o);
        memcpy(ret_d, d, 256);
        *ret_dn = 256;
        memcpy(ret_n, n, 256);
        *ret_nn = 256;

        /* A wrong private exponent is refused. */
        d[255] ^= 2;
        CK_ATTRIBUTE bad[] = {
                { CKA_CLASS, &priv_cls, sizeof priv_cls }, { CKA_KEY_TYPE, &rsa_kt, sizeof rsa_kt },
                { CKA_MODULUS, n, 256 }, { CKA_PUBLIC_EXPONENT, e, 3 }, { CKA_PRIVATE_EXPONENT, d, 256 },
                { CKA_PRIME_1, p, 128 }, { CKA_PRIME_2, q, 128 },
        };
        CHECK_RC(soft_ops.create_object(t, bad, sizeof bad / sizeof bad[0], true, &o), -EDOM);
        mbedtls_platform_zeroize(d, sizeof d);
        mbedtls_mpi_free(&N); mbedtls_mpi_free(&P); mbedtls_mpi_free(&Q); mbedtls_mpi_free(&D);
        mbedtls_mpi_free(&E); mbedtls_mpi_free(&DP); mbedtls_mpi_free(&DQ); mbedtls_mpi_free(&QP);
        mbedtls_pk_free(&pk);

        /* EC P-256 from CKA_EC_PARAMS + CKA_VALUE. */
        mbedtls_pk_init(&pk);
        CHECK(mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)) == 0);
        CHECK(mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(pk), pkc_rng, NULL) == 0);
        uint8_t scalar[32];
        CHECK(mbedtls_mpi_write_binary(&mbedtls_pk_ec(pk)->d, scalar, 32) == 0);
        CK_ATTRIBUTE et[] = {
                { CKA_CLASS, &priv_cls, sizeof priv_cls }, { CKA_KEY_TYPE, &ec_kt, sizeof ec_kt },
                { CKA_TOKEN, &tru, sizeof tru }, { CKA_LABEL, "imported ec", 11 },
                { CKA_EC_PARAMS, (void *) oid_p256, sizeof oid_p256 }, { CKA_VALUE, scalar, 32 },
        };
        CHECK_OK(soft_ops.create_object(t, et, sizeof et / sizeof et[0], true, &o));
        *ret_ec_id = o.id;
        /* The public object from pkcrypto's attributes of the same key. */
        struct nattrs pa;
        nattrs_init(&pa);
        CHECK_OK(pkc_pub_attrs_from_pk(&pk, &pa));
        const struct nattr *pt = nattrs_get(&pa, CKA_EC_POINT);
        const struct nattr *ppt = nattrs_get(&o.attrs, CKA_EC_POINT);
        CHECK(ppt && ppt->len == pt->len && memcmp(ppt->value, pt->value, pt->len) == 0);
        CK_ATTRIBUTE ep[] = {
                { CKA_CLASS, &pub_cls, sizeof pub_cls }, { CKA_KEY_TYPE, &ec_kt, sizeof ec_kt },
                { CKA_TOKEN, &tru, sizeof tru },
                { CKA_EC_PARAMS, (void *) oid_p256, sizeof oid_p256 }, { CKA_EC_POINT, pt->value, pt->len },
        };
        CHECK_OK(soft_ops.create_object(t, ep, sizeof ep / sizeof ep[0], true, ret_ec_pub));
        check_key_attrs(ret_ec_pub, &o, CKK_EC, false);
        nattrs_done(&pa);
        dobj_done(&o);
        memcpy(ret_scalar, scalar, 32);
        mbedtls_platform_zeroize(scalar, sizeof scalar);
        mbedtls_pk_free(&pk);
}

struct par_arg {
        struct token *t;
        const struct dobj *pub;
        uint64_t priv;
        CK_MECHANISM_TYPE mech;
};

static void *par_sign(void *p) {
        struct par_arg *a = p;
        for (int i = 0; i < 20; i++)
                sign_and_verify(a->t, a->pub, a->priv, a->mech);
        return NULL;
}

/* Signs in a loop while the main thread logs out and in: each call either
 * works (and verifies) or says "not logged in"; nothing else, no crash. */
static bool race_stop;

static void *race_sign(void *p) {
        struct par_arg *a = p;
        mbedtls_pk_context pk;
        uint8_t hash[32] = { 1 }, sig[256];
        CK_MECHANISM m = { CKM_ECDSA, NULL, 0 };
        int ok = 0;
        mbedtls_pk_init(&pk);
        CHECK_OK(pkc_pk_from_attrs(&a->pub->attrs, &pk));
        while (!__atomic_load_n(&race_stop, __ATOMIC_RELAXED)) {
                size_t sl = sizeof sig;
                int r = soft_ops.sign(a->t, a->priv, &m, hash, sizeof hash, sig, &sl);
                CHECK(r == 0 || r == -EPERM);
                if (r == 0) {
                        CHECK_OK(pkc_verify(&pk, &m, hash, sizeof hash, sig, sl));
                        ok++;
                }
        }
        mbedtls_pk_free(&pk);
        return NULL;
}

int main(void) {
        const char *dir = unit_tmpdir_new();
        char *path;
        struct token *t = soft_new(dir, "keys", 0, &path);
        struct dobj rsa_pub, rsa_priv, p256_pub, p256_priv, p384_pub, p384_priv;
        struct dobj sess_pub, sess_priv, data, sess_data, cert;
        CK_OBJECT_CLASS data_cls = CKO_DATA, cert_cls = CKO_CERTIFICATE, priv_cls = CKO_PRIVATE_KEY;

        /* Nothing private without login. */
        CK_MECHANISM ecgen = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
        CK_ATTRIBUTE ecp[] = { { CKA_EC_PARAMS, (void *) oid_p256, sizeof oid_p256 } };
        CHECK_RC(soft_ops.generate_key_pair(t, &ecgen, ecp, 1, NULL, 0, &rsa_pub, &rsa_priv), -EPERM);
        CK_ATTRIBUTE pk_tmpl[] = { { CKA_CLASS, &priv_cls, sizeof priv_cls } };
        CHECK_RC(soft_ops.create_object(t, pk_tmpl, 1, true, &data), -EPERM);
        CHECK_OK(soft_login(t, CKU_SO, SO_PIN));
        CHECK_RC(soft_ops.generate_key_pair(t, &ecgen, ecp, 1, NULL, 0, &rsa_pub, &rsa_priv), -EPERM);
        CHECK_OK(soft_ops.logout(t));

        CHECK_OK(soft_login(t, CKU_USER, USER_PIN));
        soft_keygen(t, "rsa2048", true, "rsa", &rsa_pub, &rsa_priv);
        soft_keygen(t, "p256", true, "p256", &p256_pub, &p256_priv);
        soft_keygen(t, "p384", true, NULL, &p384_pub, &p384_priv);
        check_key_attrs(&rsa_pub, &rsa_priv, CKK_RSA, true);
        check_key_attrs(&p256_pub, &p256_priv, CKK_EC, true);
        check_key_attrs(&p384_pub, &p384_priv, CKK_EC, true);
        CHECK(attr_is(&rsa_priv, CKA_TOKEN, true) && attr_is(&rsa_pub, CKA_TOKEN, true));
        CHECK(nattrs_get(&rsa_pub.attrs, CKA_ID)->len == 3); /* from the template */
        CHECK(nattrs_get(&p384_pub.attrs, CKA_ID)->len == 20); /* derived */
        CHECK(nattrs_get(&rsa_priv.attrs, CKA_LABEL)->len == 3);

        /* Keygen parameter errors. */
        CK_MECHANISM rsagen = { CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0 };
        CK_ULONG odd_bits = 1000;
        CK_ATTRIBUTE bits_tmpl[] = { { CKA_MODULUS_BITS, &odd_bits, sizeof odd_bits } };
        struct dobj x1, x2;
        CHECK_RC(soft_ops.generate_key_pair(t, &rsagen, bits_tmpl, 1, NULL, 0, &x1, &x2), -EDOM);
        CHECK_RC(soft_ops.generate_key_pair(t, &rsagen, NULL, 0, NULL, 0, &x1, &x2), -ENODATA);
        CHECK_RC(soft_ops.generate_key_pair(t, &ecgen, NULL, 0, NULL, 0, &x1, &x2), -ENODATA);
        uint8_t p521[] = { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23 };
        CK_ATTRIBUTE c521[] = { { CKA_EC_PARAMS, p521, sizeof p521 } };
        CHECK_RC(soft_ops.generate_key_pair(t, &ecgen, c521, 1, NULL, 0, &x1, &x2), -EDOM);
        CK_MECHANISM aesgen = { CKM_AES_KEY_GEN, NULL, 0 };
        CHECK_RC(soft_ops.generate_key_pair(t, &aesgen, NULL, 0, NULL, 0, &x1, &x2), -ENOTSUP);

        /* Sign with every mechanism, verified by pkcrypto. */
        sign_and_verify(t, &rsa_pub, rsa_priv.id, CKM_RSA_PKCS);
        sign_and_verify(t, &rsa_pub, rsa_priv.id, CKM_RSA_PKCS_PSS);
        sign_and_verify(t, &rsa_pub, rsa_priv.id, CKM_RSA_X_509);
        sign_and_verify(t, &p256_pub, p256_priv.id, CKM_ECDSA);
        sign_and_verify(t, &p384_pub, p384_priv.id, CKM_ECDSA);

        /* Sign errors. */
        uint8_t buf[512];
        size_t bl = sizeof buf;
        CK_MECHANISM ecdsa = { CKM_ECDSA, NULL, 0 }, pkcs = { CKM_RSA_PKCS, NULL, 0 };
        CK_MECHANISM sha = { CKM_SHA256_RSA_PKCS, NULL, 0 };
        CHECK_RC(soft_ops.sign(t, rsa_priv.id, &ecdsa, buf, 32, buf, &bl), -ENOKEY);
        CHECK_RC(soft_ops.sign(t, p256_priv.id, &pkcs, buf, 32, buf, &bl), -ENOKEY);
        CHECK_RC(soft_ops.sign(t, rsa_priv.id, &sha, buf, 32, buf, &bl), -ENOTSUP);
        CHECK_RC(soft_ops.sign(t, rsa_pub.id, &pkcs, buf, 32, buf, &bl), -ENOKEY);
        CHECK_RC(soft_ops.sign(t, 987654, &pkcs, buf, 32, buf, &bl), -ENOENT);
        bl = sizeof buf;
        CHECK_RC(soft_ops.sign(t, rsa_priv.id, &pkcs, buf, 250, buf, &bl), -ERANGE);
        CK_MECHANISM pss_noparam = { CKM_RSA_PKCS_PSS, NULL, 0 };
        bl = sizeof buf;
        CHECK_RC(soft_ops.sign(t, rsa_priv.id, &pss_noparam, buf, 32, buf, &bl), -EBADR);
        CHECK_RC(soft_ops.decrypt(t, p256_priv.id, &pkcs, buf, 64, buf, &bl), -ENOKEY);

        /* Decrypt. */
        decrypt_check(t, &rsa_pub, rsa_priv.id);

        /* Imports. */
        uint8_t d[256], n[256], scalar[32];
        size_t dn, nn;
        uint64_t irsa, iec;
        struct dobj irsa_pub, iec_pub;
        import_keys(t, d, &dn, n, &nn, scalar, &irsa, &iec, &irsa_pub, &iec_pub);
        sign_and_verify(t, &irsa_pub, irsa, CKM_RSA_PKCS);
        sign_and_verify(t, &iec_pub, iec, CKM_ECDSA);
        decrypt_check(t, &irsa_pub, irsa);

        /* Certificate and data objects. */
        char cmd[4096];
        snprintf(cmd, sizeof cmd,
                 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout %s/ck.pem "
                 "-out %s/c.der -outform DER -subj /CN=soft-cert -days 30 2>/dev/null",
                 dir, dir);
        bool have_cert = system(cmd) == 0;
        if (have_cert) {
                char cp[4096];
                snprintf(cp, sizeof cp, "%s/c.der", dir);
                FILE *f = fopen(cp, "rbe");
                CHECK(f);
                uint8_t der[4096];
                size_t dl = fread(der, 1, sizeof der, f);
                fclose(f);
                CK_BBOOL tru = CK_TRUE;
                CK_ATTRIBUTE ct[] = { { CKA_CLASS, &cert_cls, sizeof cert_cls }, { CKA_TOKEN, &tru, 1 },
                                      { CKA_VALUE, der, dl }, { CKA_ID, "p256", 4 } };
                CHECK_OK(soft_ops.create_object(t, ct, 4, true, &cert));
                CHECK(attr_ulong(&cert, CKA_CLASS) == CKO_CERTIFICATE);
                CHECK(nattrs_get(&cert.attrs, CKA_SUBJECT) && nattrs_get(&cert.attrs, CKA_ISSUER));
                CHECK(attr_is(&cert, CKA_PRIVATE, false) && attr_is(&cert, CKA_TOKEN, true));
                der[0] ^= 0xff;
                struct dobj bad;
                CHECK_RC(soft_ops.create_object(t, ct, 4, true, &bad), -EDOM);
        } else
                memset(&cert, 0, sizeof cert);
        CK_ATTRIBUTE dt[] = { { CKA_CLASS, &data_cls, sizeof data_cls }, { CKA_APPLICATION, "app", 3 },
                              { CKA_VALUE, "payload", 7 } };
        CHECK_OK(soft_ops.create_object(t, dt, 3, true, &data));
        CHECK(attr_is(&data, CKA_PRIVATE, false) && nattrs_get(&data.attrs, CKA_OBJECT_ID));
        CHECK_OK(soft_ops.create_object(t, dt, 3, false, &sess_data));
        CHECK(attr_is(&sess_data, CKA_TOKEN, false));
        soft_keygen(t, "p256", false, "session", &sess_pub, &sess_priv);
        CHECK(attr_is(&sess_priv, CKA_TOKEN, false));
        sign_and_verify(t, &sess_pub, sess_priv.id, CKM_ECDSA);
        CK_OBJECT_CLASS bogus = CKO_DOMAIN_PARAMETERS;
        CK_ATTRIBUTE bt[] = { { CKA_CLASS, &bogus, sizeof bogus } };
        struct dobj bo;
        CHECK_RC(soft_ops.create_object(t, bt, 1, true, &bo), -EDOM);
        /* A secret key on the token: its value sealed, never in the clear. */
        static const uint8_t aes_value[32] = "netca-unit-aes-value-0123456789";
        CK_OBJECT_CLASS sk = CKO_SECRET_KEY;
        CK_KEY_TYPE aes = CKK_AES;
        CK_ATTRIBUTE st[] = { { CKA_CLASS, &sk, sizeof sk }, { CKA_KEY_TYPE, &aes, sizeof aes },
                              { CKA_VALUE, (void *)aes_value, sizeof aes_value } };
        struct dobj so;
        CHECK_OK(soft_ops.create_object(t, st, 3, true, &so));
        CHECK(!nattrs_get(&so.attrs, CKA_VALUE) && nattrs_get(&so.attrs, CKA_CHECK_VALUE));
        dobj_done(&so);

        /* set_attributes. */
        struct nattrs na;
        nattrs_init(&na);
        CK_ATTRIBUTE lab[] = { { CKA_LABEL, "renamed", 7 } };
        CHECK_OK(soft_ops.set_attributes(t, p256_priv.id, lab, 1, &na));
        CHECK(nattrs_get(&na, CKA_LABEL)->len == 7 && memcmp(nattrs_get(&na, CKA_LABEL)->value, "renamed", 7) == 0);
        CK_BBOOL fals = CK_FALSE, tru = CK_TRUE;
        CK_ATTRIBUTE sens[] = { { CKA_SENSITIVE, &fals, 1 } };
        CHECK_RC(soft_ops.set_attributes(t, p256_priv.id, sens, 1, &na), -EALREADY);
        CK_ATTRIBUTE extr[] = { { CKA_EXTRACTABLE, &tru, 1 } };
        CHECK_RC(soft_ops.set_attributes(t, p256_priv.id, extr, 1, &na), -EALREADY);
        CK_ATTRIBUTE clsa[] = { { CKA_CLASS, &data_cls, sizeof data_cls } };
        CHECK_RC(soft_ops.set_attributes(t, p256_priv.id, clsa, 1, &na), -EALREADY);
        CHECK_OK(soft_ops.set_attributes(t, sess_data.id, lab, 1, &na));
        /* CKA_SIGN false: the key refuses to sign. */
        CK_ATTRIBUTE nosign[] = { { CKA_SIGN, &fals, 1 } };
        CHECK_OK(soft_ops.set_attributes(t, p384_priv.id, nosign, 1, &na));
        bl = sizeof buf;
        CHECK_RC(soft_ops.sign(t, p384_priv.id, &ecdsa, buf, 32, buf, &bl), -EKEYEXPIRED);
        nattrs_done(&na);

        /* Parallel signing: same key from several threads, and another key. */
        pthread_t th[4];
        struct par_arg pa[4] = {
                { t, &p256_pub, p256_priv.id, CKM_ECDSA }, { t, &p256_pub, p256_priv.id, CKM_ECDSA },
                { t, &rsa_pub, rsa_priv.id, CKM_RSA_PKCS }, { t, &rsa_pub, rsa_priv.id, CKM_RSA_PKCS_PSS },
        };
        for (int i = 0; i < 4; i++)
                CHECK(pthread_create(&th[i], NULL, par_sign, &pa[i]) == 0);
        for (int i = 0; i < 4; i++)
                pthread_join(th[i], NULL);

        /* Logout/login racing with signatures. */
        {
                struct par_arg ra = { t, &p256_pub, p256_priv.id, CKM_ECDSA };
                race_stop = false;
                for (int i = 0; i < 2; i++)
                        CHECK(pthread_create(&th[i], NULL, race_sign, &ra) == 0);
                for (int i = 0; i < 3; i++) {
                        CHECK_OK(soft_ops.logout(t));
                        CHECK_OK(soft_login(t, CKU_USER, USER_PIN));
                }
                __atomic_store_n(&race_stop, true, __ATOMIC_RELAXED);
                for (int i = 0; i < 2; i++)
                        pthread_join(th[i], NULL);
        }

        /* Destroy. */
        CHECK_OK(soft_ops.destroy_object(t, data.id));
        CHECK_RC(soft_ops.destroy_object(t, data.id), -ENOENT);

        /* Logout: keys unusable. */
        CHECK_OK(soft_ops.logout(t));
        bl = sizeof buf;
        CHECK_RC(soft_ops.sign(t, p256_priv.id, &ecdsa, buf, 32, buf, &bl), -EPERM);

        struct dobj *objs;
        size_t on;
        CHECK_OK(soft_ops.load_objects(t, &objs, &on));
        CHECK(find_obj(objs, on, sess_priv.id) && find_obj(objs, on, sess_data.id));
        CHECK(!find_obj(objs, on, data.id));
        dobj_free_array(objs, on);

        /* Reopen: persistent objects are back, session ones gone. */
        soft_ops.free(t);
        CHECK_OK(soft_token_open(path, &t));
        CHECK_OK(soft_ops.load_objects(t, &objs, &on));
        size_t want = 6 /* generated */ + 5 /* imported */ + (have_cert ? 1 : 0);
        CHECK(on == want);
        CHECK(find_obj(objs, on, rsa_priv.id) && find_obj(objs, on, p384_pub.id) && find_obj(objs, on, irsa));
        CHECK(!find_obj(objs, on, sess_priv.id) && !find_obj(objs, on, sess_data.id) && !find_obj(objs, on, data.id));
        const struct dobj *rp = find_obj(objs, on, p256_priv.id);
        CHECK(rp && nattrs_get(&rp->attrs, CKA_LABEL)->len == 7);
        check_key_attrs(find_obj(objs, on, rsa_pub.id), find_obj(objs, on, rsa_priv.id), CKK_RSA, true);
        dobj_free_array(objs, on);
        CHECK_OK(soft_login(t, CKU_USER, USER_PIN));
        sign_and_verify(t, &rsa_pub, rsa_priv.id, CKM_RSA_PKCS);
        sign_and_verify(t, &iec_pub, iec, CKM_ECDSA);
        decrypt_check(t, &irsa_pub, irsa);
        CHECK_OK(soft_ops.logout(t));
        soft_ops.free(t);

        /* Byte scan of the token's files: no PIN, no private exponent, no
         * EC scalar; the modulus is there in the clear (the scan works). */
        char side[4200];
        const char *files[3] = { path, side, NULL };
        for (int i = 0; i < 3; i++) {
                const char *f = files[i];
                char wal[4200];
                if (i == 1) {
                        snprintf(wal, sizeof wal, "%s-wal", path);
                        f = wal;
                } else if (i == 2) {
                        snprintf(wal, sizeof wal, "%s-shm", path);
                        f = wal;
                }
                CHECK(!unit_file_contains(f, USER_PIN, strlen(USER_PIN)));
                CHECK(!unit_file_contains(f, SO_PIN, strlen(SO_PIN)));
                CHECK(!unit_file_contains(f, d, 32));
                CHECK(!unit_file_contains(f, d + 128, 32));
                CHECK(!unit_file_contains(f, scalar, 16));
                CHECK(!unit_file_contains(f, scalar + 16, 16));
                CHECK(!unit_file_contains(f, aes_value, 16));
        }
        CHECK(unit_file_contains(path, n, 32));

        dobj_done(&rsa_pub); dobj_done(&rsa_priv); dobj_done(&p256_pub); dobj_done(&p256_priv);
        dobj_done(&p384_pub); dobj_done(&p384_priv); dobj_done(&sess_pub); dobj_done(&sess_priv);
        dobj_done(&data); dobj_done(&sess_data); dobj_done(&cert); dobj_done(&irsa_pub); dobj_done(&iec_pub);
        free(path);
        return 0;
}
