/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* import: a certificate and/or private key from PEM or DER files, or a
 * PKCS#12 (.p12/.pfx) file with its password, onto the token.
 *
 * The key pair and its certificate share one CKA_ID (the SHA-1 of the public
 * key, unless --id is given), which is how PKCS#11 applications pair them.
 * Private keys are created CKA_SENSITIVE and not extractable. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <mbedtls/pem.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>

#include "certs.h"
#include "cli.h"
#include "common/secmem.h"
#include "keys.h"
#include "pkcs12.h"

#define IMPORT_MAX_FILE (4u << 20)

/* Reads a whole file into secure memory, NUL-terminated (PEM parsers need
 * it; the NUL is not counted in *ret_len). */
static int read_file(const char *path, uint8_t **ret, size_t *ret_len) {
        _cleanup_close_ int fd = -1;
        struct stat st;
        uint8_t *buf;
        size_t n = 0;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EINVAL;
        if ((uint64_t)st.st_size > IMPORT_MAX_FILE)
                return -EFBIG;
        buf = secure_alloc((size_t)st.st_size + 1);
        if (!buf)
                return -ENOMEM;
        while (n < (size_t)st.st_size) {
                ssize_t k = read(fd, buf + n, (size_t)st.st_size - n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        break;
                n += (size_t)k;
        }
        buf[n] = 0;
        *ret = buf;
        *ret_len = n;
        return 0;
}

static bool has_suffix(const char *s, const char *suffix) {
        size_t a = strlen(s), b = strlen(suffix);
        return a >= b && strcasecmp(s + a - b, suffix) == 0;
}

static bool is_pem(const uint8_t *p, size_t n) {
        return memmem(p, n, "-----BEGIN ", 11) != NULL;
}

/* Secure big-endian bytes of an MPI. */
struct blob {
        uint8_t *p;
        size_t n;
};

static int mpi_blob(const mbedtls_mpi *x, size_t n, struct blob *b) {
        if (n == 0)
                n = mbedtls_mpi_size(x);
        b->p = secure_alloc(n ? n : 1);
        if (!b->p)
                return -ENOMEM;
        b->n = n;
        return mbedtls_mpi_write_binary(x, b->p, n) == 0 ? 0 : -EINVAL;
}

static void blob_free(struct blob *b) {
        b->p = secure_free(b->p);
        b->n = 0;
}

static int create(CK_SESSION_HANDLE s, CK_ATTRIBUTE *t, CK_ULONG n, const char *what) {
        CK_OBJECT_HANDLE h;
        CK_RV rv = p11->C_CreateObject(s, t, n, &h);
        if (rv != CKR_OK) {
                cli_error("cannot store the %s on the token: %s", what, p11_rv_str(rv));
                return p11_exit_from_rv(rv);
        }
        return CLI_EXIT_OK;
}

/* True when an object of this class with this attribute value exists. */
static bool exists(CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls, CK_ATTRIBUTE_TYPE type, const void *v, size_t n) {
        CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof cls }, { type, (void *)v, n } };
        _cleanup_free_ CK_OBJECT_HANDLE *h = NULL;
        size_t count = 0;
        return p11_find(s, t, 2, &h, &count) == 0 && count > 0;
}

/* Appends n attributes to t (holding *len). */
static void append(CK_ATTRIBUTE *t, CK_ULONG *len, const CK_ATTRIBUTE *a, size_t n) {
        memcpy(t + *len, a, n * sizeof *a);
        *len += n;
}

/* The halves of a key pair to store: an import cut short (a crash between
 * its objects) is completed by the next one. */
struct want {
        bool priv, pub;
};

/* Stores an imported key pair with this label and id: the private key
 * (key_private_policy; RSA: it decrypts too) and the public key (public; it
 * verifies, RSA: and encrypts), each with its key material, those of w
 * only.  An exit code. */
