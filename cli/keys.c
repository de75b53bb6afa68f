/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* key gen and csr.
 *
 * The CSR (PKCS#10, RFC 2986) is built here: CertificationRequestInfo from
 * the token's public key and the subject (given, or taken from the
 * certificate that has the key's CKA_ID: renewal with the same key), signed
 * on the token through PKCS#11 (CKM_SHA256_RSA_PKCS, or CKM_ECDSA over a
 * SHA-256/384 hash), written as PEM. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <mbedtls/asn1write.h>
#include <mbedtls/ecp.h>
#include <mbedtls/oid.h>
#include <mbedtls/sha1.h>
#include <mbedtls/sha256.h>
#include <mbedtls/sha512.h>
#include <mbedtls/x509.h>
#include <mbedtls/x509_crt.h>

#include "certs.h"
#include "cli.h"
#include "common/secmem.h"
#include "keys.h"

static const uint8_t ec_p256_params[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
static const uint8_t ec_p384_params[] = { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22 };

int ec_params_for_group(int grp_id, const uint8_t **ret, size_t *ret_len) {
        switch (grp_id) {
        case MBEDTLS_ECP_DP_SECP256R1:
                *ret = ec_p256_params;
                *ret_len = sizeof ec_p256_params;
                return 0;
        case MBEDTLS_ECP_DP_SECP384R1:
                *ret = ec_p384_params;
                *ret_len = sizeof ec_p384_params;
                return 0;
        default:
                return -EOPNOTSUPP;
        }
}

int key_id_from_pk(const mbedtls_pk_context *pk, uint8_t ret[KEY_ID_LEN]) {
        uint8_t buf[1024];
        size_t len = 0;

        if (mbedtls_pk_get_type(pk) == MBEDTLS_PK_RSA) {
                const mbedtls_rsa_context *rsa = mbedtls_pk_rsa(*pk);
                len = mbedtls_mpi_size(&rsa->N);
                if (len > sizeof buf || mbedtls_mpi_write_binary(&rsa->N, buf, len) != 0)
                        return -EINVAL;
        } else if (mbedtls_pk_get_type(pk) == MBEDTLS_PK_ECKEY || mbedtls_pk_get_type(pk) == MBEDTLS_PK_ECDSA) {
                const mbedtls_ecp_keypair *ec = mbedtls_pk_ec(*pk);
                if (mbedtls_ecp_point_write_binary(&ec->grp, &ec->Q, MBEDTLS_ECP_PF_UNCOMPRESSED, &len, buf,
                                                   sizeof buf) != 0)
                        return -EINVAL;
        } else {
                return -EOPNOTSUPP;
        }
        mbedtls_sha1_ret(buf, len, ret);
        return 0;
}

static CK_BBOOL ck_yes = CK_TRUE, ck_no = CK_FALSE;

const CK_ATTRIBUTE key_private_policy[KEY_PRIVATE_POLICY_LEN] = {
        { CKA_TOKEN, &ck_yes, sizeof ck_yes },
        { CKA_PRIVATE, &ck_yes, sizeof ck_yes },
        { CKA_SENSITIVE, &ck_yes, sizeof ck_yes },
        { CKA_EXTRACTABLE, &ck_no, sizeof ck_no },
        { CKA_SIGN, &ck_yes, sizeof ck_yes },
};

int parse_id_option(uint8_t **ret, size_t *ret_len) {
        if (!arg.id_hex) {
                *ret = NULL;
                *ret_len = 0;
                return 0;
        }
        if (hex_decode(arg.id_hex, ret, ret_len) < 0 || *ret_len > 64) {
                cli_error("--id must be 1 to 64 bytes in hex");
                return -EINVAL;
        }
        return 0;
}

/* Reads the token's public key with this CKA_ID into pk: the public key
 * object, else the certificate. */
static int load_public_key(CK_SESSION_HANDLE s, const uint8_t *id, size_t id_len, mbedtls_pk_context *pk) {
        CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
        CK_ATTRIBUTE tmpl[] = { { CKA_CLASS, &cls, sizeof cls }, { CKA_ID, (void *)id, id_len } };
        _cleanup_free_ CK_OBJECT_HANDLE *h = NULL;
        size_t n = 0;
        CK_ULONG kt = 0;
        int r;

        if (p11_find(s, tmpl, 2, &h, &n) == 0 && n > 0 && p11_get_ulong(s, h[0], CKA_KEY_TYPE, &kt) == 0) {
                if (kt == CKK_RSA) {
                        _cleanup_free_ uint8_t *mod = NULL, *exp = NULL;
                        size_t ml = 0, el = 0;
                        if (p11_get_attr(s, h[0], CKA_MODULUS, &mod, &ml) < 0 ||
                            p11_get_attr(s, h[0], CKA_PUBLIC_EXPONENT, &exp, &el) < 0)
                                return -ENOENT;
                        if (mbedtls_pk_setup(pk, mbedtls_pk_info_from_type(MBEDTLS_PK_RSA)) != 0)
                                return -ENOMEM;
                        if (mbedtls_rsa_import_raw(mbedtls_pk_rsa(*pk), mod, ml, NULL, 0, NULL, 0, NULL, 0, exp,
                                                   el) != 0 ||
                            mbedtls_rsa_complete(mbedtls_pk_rsa(*pk)) != 0)
                                return -EBADMSG;
                        return 0;
                }
                if (kt == CKK_EC) {
                        _cleanup_free_ uint8_t *params = NULL, *point = NULL;
                        size_t pl = 0, ptl = 0, off = 0;
                        mbedtls_ecp_group_id gid;
                        mbedtls_ecp_keypair *ec;

                        if (p11_get_attr(s, h[0], CKA_EC_PARAMS, &params, &pl) < 0 ||
                            p11_get_attr(s, h[0], CKA_EC_POINT, &point, &ptl) < 0)
                                return -ENOENT;
                        if (pl == sizeof ec_p256_params && memcmp(params, ec_p256_params, pl) == 0)
                                gid = MBEDTLS_ECP_DP_SECP256R1;
                        else if (pl == sizeof ec_p384_params && memcmp(params, ec_p384_params, pl) == 0)
                                gid = MBEDTLS_ECP_DP_SECP384R1;
                        else
                                return -EOPNOTSUPP;
                        /* CKA_EC_POINT is a DER OCTET STRING; accept a bare point too. */
                        if (ptl > 2 && point[0] == 0x04 && point[1] == ptl - 2 && point[1] < 0x80)
                                off = 2;
                        else if (ptl > 3 && point[0] == 0x04 && point[1] == 0x81 && point[2] == ptl - 3)
                                off = 3;
                        if (mbedtls_pk_setup(pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)) != 0)
                                return -ENOMEM;
                        ec = mbedtls_pk_ec(*pk);
                        if (mbedtls_ecp_group_load(&ec->grp, gid) != 0 ||
                            mbedtls_ecp_point_read_binary(&ec->grp, &ec->Q, point + off, ptl - off) != 0)
                                return -EBADMSG;
                        return 0;
                }
                return -EOPNOTSUPP;
        }

        /* No public key object: the certificate's key. */
        {
                CK_OBJECT_CLASS ccls = CKO_CERTIFICATE;
                CK_ATTRIBUTE ct[] = { { CKA_CLASS, &ccls, sizeof ccls }, { CKA_ID, (void *)id, id_len } };
                _cleanup_free_ CK_OBJECT_HANDLE *ch = NULL;
                _cleanup_free_ uint8_t *der = NULL;
                mbedtls_x509_crt crt;
                unsigned char spki[2048];
                size_t cn = 0, dl = 0;
                int len;

                if (p11_find(s, ct, 2, &ch, &cn) < 0 || cn == 0 || p11_get_attr(s, ch[0], CKA_VALUE, &der, &dl) < 0)
                        return -ENOENT;
                mbedtls_x509_crt_init(&crt);
                r = mbedtls_x509_crt_parse_der(&crt, der, dl);
                if (r == 0) {
                        len = mbedtls_pk_write_pubkey_der(&crt.pk, spki, sizeof spki);
                        r = len > 0 ? mbedtls_pk_parse_public_key(pk, spki + sizeof spki - len, (size_t)len) : -1;
                }
                mbedtls_x509_crt_free(&crt);
                return r == 0 ? 0 : -EBADMSG;
        }
}

