/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "pkcrypto.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/rsa.h>
#include <mbedtls/sha1.h>
#include <mbedtls/sha512.h>
#include <mbedtls/x509_crt.h>

#include "util.h"

/* ---------------------------------------------------------------- RNG */

static pthread_once_t rng_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t rng_lock = PTHREAD_MUTEX_INITIALIZER;
static mbedtls_entropy_context rng_entropy;
static mbedtls_ctr_drbg_context rng_drbg;
static bool rng_ok;
static pid_t rng_pid;

static void rng_atfork_prepare(void) { pthread_mutex_lock(&rng_lock); }
static void rng_atfork_parent(void) { pthread_mutex_unlock(&rng_lock); }
static void rng_atfork_child(void) { pthread_mutex_unlock(&rng_lock); }

static void rng_init_once(void) {
        static const char pers[] = "netca-pkcrypto-drbg";
        mbedtls_entropy_init(&rng_entropy);
        mbedtls_ctr_drbg_init(&rng_drbg);
        if (mbedtls_ctr_drbg_seed(&rng_drbg, mbedtls_entropy_func, &rng_entropy,
                                  (const unsigned char *) pers, sizeof pers - 1) != 0)
                return;
        rng_pid = getpid();
        rng_ok = true;
        (void) pthread_atfork(rng_atfork_prepare, rng_atfork_parent, rng_atfork_child);
}

int pkc_random(void *out, size_t n) {
        int r = 0;

        if (n == 0)
                return 0;
        if (!out)
                return -EINVAL;
        pthread_once(&rng_once, rng_init_once);
        if (!rng_ok)
                return -EIO;

        pthread_mutex_lock(&rng_lock);
        pid_t pid = getpid();
        if (pid != rng_pid) {
                /* Forked: never hand the child the parent's stream. */
                if (mbedtls_ctr_drbg_reseed(&rng_drbg, (const unsigned char *) &pid, sizeof pid) != 0) {
                        r = -EIO;
                        goto out;
                }
                rng_pid = pid;
        }
        uint8_t *p = out;
        while (n > 0) {
                size_t chunk = n < MBEDTLS_CTR_DRBG_MAX_REQUEST ? n : MBEDTLS_CTR_DRBG_MAX_REQUEST;
                if (mbedtls_ctr_drbg_random(&rng_drbg, p, chunk) != 0) {
                        r = -EIO;
                        goto out;
                }
                p += chunk;
                n -= chunk;
        }
out:
        pthread_mutex_unlock(&rng_lock);
        return r;
}

int pkc_seed(const void *seed, size_t n) {
        uint8_t digest[64];
        const uint8_t *add = seed;
        int r = 0;

        if (n == 0)
                return 0;
        if (!seed)
                return -EINVAL;
        pthread_once(&rng_once, rng_init_once);
        if (!rng_ok)
                return -EIO;
        /* Long seeds are condensed: a reseed takes little additional input. */
        if (n > sizeof digest) {
                if (mbedtls_sha512_ret(seed, n, digest, 0) != 0)
                        return -EIO;
                add = digest;
                n = sizeof digest;
        }
        pthread_mutex_lock(&rng_lock);
        /* Fresh entropy plus the caller's material. */
        if (mbedtls_ctr_drbg_reseed(&rng_drbg, add, n) != 0)
                r = -EIO;
        rng_pid = getpid();
        pthread_mutex_unlock(&rng_lock);
        mbedtls_platform_zeroize(digest, sizeof digest);
        return r;
}

int pkc_rng(void *ctx, unsigned char *out, size_t n) {
        (void) ctx;
        return pkc_random(out, n) < 0 ? MBEDTLS_ERR_CTR_DRBG_ENTROPY_SOURCE_FAILED : 0;
}

/* ---------------------------------------------------------------- hashes */

mbedtls_md_type_t pkc_md_type(CK_MECHANISM_TYPE m) {
        switch (m) {
        case CKM_SHA_1: return MBEDTLS_MD_SHA1;
        case CKM_SHA224: return MBEDTLS_MD_SHA224;
        case CKM_SHA256: return MBEDTLS_MD_SHA256;
        case CKM_SHA384: return MBEDTLS_MD_SHA384;
        case CKM_SHA512: return MBEDTLS_MD_SHA512;
        default: return MBEDTLS_MD_NONE;
        }
}

mbedtls_md_type_t pkc_mgf_md(CK_RSA_PKCS_MGF_TYPE mgf) {
        switch (mgf) {
        case CKG_MGF1_SHA1: return MBEDTLS_MD_SHA1;
        case CKG_MGF1_SHA224: return MBEDTLS_MD_SHA224;
        case CKG_MGF1_SHA256: return MBEDTLS_MD_SHA256;
        case CKG_MGF1_SHA384: return MBEDTLS_MD_SHA384;
        case CKG_MGF1_SHA512: return MBEDTLS_MD_SHA512;
        default: return MBEDTLS_MD_NONE;
        }
}

