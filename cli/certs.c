/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* list, cert show, cert export, cert delete. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mbedtls/oid.h>
#include <mbedtls/pem.h>
#include <mbedtls/sha1.h>
#include <mbedtls/sha256.h>
#include <mbedtls/x509_crt.h>

#include "certs.h"
#include "cli.h"

void cert_entry_done(struct cert_entry *e) {
        if (!e)
                return;
        mbedtls_x509_crt_free(&e->crt);
        free(e->der);
        free(e->label);
        free(e->id);
        memset(e, 0, sizeof *e);
}

void cert_entries_free(struct cert_entry *v, size_t n) {
        for (size_t i = 0; v && i < n; i++)
                cert_entry_done(&v[i]);
        free(v);
}

static void name_get_cn(const mbedtls_x509_name *n, char *out, size_t size) {
        out[0] = '\0';
        for (; n; n = n->next) {
                if (n->oid.p && MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) == 0) {
                        size_t len = n->val.len < size - 1 ? n->val.len : size - 1;
                        memcpy(out, n->val.p, len);
                        out[len] = '\0';
                }
        }
}

const char *cert_kind(const mbedtls_x509_crt *crt) {
        bool sign, enc;

        if (!(crt->ext_types & MBEDTLS_X509_EXT_KEY_USAGE))
                return "sign+encrypt";
        sign = crt->key_usage & (MBEDTLS_X509_KU_DIGITAL_SIGNATURE | MBEDTLS_X509_KU_NON_REPUDIATION);
        enc = crt->key_usage &
              (MBEDTLS_X509_KU_KEY_ENCIPHERMENT | MBEDTLS_X509_KU_DATA_ENCIPHERMENT | MBEDTLS_X509_KU_KEY_AGREEMENT);
        if (sign && enc)
                return "sign+encrypt";
        if (enc)
                return "encrypt";
        if (sign)
                return "sign";
        return "other";
}

static void fmt_time(const mbedtls_x509_time *t, char *out, size_t size) {
        snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02dZ", t->year, t->mon, t->day, t->hour, t->min, t->sec);
}

int load_certs(CK_SESSION_HANDLE s, struct cert_entry **ret, size_t *ret_n) {
        CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
        CK_ATTRIBUTE tmpl[] = { { CKA_CLASS, &cls, sizeof cls } };
        _cleanup_free_ CK_OBJECT_HANDLE *h = NULL;
        struct cert_entry *v;
        size_t n = 0, k = 0;
        int r;

        r = p11_find(s, tmpl, 1, &h, &n);
        if (r < 0)
                return r;
        v = calloc(n ? n : 1, sizeof *v);
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                struct cert_entry *e = &v[k];
                size_t len;

                e->h = h[i];
                mbedtls_x509_crt_init(&e->crt);
                if (p11_get_attr(s, h[i], CKA_VALUE, &e->der, &e->der_len) < 0) {
                        cert_entry_done(e);
                        continue;
                }
                if (p11_get_attr(s, h[i], CKA_LABEL, (uint8_t **)&e->label, &len) < 0)
                        e->label = strdup("");
                (void)p11_get_attr(s, h[i], CKA_ID, &e->id, &e->id_len);
                e->parsed = mbedtls_x509_crt_parse_der(&e->crt, e->der, e->der_len) == 0;
                if (e->parsed)
                        name_get_cn(&e->crt.subject, e->cn, sizeof e->cn);
                k++;
        }
        *ret = v;
        *ret_n = k;
        return 0;
}

static bool cert_matches(const struct cert_entry *e) {
        if (arg.cert) {
                _cleanup_free_ char *idhex = e->id ? hex_encode(e->id, e->id_len, NULL) : NULL;
                if (strcmp(e->cn, arg.cert) != 0 && strcmp(e->label ? e->label : "", arg.cert) != 0 &&
                    !(idhex && strcasecmp(idhex, arg.cert) == 0))
                        return false;
        }
        if (arg.label && strcmp(e->label ? e->label : "", arg.label) != 0)
                return false;
        if (arg.id_hex) {
                _cleanup_free_ uint8_t *id = NULL;
                size_t len = 0;
                if (hex_decode(arg.id_hex, &id, &len) < 0 || len != e->id_len || !e->id ||
                    memcmp(id, e->id, len) != 0)
                        return false;
        }
        return true;
}