/* ---- key gen ---- */

int cmd_key_gen(void) {
        struct p11_token t;
        CK_SESSION_HANDLE s;
        CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE, priv = CK_INVALID_HANDLE;
        CK_BBOOL yes = CK_TRUE;
        CK_ULONG bits = 0;
        CK_BYTE exp[] = { 0x01, 0x00, 0x01 };
        CK_MECHANISM mech = { 0 };
        const uint8_t *params = NULL;
        size_t params_len = 0;
        _cleanup_free_ uint8_t *id = NULL;
        size_t id_len = 0;
        uint8_t tmp_id[KEY_ID_LEN];
        const char *label;
        bool rsa;
        CK_RV rv;
        int r;

        if (!arg.type) {
                cli_error("key gen needs --type ec-p256|ec-p384|rsa2048|rsa3072");
                return CLI_EXIT_USAGE;
        }
        if (strcmp(arg.type, "ec-p256") == 0) {
                (void)ec_params_for_group(MBEDTLS_ECP_DP_SECP256R1, &params, &params_len);
                rsa = false;
        } else if (strcmp(arg.type, "ec-p384") == 0) {
                (void)ec_params_for_group(MBEDTLS_ECP_DP_SECP384R1, &params, &params_len);
                rsa = false;
        } else if (strcmp(arg.type, "rsa2048") == 0) {
                bits = 2048;
                rsa = true;
        } else if (strcmp(arg.type, "rsa3072") == 0) {
                bits = 3072;
                rsa = true;
        } else {
                cli_error("unknown key type \"%s\": use ec-p256, ec-p384, rsa2048 or rsa3072", arg.type);
                return CLI_EXIT_USAGE;
        }
        if (parse_id_option(&id, &id_len) < 0)
                return CLI_EXIT_USAGE;
        if (!id) {
                /* Provisional; replaced by the public key's SHA-1 below. */
                if (getrandom(tmp_id, sizeof tmp_id, 0) != (ssize_t)sizeof tmp_id) {
                        cli_error("no randomness");
                        return CLI_EXIT_OTHER;
                }
        }
        label = arg.label ? arg.label : arg.type;

        r = p11_open_selected(&t, true, &s);
        if (r != CLI_EXIT_OK)
                return r;

        {
                CK_ATTRIBUTE pub_rsa[] = {
                        { CKA_TOKEN, &yes, sizeof yes },
                        { CKA_VERIFY, &yes, sizeof yes },
                        { CKA_ENCRYPT, &yes, sizeof yes },
                        { CKA_MODULUS_BITS, &bits, sizeof bits },
                        { CKA_PUBLIC_EXPONENT, exp, sizeof exp },
                        { CKA_LABEL, (void *)label, strlen(label) },
                        { CKA_ID, id ? id : tmp_id, id ? id_len : sizeof tmp_id },
                };
                CK_ATTRIBUTE pub_ec[] = {
                        { CKA_TOKEN, &yes, sizeof yes },
                        { CKA_VERIFY, &yes, sizeof yes },
                        { CKA_EC_PARAMS, (void *)params, params_len },
                        { CKA_LABEL, (void *)label, strlen(label) },
                        { CKA_ID, id ? id : tmp_id, id ? id_len : sizeof tmp_id },
                };
                CK_ATTRIBUTE priv_t[KEY_PRIVATE_POLICY_LEN + 3];
                memcpy(priv_t, key_private_policy, sizeof key_private_policy);
                priv_t[KEY_PRIVATE_POLICY_LEN] = (CK_ATTRIBUTE){ CKA_LABEL, (void *)label, strlen(label) };
                priv_t[KEY_PRIVATE_POLICY_LEN + 1] =
                        (CK_ATTRIBUTE){ CKA_ID, id ? id : tmp_id, id ? id_len : sizeof tmp_id };
                priv_t[KEY_PRIVATE_POLICY_LEN + 2] = (CK_ATTRIBUTE){ CKA_DECRYPT, &yes, sizeof yes };
                mech.mechanism = rsa ? CKM_RSA_PKCS_KEY_PAIR_GEN : CKM_EC_KEY_PAIR_GEN;
                rv = p11->C_GenerateKeyPair(s, &mech, rsa ? pub_rsa : pub_ec, rsa ? ELEMENTSOF(pub_rsa) : ELEMENTSOF(pub_ec),
                                            priv_t, rsa ? ELEMENTSOF(priv_t) : ELEMENTSOF(priv_t) - 1, &pub, &priv);
        }
        if (rv != CKR_OK) {
                cli_error("cannot generate the key pair on token \"%s\": %s", t.label, p11_rv_str(rv));
                r = p11_exit_from_rv(rv);
                goto out;
        }

        if (!id) {
                mbedtls_pk_context pk;
                uint8_t kid[KEY_ID_LEN];

                mbedtls_pk_init(&pk);
                if (load_public_key(s, tmp_id, sizeof tmp_id, &pk) == 0 && key_id_from_pk(&pk, kid) == 0) {
                        CK_ATTRIBUTE a = { CKA_ID, kid, sizeof kid };
                        if (p11->C_SetAttributeValue(s, pub, &a, 1) == CKR_OK &&
                            p11->C_SetAttributeValue(s, priv, &a, 1) == CKR_OK)
                                memcpy(tmp_id, kid, sizeof kid);
                }
                mbedtls_pk_free(&pk);
        }

        {
                _cleanup_free_ char *hex = id ? hex_encode(id, id_len, NULL) : hex_encode(tmp_id, sizeof tmp_id, NULL);
                if (arg.json) {
                        cJSON *o = cJSON_CreateObject();
                        cJSON_AddStringToObject(o, "token", t.label);
                        cJSON_AddStringToObject(o, "type", arg.type);
                        cJSON_AddStringToObject(o, "label", label);
                        cJSON_AddStringToObject(o, "id", hex ? hex : "");
                        print_json(o);
                        cJSON_Delete(o);
                } else {
                        printf("Generated %s key pair \"%s\" on token \"%s\", id %s\n", arg.type, shown(label), shown(t.label),
                               hex ? hex : "");
                }
        }
        r = CLI_EXIT_OK;
out:
        p11_close(s);
        return r;
}