bool pkc_combined_mech(CK_MECHANISM_TYPE mech, CK_MECHANISM_TYPE *ret_hash, CK_MECHANISM_TYPE *ret_raw) {
        static const struct {
                CK_MECHANISM_TYPE mech, hash, raw;
        } table[] = {
                { CKM_SHA1_RSA_PKCS, CKM_SHA_1, CKM_RSA_PKCS },
                { CKM_SHA224_RSA_PKCS, CKM_SHA224, CKM_RSA_PKCS },
                { CKM_SHA256_RSA_PKCS, CKM_SHA256, CKM_RSA_PKCS },
                { CKM_SHA384_RSA_PKCS, CKM_SHA384, CKM_RSA_PKCS },
                { CKM_SHA512_RSA_PKCS, CKM_SHA512, CKM_RSA_PKCS },
                { CKM_SHA1_RSA_PKCS_PSS, CKM_SHA_1, CKM_RSA_PKCS_PSS },
                { CKM_SHA224_RSA_PKCS_PSS, CKM_SHA224, CKM_RSA_PKCS_PSS },
                { CKM_SHA256_RSA_PKCS_PSS, CKM_SHA256, CKM_RSA_PKCS_PSS },
                { CKM_SHA384_RSA_PKCS_PSS, CKM_SHA384, CKM_RSA_PKCS_PSS },
                { CKM_SHA512_RSA_PKCS_PSS, CKM_SHA512, CKM_RSA_PKCS_PSS },
                { CKM_ECDSA_SHA1, CKM_SHA_1, CKM_ECDSA },
                { CKM_ECDSA_SHA224, CKM_SHA224, CKM_ECDSA },
                { CKM_ECDSA_SHA256, CKM_SHA256, CKM_ECDSA },
                { CKM_ECDSA_SHA384, CKM_SHA384, CKM_ECDSA },
                { CKM_ECDSA_SHA512, CKM_SHA512, CKM_ECDSA },
        };
        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (table[i].mech == mech) {
                        if (ret_hash)
                                *ret_hash = table[i].hash;
                        if (ret_raw)
                                *ret_raw = table[i].raw;
                        return true;
                }
        return false;
}

/* DER prefixes of DigestInfo ::= SEQUENCE { AlgorithmIdentifier, OCTET STRING hash } */
static const uint8_t di_sha1[] = { 0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a,
                                   0x05, 0x00, 0x04, 0x14 };
static const uint8_t di_sha224[] = { 0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65,
                                     0x03, 0x04, 0x02, 0x04, 0x05, 0x00, 0x04, 0x1c };
static const uint8_t di_sha256[] = { 0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65,
                                     0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20 };
static const uint8_t di_sha384[] = { 0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65,
                                     0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30 };
static const uint8_t di_sha512[] = { 0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65,
                                     0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40 };

int pkc_digest_info(CK_MECHANISM_TYPE hash_mech, const uint8_t *hash, size_t hash_len, uint8_t *out,
                    size_t *outlen) {
        const uint8_t *prefix;
        size_t plen, hlen;

        switch (hash_mech) {
        case CKM_SHA_1: prefix = di_sha1; plen = sizeof di_sha1; hlen = 20; break;
        case CKM_SHA224: prefix = di_sha224; plen = sizeof di_sha224; hlen = 28; break;
        case CKM_SHA256: prefix = di_sha256; plen = sizeof di_sha256; hlen = 32; break;
        case CKM_SHA384: prefix = di_sha384; plen = sizeof di_sha384; hlen = 48; break;
        case CKM_SHA512: prefix = di_sha512; plen = sizeof di_sha512; hlen = 64; break;
        default: return -ENOTSUP;
        }
        if (!outlen)
                return -EINVAL;
        if (hash_len != hlen || (!hash && hash_len))
                return -ERANGE;
        if (!out) {
                *outlen = plen + hlen;
                return 0;
        }
        if (*outlen < plen + hlen) {
                *outlen = plen + hlen;
                return -ENOBUFS;
        }
        memcpy(out, prefix, plen);
        memcpy(out + plen, hash, hlen);
        *outlen = plen + hlen;
        return 0;
}

/* ---------------------------------------------------------------- EC encoding */

static const uint8_t oid_p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
static const uint8_t oid_p384[] = { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22 };

static mbedtls_ecp_group_id curve_from_params(const uint8_t *p, size_t n) {
        if (n == sizeof oid_p256 && memcmp(p, oid_p256, n) == 0)
                return MBEDTLS_ECP_DP_SECP256R1;
        if (n == sizeof oid_p384 && memcmp(p, oid_p384, n) == 0)
                return MBEDTLS_ECP_DP_SECP384R1;
        return MBEDTLS_ECP_DP_NONE;
}