int select_cert(CK_SESSION_HANDLE s, const struct p11_token *t, struct cert_entry *ret) {
        struct cert_entry *v = NULL;
        size_t n = 0, found = SIZE_MAX, matches = 0;
        int r;

        r = load_certs(s, &v, &n);
        if (r < 0) {
                cli_error("cannot read the certificates of token \"%s\"", t->label);
                return CLI_EXIT_OTHER;
        }
        for (size_t i = 0; i < n; i++)
                if (cert_matches(&v[i])) {
                        found = i;
                        matches++;
                }
        if (matches != 1) {
                if (n == 0)
                        cli_error("token \"%s\" holds no certificate", t->label);
                else if (matches == 0)
                        cli_error("no certificate on token \"%s\" matches", t->label);
                else
                        cli_error("%zu certificates match on token \"%s\"; choose one with --cert CN|LABEL|ID",
                                  matches, t->label);
                for (size_t i = 0; i < n; i++) {
                        _cleanup_free_ char *idhex = v[i].id ? hex_encode(v[i].id, v[i].id_len, NULL) : NULL;
                        fprintf(stderr, "  CN \"%s\"  label \"%s\"  id %s\n", shown(v[i].cn), shown(v[i].label),
                                idhex ? idhex : "-");
                }
                cert_entries_free(v, n);
                return matches == 0 ? CLI_EXIT_NOT_FOUND : CLI_EXIT_USAGE;
        }
        *ret = v[found];
        memset(&v[found], 0, sizeof v[found]);
        mbedtls_x509_crt_init(&v[found].crt);
        cert_entries_free(v, n);
        return CLI_EXIT_OK;
}

static const char *curve_name(const uint8_t *params, size_t len) {
        static const uint8_t p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
        static const uint8_t p384[] = { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22 };
        static const uint8_t p521[] = { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23 };
        if (len == sizeof p256 && memcmp(params, p256, len) == 0)
                return "P-256";
        if (len == sizeof p384 && memcmp(params, p384, len) == 0)
                return "P-384";
        if (len == sizeof p521 && memcmp(params, p521, len) == 0)
                return "P-521";
        return "unknown curve";
}

/* Keys: every key object visible in the session. */
static cJSON *list_keys(CK_SESSION_HANDLE s, bool print) {
        static const struct {
                CK_OBJECT_CLASS cls;
                const char *name;
        } classes[] = { { CKO_PRIVATE_KEY, "private" }, { CKO_PUBLIC_KEY, "public" } };
        cJSON *a = cJSON_CreateArray();

        for (size_t c = 0; c < ELEMENTSOF(classes); c++) {
                CK_OBJECT_CLASS cls = classes[c].cls;
                CK_ATTRIBUTE tmpl[] = { { CKA_CLASS, &cls, sizeof cls } };
                _cleanup_free_ CK_OBJECT_HANDLE *h = NULL;
                size_t n = 0;

                if (p11_find(s, tmpl, 1, &h, &n) < 0)
                        continue;
                for (size_t i = 0; i < n; i++) {
                        _cleanup_free_ uint8_t *label = NULL, *id = NULL, *params = NULL, *mod = NULL;
                        _cleanup_free_ char *idhex = NULL;
                        size_t ll = 0, il = 0, pl = 0, ml = 0;
                        CK_ULONG kt = 0, bits = 0;
                        char desc[32];
                        cJSON *o;

                        (void)p11_get_attr(s, h[i], CKA_LABEL, &label, &ll);
                        (void)p11_get_attr(s, h[i], CKA_ID, &id, &il);
                        (void)p11_get_ulong(s, h[i], CKA_KEY_TYPE, &kt);
                        if (kt == CKK_RSA) {
                                if (p11_get_ulong(s, h[i], CKA_MODULUS_BITS, &bits) < 0 &&
                                    p11_get_attr(s, h[i], CKA_MODULUS, &mod, &ml) == 0)
                                        bits = ml * 8;
                                snprintf(desc, sizeof desc, "RSA %lu", (unsigned long)bits);
                        } else if (kt == CKK_EC) {
                                if (p11_get_attr(s, h[i], CKA_EC_PARAMS, &params, &pl) == 0)
                                        snprintf(desc, sizeof desc, "EC %s", curve_name(params, pl));
                                else
                                        snprintf(desc, sizeof desc, "EC");
                        } else {
                                snprintf(desc, sizeof desc, "key type 0x%lx", (unsigned long)kt);
                        }
                        idhex = id ? hex_encode(id, il, NULL) : strdup("");
                        if (print)
                                printf("    %-7s key  %-12s id %s  label \"%s\"\n", classes[c].name, desc,
                                       idhex ? idhex : "", shown((char *)label));
                        o = cJSON_CreateObject();
                        cJSON_AddStringToObject(o, "class", classes[c].name);
                        cJSON_AddStringToObject(o, "type", desc);
                        cJSON_AddStringToObject(o, "id", idhex ? idhex : "");
                        cJSON_AddStringToObject(o, "label", label ? (char *)label : "");
                        cJSON_AddItemToArray(a, o);
                }
        }
        return a;
}