/* ---- csr ---- */

/* Selects the private key: --id, --label, --cert, or the only one. */
static int select_private_key(CK_SESSION_HANDLE s, const struct p11_token *t, uint8_t **ret_id, size_t *ret_id_len,
                              CK_OBJECT_HANDLE *ret_key) {
        CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
        CK_ATTRIBUTE tmpl[] = { { CKA_CLASS, &cls, sizeof cls } };
        _cleanup_free_ CK_OBJECT_HANDLE *h = NULL;
        _cleanup_free_ uint8_t *want = NULL;
        size_t n = 0, want_len = 0, matches = 0, found = 0;

        if (arg.cert) {
                struct cert_entry e = {};
                int r = select_cert(s, t, &e);
                if (r != CLI_EXIT_OK)
                        return r;
                want = e.id;
                want_len = e.id_len;
                e.id = NULL;
                cert_entry_done(&e);
                if (!want) {
                        cli_error("the certificate has no CKA_ID to find its key by");
                        return CLI_EXIT_NOT_FOUND;
                }
        } else if (parse_id_option(&want, &want_len) < 0) {
                return CLI_EXIT_USAGE;
        }
        if (p11_find(s, tmpl, 1, &h, &n) < 0) {
                cli_error("cannot list the keys");
                return CLI_EXIT_OTHER;
        }
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ uint8_t *id = NULL, *label = NULL;
                size_t il = 0, ll = 0;
                (void)p11_get_attr(s, h[i], CKA_ID, &id, &il);
                (void)p11_get_attr(s, h[i], CKA_LABEL, &label, &ll);
                if (want && (!id || il != want_len || memcmp(id, want, il) != 0))
                        continue;
                if (arg.label && !arg.cert && (!label || strcmp((char *)label, arg.label) != 0))
                        continue;
                matches++;
                found = i;
        }
        if (matches != 1) {
                if (matches == 0)
                        cli_error("no private key on token \"%s\" matches", t->label);
                else
                        cli_error("%zu private keys match on token \"%s\"; choose one with --id HEX, --label or --cert",
                                  matches, t->label);
                return matches == 0 ? CLI_EXIT_NOT_FOUND : CLI_EXIT_USAGE;
        }
        if (p11_get_attr(s, h[found], CKA_ID, ret_id, ret_id_len) < 0) {
                cli_error("the key has no CKA_ID");
                return CLI_EXIT_NOT_FOUND;
        }
        *ret_key = h[found];
        return CLI_EXIT_OK;
}