static int params_from_curve(mbedtls_ecp_group_id id, const uint8_t **ret, size_t *ret_n) {
        switch (id) {
        case MBEDTLS_ECP_DP_SECP256R1: *ret = oid_p256; *ret_n = sizeof oid_p256; return 0;
        case MBEDTLS_ECP_DP_SECP384R1: *ret = oid_p384; *ret_n = sizeof oid_p384; return 0;
        default: return -ENOTSUP;
        }
}

/* Returns the raw point inside a DER OCTET STRING, or the input when it is
 * already a raw uncompressed point. */
static int unwrap_ec_point(const uint8_t *p, size_t n, size_t field_len, const uint8_t **ret,
                           size_t *ret_n) {
        size_t raw = 1 + 2 * field_len;
        if (n == raw && p[0] == 0x04) {
                *ret = p;
                *ret_n = n;
                return 0;
        }
        if (n >= 2 && p[0] == 0x04) {
                size_t len, hdr;
                if (p[1] < 0x80) {
                        len = p[1];
                        hdr = 2;
                } else if (p[1] == 0x81 && n >= 3) {
                        len = p[2];
                        hdr = 3;
                } else
                        return -EDOM;
                if (hdr + len != n || len != raw || p[hdr] != 0x04)
                        return -EDOM;
                *ret = p + hdr;
                *ret_n = len;
                return 0;
        }
        return -EDOM;
}

/* ---------------------------------------------------------------- keys */

static int mbed_to_errno(int r) {
        if (r == 0)
                return 0;
        if (r == MBEDTLS_ERR_RSA_VERIFY_FAILED || r == MBEDTLS_ERR_ECP_VERIFY_FAILED ||
            r == MBEDTLS_ERR_RSA_INVALID_PADDING)
                return -EBADMSG;
        if (r == MBEDTLS_ERR_RSA_BAD_INPUT_DATA || r == MBEDTLS_ERR_ECP_BAD_INPUT_DATA)
                return -ERANGE;
        if (r == MBEDTLS_ERR_RSA_OUTPUT_TOO_LARGE)
                return -ENOBUFS;
        if (r == MBEDTLS_ERR_MPI_ALLOC_FAILED || r == MBEDTLS_ERR_ECP_ALLOC_FAILED ||
            r == MBEDTLS_ERR_PK_ALLOC_FAILED)
                return -ENOMEM;
        return -EIO;
}

/* Whether pk's public exponent, if it is an RSA key, is within
 * PKC_RSA_MAX_EXPONENT_BITS: the cost of a public-key operation grows with
 * its length. */
static bool exponent_bounded(const mbedtls_pk_context *pk) {
        if (mbedtls_pk_get_type(pk) != MBEDTLS_PK_RSA)
                return true;
        return mbedtls_mpi_bitlen(&mbedtls_pk_rsa(*pk)->E) <= PKC_RSA_MAX_EXPONENT_BITS;
}

static int pk_from_spki(const uint8_t *der, size_t len, mbedtls_pk_context *ret) {
        mbedtls_pk_context pk;
        mbedtls_pk_init(&pk);
        if (mbedtls_pk_parse_public_key(&pk, der, len) != 0 || !exponent_bounded(&pk)) {
                mbedtls_pk_free(&pk);
                return -EDOM;
        }
        *ret = pk;
        return 0;
}