static cJSON *cert_summary_json(const struct cert_entry *e) {
        cJSON *o = cJSON_CreateObject();
        _cleanup_free_ char *idhex = e->id ? hex_encode(e->id, e->id_len, NULL) : NULL;
        char t[32];

        cJSON_AddStringToObject(o, "label", e->label ? e->label : "");
        cJSON_AddStringToObject(o, "id", idhex ? idhex : "");
        if (e->parsed) {
                cJSON_AddStringToObject(o, "cn", e->cn);
                fmt_time(&e->crt.valid_to, t, sizeof t);
                cJSON_AddStringToObject(o, "not_after", t);
                cJSON_AddStringToObject(o, "kind", cert_kind(&e->crt));
                cJSON_AddBoolToObject(o, "expired", mbedtls_x509_time_is_past(&e->crt.valid_to));
        } else {
                cJSON_AddBoolToObject(o, "unparsable", true);
        }
        return o;
}

int cmd_list(void) {
        _cleanup_free_ struct p11_token *v = NULL;
        cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "tokens");
        size_t n = 0;
        int r;

        r = p11_load(NULL);
        if (r != CLI_EXIT_OK)
                goto out;
        if (p11_tokens(&v, &n) < 0) {
                cli_error("cannot list the tokens");
                r = CLI_EXIT_OTHER;
                goto out;
        }
        if (n == 0 && !arg.module && !secure_getenv("NETCA_PKCS11_MODULE")) {
                /* Tell "no daemon" apart from "no token". */
                int status = 0;
                cJSON *reply = NULL;
                if (mgmt_call(WIRE_OP_MGMT_STATUS, NULL, &status, &reply) < 0) {
                        _cleanup_free_ char *path = cli_socket_path();
                        cli_error("cannot reach netcad at %s (is the daemon running?)", path ? path : "?");
                        r = CLI_EXIT_DAEMON;
                        goto out;
                }
                cJSON_Delete(reply);
        }
        if (arg.token && n > 0) {
                /* --token must name one of them. */
                bool any = false;
                for (size_t i = 0; i < n; i++) {
                        char slot[32];
                        snprintf(slot, sizeof slot, "%lu", (unsigned long)v[i].slot);
                        any |= !strcmp(arg.token, v[i].label) || !strcmp(arg.token, v[i].serial) ||
                               !strcmp(arg.token, slot);
                }
                if (!any) {
                        cli_error("no token matches \"%s\"", arg.token);
                        r = CLI_EXIT_NOT_FOUND;
                        goto out;
                }
        }
        if (n == 0 && !arg.json)
                printf("No token.\n");
        for (size_t i = 0; i < n; i++) {
                struct p11_token *t = &v[i];
                struct cert_entry *certs = NULL;
                size_t nc = 0;
                CK_SESSION_HANDLE s;
                cJSON *o = cJSON_CreateObject(), *ca;

                if (arg.token) {
                        char slot[32];
                        snprintf(slot, sizeof slot, "%lu", (unsigned long)t->slot);
                        if (strcmp(arg.token, t->label) && strcmp(arg.token, t->serial) && strcmp(arg.token, slot)) {
                                cJSON_Delete(o);
                                continue;
                        }
                }
                cJSON_AddNumberToObject(o, "slot", (double)t->slot);
                cJSON_AddStringToObject(o, "label", t->label);
                cJSON_AddStringToObject(o, "serial", t->serial);
                cJSON_AddStringToObject(o, "manufacturer", t->manufacturer);
                cJSON_AddStringToObject(o, "model", t->model);
                cJSON_AddBoolToObject(o, "pin_locked", !!(t->info.flags & CKF_USER_PIN_LOCKED));
                if (!arg.json)
                        printf("Token \"%s\" (slot %lu, serial %s, %s %s)%s\n", shown(t->label), (unsigned long)t->slot,
                               shown(t->serial), shown(t->manufacturer), shown(t->model),
                               (t->info.flags & CKF_USER_PIN_LOCKED) ? " PIN LOCKED" : "");
                ca = cJSON_AddArrayToObject(o, "certificates");
                if (p11->C_OpenSession(t->slot, CKF_SERIAL_SESSION, NULL, NULL, &s) == CKR_OK) {
                        if (load_certs(s, &certs, &nc) == 0) {
                                for (size_t j = 0; j < nc; j++) {
                                        struct cert_entry *e = &certs[j];
                                        cJSON_AddItemToArray(ca, cert_summary_json(e));
                                        if (arg.json)
                                                continue;
                                        if (!e->parsed) {
                                                printf("    certificate (unparsable) label \"%s\"\n",
                                                       shown(e->label));
                                                continue;
                                        }
                                        char t2[32];
                                        _cleanup_free_ char *idhex =
                                                e->id ? hex_encode(e->id, e->id_len, NULL) : NULL;
                                        fmt_time(&e->crt.valid_to, t2, sizeof t2);
                                        printf("    certificate  CN \"%s\"  %-12s expires %s%s  id %s\n", shown(e->cn),
                                               cert_kind(&e->crt), t2,
                                               mbedtls_x509_time_is_past(&e->crt.valid_to) ? " (EXPIRED)" : "",
                                               idhex ? idhex : "-");
                                }
                                cert_entries_free(certs, nc);
                        }
                        cJSON_AddItemToObject(o, "keys", list_keys(s, !arg.json));
                        p11->C_CloseSession(s);
                }
                if (!arg.json && cJSON_GetArraySize(ca) == 0)
                        printf("    (no certificate)\n");
                cJSON_AddItemToArray(arr, o);
        }
        if (arg.json)
                print_json(root);
        r = CLI_EXIT_OK;