/* The subject Name DER: --subject, else the certificate with the key's id. */
static int csr_subject(CK_SESSION_HANDLE s, const uint8_t *id, size_t id_len, uint8_t **ret, size_t *ret_len) {
        if (arg.subject) {
                mbedtls_asn1_named_data *names = NULL;
                _cleanup_free_ char *dn = strdup(arg.subject);
                unsigned char buf[4096], *c = buf + sizeof buf;
                int len;

                if (!dn)
                        return -ENOMEM;
                /* Accept the OpenSSL form /CN=a/O=b as well as CN=a,O=b. */
                if (dn[0] == '/') {
                        memmove(dn, dn + 1, strlen(dn));
                        for (char *q = dn; *q; q++)
                                if (*q == '/')
                                        *q = ',';
                }
                if (mbedtls_x509_string_to_names(&names, dn) != 0) {
                        cli_error("cannot parse the subject \"%s\" (use CN=...,O=...,C=...)", arg.subject);
                        mbedtls_asn1_free_named_data_list(&names);
                        return -EINVAL;
                }
                len = mbedtls_x509_write_names(&c, buf, names);
                mbedtls_asn1_free_named_data_list(&names);
                if (len < 0)
                        return -EINVAL;
                *ret = malloc((size_t)len);
                if (!*ret)
                        return -ENOMEM;
                memcpy(*ret, c, (size_t)len);
                *ret_len = (size_t)len;
                return 0;
        }
        {
                struct cert_entry *v = NULL;
                size_t n = 0;
                int r = -ENOENT;

                if (load_certs(s, &v, &n) < 0)
                        return -EIO;
                for (size_t i = 0; i < n; i++) {
                        if (!v[i].parsed || !v[i].id || v[i].id_len != id_len || memcmp(v[i].id, id, id_len) != 0)
                                continue;
                        *ret = malloc(v[i].crt.subject_raw.len);
                        if (!*ret) {
                                r = -ENOMEM;
                                break;
                        }
                        memcpy(*ret, v[i].crt.subject_raw.p, v[i].crt.subject_raw.len);
                        *ret_len = v[i].crt.subject_raw.len;
                        r = 0;
                        break;
                }
                cert_entries_free(v, n);
                if (r == -ENOENT)
                        cli_error("no --subject given and no certificate with this key to renew");
                return r;
        }
}