int pkc_pk_from_attrs(const struct nattrs *a, mbedtls_pk_context *ret) {
        CK_ULONG cls = CKO_PUBLIC_KEY, kt;
        mbedtls_pk_context pk;
        int r;

        if (!a || !ret)
                return -EINVAL;
        (void) nattrs_get_ulong(a, CKA_CLASS, &cls);

        if (cls == CKO_CERTIFICATE) {
                const struct nattr *v = nattrs_get(a, CKA_VALUE);
                if (!v || !v->len)
                        return -ENODATA;
                mbedtls_x509_crt crt;
                mbedtls_x509_crt_init(&crt);
                if (mbedtls_x509_crt_parse_der(&crt, v->value, v->len) != 0) {
                        mbedtls_x509_crt_free(&crt);
                        return -EDOM;
                }
                r = pk_from_spki(crt.pk_raw.p, crt.pk_raw.len, ret);
                mbedtls_x509_crt_free(&crt);
                return r;
        }

        if (!nattrs_get_ulong(a, CKA_KEY_TYPE, &kt)) {
                const struct nattr *spki = nattrs_get(a, CKA_PUBLIC_KEY_INFO);
                if (spki && spki->len)
                        return pk_from_spki(spki->value, spki->len, ret);
                return -ENODATA;
        }

        mbedtls_pk_init(&pk);
        if (kt == CKK_RSA) {
                const struct nattr *n = nattrs_get(a, CKA_MODULUS), *e = nattrs_get(a, CKA_PUBLIC_EXPONENT);
                if (!n || !e || !n->len || !e->len)
                        return -ENODATA;
                if (mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_RSA)) != 0) {
                        r = -ENOMEM;
                        goto fail;
                }
                mbedtls_rsa_context *rsa = mbedtls_pk_rsa(pk);
                if (mbedtls_rsa_import_raw(rsa, n->value, n->len, NULL, 0, NULL, 0, NULL, 0, e->value,
                                           e->len) != 0 ||
                    mbedtls_rsa_complete(rsa) != 0 || mbedtls_rsa_check_pubkey(rsa) != 0 ||
                    !exponent_bounded(&pk)) {
                        r = -EDOM;
                        goto fail;
                }
        } else if (kt == CKK_EC) {
                const struct nattr *par = nattrs_get(a, CKA_EC_PARAMS), *pt = nattrs_get(a, CKA_EC_POINT);
                if (!par || !pt || !par->len || !pt->len)
                        return -ENODATA;
                mbedtls_ecp_group_id gid = curve_from_params(par->value, par->len);
                if (gid == MBEDTLS_ECP_DP_NONE)
                        return -EDOM;
                if (mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)) != 0) {
                        r = -ENOMEM;
                        goto fail;
                }
                mbedtls_ecp_keypair *ec = mbedtls_pk_ec(pk);
                if (mbedtls_ecp_group_load(&ec->grp, gid) != 0) {
                        r = -EIO;
                        goto fail;
                }
                const uint8_t *raw;
                size_t raw_n;
                r = unwrap_ec_point(pt->value, pt->len, (ec->grp.pbits + 7) / 8, &raw, &raw_n);
                if (r < 0)
                        goto fail;
                if (mbedtls_ecp_point_read_binary(&ec->grp, &ec->Q, raw, raw_n) != 0 ||
                    mbedtls_ecp_check_pubkey(&ec->grp, &ec->Q) != 0) {
                        r = -EDOM;
                        goto fail;
                }
        } else
                return -ENOKEY;

        *ret = pk;
        return 0;
fail:
        mbedtls_pk_free(&pk);
        return r;
}

static int set_mpi(struct nattrs *a, CK_ATTRIBUTE_TYPE type, const mbedtls_mpi *x) {
        size_t n = mbedtls_mpi_size(x);
        if (n == 0)
                n = 1;
        uint8_t *buf = malloc(n);
        if (!buf)
                return -ENOMEM;
        int r = mbedtls_mpi_write_binary(x, buf, n) == 0 ? nattrs_set(a, type, buf, n) : -EIO;
        free(buf);
        return r;
}

int pkc_pub_attrs_from_pk(const mbedtls_pk_context *pk, struct nattrs *a) {
        struct nattrs tmp;
        int r;

        if (!pk || !a)
                return -EINVAL;
        nattrs_init(&tmp);
        r = nattrs_copy(&tmp, a);
        if (r < 0)
                return r;

        mbedtls_pk_type_t t = mbedtls_pk_get_type(pk);
        if (t == MBEDTLS_PK_RSA) {
                const mbedtls_rsa_context *rsa = mbedtls_pk_rsa(*pk);
                mbedtls_mpi n, e;
                mbedtls_mpi_init(&n);
                mbedtls_mpi_init(&e);
                r = mbedtls_rsa_export((mbedtls_rsa_context *) rsa, &n, NULL, NULL, NULL, &e) == 0 ? 0 : -EIO;
                if (r >= 0)
                        r = nattrs_set_ulong(&tmp, CKA_KEY_TYPE, CKK_RSA);
                if (r >= 0)
                        r = set_mpi(&tmp, CKA_MODULUS, &n);
                if (r >= 0)
                        r = set_mpi(&tmp, CKA_PUBLIC_EXPONENT, &e);
                if (r >= 0)
                        r = nattrs_set_ulong(&tmp, CKA_MODULUS_BITS, mbedtls_mpi_bitlen(&n));
                mbedtls_mpi_free(&n);
                mbedtls_mpi_free(&e);
        } else if (t == MBEDTLS_PK_ECKEY || t == MBEDTLS_PK_ECDSA) {
                const mbedtls_ecp_keypair *ec = mbedtls_pk_ec(*pk);
                const uint8_t *oid;
                size_t oid_n;
                uint8_t pt[3 + 1 + 2 * 66];
                size_t ptlen = 0;
                r = params_from_curve(ec->grp.id, &oid, &oid_n);
                if (r >= 0 &&
                    mbedtls_ecp_point_write_binary(&ec->grp, &ec->Q, MBEDTLS_ECP_PF_UNCOMPRESSED, &ptlen,
                                                   pt + 3, sizeof pt - 3) != 0)
                        r = -EIO;
                if (r >= 0) {
                        /* DER OCTET STRING around the point: at most 133 bytes. */
                        size_t off;
                        if (ptlen < 0x80) {
                                off = 1;
                                pt[1] = 0x04;
                                pt[2] = (uint8_t) ptlen;
                        } else {
                                off = 0;
                                pt[0] = 0x04;
                                pt[1] = 0x81;
                                pt[2] = (uint8_t) ptlen;
                        }
                        r = nattrs_set_ulong(&tmp, CKA_KEY_TYPE, CKK_EC);
                        if (r >= 0)
                                r = nattrs_set(&tmp, CKA_EC_PARAMS, oid, oid_n);
                        if (r >= 0)
                                r = nattrs_set(&tmp, CKA_EC_POINT, pt + off, ptlen + 3 - off);
                }
        } else
                r = -ENOKEY;

        if (r < 0) {
                nattrs_done(&tmp);
                return r;
        }
        nattrs_done(a);
        *a = tmp;
        return 0;
}