out:
        cJSON_Delete(root);
        return r;
}

static const char *const key_usage_names[] = {
        "digitalSignature", "nonRepudiation", "keyEncipherment", "dataEncipherment", "keyAgreement",
        "keyCertSign",      "cRLSign",        "encipherOnly",    "decipherOnly",
};
static const unsigned key_usage_bits[] = {
        MBEDTLS_X509_KU_DIGITAL_SIGNATURE, MBEDTLS_X509_KU_NON_REPUDIATION, MBEDTLS_X509_KU_KEY_ENCIPHERMENT,
        MBEDTLS_X509_KU_DATA_ENCIPHERMENT, MBEDTLS_X509_KU_KEY_AGREEMENT,   MBEDTLS_X509_KU_KEY_CERT_SIGN,
        MBEDTLS_X509_KU_CRL_SIGN,          MBEDTLS_X509_KU_ENCIPHER_ONLY,   MBEDTLS_X509_KU_DECIPHER_ONLY,
};

static char *hex_upper_colon(const uint8_t *p, size_t n) {
        char *s = hex_encode(p, n, ":");
        for (char *q = s; q && *q; q++)
                if (*q >= 'a' && *q <= 'f')
                        *q = (char)(*q - 'a' + 'A');
        return s;
}

/* The certificate select_cert picks on the token p11_select_token picks,
 * read in a session closed again: an exit code. */
static int read_selected_cert(struct p11_token *t, struct cert_entry *e) {
        CK_SESSION_HANDLE s;
        int r = p11_open_selected(t, false, &s);
        if (r != CLI_EXIT_OK)
                return r;
        r = select_cert(s, t, e);
        p11->C_CloseSession(s);
        return r;
}