#define W(expr)                                 \
        do {                                    \
                int _w = (expr);                \
                if (_w < 0)                     \
                        return -EMSGSIZE;       \
                len += (size_t)_w;              \
        } while (0)

/* Writes raw bytes backwards. */
static int write_raw(unsigned char **c, unsigned char *start, const uint8_t *p, size_t n) {
        return mbedtls_asn1_write_raw_buffer(c, start, p, n);
}

static int build_cri(unsigned char *buf, size_t size, const uint8_t *subject, size_t subject_len, const uint8_t *spki,
                     size_t spki_len, unsigned char **ret_start) {
        unsigned char *c = buf + size;
        size_t len = 0;

        /* attributes [0] IMPLICIT SET OF Attribute: empty */
        W(mbedtls_asn1_write_len(&c, buf, 0));
        W(mbedtls_asn1_write_tag(&c, buf, MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_ASN1_CONSTRUCTED | 0));
        W(write_raw(&c, buf, spki, spki_len));
        W(write_raw(&c, buf, subject, subject_len));
        W(mbedtls_asn1_write_int(&c, buf, 0));
        W(mbedtls_asn1_write_len(&c, buf, len));
        W(mbedtls_asn1_write_tag(&c, buf, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE));
        *ret_start = c;
        return (int)len;
}