int pkc_key_size(const mbedtls_pk_context *pk, size_t *ret_bits, size_t *ret_sig_len) {
        size_t bits, sig;
        if (!pk)
                return -EINVAL;
        mbedtls_pk_type_t t = mbedtls_pk_get_type(pk);
        if (t == MBEDTLS_PK_RSA) {
                bits = mbedtls_pk_get_bitlen(pk);
                sig = mbedtls_rsa_get_len(mbedtls_pk_rsa(*pk));
        } else if (t == MBEDTLS_PK_ECKEY || t == MBEDTLS_PK_ECDSA) {
                const mbedtls_ecp_keypair *ec = mbedtls_pk_ec(*pk);
                bits = ec->grp.pbits;
                sig = 2 * ((ec->grp.nbits + 7) / 8);
        } else
                return -ENOKEY;
        if (ret_bits)
                *ret_bits = bits;
        if (ret_sig_len)
                *ret_sig_len = sig;
        return 0;
}

/* ---------------------------------------------------------------- verify */

static int rsa_public_raw(mbedtls_rsa_context *rsa, const uint8_t *sig, size_t sig_len, uint8_t *em) {
        size_t k = mbedtls_rsa_get_len(rsa);
        if (sig_len != k)
                return -ERANGE;
        int r = mbedtls_rsa_public(rsa, sig, em);
        if (r == 0)
                return 0;
        /* A signature not below the modulus is simply invalid. */
        return mbed_to_errno(r) == -ENOMEM ? -ENOMEM : -EBADMSG;
}

/* The public-key operation on an RSA signature em = sig^e (k bytes), and
 * where the signed data starts in it: 0 for CKM_RSA_X_509, after the
 * PKCS#1 v1.5 type 1 padding (00 01, at least 8 FF, 00) for CKM_RSA_PKCS
 * (-EBADMSG when it is not there). */
static int rsa_recover(mbedtls_rsa_context *rsa, CK_MECHANISM_TYPE m, const uint8_t *sig, size_t sig_len,
                       uint8_t *em, size_t *ret_off) {
        size_t k = mbedtls_rsa_get_len(rsa);
        int r = rsa_public_raw(rsa, sig, sig_len, em);
        if (r < 0)
                return r;
        if (m == CKM_RSA_X_509) {
                *ret_off = 0;
                return 0;
        }
        if (k < 11 || em[0] != 0x00 || em[1] != 0x01)
                return -EBADMSG;
        size_t i = 2;
        while (i < k && em[i] == 0xff)
                i++;
        if (i < 10 || i >= k || em[i] != 0x00)
                return -EBADMSG;
        *ret_off = i + 1;
        return 0;
}

int pkc_verify_recover(const mbedtls_pk_context *pk, const CK_MECHANISM *mech, const uint8_t *sig, size_t sig_len,
                       uint8_t *out, size_t *out_len) {
        if (!pk || !mech || (!sig && sig_len) || !out_len)
                return -EINVAL;
        if (mech->mechanism != CKM_RSA_PKCS && mech->mechanism != CKM_RSA_X_509)
                return -ENOTSUP;
        if (mbedtls_pk_get_type(pk) != MBEDTLS_PK_RSA)
                return -ENOKEY;
        mbedtls_rsa_context *rsa = mbedtls_pk_rsa(*pk);
        size_t k = mbedtls_rsa_get_len(rsa), off = 0;
        if (!out) {
                *out_len = mech->mechanism == CKM_RSA_X_509 ? k : k - 11;
                return 0;
        }
        uint8_t *em = malloc(k);
        if (!em)
                return -ENOMEM;
        int r = rsa_recover(rsa, mech->mechanism, sig, sig_len, em, &off);
        if (r >= 0 && *out_len < k - off)
                r = -ENOBUFS;
        else if (r >= 0)
                memcpy(out, em + off, k - off);
        if (r >= 0 || r == -ENOBUFS)
                *out_len = k - off;
        mbedtls_platform_zeroize(em, k);
        free(em);
        return r;
}