int cmd_cert_show(void) {
        struct p11_token t;
        struct cert_entry e = {};
        char subject[1024], issuer[1024], nb[32], na[32];
        uint8_t sha1[20], sha256[32];
        _cleanup_free_ char *serial = NULL, *f1 = NULL, *f256 = NULL, *idhex = NULL;
        const mbedtls_x509_crt *c;
        cJSON *o, *ku;
        int r;

        r = read_selected_cert(&t, &e);
        if (r != CLI_EXIT_OK)
                return r;
        if (!e.parsed) {
                cli_error("the certificate cannot be parsed");
                cert_entry_done(&e);
                return CLI_EXIT_OTHER;
        }
        c = &e.crt;
        if (mbedtls_x509_dn_gets(subject, sizeof subject, &c->subject) < 0)
                snprintf(subject, sizeof subject, "?");
        if (mbedtls_x509_dn_gets(issuer, sizeof issuer, &c->issuer) < 0)
                snprintf(issuer, sizeof issuer, "?");
        fmt_time(&c->valid_from, nb, sizeof nb);
        fmt_time(&c->valid_to, na, sizeof na);
        serial = hex_upper_colon(c->serial.p, c->serial.len);
        mbedtls_sha1_ret(e.der, e.der_len, sha1);
        mbedtls_sha256_ret(e.der, e.der_len, sha256, 0);
        f1 = hex_upper_colon(sha1, sizeof sha1);
        f256 = hex_upper_colon(sha256, sizeof sha256);
        idhex = e.id ? hex_encode(e.id, e.id_len, NULL) : strdup("");

        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "token", t.label);
        cJSON_AddStringToObject(o, "label", e.label ? e.label : "");
        cJSON_AddStringToObject(o, "id", idhex ? idhex : "");
        cJSON_AddStringToObject(o, "subject", subject);
        cJSON_AddStringToObject(o, "cn", e.cn);
        cJSON_AddStringToObject(o, "issuer", issuer);
        cJSON_AddStringToObject(o, "serial", serial ? serial : "");
        cJSON_AddStringToObject(o, "not_before", nb);
        cJSON_AddStringToObject(o, "not_after", na);
        cJSON_AddStringToObject(o, "key_algorithm", mbedtls_pk_get_name(&c->pk));
        cJSON_AddNumberToObject(o, "key_bits", (double)mbedtls_pk_get_bitlen(&c->pk));
        ku = cJSON_AddArrayToObject(o, "key_usage");
        if (c->ext_types & MBEDTLS_X509_EXT_KEY_USAGE)
                for (size_t i = 0; i < ELEMENTSOF(key_usage_bits); i++)
                        if (c->key_usage & key_usage_bits[i])
                                cJSON_AddItemToArray(ku, cJSON_CreateString(key_usage_names[i]));
        cJSON_AddStringToObject(o, "kind", cert_kind(c));
        cJSON_AddStringToObject(o, "sha1", f1 ? f1 : "");
        cJSON_AddStringToObject(o, "sha256", f256 ? f256 : "");

        if (arg.json) {
                print_json(o);
        } else {
                printf("Subject:        %s\n", subject);
                printf("Issuer:         %s\n", issuer);
                printf("Serial:         %s\n", serial ? serial : "");
                printf("Not before:     %s\n", nb);
                printf("Not after:      %s%s\n", na, mbedtls_x509_time_is_past(&c->valid_to) ? " (EXPIRED)" : "");
                printf("Key:            %s %zu bits\n", mbedtls_pk_get_name(&c->pk), mbedtls_pk_get_bitlen(&c->pk));
                printf("Key usage:      ");
                if (cJSON_GetArraySize(ku) == 0)
                        printf("(not restricted)");
                for (int i = 0; i < cJSON_GetArraySize(ku); i++)
                        printf("%s%s", i ? ", " : "", cJSON_GetArrayItem(ku, i)->valuestring);
                printf("\nKind:           %s\n", cert_kind(c));
                printf("SHA-1:          %s\n", f1 ? f1 : "");
                printf("SHA-256:        %s\n", f256 ? f256 : "");
                printf("Token:          %s\n", shown(t.label));
                printf("Label:          %s\n", shown(e.label));
                printf("ID:             %s\n", idhex ? idhex : "");
        }
        cJSON_Delete(o);
        cert_entry_done(&e);
        return CLI_EXIT_OK;
}