static int store_key_pair(CK_SESSION_HANDLE s, struct want w, CK_KEY_TYPE kt, const char *label, const uint8_t *id,
                          size_t id_len, const CK_ATTRIBUTE *priv_v, size_t n_priv, const CK_ATTRIBUTE *pub_v,
                          size_t n_pub) {
        CK_OBJECT_CLASS priv_cls = CKO_PRIVATE_KEY, pub_cls = CKO_PUBLIC_KEY;
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        size_t n_rsa = kt == CKK_RSA ? 1 : 0;
        const CK_ATTRIBUTE name[] = {
                { CKA_LABEL, (void *)label, strlen(label) },
                { CKA_ID, (void *)id, id_len },
        };
        const CK_ATTRIBUTE priv_head[] = {
                { CKA_CLASS, &priv_cls, sizeof priv_cls },
                { CKA_KEY_TYPE, &kt, sizeof kt },
        };
        const CK_ATTRIBUTE priv_rsa[] = { { CKA_DECRYPT, &yes, sizeof yes } };
        const CK_ATTRIBUTE pub_head[] = {
                { CKA_CLASS, &pub_cls, sizeof pub_cls },
                { CKA_KEY_TYPE, &kt, sizeof kt },
                { CKA_TOKEN, &yes, sizeof yes },
                { CKA_PRIVATE, &no, sizeof no },
                { CKA_VERIFY, &yes, sizeof yes },
        };
        const CK_ATTRIBUTE pub_rsa[] = { { CKA_ENCRYPT, &yes, sizeof yes } };
        CK_ATTRIBUTE priv[32], pub[32];
        CK_ULONG np = 0, nu = 0;
        int r;

        if (n_priv > 16 || n_pub > 16)
                return CLI_EXIT_OTHER;
        append(priv, &np, priv_head, ELEMENTSOF(priv_head));
        append(priv, &np, key_private_policy, KEY_PRIVATE_POLICY_LEN);
        append(priv, &np, priv_rsa, n_rsa);
        append(priv, &np, name, ELEMENTSOF(name));
        append(priv, &np, priv_v, n_priv);
        append(pub, &nu, pub_head, ELEMENTSOF(pub_head));
        append(pub, &nu, pub_rsa, n_rsa);
        append(pub, &nu, name, ELEMENTSOF(name));
        append(pub, &nu, pub_v, n_pub);
        r = w.priv ? create(s, priv, np, "private key") : CLI_EXIT_OK;
        if (r == CLI_EXIT_OK && w.pub)
                r = create(s, pub, nu, "public key");
        return r;
}