/* r||s -> ECDSA-Sig-Value DER, written backwards; returns its length. */
static int write_ecdsa_sig(unsigned char **c, unsigned char *start, const uint8_t *rs, size_t rs_len) {
        mbedtls_mpi r, s;
        size_t len = 0;
        int ret = -EINVAL;

        if (rs_len == 0 || rs_len % 2)
                return -EINVAL;
        mbedtls_mpi_init(&r);
        mbedtls_mpi_init(&s);
        if (mbedtls_mpi_read_binary(&r, rs, rs_len / 2) == 0 &&
            mbedtls_mpi_read_binary(&s, rs + rs_len / 2, rs_len / 2) == 0) {
                int w1 = mbedtls_asn1_write_mpi(c, start, &s);
                int w2 = w1 < 0 ? w1 : mbedtls_asn1_write_mpi(c, start, &r);
                if (w1 >= 0 && w2 >= 0) {
                        len = (size_t)w1 + (size_t)w2;
                        int w3 = mbedtls_asn1_write_len(c, start, len);
                        int w4 = w3 < 0 ? w3 : mbedtls_asn1_write_tag(c, start, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE);
                        if (w3 >= 0 && w4 >= 0)
                                ret = (int)(len + (size_t)w3 + (size_t)w4);
                }
        }
        mbedtls_mpi_free(&r);
        mbedtls_mpi_free(&s);
        return ret;
}

static int build_csr(unsigned char *buf, size_t size, const uint8_t *cri, size_t cri_len, const char *sig_oid,
                     size_t sig_oid_len, bool null_params, bool ecdsa, const uint8_t *sig, size_t sig_len,
                     unsigned char **ret_start) {
        unsigned char *c = buf + size;
        size_t len = 0, bs_len = 0, alg_len = 0;

        /* signature BIT STRING */
        {
                size_t before = (size_t)(c - buf);
                if (ecdsa) {
                        if (write_ecdsa_sig(&c, buf, sig, sig_len) < 0)
                                return -EMSGSIZE;
                } else if (write_raw(&c, buf, sig, sig_len) < 0) {
                        return -EMSGSIZE;
                }
                bs_len = before - (size_t)(c - buf);
                if (c - buf < 1)
                        return -EMSGSIZE;
                *--c = 0; /* unused bits */
                bs_len++;
                len += bs_len;
                W(mbedtls_asn1_write_len(&c, buf, bs_len));
                W(mbedtls_asn1_write_tag(&c, buf, MBEDTLS_ASN1_BIT_STRING));
        }
        /* signatureAlgorithm */
        {
                size_t l0 = len;
                if (null_params)
                        W(mbedtls_asn1_write_null(&c, buf));
                W(mbedtls_asn1_write_oid(&c, buf, sig_oid, sig_oid_len));
                alg_len = len - l0;
                W(mbedtls_asn1_write_len(&c, buf, alg_len));
                W(mbedtls_asn1_write_tag(&c, buf, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE));
        }
        W(write_raw(&c, buf, cri, cri_len));
        W(mbedtls_asn1_write_len(&c, buf, len));
        W(mbedtls_asn1_write_tag(&c, buf, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE));
        *ret_start = c;
        return (int)len;
}