int write_output(const char *path, const void *data, size_t len) {
        _cleanup_close_ int fd = -1;
        const uint8_t *p = data;

        if (!path || strcmp(path, "-") == 0)
                fd = dup(STDOUT_FILENO);
        else
                fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
                return -errno;
        while (len > 0) {
                ssize_t k = write(fd, p, len);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += k;
                len -= (size_t)k;
        }
        return 0;
}

int pem_encode(const char *what, const uint8_t *der, size_t len, char **ret) {
        char header[64], footer[64];
        size_t olen = 0, cap = len * 2 + 200;
        char *buf = malloc(cap);
        int r;

        if (!buf)
                return -ENOMEM;
        snprintf(header, sizeof header, "-----BEGIN %s-----\n", what);
        snprintf(footer, sizeof footer, "-----END %s-----\n", what);
        r = mbedtls_pem_write_buffer(header, footer, der, len, (unsigned char *)buf, cap, &olen);
        if (r != 0) {
                free(buf);
                return -EIO;
        }
        *ret = buf;
        return 0;
}

int cmd_cert_export(void) {
        struct p11_token t;
        struct cert_entry e = {};
        int r;

        if (arg.pem == arg.der) {
                cli_error("cert export needs exactly one of --pem or --der");
                return CLI_EXIT_USAGE;
        }
        r = read_selected_cert(&t, &e);
        if (r != CLI_EXIT_OK)
                return r;
        if (arg.der) {
                r = write_output(arg.output, e.der, e.der_len);
        } else {
                _cleanup_free_ char *pem = NULL;
                r = pem_encode("CERTIFICATE", e.der, e.der_len, &pem);
                if (r == 0)
                        r = write_output(arg.output, pem, strlen(pem));
        }
        cert_entry_done(&e);
        if (r < 0) {
                cli_error("cannot write %s: %s", arg.output ? arg.output : "the certificate", strerror(-r));
                return CLI_EXIT_OTHER;
        }
        return CLI_EXIT_OK;
}

int cmd_cert_delete(void) {
        struct p11_token t;
        struct cert_entry e = {};
        CK_SESSION_HANDLE s;
        unsigned deleted_keys = 0;
        CK_RV rv;
        int r;

        r = p11_open_selected(&t, true, &s);
        if (r != CLI_EXIT_OK)
                return r;
        r = select_cert(s, &t, &e);
        if (r != CLI_EXIT_OK)
                goto out;
        rv = p11->C_DestroyObject(s, e.h);
        if (rv != CKR_OK) {
                cli_error("cannot delete the certificate: %s", p11_rv_str(rv));
                r = p11_exit_from_rv(rv);
                goto out;
        }
        if (arg.with_key && e.id && e.id_len) {
                for (int c = 0; c < 2; c++) {
                        CK_OBJECT_CLASS cls = c == 0 ? CKO_PRIVATE_KEY : CKO_PUBLIC_KEY;
                        CK_ATTRIBUTE tmpl[] = { { CKA_CLASS, &cls, sizeof cls }, { CKA_ID, e.id, e.id_len } };
                        _cleanup_free_ CK_OBJECT_HANDLE *h = NULL;
                        size_t n = 0;
                        if (p11_find(s, tmpl, 2, &h, &n) < 0)
                                continue;
                        for (size_t i = 0; i < n; i++)
                                if (p11->C_DestroyObject(s, h[i]) == CKR_OK)
                                        deleted_keys++;
                }
        }
        printf("Deleted certificate \"%s\" from token \"%s\"", shown(e.cn), shown(t.label));
        if (arg.with_key)
                printf(" and %u key object%s", deleted_keys, deleted_keys == 1 ? "" : "s");
        printf("\n");
        r = CLI_EXIT_OK;
out:
        cert_entry_done(&e);
        p11_close(s);
        return r;
}