int pkc_pss_params(const CK_MECHANISM *mech, const mbedtls_pk_context *pk, size_t hash_len,
                   mbedtls_md_type_t *ret_md, mbedtls_md_type_t *ret_mgf, size_t *ret_slen) {
        CK_RSA_PKCS_PSS_PARAMS pp;
        if (!mech->pParameter || mech->ulParameterLen != sizeof pp)
                return -EBADR;
        memcpy(&pp, mech->pParameter, sizeof pp);
        mbedtls_md_type_t md = pkc_md_type(pp.hashAlg), mgf = pkc_mgf_md(pp.mgf);
        if (md == MBEDTLS_MD_NONE || mgf == MBEDTLS_MD_NONE || pp.sLen > 1024)
                return -EBADR;
        size_t hl = mbedtls_md_get_size(mbedtls_md_info_from_type(md));
        if (hl != hash_len)
                return -ERANGE;
        if (pk) {
                /* EM (emBits = modBits - 1) needs hLen + sLen + 2 bytes. */
                size_t embits = mbedtls_pk_get_bitlen(pk) - 1, emlen = (embits + 7) / 8;
                if (hl + pp.sLen + 2 > emlen)
                        return -EBADR;
        }
        *ret_md = md;
        *ret_mgf = mgf;
        *ret_slen = (size_t)pp.sLen;
        return 0;
}

static int ecdsa_verify_raw(const mbedtls_ecp_keypair *key, const uint8_t *hash, size_t hash_len,
                            const uint8_t *sig, size_t sig_len) {
        mbedtls_ecp_group grp;
        mbedtls_ecp_point q;
        mbedtls_mpi rr, ss;
        int r;

        size_t olen = (key->grp.nbits + 7) / 8;
        if (sig_len != 2 * olen)
                return -ERANGE;
        /* Private copy of the group: ecp_mul caches tables in it. */
        mbedtls_ecp_group_init(&grp);
        mbedtls_ecp_point_init(&q);
        mbedtls_mpi_init(&rr);
        mbedtls_mpi_init(&ss);
        if (mbedtls_ecp_group_load(&grp, key->grp.id) != 0 || mbedtls_ecp_copy(&q, &key->Q) != 0 ||
            mbedtls_mpi_read_binary(&rr, sig, olen) != 0 || mbedtls_mpi_read_binary(&ss, sig + olen, olen) != 0) {
                r = -ENOMEM;
                goto out;
        }
        r = mbedtls_ecdsa_verify(&grp, hash, hash_len, &q, &rr, &ss);
        r = r == 0 ? 0 : (r == MBEDTLS_ERR_ECP_VERIFY_FAILED || r == MBEDTLS_ERR_ECP_BAD_INPUT_DATA) ? -EBADMSG
                                                                                                   : mbed_to_errno(r);
out:
        mbedtls_ecp_group_free(&grp);
        mbedtls_ecp_point_free(&q);
        mbedtls_mpi_free(&rr);
        mbedtls_mpi_free(&ss);
        return r;
}