int cmd_csr(void) {
        struct p11_token t;
        CK_SESSION_HANDLE s;
        CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
        _cleanup_free_ uint8_t *id = NULL, *subject = NULL, *cri = NULL, *sig = NULL;
        _cleanup_free_ char *pem = NULL;
        size_t id_len = 0, subject_len = 0, cri_len = 0;
        CK_ULONG sig_len = 0;
        mbedtls_pk_context pk;
        unsigned char spki_buf[2048], *start;
        static unsigned char buf[16384];
        int spki_len, len, r;
        bool ecdsa;
        const char *oid;
        size_t oid_len;
        uint8_t hash[64];
        size_t hash_len = 0;
        CK_MECHANISM mech = { 0 };
        CK_RV rv;

        mbedtls_pk_init(&pk);
        r = p11_open_selected(&t, true, &s);
        if (r != CLI_EXIT_OK)
                return r;
        r = select_private_key(s, &t, &id, &id_len, &key);
        if (r != CLI_EXIT_OK)
                goto out;
        if (load_public_key(s, id, id_len, &pk) < 0) {
                cli_error("cannot find the public key of this key pair on the token");
                r = CLI_EXIT_NOT_FOUND;
                goto out;
        }
        if (csr_subject(s, id, id_len, &subject, &subject_len) < 0) {
                r = CLI_EXIT_USAGE;
                goto out;
        }
        spki_len = mbedtls_pk_write_pubkey_der(&pk, spki_buf, sizeof spki_buf);
        if (spki_len <= 0) {
                cli_error("cannot encode the public key");
                r = CLI_EXIT_OTHER;
                goto out;
        }
        len = build_cri(buf, sizeof buf, subject, subject_len, spki_buf + sizeof spki_buf - spki_len, (size_t)spki_len,
                        &start);
        if (len < 0 || !(cri = malloc((size_t)len))) {
                cli_error("cannot build the request");
                r = CLI_EXIT_OTHER;
                goto out;
        }
        memcpy(cri, start, (size_t)len);
        cri_len = (size_t)len;

        ecdsa = mbedtls_pk_get_type(&pk) != MBEDTLS_PK_RSA;
        if (!ecdsa) {
                mech.mechanism = CKM_SHA256_RSA_PKCS;
                oid = MBEDTLS_OID_PKCS1_SHA256;
                oid_len = MBEDTLS_OID_SIZE(MBEDTLS_OID_PKCS1_SHA256);
        } else if (mbedtls_pk_get_bitlen(&pk) > 256) {
                mech.mechanism = CKM_ECDSA;
                mbedtls_sha512_ret(cri, cri_len, hash, 1);
                hash_len = 48;
                oid = MBEDTLS_OID_ECDSA_SHA384;
                oid_len = MBEDTLS_OID_SIZE(MBEDTLS_OID_ECDSA_SHA384);
        } else {
                mech.mechanism = CKM_ECDSA;
                mbedtls_sha256_ret(cri, cri_len, hash, 0);
                hash_len = 32;
                oid = MBEDTLS_OID_ECDSA_SHA256;
                oid_len = MBEDTLS_OID_SIZE(MBEDTLS_OID_ECDSA_SHA256);
        }
        rv = p11->C_SignInit(s, &mech, key);
        if (rv == CKR_OK) {
                CK_BYTE_PTR in = ecdsa ? hash : cri;
                CK_ULONG in_len = ecdsa ? hash_len : cri_len;
                rv = p11->C_Sign(s, in, in_len, NULL, &sig_len);
                if (rv == CKR_OK && (sig_len == 0 || sig_len > 1024))
                        rv = CKR_GENERAL_ERROR;
                if (rv == CKR_OK && !(sig = malloc(sig_len)))
                        rv = CKR_HOST_MEMORY;
                if (rv == CKR_OK)
                        rv = p11->C_Sign(s, in, in_len, sig, &sig_len);
        }
        if (rv != CKR_OK) {
                cli_error("the token could not sign the request: %s", p11_rv_str(rv));
                r = p11_exit_from_rv(rv);
                goto out;
        }
        len = build_csr(buf, sizeof buf, cri, cri_len, oid, oid_len, !ecdsa, ecdsa, sig, sig_len, &start);
        if (len < 0 || pem_encode("CERTIFICATE REQUEST", start, (size_t)len, &pem) < 0) {
                cli_error("cannot encode the request");
                r = CLI_EXIT_OTHER;
                goto out;
        }
        if (write_output(arg.output, pem, strlen(pem)) < 0) {
                cli_error("cannot write %s", arg.output ? arg.output : "the request");
                r = CLI_EXIT_OTHER;
                goto out;
        }
        r = CLI_EXIT_OK;
out:
        mbedtls_pk_free(&pk);
        p11_close(s);
        return r;
}