static int import_key(CK_SESSION_HANDLE s, struct want w, mbedtls_pk_context *pk, const char *label,
                      const uint8_t *id, size_t id_len) {
        int r;

        if (mbedtls_pk_get_type(pk) == MBEDTLS_PK_RSA) {
                mbedtls_rsa_context *rsa = mbedtls_pk_rsa(*pk);
                mbedtls_mpi N, P, Q, D, E, DP, DQ, QP;
                struct blob b[8] = {};

                mbedtls_mpi_init(&N), mbedtls_mpi_init(&P), mbedtls_mpi_init(&Q), mbedtls_mpi_init(&D);
                mbedtls_mpi_init(&E), mbedtls_mpi_init(&DP), mbedtls_mpi_init(&DQ), mbedtls_mpi_init(&QP);
                r = mbedtls_rsa_export(rsa, &N, &P, &Q, &D, &E) == 0 && mbedtls_rsa_export_crt(rsa, &DP, &DQ, &QP) == 0
                            ? 0
                            : -EINVAL;
                if (r == 0) {
                        const mbedtls_mpi *v[8] = { &N, &E, &D, &P, &Q, &DP, &DQ, &QP };
                        for (int i = 0; i < 8 && r == 0; i++)
                                r = mpi_blob(v[i], 0, &b[i]);
                }
                if (r == 0) {
                        /* The public key's material: the first two. */
                        const CK_ATTRIBUTE v[] = {
                                { CKA_MODULUS, b[0].p, b[0].n },
                                { CKA_PUBLIC_EXPONENT, b[1].p, b[1].n },
                                { CKA_PRIVATE_EXPONENT, b[2].p, b[2].n },
                                { CKA_PRIME_1, b[3].p, b[3].n },
                                { CKA_PRIME_2, b[4].p, b[4].n },
                                { CKA_EXPONENT_1, b[5].p, b[5].n },
                                { CKA_EXPONENT_2, b[6].p, b[6].n },
                                { CKA_COEFFICIENT, b[7].p, b[7].n },
                        };
                        r = store_key_pair(s, w, CKK_RSA, label, id, id_len, v, ELEMENTSOF(v), v, 2);
                } else {
                        cli_error("cannot read the RSA key");
                        r = CLI_EXIT_OTHER;
                }
                for (int i = 0; i < 8; i++)
                        blob_free(&b[i]);
                mbedtls_mpi_free(&N), mbedtls_mpi_free(&P), mbedtls_mpi_free(&Q), mbedtls_mpi_free(&D);
                mbedtls_mpi_free(&E), mbedtls_mpi_free(&DP), mbedtls_mpi_free(&DQ), mbedtls_mpi_free(&QP);
                return r;
        }

        if (mbedtls_pk_get_type(pk) == MBEDTLS_PK_ECKEY || mbedtls_pk_get_type(pk) == MBEDTLS_PK_ECDSA) {
                mbedtls_ecp_keypair *ec = mbedtls_pk_ec(*pk);
                const uint8_t *params;
                size_t params_len, plen = 0;
                uint8_t point[2 + 1 + 2 * 66];
                struct blob d = {};

                if (ec_params_for_group(ec->grp.id, &params, &params_len) < 0) {
                        cli_error("unsupported curve: only P-256 and P-384 keys can be imported");
                        return CLI_EXIT_OTHER;
                }
                if (mbedtls_ecp_point_write_binary(&ec->grp, &ec->Q, MBEDTLS_ECP_PF_UNCOMPRESSED, &plen, point + 2,
                                                   sizeof point - 2) != 0 ||
                    plen > 127) {
                        cli_error("cannot read the EC key");
                        return CLI_EXIT_OTHER;
                }
                point[0] = 0x04; /* DER OCTET STRING */
                point[1] = (uint8_t)plen;
                r = mpi_blob(&ec->d, (ec->grp.nbits + 7) / 8, &d);
                if (r < 0) {
                        blob_free(&d);
                        cli_error("cannot read the EC key");
                        return CLI_EXIT_OTHER;
                }
                {
                        const CK_ATTRIBUTE priv[] = {
                                { CKA_EC_PARAMS, (void *)params, params_len },
                                { CKA_VALUE, d.p, d.n },
                        };
                        const CK_ATTRIBUTE pub[] = {
                                { CKA_EC_PARAMS, (void *)params, params_len },
                                { CKA_EC_POINT, point, plen + 2 },
                        };
                        r = store_key_pair(s, w, CKK_EC, label, id, id_len, priv, ELEMENTSOF(priv), pub,
                                           ELEMENTSOF(pub));
                }
                blob_free(&d);
                return r;
        }
        cli_error("unsupported key type: only RSA and EC (P-256, P-384) keys can be imported");
        return CLI_EXIT_OTHER;
}

static int import_cert(CK_SESSION_HANDLE s, const mbedtls_x509_crt *crt, const char *label, const uint8_t *id,
                       size_t id_len) {
        CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
        CK_CERTIFICATE_TYPE ct = CKC_X_509;
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        uint8_t serial[2 + 2 + 64];
        size_t serial_len;

        if (crt->serial.len > 64)
                return CLI_EXIT_OTHER;
        /* CKA_SERIAL_NUMBER is the DER INTEGER, tag and length included. */
        serial[0] = 0x02;
        serial[1] = (uint8_t)crt->serial.len;
        memcpy(serial + 2, crt->serial.p, crt->serial.len);
        serial_len = crt->serial.len + 2;

        CK_ATTRIBUTE t[] = {
                { CKA_CLASS, &cls, sizeof cls },
                { CKA_CERTIFICATE_TYPE, &ct, sizeof ct },
                { CKA_TOKEN, &yes, sizeof yes },
                { CKA_PRIVATE, &no, sizeof no },
                { CKA_LABEL, (void *)label, strlen(label) },
                { CKA_ID, (void *)id, id_len },
                { CKA_SUBJECT, crt->subject_raw.p, crt->subject_raw.len },
                { CKA_ISSUER, crt->issuer_raw.p, crt->issuer_raw.len },
                { CKA_SERIAL_NUMBER, serial, serial_len },
                { CKA_VALUE, crt->raw.p, crt->raw.len },
        };
        return create(s, t, ELEMENTSOF(t), "certificate");
}