int pkc_verify(const mbedtls_pk_context *pk, const CK_MECHANISM *mech, const uint8_t *in, size_t in_len,
               const uint8_t *sig, size_t sig_len) {
        if (!pk || !mech || (!in && in_len) || (!sig && sig_len))
                return -EINVAL;
        mbedtls_pk_type_t t = mbedtls_pk_get_type(pk);

        switch (mech->mechanism) {
        case CKM_RSA_PKCS:
        case CKM_RSA_X_509:
        case CKM_RSA_PKCS_PSS: {
                if (t != MBEDTLS_PK_RSA)
                        return -ENOKEY;
                mbedtls_rsa_context *rsa = mbedtls_pk_rsa(*pk);
                size_t k = mbedtls_rsa_get_len(rsa);
                if (mech->mechanism == CKM_RSA_PKCS_PSS) {
                        mbedtls_md_type_t md, mgf;
                        size_t slen;
                        int r = pkc_pss_params(mech, NULL, in_len, &md, &mgf, &slen);
                        if (r < 0)
                                return r;
                        if (sig_len != k)
                                return -ERANGE;
                        r = mbedtls_rsa_rsassa_pss_verify_ext(rsa, NULL, NULL, MBEDTLS_RSA_PUBLIC, md,
                                                              (unsigned) in_len, in, mgf, (int) slen, sig);
                        if (r == 0)
                                return 0;
                        return mbed_to_errno(r) == -ENOMEM ? -ENOMEM : -EBADMSG;
                }
                bool x509 = mech->mechanism == CKM_RSA_X_509;
                if (in_len + (x509 ? 0 : 11) > k)
                        return -ERANGE;
                uint8_t *em = malloc(k);
                if (!em)
                        return -ENOMEM;
                size_t off = 0;
                int r = rsa_recover(rsa, mech->mechanism, sig, sig_len, em, &off);
                if (r >= 0 && x509) {
                        /* The data, left-padded with zeros to the modulus size. */
                        for (size_t i = 0; i < k - in_len; i++)
                                if (em[i] != 0)
                                        r = -EBADMSG;
                        off = k - in_len;
                }
                if (r >= 0 && (k - off != in_len || memcmp(em + off, in, in_len) != 0))
                        r = -EBADMSG;
                free(em);
                return r;
        }
        case CKM_ECDSA:
                if (t != MBEDTLS_PK_ECKEY && t != MBEDTLS_PK_ECDSA)
                        return -ENOKEY;
                if (in_len == 0)
                        return -ERANGE;
                return ecdsa_verify_raw(mbedtls_pk_ec(*pk), in, in_len, sig, sig_len);
        default:
                return -ENOTSUP;
        }
}

/* ---------------------------------------------------------------- encrypt */

int pkc_oaep_params(const CK_MECHANISM *mech, mbedtls_md_type_t *ret_md) {
        CK_RSA_PKCS_OAEP_PARAMS op;
        if (!mech->pParameter || mech->ulParameterLen != sizeof op)
                return -EBADR;
        memcpy(&op, mech->pParameter, sizeof op);
        /* SHA-1 and SHA-256 are the ones required; the other SHA-2 sizes
         * come for free.  MGF1 must use the same hash (mbedTLS has one). */
        if (pkc_md_type(op.hashAlg) == MBEDTLS_MD_NONE || pkc_mgf_md(op.mgf) != pkc_md_type(op.hashAlg))
                return -EBADR;
        if (op.source != 0 && op.source != CKZ_DATA_SPECIFIED)
                return -EBADR;
        if (op.ulSourceDataLen != 0)
                return -EBADR;
        *ret_md = pkc_md_type(op.hashAlg);
        return 0;
}

int pkc_encrypt(const mbedtls_pk_context *pk, const CK_MECHANISM *mech, const uint8_t *in, size_t in_len,
                uint8_t *out, size_t *outlen) {
        if (!pk || !mech || !outlen || (!in && in_len))
                return -EINVAL;
        if (mech->mechanism != CKM_RSA_PKCS && mech->mechanism != CKM_RSA_PKCS_OAEP &&
            mech->mechanism != CKM_RSA_X_509)
                return -ENOTSUP;
        if (mbedtls_pk_get_type(pk) != MBEDTLS_PK_RSA)
                return -ENOKEY;
        mbedtls_rsa_context *rsa = mbedtls_pk_rsa(*pk);
        size_t k = mbedtls_rsa_get_len(rsa);
        mbedtls_md_type_t md = MBEDTLS_MD_NONE;
        int r;

        if (mech->mechanism == CKM_RSA_PKCS_OAEP) {
                r = pkc_oaep_params(mech, &md);
                if (r < 0)
                        return r;
        }
        if (!out) {
                *outlen = k;
                return 0;
        }
        if (*outlen < k) {
                *outlen = k;
                return -ENOBUFS;
        }

        switch (mech->mechanism) {
        case CKM_RSA_PKCS:
                if (in_len + 11 > k)
                        return -ERANGE;
                r = mbedtls_rsa_rsaes_pkcs1_v15_encrypt(rsa, pkc_rng, NULL, MBEDTLS_RSA_PUBLIC, in_len, in, out);
                break;
        case CKM_RSA_PKCS_OAEP: {
                size_t hl = mbedtls_md_get_size(mbedtls_md_info_from_type(md));
                if (in_len + 2 * hl + 2 > k)
                        return -ERANGE;
                /* The context's hash_id selects OAEP's hash: use a copy so
                 * that a shared key is never modified. */
                mbedtls_rsa_context c;
                mbedtls_rsa_init(&c, MBEDTLS_RSA_PKCS_V21, md);
                r = mbedtls_rsa_copy(&c, rsa);
                if (r == 0) {
                        mbedtls_rsa_set_padding(&c, MBEDTLS_RSA_PKCS_V21, md);
                        r = mbedtls_rsa_rsaes_oaep_encrypt(&c, pkc_rng, NULL, MBEDTLS_RSA_PUBLIC, NULL, 0, in_len,
                                                           in, out);
                }
                mbedtls_rsa_free(&c);
                break;
        }
        default: { /* CKM_RSA_X_509 */
                if (in_len > k)
                        return -ERANGE;
                uint8_t *m = calloc(1, k);
                if (!m)
                        return -ENOMEM;
                memcpy(m + k - in_len, in, in_len);
                r = mbedtls_rsa_public(rsa, m, out);
                free(m);
                if (r != 0 && mbed_to_errno(r) != -ENOMEM)
                        return -ERANGE; /* not below the modulus */
                break;
        }
        }
        if (r != 0)
                return mbed_to_errno(r);
        *outlen = k;
        return 0;
}