static void cert_cn(const mbedtls_x509_crt *crt, char *out, size_t size) {
        out[0] = '\0';
        for (const mbedtls_x509_name *n = &crt->subject; n; n = n->next)
                if (n->oid.p && MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) == 0) {
                        size_t len = n->val.len < size - 1 ? n->val.len : size - 1;
                        memcpy(out, n->val.p, len);
                        out[len] = '\0';
                }
}

/* True when the certificate carries this private key's public half. */
static bool cert_matches_key(const mbedtls_x509_crt *crt, const mbedtls_pk_context *key) {
        uint8_t a[KEY_ID_LEN], b[KEY_ID_LEN];
        return key_id_from_pk(&crt->pk, a) == 0 && key_id_from_pk(key, b) == 0 && memcmp(a, b, sizeof a) == 0;
}

static int get_password(const char *file, char **ret) {
        char prompt[512];
        int r;

        snprintf(prompt, sizeof prompt, "Password for %s: ", file);
        r = pin_get(arg.password, arg.password_file, prompt, false, ret);
        if (r < 0) {
                cli_error("%s needs a password: give --password, --password-file or run on a terminal", file);
                return CLI_EXIT_USAGE;
        }
        return CLI_EXIT_OK;
}

static bool encrypted_pkcs8(const uint8_t *data, size_t len) {
        static const char tag[] = "-----BEGIN ENCRYPTED PRIVATE KEY-----";
        return is_pem(data, len) && memmem(data, len, tag, sizeof tag - 1);
}

/* An encrypted PKCS#8 key that mbedTLS cannot decrypt itself (OpenSSL 3's
 * default: PBES2, PBKDF2 with HMAC-SHA-256, AES-256-CBC): decrypted by the
 * PKCS#12 reader's PBEs, then parsed as a PrivateKeyInfo. */
static int parse_encrypted_pkcs8(const char *file, const uint8_t *data, size_t len, mbedtls_pk_context *pk) {
        mbedtls_pem_context pem;
        uint8_t *key = NULL;
        size_t used, key_len = 0;
        char *pw = NULL, *text;
        int r;

        text = strndup((const char *)data, len);
        if (!text)
                return -1;
        mbedtls_pem_init(&pem);
        r = mbedtls_pem_read_buffer(&pem, "-----BEGIN ENCRYPTED PRIVATE KEY-----",
                                    "-----END ENCRYPTED PRIVATE KEY-----", (const unsigned char *)text, NULL, 0, &used);
        free(text);
        if (r != 0) {
                mbedtls_pem_free(&pem);
                cli_error("%s holds no private key that can be read", file);
                return -1;
        }
        r = get_password(file, &pw);
        if (r != CLI_EXIT_OK) {
                mbedtls_pem_free(&pem);
                return r;
        }
        r = p12_decrypt_pkcs8(pem.buf, pem.buflen, pw, &key, &key_len);
        secure_free(pw);
        mbedtls_pem_free(&pem);
        if (r == -EOPNOTSUPP) {
                cli_error("%s is encrypted with an algorithm that is not supported", file);
                return CLI_EXIT_OTHER;
        }
        if (r == 0) {
                mbedtls_pk_free(pk);
                mbedtls_pk_init(pk);
                r = mbedtls_pk_parse_key(pk, key, key_len, NULL, 0);
                secure_free(key);
        }
        if (r != 0) { /* bad padding, or (1 in 256) padding that fits but no key: the password */
                cli_error("wrong password for %s", file);
                return CLI_EXIT_PIN;
        }
        return CLI_EXIT_OK;
}

/* Parses a PEM/DER private key, asking for its password when it is
 * encrypted. */
static int parse_key(const char *file, const uint8_t *data, size_t len, mbedtls_pk_context *pk, bool quiet) {
        size_t plen = is_pem(data, len) ? len + 1 : len; /* PEM: NUL included */
        char *pw = NULL;
        int r;

        if (encrypted_pkcs8(data, len))
                return parse_encrypted_pkcs8(file, data, len, pk);
        r = mbedtls_pk_parse_key(pk, data, plen, NULL, 0);
        if (r == MBEDTLS_ERR_PK_PASSWORD_REQUIRED) {
                r = get_password(file, &pw);
                if (r != CLI_EXIT_OK)
                        return r;
                mbedtls_pk_free(pk);
                mbedtls_pk_init(pk);
                r = mbedtls_pk_parse_key(pk, data, plen, (const unsigned char *)pw, strlen(pw));
                secure_free(pw);
                if (r == MBEDTLS_ERR_PK_PASSWORD_MISMATCH) {
                        cli_error("wrong password for %s", file);
                        return CLI_EXIT_PIN;
                }
        }
        if (r != 0) {
                if (!quiet)
                        cli_error("%s holds no private key that can be read", file);
                return -1;
        }
        return CLI_EXIT_OK;
}

int cmd_import(const char *file) {
        uint8_t *data = NULL, *kdata = NULL;
        size_t len = 0, klen = 0;
        mbedtls_x509_crt chain;
        mbedtls_pk_context pk;
        struct p12 p12 = {};
        bool have_key = false, have_certs = false, is_p12;
        _cleanup_free_ uint8_t *id_opt = NULL;
        size_t id_opt_len = 0;
        char *pw = NULL;
        unsigned n_certs = 0;
        struct p11_token t;
        CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
        bool session = false;
        int r;

        mbedtls_x509_crt_init(&chain);
        mbedtls_pk_init(&pk);
        if (parse_id_option(&id_opt, &id_opt_len) < 0)
                return CLI_EXIT_USAGE;

        r = read_file(file, &data, &len);
        if (r < 0) {
                cli_error("cannot read %s: %s", file, strerror(-r));
                return r == -ENOENT ? CLI_EXIT_NOT_FOUND : CLI_EXIT_OTHER;
        }

        is_p12 = has_suffix(file, ".p12") || has_suffix(file, ".pfx") || (!is_pem(data, len) && p12_looks_like(data, len));
        if (is_p12) {
                r = get_password(file, &pw);
                if (r != CLI_EXIT_OK)
                        goto out;
                r = p12_parse(data, len, pw, &p12);
                pw = secure_free(pw);
                if (r == -EACCES) {
                        cli_error("wrong password for %s", file);
                        r = CLI_EXIT_PIN;
                        goto out;
                }
                if (r == -EOPNOTSUPP) {
                        cli_error("%s uses a PKCS#12 feature or algorithm that is not supported", file);
                        r = CLI_EXIT_OTHER;
                        goto out;
                }
                if (r < 0) {
                        cli_error("%s is not a valid PKCS#12 file (%s)", file, strerror(-r));
                        r = CLI_EXIT_OTHER;
                        goto out;
                }
                if (p12.key) {
                        if (mbedtls_pk_parse_key(&pk, p12.key, p12.key_len, NULL, 0) != 0) {
                                cli_error("the private key in %s cannot be read", file);
                                r = CLI_EXIT_OTHER;
                                goto out;
                        }
                        have_key = true;
                }
                for (size_t i = 0; i < p12.n_certs; i++)
                        if (mbedtls_x509_crt_parse_der(&chain, p12.certs[i].der, p12.certs[i].len) == 0)
                                n_certs++;
        } else {
                size_t plen = is_pem(data, len) ? len + 1 : len;
                r = mbedtls_x509_crt_parse(&chain, data, plen);
                if (r >= 0 && chain.raw.p)
                        for (mbedtls_x509_crt *c = &chain; c && c->raw.p; c = c->next)
                                n_certs++;
                if (arg.key_file) {
                        r = read_file(arg.key_file, &kdata, &klen);
                        if (r < 0) {
                                cli_error("cannot read %s: %s", arg.key_file, strerror(-r));
                                r = r == -ENOENT ? CLI_EXIT_NOT_FOUND : CLI_EXIT_OTHER;
                                goto out;
                        }
                        r = parse_key(arg.key_file, kdata, klen, &pk, false);
                        if (r != CLI_EXIT_OK) {
                                r = r < 0 ? CLI_EXIT_OTHER : r;
                                goto out;
                        }
                        have_key = true;
                } else {
                        r = parse_key(file, data, len, &pk, true);
                        if (r > 0)
                                goto out;
                        have_key = r == CLI_EXIT_OK;
                }
        }
        have_certs = n_certs > 0;
        if (!have_key && !have_certs) {
                cli_error("%s holds no certificate or private key that can be read", file);
                r = CLI_EXIT_OTHER;
                goto out;
        }

        r = p11_open_selected(&t, true, &s);
        if (r != CLI_EXIT_OK)
                goto out;
        session = true;

        {
                uint8_t key_id[KEY_ID_LEN];
                const uint8_t *kid = NULL;
                size_t kid_len = 0;
                char label[256];
                const mbedtls_x509_crt *key_cert = NULL;

                if (have_key) {
                        if (key_id_from_pk(&pk, key_id) < 0) {
                                cli_error("unsupported key type: only RSA and EC keys can be imported");
                                r = CLI_EXIT_OTHER;
                                goto out;
                        }
                        kid = id_opt ? id_opt : key_id;
                        kid_len = id_opt ? id_opt_len : sizeof key_id;
                        for (const mbedtls_x509_crt *c = &chain; have_certs && c && c->raw.p; c = c->next)
                                if (cert_matches_key(c, &pk)) {
                                        key_cert = c;
                                        break;
                                }
                        if (arg.label)
                                snprintf(label, sizeof label, "%s", arg.label);
                        else if (p12.key_name)
                                snprintf(label, sizeof label, "%s", p12.key_name);
                        else if (key_cert)
                                cert_cn(key_cert, label, sizeof label);
                        else
                                snprintf(label, sizeof label, "imported key");
                        if (!label[0])
                                snprintf(label, sizeof label, "imported key");
                        struct want w = {
                                .priv = !exists(s, CKO_PRIVATE_KEY, CKA_ID, kid, kid_len),
                                .pub = !exists(s, CKO_PUBLIC_KEY, CKA_ID, kid, kid_len),
                        };
                        _cleanup_free_ char *hex = hex_encode(kid, kid_len, NULL);
                        if (!w.priv && !w.pub) {
                                printf("A private key with id %s is already on the token: not imported again\n",
                                       hex ? hex : "?");
                        } else {
                                r = import_key(s, w, &pk, label, kid, kid_len);
                                if (r != CLI_EXIT_OK)
                                        goto out;
                                if (w.priv)
                                        printf("Imported %s private key \"%s\" (id %s)\n", mbedtls_pk_get_name(&pk),
                                               shown(label), hex ? hex : "?");
                                else
                                        printf("Completed %s key \"%s\" (id %s): its public key was missing\n",
                                               mbedtls_pk_get_name(&pk), shown(label), hex ? hex : "?");
                        }
                }
                for (const mbedtls_x509_crt *c = &chain; have_certs && c && c->raw.p; c = c->next) {
                        uint8_t cid[KEY_ID_LEN];
                        const uint8_t *id;
                        size_t id_len;
                        char cn[256];

                        cert_cn(c, cn, sizeof cn);
                        if (exists(s, CKO_CERTIFICATE, CKA_VALUE, c->raw.p, c->raw.len)) {
                                printf("Certificate \"%s\" is already on the token: not imported again\n", shown(cn));
                                continue;
                        }
                        if (c == key_cert || (!have_key && id_opt && c == &chain)) {
                                id = id_opt ? id_opt : key_id;
                                id_len = id_opt ? id_opt_len : sizeof key_id;
                                if (!have_key && key_id_from_pk(&c->pk, key_id) == 0 && !id_opt)
                                        id = key_id;
                        } else {
                                if (key_id_from_pk(&c->pk, cid) < 0)
                                        memset(cid, 0, sizeof cid);
                                id = cid;
                                id_len = sizeof cid;
                        }
                        if (arg.label && (c == key_cert || !have_key))
                                snprintf(label, sizeof label, "%s", arg.label);
                        else
                                snprintf(label, sizeof label, "%s", cn[0] ? cn : "certificate");
                        r = import_cert(s, c, label, id, id_len);
                        if (r != CLI_EXIT_OK)
                                goto out;
                        printf("Imported certificate \"%s\" (%s)\n", shown(cn), cert_kind(c));
                }
        }
        r = CLI_EXIT_OK;
out:
        if (session)
                p11_close(s);
        secure_free(pw);
        p12_done(&p12);
        mbedtls_pk_free(&pk);
        mbedtls_x509_crt_free(&chain);
        secure_free(data);
        secure_free(kdata);
        return r;
}