/* ---------------------------------------------------------------- certificates */

static void put_digits(unsigned char *d, size_t n, int v) {
        if (v < 0)
                v = 0;
        for (size_t i = n; i > 0; i--) {
                d[i - 1] = (unsigned char) ('0' + v % 10);
                v /= 10;
        }
}

static void time_to_date(const mbedtls_x509_time *t, CK_DATE *d) {
        put_digits(d->year, 4, t->year);
        put_digits(d->month, 2, t->mon);
        put_digits(d->day, 2, t->day);
}

int pkc_cert_attrs(const uint8_t *der, size_t len, struct nattrs *a) {
        mbedtls_x509_crt crt;
        struct nattrs tmp;
        int r;

        if (!der || !len || !a)
                return -EDOM;
        mbedtls_x509_crt_init(&crt);
        if (mbedtls_x509_crt_parse_der(&crt, der, len) != 0) {
                mbedtls_x509_crt_free(&crt);
                return -EDOM;
        }
        nattrs_init(&tmp);
        r = nattrs_copy(&tmp, a);
        if (r < 0) {
                mbedtls_x509_crt_free(&crt);
                return r;
        }

        /* Serial as a DER INTEGER. */
        uint8_t serial[2 + 2 + MBEDTLS_X509_RFC5280_MAX_SERIAL_LEN + 1];
        size_t sl = crt.serial.len, off = 0;
        if (sl > sizeof serial - 4)
                sl = sizeof serial - 4;
        serial[off++] = 0x02;
        if (sl < 0x80)
                serial[off++] = (uint8_t) sl;
        else {
                serial[off++] = 0x81;
                serial[off++] = (uint8_t) sl;
        }
        memcpy(serial + off, crt.serial.p, sl);
        off += sl;

        CK_DATE start, end;
        time_to_date(&crt.valid_from, &start);
        time_to_date(&crt.valid_to, &end);

        uint8_t sha1[20];
        mbedtls_sha1_ret(der, len, sha1);

        CK_ULONG cls = CKO_CERTIFICATE, ctype = CKC_X_509, cat = 0;
        if (r >= 0) r = nattrs_set(&tmp, CKA_CLASS, &cls, sizeof cls);
        if (r >= 0) r = nattrs_default(&tmp, CKA_CERTIFICATE_TYPE, &ctype, sizeof ctype);
        if (r >= 0) r = nattrs_default(&tmp, CKA_VALUE, der, len);
        if (r >= 0) r = nattrs_default(&tmp, CKA_SUBJECT, crt.subject_raw.p, crt.subject_raw.len);
        if (r >= 0) r = nattrs_default(&tmp, CKA_ISSUER, crt.issuer_raw.p, crt.issuer_raw.len);
        if (r >= 0) r = nattrs_default(&tmp, CKA_SERIAL_NUMBER, serial, off);
        if (r >= 0) r = nattrs_default(&tmp, CKA_START_DATE, &start, sizeof start);
        if (r >= 0) r = nattrs_default(&tmp, CKA_END_DATE, &end, sizeof end);
        if (r >= 0) r = nattrs_default(&tmp, CKA_PUBLIC_KEY_INFO, crt.pk_raw.p, crt.pk_raw.len);
        if (r >= 0) r = nattrs_default(&tmp, CKA_CERTIFICATE_CATEGORY, &cat, sizeof cat);
        if (r >= 0) r = nattrs_default_bool(&tmp, CKA_TRUSTED, false);
        if (r >= 0) r = nattrs_default(&tmp, CKA_CHECK_VALUE, sha1, 3);
        mbedtls_x509_crt_free(&crt);
        if (r < 0) {
                nattrs_done(&tmp);
                return r;
        }
        nattrs_done(a);
        *a = tmp;
        return 0;
}

int pkc_set_spki(struct nattrs *a, mbedtls_pk_context *pk) {
        uint8_t buf[1200];
        int len = mbedtls_pk_write_pubkey_der(pk, buf, sizeof buf);
        if (len <= 0)
                return -EIO;
        return nattrs_set(a, CKA_PUBLIC_KEY_INFO, buf + sizeof buf - len, (size_t) len);
}
