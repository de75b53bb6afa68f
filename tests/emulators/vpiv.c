/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vpiv: the virtual PIV card (see vpiv.h for the directory format and the
 * security rules).  Written from NIST SP 800-73-4 part 2 (commands, status
 * words, GENERAL AUTHENTICATE templates) and ISO 7816-4 (APDU cases,
 * chaining, GET RESPONSE). */
#include "vpiv.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/aes.h>
#include <mbedtls/bignum.h>
#include <mbedtls/des.h>
#include <mbedtls/ecdh.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/rsa.h>
#include <mbedtls/x509_crt.h>

#include "common/pkcrypto.h"

#define SW_OK                   0x9000
#define SW_WRONG_LENGTH         0x6700
#define SW_LAST_CMD_EXPECTED    0x6883
#define SW_SECURITY             0x6982
#define SW_BLOCKED              0x6983
#define SW_CONDITIONS           0x6985
#define SW_WRONG_DATA           0x6A80
#define SW_FILE_NOT_FOUND       0x6A82
#define SW_NO_SPACE             0x6A84
#define SW_WRONG_P1P2           0x6A86
#define SW_REF_NOT_FOUND        0x6A88
#define SW_INS_UNKNOWN          0x6D00
#define SW_CLA_UNKNOWN          0x6E00
#define SW_UNKNOWN              0x6F00

#define ALG_3DES        0x03
#define ALG_RSA2048     0x07
#define ALG_AES128      0x08
#define ALG_AES192      0x0A
#define ALG_AES256      0x0C
#define ALG_P256        0x11
#define ALG_P384        0x14

#define KEY_MGMT        0x9B
#define REF_PIN         0x80
#define REF_PUK         0x81

/* Largest command data accepted through chaining and largest object. */
#define MAX_CHAIN       16384
#define MAX_RESP        65536
#define MAX_DELAY_MS    10000

/* Data objects 5FC101..5FC123 live in objs[tag - 0x5FC101]. */
#define OBJ_FIRST       0x5FC101u
#define OBJ_LAST        0x5FC123u
#define N_OBJS          (OBJ_LAST - OBJ_FIRST + 1)
#define TAG_CHUID       0x5FC102u
#define TAG_CCC         0x5FC107u
#define TAG_KEYHIST     0x5FC10Cu
#define TAG_DISCOVERY   0x7Eu

static const uint8_t piv_aid[] = { 0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00 };

/* Contact-style ATR: T=0/T=1, historical bytes 80 | 73 C0 21 C0 (card
 * capabilities: chaining, extended Lc/Le) | 56 "NETCAV"; TCK appended. */
static const uint8_t atr_body[] = { 0x3B, 0x8C, 0x80, 0x01, 0x80, 0x73, 0xC0, 0x21, 0xC0,
                                    0x56, 'N', 'E', 'T', 'C', 'A', 'V' };

struct slot_def {
        uint8_t ref;
        uint32_t tag;
        char name[3];
};

static const struct slot_def slot_defs[] = {
        { 0x9A, 0x5FC105, "9a" }, { 0x9C, 0x5FC10A, "9c" }, { 0x9D, 0x5FC10B, "9d" }, { 0x9E, 0x5FC101, "9e" },
        { 0x82, 0x5FC10D, "82" }, { 0x83, 0x5FC10E, "83" }, { 0x84, 0x5FC10F, "84" }, { 0x85, 0x5FC110, "85" },
        { 0x86, 0x5FC111, "86" }, { 0x87, 0x5FC112, "87" }, { 0x88, 0x5FC113, "88" }, { 0x89, 0x5FC114, "89" },
        { 0x8A, 0x5FC115, "8a" }, { 0x8B, 0x5FC116, "8b" }, { 0x8C, 0x5FC117, "8c" }, { 0x8D, 0x5FC118, "8d" },
        { 0x8E, 0x5FC119, "8e" }, { 0x8F, 0x5FC11A, "8f" }, { 0x90, 0x5FC11B, "90" }, { 0x91, 0x5FC11C, "91" },
        { 0x92, 0x5FC11D, "92" }, { 0x93, 0x5FC11E, "93" }, { 0x94, 0x5FC11F, "94" }, { 0x95, 0x5FC120, "95" },
};
#define N_SLOTS (sizeof(slot_defs) / sizeof(slot_defs[0]))

struct key_slot {
        mbedtls_pk_context pk;
        uint8_t alg;            /* 0: no key */
        bool dirty;
};

struct obj {
        uint8_t *data;          /* contents of the 53 template; NULL: absent */
        size_t len;
        bool dirty;
        bool explicit_;         /* loaded from obj-*.bin or written by PUT DATA */
};

enum ga_pending { GA_NONE, GA_WITNESS, GA_CHALLENGE };

struct vpiv {
        char *dir;
        uint8_t pin[8], puk[8];         /* FF-padded */
        unsigned pin_max, puk_max, pin_left, puk_left;
        unsigned pin_left0, puk_left0;  /* as loaded (vpiv_rewind) */
        uint8_t pin0[8], puk0[8];
        uint8_t mgmt_alg;
        uint8_t mgmt_key[32];
        size_t mgmt_len;
        uint8_t guid[16];
        unsigned delay_ms;

        struct key_slot slots[N_SLOTS];
        struct obj objs[N_OBJS];

        /* Security state, cleared by vpiv_reset. */
        bool pin_verified;
        bool pin_always;                /* a VERIFY not yet consumed by a 9C operation */
        bool mgmt_authed;
        enum ga_pending ga_pending;
        uint8_t ga_block[16];

        /* Command chaining. */
        bool chaining;
        uint8_t chain_ins, chain_p1, chain_p2;
        uint8_t *chain;
        size_t chain_len;

        /* Response chaining (GET RESPONSE). */
        uint8_t *resp;
        size_t resp_len, resp_off;
};

/* ------------------------------------------------------------ buffers */

struct rbuf {
        uint8_t *p;
        size_t len, cap;
        bool fail;
};

static void rb_put(struct rbuf *b, const void *d, size_t n) {
        if (b->fail)
                return;
        if (n > MAX_RESP - b->len) {
                b->fail = true;
                return;
        }
        if (b->len + n > b->cap) {
                size_t cap = b->cap ? b->cap : 256;
                while (cap < b->len + n)
                        cap *= 2;
                uint8_t *p = realloc(b->p, cap);
                if (!p) {
                        b->fail = true;
                        return;
                }
                b->p = p;
                b->cap = cap;
        }
        if (n)
                memcpy(b->p + b->len, d, n);
        b->len += n;
}

static void rb_u8(struct rbuf *b, uint8_t v) { rb_put(b, &v, 1); }

static void rb_tag(struct rbuf *b, uint32_t tag) {
        if (tag > 0xFFFF)
                rb_u8(b, (uint8_t)(tag >> 16));
        if (tag > 0xFF)
                rb_u8(b, (uint8_t)(tag >> 8));
        rb_u8(b, (uint8_t)tag);
}

static void rb_len(struct rbuf *b, size_t n) {
        if (n < 0x80) {
                rb_u8(b, (uint8_t)n);
        } else if (n <= 0xFF) {
                rb_u8(b, 0x81);
                rb_u8(b, (uint8_t)n);
        } else if (n <= 0xFFFF) {
                rb_u8(b, 0x82);
                rb_u8(b, (uint8_t)(n >> 8));
                rb_u8(b, (uint8_t)n);
        } else {
                b->fail = true;
        }
}

static void rb_tlv(struct rbuf *b, uint32_t tag, const void *v, size_t n) {
        rb_tag(b, tag);
        rb_len(b, n);
        rb_put(b, v, n);
}

static void rb_done(struct rbuf *b) {
        if (b->p)
                mbedtls_platform_zeroize(b->p, b->cap);
        free(b->p);
        *b = (struct rbuf){ 0 };
}

/* Reads one BER-TLV at *pos: tag of 1-3 bytes, definite length of up to 3
 * bytes; the value must fit in len.  False on any malformation. */
static bool tlv_read(const uint8_t *p, size_t len, size_t *pos, uint32_t *ret_tag, const uint8_t **ret_val,
                     size_t *ret_vlen) {
        size_t i = *pos;
        if (i >= len)
                return false;
        uint32_t tag = p[i++];
        if ((tag & 0x1F) == 0x1F) {
                for (int k = 0;; k++) {
                        if (i >= len || k == 2)
                                return false;
                        tag = (tag << 8) | p[i];
                        if (!(p[i++] & 0x80))
                                break;
                }
        }
        if (i >= len)
                return false;
        size_t n = p[i++];
        if (n == 0x81) {
                if (i + 1 > len)
                        return false;
                n = p[i++];
        } else if (n == 0x82) {
                if (i + 2 > len)
                        return false;
                n = ((size_t)p[i] << 8) | p[i + 1];
                i += 2;
        } else if (n > 0x80) {
                return false;
        } else if (n == 0x80) {
                return false;   /* indefinite length: not in PIV */
        }
        if (n > len - i)
                return false;
        *ret_tag = tag;
        *ret_val = p + i;
        *ret_vlen = n;
        *pos = i + n;
        return true;
}

/* --------------------------------------------------------- small helpers */

static int set_err(char **err, int r, const char *fmt, ...) {
        if (err) {
                va_list ap;
                va_start(ap, fmt);
                if (vasprintf(err, fmt, ap) < 0)
                        *err = NULL;
                va_end(ap);
        }
        return r;
}

static bool ct_equal(const uint8_t *a, const uint8_t *b, size_t n) {
        uint8_t d = 0;
        for (size_t i = 0; i < n; i++)
                d |= a[i] ^ b[i];
        return d == 0;
}

static int rng(void *out, size_t n) { return pkc_random(out, n); }

static const struct slot_def *slot_by_ref(uint8_t ref, size_t *ret_idx) {
        for (size_t i = 0; i < N_SLOTS; i++)
                if (slot_defs[i].ref == ref) {
                        if (ret_idx)
                                *ret_idx = i;
                        return &slot_defs[i];
                }
        return NULL;
}

static struct obj *obj_by_tag(struct vpiv *c, uint32_t tag) {
        if (tag < OBJ_FIRST || tag > OBJ_LAST)
                return NULL;
        return &c->objs[tag - OBJ_FIRST];
}

static void obj_set(struct obj *o, uint8_t *data, size_t len) {
        if (o->data)
                mbedtls_platform_zeroize(o->data, o->len);
        free(o->data);
        o->data = data;
        o->len = data ? len : 0;
}

/* The PIV algorithm id of a key, 0 if unsupported. */
static uint8_t key_alg(const mbedtls_pk_context *pk) {
        switch (mbedtls_pk_get_type(pk)) {
        case MBEDTLS_PK_RSA:
                return mbedtls_pk_get_bitlen(pk) == 2048 ? ALG_RSA2048 : 0;
        case MBEDTLS_PK_ECKEY:
        case MBEDTLS_PK_ECKEY_DH:
        case MBEDTLS_PK_ECDSA:
                switch (mbedtls_pk_ec(*pk)->grp.id) {
                case MBEDTLS_ECP_DP_SECP256R1: return ALG_P256;
                case MBEDTLS_ECP_DP_SECP384R1: return ALG_P384;
                default: return 0;
                }
        default:
                return 0;
        }
}

/* PIN/PUK as sent: 6-8 bytes other than FF, then FF padding up to 8. */
static bool pin_format_ok(const uint8_t *p) {
        size_t n = 0;
        while (n < 8 && p[n] != 0xFF)
                n++;
        for (size_t i = n; i < 8; i++)
                if (p[i] != 0xFF)
                        return false;
        return n >= 6;
}

static bool pin_from_string(const char *s, uint8_t out[8]) {
        size_t n = strlen(s);
        if (n < 6 || n > 8)
                return false;
        memset(out, 0xFF, 8);
        for (size_t i = 0; i < n; i++) {
                if ((uint8_t)s[i] == 0xFF || !isprint((unsigned char)s[i]))
                        return false;
                out[i] = (uint8_t)s[i];
        }
        return true;
}

static int hex_decode(const char *s, uint8_t *out, size_t cap, size_t *ret_len) {
        size_t n = strlen(s);
        if (n % 2 || n / 2 > cap)
                return -EINVAL;
        for (size_t i = 0; i < n / 2; i++) {
                unsigned v;
                if (!isxdigit((unsigned char)s[2 * i]) || !isxdigit((unsigned char)s[2 * i + 1]) ||
                    sscanf(s + 2 * i, "%2x", &v) != 1)
                        return -EINVAL;
                out[i] = (uint8_t)v;
        }
        *ret_len = n / 2;
        return 0;
}

static size_t mgmt_key_len(uint8_t alg) {
        switch (alg) {
        case ALG_3DES: return 24;
        case ALG_AES128: return 16;
        case ALG_AES192: return 24;
        case ALG_AES256: return 32;
        default: return 0;
        }
}

static const char *mgmt_alg_name(uint8_t alg) {
        switch (alg) {
        case ALG_3DES: return "3des";
        case ALG_AES128: return "aes128";
        case ALG_AES192: return "aes192";
        default: return "aes256";
        }
}

static int read_file(const char *path, uint8_t **ret, size_t *ret_len) {
        FILE *f = fopen(path, "rbe");
        if (!f)
                return -errno;
        uint8_t *buf = NULL;
        size_t len = 0, cap = 0;
        for (;;) {
                if (len == cap) {
                        if (cap >= MAX_RESP) {
                                free(buf);
                                fclose(f);
                                return -EFBIG;
                        }
                        cap = cap ? cap * 2 : 4096;
                        uint8_t *p = realloc(buf, cap);
                        if (!p) {
                                free(buf);
                                fclose(f);
                                return -ENOMEM;
                        }
                        buf = p;
                }
                size_t n = fread(buf + len, 1, cap - len, f);
                len += n;
                if (n == 0)
                        break;
        }
        int e = ferror(f) ? -EIO : 0;
        fclose(f);
        if (e < 0) {
                free(buf);
                return e;
        }
        *ret = buf;
        *ret_len = len;
        return 0;
}

/* Writes path atomically (temporary file, fsync, rename). */
static int write_file(const char *path, const void *data, size_t len, mode_t mode) {
        char tmp[4096];
        if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
                return -ENAMETOOLONG;
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        if (fd < 0)
                return -errno;
        const uint8_t *p = data;
        size_t off = 0;
        while (off < len) {
                ssize_t n = write(fd, p + off, len - off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        int e = n < 0 ? -errno : -EIO;
                        close(fd);
                        unlink(tmp);
                        return e;
                }
                off += (size_t)n;
        }
        if (fsync(fd) < 0 || close(fd) < 0) {
                int e = -errno;
                unlink(tmp);
                return e;
        }
        if (rename(tmp, path) < 0) {
                int e = -errno;
                unlink(tmp);
                return e;
        }
        return 0;
}

/* ------------------------------------------------------------- loading */

static int parse_uint(const char *v, unsigned lo, unsigned hi, unsigned *ret) {
        char *end;
        errno = 0;
        unsigned long x = strtoul(v, &end, 10);
        if (errno || end == v || *end || x < lo || x > hi)
                return -EINVAL;
        *ret = (unsigned)x;
        return 0;
}

static int load_conf(struct vpiv *c, char **err) {
        char path[4096];
        snprintf(path, sizeof path, "%s/card.conf", c->dir);
        FILE *f = fopen(path, "re");
        if (!f) {
                if (errno == ENOENT)
                        return 0;
                return set_err(err, -errno, "%s: %s", path, strerror(errno));
        }
        char line[1024];
        unsigned lineno = 0;
        bool have_pin_left = false, have_puk_left = false;
        int r = 0;
        while (fgets(line, sizeof line, f)) {
                lineno++;
                char *s = line;
                while (isspace((unsigned char)*s))
                        s++;
                if (!*s || *s == '#')
                        continue;
                char *eq = strchr(s, '=');
                if (!eq) {
                        r = set_err(err, -EINVAL, "%s:%u: expected key = value", path, lineno);
                        break;
                }
                char *k = s, *v = eq + 1, *e = eq;
                while (e > k && isspace((unsigned char)e[-1]))
                        e--;
                *e = '\0';
                while (isspace((unsigned char)*v))
                        v++;
                e = v + strlen(v);
                while (e > v && isspace((unsigned char)e[-1]))
                        e--;
                *e = '\0';

                int ok = 0;
                if (!strcmp(k, "pin"))
                        ok = pin_from_string(v, c->pin) ? 0 : -EINVAL;
                else if (!strcmp(k, "puk"))
                        ok = pin_from_string(v, c->puk) ? 0 : -EINVAL;
                else if (!strcmp(k, "pin_retries"))
                        ok = parse_uint(v, 1, 15, &c->pin_max);
                else if (!strcmp(k, "puk_retries"))
                        ok = parse_uint(v, 1, 15, &c->puk_max);
                else if (!strcmp(k, "pin_tries_left"))
                        ok = parse_uint(v, 0, 15, &c->pin_left), have_pin_left = true;
                else if (!strcmp(k, "puk_tries_left"))
                        ok = parse_uint(v, 0, 15, &c->puk_left), have_puk_left = true;
                else if (!strcmp(k, "delay_ms"))
                        ok = parse_uint(v, 0, MAX_DELAY_MS, &c->delay_ms);
                else if (!strcmp(k, "mgmt_alg")) {
                        if (!strcasecmp(v, "3des") || !strcmp(v, "03"))
                                c->mgmt_alg = ALG_3DES;
                        else if (!strcasecmp(v, "aes128") || !strcmp(v, "08"))
                                c->mgmt_alg = ALG_AES128;
                        else if (!strcasecmp(v, "aes192") || !strcasecmp(v, "0a"))
                                c->mgmt_alg = ALG_AES192;
                        else if (!strcasecmp(v, "aes256") || !strcasecmp(v, "0c"))
                                c->mgmt_alg = ALG_AES256;
                        else
                                ok = -EINVAL;
                } else if (!strcmp(k, "mgmt_key"))
                        ok = hex_decode(v, c->mgmt_key, sizeof c->mgmt_key, &c->mgmt_len);
                else if (!strcmp(k, "guid")) {
                        size_t n = 0;
                        ok = hex_decode(v, c->guid, sizeof c->guid, &n);
                        if (ok == 0 && n != sizeof c->guid)
                                ok = -EINVAL;
                } else {
                        r = set_err(err, -EINVAL, "%s:%u: unknown key '%s'", path, lineno, k);
                        break;
                }
                if (ok < 0) {
                        /* Never echo the value: it may be a PIN or a key. */
                        r = set_err(err, -EINVAL, "%s:%u: invalid value for '%s'", path, lineno, k);
                        break;
                }
        }
        mbedtls_platform_zeroize(line, sizeof line);
        fclose(f);
        if (r < 0)
                return r;
        if (c->mgmt_len != mgmt_key_len(c->mgmt_alg))
                return set_err(err, -EINVAL, "%s: mgmt_key must be %zu bytes for mgmt_alg %s", path,
                               mgmt_key_len(c->mgmt_alg), mgmt_alg_name(c->mgmt_alg));
        if (!have_pin_left || c->pin_left > c->pin_max)
                c->pin_left = c->pin_max;
        if (!have_puk_left || c->puk_left > c->puk_max)
                c->puk_left = c->puk_max;
        return 0;
}

/* A certificate container: 70 cert, 71 00 (uncompressed), FE 00 (LRC). */
static int cert_object(const uint8_t *der, size_t len, uint8_t **ret, size_t *ret_len) {
        struct rbuf b = { 0 };
        rb_tlv(&b, 0x70, der, len);
        rb_tlv(&b, 0x71, "\0", 1);
        rb_tlv(&b, 0xFE, NULL, 0);
        if (b.fail) {
                rb_done(&b);
                return -ENOMEM;
        }
        *ret = b.p;
        *ret_len = b.len;
        return 0;
}

static int load_slot(struct vpiv *c, size_t i, char **err) {
        const struct slot_def *d = &slot_defs[i];
        struct key_slot *s = &c->slots[i];
        char path[4096];
        int r;

        snprintf(path, sizeof path, "%s/%s.key.pem", c->dir, d->name);
        if (access(path, F_OK) == 0) {
                r = mbedtls_pk_parse_keyfile(&s->pk, path, NULL);
                if (r != 0)
                        return set_err(err, -EINVAL, "%s: not a private key (mbedTLS -0x%04x)", path, -r);
                s->alg = key_alg(&s->pk);
                if (!s->alg)
                        return set_err(err, -ENOTSUP, "%s: only RSA-2048, P-256 and P-384 keys", path);
        }

        struct obj *o = obj_by_tag(c, d->tag);
        if (o->data)
                return 0;       /* obj-<tag>.bin wins */
        const char *exts[] = { "crt.pem", "crt.der" };
        for (size_t k = 0; k < 2; k++) {
                snprintf(path, sizeof path, "%s/%s.%s", c->dir, d->name, exts[k]);
                if (access(path, F_OK) != 0)
                        continue;
                mbedtls_x509_crt crt;
                mbedtls_x509_crt_init(&crt);
                r = mbedtls_x509_crt_parse_file(&crt, path);
                if (r != 0) {
                        mbedtls_x509_crt_free(&crt);
                        return set_err(err, -EINVAL, "%s: not a certificate (mbedTLS -0x%04x)", path, -r);
                }
                uint8_t *data = NULL;
                size_t len = 0;
                r = cert_object(crt.raw.p, crt.raw.len, &data, &len);
                mbedtls_x509_crt_free(&crt);
                if (r < 0)
                        return set_err(err, r, "out of memory");
                obj_set(o, data, len);
                break;
        }
        return 0;
}

static int load_objects(struct vpiv *c, char **err) {
        char path[4096];
        for (uint32_t tag = OBJ_FIRST; tag <= OBJ_LAST; tag++) {
                snprintf(path, sizeof path, "%s/obj-%06x.bin", c->dir, tag);
                uint8_t *data = NULL;
                size_t len = 0;
                int r = read_file(path, &data, &len);
                if (r == -ENOENT)
                        continue;
                if (r < 0)
                        return set_err(err, r, "%s: %s", path, strerror(-r));
                struct obj *o = obj_by_tag(c, tag);
                obj_set(o, data, len);
                o->explicit_ = true;
        }
        return 0;
}

/* FASC-N (SP 800-73-4 / TIG SCEPACS): 40 characters of 5 bits (4 data bits
 * least significant first, then odd parity), packed most significant bit
 * first.  Agency code 9999 marks a card without an agency, so that readers
 * (OpenSC) take the GUID, not the FASC-N, as the card's serial; the person
 * identifier is derived from the GUID. */
static void make_fascn(const uint8_t guid[16], uint8_t out[25]) {
        uint8_t ch[40];
        size_t n = 0;
        const char *pattern = "S9999F9999F999999F1F1F";
        for (const char *p = pattern; *p; p++)
                ch[n++] = *p == 'S' ? 11 : *p == 'F' ? 13 : (uint8_t)(*p - '0');
        for (size_t i = 0; i < 10; i++)
                ch[n++] = guid[i] % 10;         /* person identifier */
        ch[n++] = 1;                            /* organizational category */
        for (size_t i = 0; i < 4; i++)
                ch[n++] = 9;                    /* organization identifier */
        ch[n++] = 1;                            /* person/organization association */
        ch[n++] = 15;                           /* end sentinel */
        uint8_t lrc = 0;
        for (size_t i = 0; i < n; i++)
                lrc ^= ch[i];
        ch[n++] = lrc;
        memset(out, 0, 25);
        size_t bit = 0;
        for (size_t i = 0; i < n; i++) {
                unsigned ones = 0;
                for (int b = 0; b < 5; b++, bit++) {
                        unsigned v = b < 4 ? (ch[i] >> b) & 1 : !(ones & 1);
                        ones += v;
                        if (v)
                                out[bit / 8] |= (uint8_t)(0x80 >> (bit % 8));
                }
        }
}

/* CHUID: FASC-N, GUID, expiry, empty signature. */
static int make_chuid(struct vpiv *c) {
        uint8_t fascn[25];
        make_fascn(c->guid, fascn);
        struct rbuf b = { 0 };
        rb_tlv(&b, 0x30, fascn, sizeof fascn);
        rb_tlv(&b, 0x34, c->guid, sizeof c->guid);
        rb_tlv(&b, 0x35, "20351231", 8);
        rb_tlv(&b, 0x3E, NULL, 0);
        rb_tlv(&b, 0xFE, NULL, 0);
        if (b.fail) {
                rb_done(&b);
                return -ENOMEM;
        }
        obj_set(obj_by_tag(c, TAG_CHUID), b.p, b.len);
        return 0;
}

/* CCC: card identifier = registered-id prefix + GUID, version fields. */
static int make_ccc(struct vpiv *c) {
        uint8_t cardid[21] = { 0xA0, 0x00, 0x00, 0x01, 0x16 };
        memcpy(cardid + 5, c->guid, 16);
        struct rbuf b = { 0 };
        rb_tlv(&b, 0xF0, cardid, sizeof cardid);
        rb_tlv(&b, 0xF1, "\x21", 1);
        rb_tlv(&b, 0xF2, "\x21", 1);
        rb_tlv(&b, 0xF3, NULL, 0);
        rb_tlv(&b, 0xF4, "\x00", 1);
        rb_tlv(&b, 0xF5, "\x10", 1);
        rb_tlv(&b, 0xF6, NULL, 0);
        rb_tlv(&b, 0xF7, NULL, 0);
        rb_tlv(&b, 0xFA, NULL, 0);
        rb_tlv(&b, 0xFB, NULL, 0);
        rb_tlv(&b, 0xFC, NULL, 0);
        rb_tlv(&b, 0xFD, NULL, 0);
        rb_tlv(&b, 0xFE, NULL, 0);
        if (b.fail) {
                rb_done(&b);
                return -ENOMEM;
        }
        obj_set(obj_by_tag(c, TAG_CCC), b.p, b.len);
        return 0;
}

int vpiv_new(const char *dir, struct vpiv **ret, char **err) {
        if (err)
                *err = NULL;
        if (!dir || !ret)
                return set_err(err, -EINVAL, "invalid arguments");
        struct stat st;
        if (stat(dir, &st) < 0)
                return set_err(err, -errno, "%s: %s", dir, strerror(errno));
        if (!S_ISDIR(st.st_mode))
                return set_err(err, -ENOTDIR, "%s: not a directory", dir);

        struct vpiv *c = calloc(1, sizeof *c);
        if (!c)
                return set_err(err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < N_SLOTS; i++)
                mbedtls_pk_init(&c->slots[i].pk);
        c->dir = strdup(dir);
        int r;
        if (!c->dir) {
                r = set_err(err, -ENOMEM, "out of memory");
                goto out_free;
        }
        pin_from_string("123456", c->pin);
        pin_from_string("12345678", c->puk);
        c->pin_max = c->puk_max = 3;
        c->mgmt_alg = ALG_3DES;
        static const uint8_t def_mgmt[24] = { 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8 };
        memcpy(c->mgmt_key, def_mgmt, sizeof def_mgmt);
        c->mgmt_len = sizeof def_mgmt;
        for (size_t i = 0; i < sizeof c->guid; i++)
                c->guid[i] = (uint8_t)(0x10 + i);

        r = load_conf(c, err);
        if (r < 0)
                goto out_free;
        r = load_objects(c, err);
        if (r < 0)
                goto out_free;
        for (size_t i = 0; i < N_SLOTS; i++) {
                r = load_slot(c, i, err);
                if (r < 0)
                        goto out_free;
        }
        if (!obj_by_tag(c, TAG_CHUID)->data && (r = make_chuid(c)) < 0)
                goto out_free;
        if (!obj_by_tag(c, TAG_CCC)->data && (r = make_ccc(c)) < 0)
                goto out_free;
        c->pin_left0 = c->pin_left;
        c->puk_left0 = c->puk_left;
        memcpy(c->pin0, c->pin, sizeof c->pin0);
        memcpy(c->puk0, c->puk, sizeof c->puk0);
        vpiv_reset(c);
        *ret = c;
        return 0;

out_free:
        if (err && !*err)
                set_err(err, r, "%s", strerror(-r));
        vpiv_free(c);
        return r;
}

static void chain_drop(struct vpiv *c) {
        if (c->chain)
                mbedtls_platform_zeroize(c->chain, c->chain_len);
        free(c->chain);
        c->chain = NULL;
        c->chain_len = 0;
        c->chaining = false;
}

static void resp_drop(struct vpiv *c) {
        if (c->resp)
                mbedtls_platform_zeroize(c->resp, c->resp_len);
        free(c->resp);
        c->resp = NULL;
        c->resp_len = c->resp_off = 0;
}

void vpiv_free(struct vpiv *c) {
        if (!c)
                return;
        for (size_t i = 0; i < N_SLOTS; i++)
                mbedtls_pk_free(&c->slots[i].pk);
        for (size_t i = 0; i < N_OBJS; i++)
                obj_set(&c->objs[i], NULL, 0);
        chain_drop(c);
        resp_drop(c);
        free(c->dir);
        mbedtls_platform_zeroize(c, sizeof *c);
        free(c);
}

size_t vpiv_atr(struct vpiv *c, uint8_t *out, size_t cap) {
        (void)c;
        size_t n = sizeof atr_body + 1;
        if (out && cap >= n) {
                uint8_t tck = 0;
                for (size_t i = 1; i < sizeof atr_body; i++)
                        tck ^= atr_body[i];
                memcpy(out, atr_body, sizeof atr_body);
                out[sizeof atr_body] = tck;
        }
        return n;
}

void vpiv_reset(struct vpiv *c) {
        if (!c)
                return;
        c->pin_verified = c->pin_always = c->mgmt_authed = false;
        c->ga_pending = GA_NONE;
        mbedtls_platform_zeroize(c->ga_block, sizeof c->ga_block);
        chain_drop(c);
        resp_drop(c);
}

void vpiv_rewind(struct vpiv *c) {
        if (!c)
                return;
        c->pin_left = c->pin_left0;
        c->puk_left = c->puk_left0;
        memcpy(c->pin, c->pin0, sizeof c->pin);
        memcpy(c->puk, c->puk0, sizeof c->puk);
        vpiv_reset(c);
}

void vpiv_set_delay_ms(struct vpiv *c, unsigned ms) {
        if (c)
                c->delay_ms = ms > MAX_DELAY_MS ? MAX_DELAY_MS : ms;
}

/* -------------------------------------------------------------- saving */

int vpiv_save(struct vpiv *c) {
        if (!c)
                return -EINVAL;
        char path[4096];
        int r;

        for (size_t i = 0; i < N_SLOTS; i++) {
                struct key_slot *s = &c->slots[i];
                if (!s->dirty)
                        continue;
                size_t cap = 16000;
                uint8_t *pem = calloc(1, cap);
                if (!pem)
                        return -ENOMEM;
                r = mbedtls_pk_write_key_pem(&s->pk, pem, cap);
                if (r == 0) {
                        snprintf(path, sizeof path, "%s/%s.key.pem", c->dir, slot_defs[i].name);
                        r = write_file(path, pem, strlen((char *)pem), 0600);
                } else {
                        r = -EIO;
                }
                mbedtls_platform_zeroize(pem, cap);
                free(pem);
                if (r < 0)
                        return r;
                s->dirty = false;
        }

        for (uint32_t tag = OBJ_FIRST; tag <= OBJ_LAST; tag++) {
                struct obj *o = obj_by_tag(c, tag);
                if (!o->dirty)
                        continue;
                const struct slot_def *d = NULL;
                for (size_t i = 0; i < N_SLOTS; i++)
                        if (slot_defs[i].tag == tag)
                                d = &slot_defs[i];
                /* A plain certificate container of a slot goes back as
                 * <slot>.crt.der; anything else as obj-<tag>.bin. */
                const uint8_t *cert = NULL;
                size_t cert_len = 0;
                if (d && o->data) {
                        size_t pos = 0;
                        uint32_t t;
                        const uint8_t *v;
                        size_t vl;
                        bool plain = true;
                        while (pos < o->len && plain) {
                                if (!tlv_read(o->data, o->len, &pos, &t, &v, &vl))
                                        plain = false;
                                else if (t == 0x70)
                                        cert = v, cert_len = vl;
                                else if (t == 0x71 && (vl != 1 || v[0] != 0))
                                        plain = false;
                        }
                        if (!plain)
                                cert = NULL;
                }
                char objpath[4096];
                snprintf(objpath, sizeof objpath, "%s/obj-%06x.bin", c->dir, tag);
                if (d) {
                        snprintf(path, sizeof path, "%s/%s.crt.pem", c->dir, d->name);
                        (void)unlink(path);
                        snprintf(path, sizeof path, "%s/%s.crt.der", c->dir, d->name);
                }
                if (cert) {
                        r = write_file(path, cert, cert_len, 0644);
                        if (r < 0)
                                return r;
                        (void)unlink(objpath);
                } else {
                        if (d)
                                (void)unlink(path);
                        if (o->data) {
                                r = write_file(objpath, o->data, o->len, 0644);
                                if (r < 0)
                                        return r;
                        } else {
                                (void)unlink(objpath);
                        }
                }
                o->dirty = false;
        }

        char hexkey[65] = "", hexguid[33] = "";
        for (size_t i = 0; i < c->mgmt_len; i++)
                snprintf(hexkey + 2 * i, 3, "%02x", c->mgmt_key[i]);
        for (size_t i = 0; i < sizeof c->guid; i++)
                snprintf(hexguid + 2 * i, 3, "%02x", c->guid[i]);
        char pin[9] = "", puk[9] = "";
        for (size_t i = 0; i < 8 && c->pin[i] != 0xFF; i++)
                pin[i] = (char)c->pin[i];
        for (size_t i = 0; i < 8 && c->puk[i] != 0xFF; i++)
                puk[i] = (char)c->puk[i];
        char *conf = NULL;
        int n = asprintf(&conf,
                         "# vpiv card (tests/emulators/vpiv.h); rewritten by vpiv_save\n"
                         "pin = %s\npuk = %s\npin_retries = %u\npuk_retries = %u\n"
                         "pin_tries_left = %u\npuk_tries_left = %u\nmgmt_alg = %s\nmgmt_key = %s\n"
                         "guid = %s\ndelay_ms = %u\n",
                         pin, puk, c->pin_max, c->puk_max, c->pin_left, c->puk_left, mgmt_alg_name(c->mgmt_alg),
                         hexkey, hexguid, c->delay_ms);
        mbedtls_platform_zeroize(pin, sizeof pin);
        mbedtls_platform_zeroize(puk, sizeof puk);
        mbedtls_platform_zeroize(hexkey, sizeof hexkey);
        if (n < 0)
                return -ENOMEM;
        snprintf(path, sizeof path, "%s/card.conf", c->dir);
        r = write_file(path, conf, (size_t)n, 0600);
        mbedtls_platform_zeroize(conf, (size_t)n);
        free(conf);
        return r;
}

/* ------------------------------------------------------------ commands */

struct apdu {
        uint8_t cla, ins, p1, p2;
        const uint8_t *data;
        size_t lc;
        size_t ne;              /* 0: no Le */
};

/* ISO 7816-4 cases 1-4, short and extended.  False: malformed. */
static bool apdu_parse(const uint8_t *b, size_t n, struct apdu *a) {
        if (n < 4)
                return false;
        *a = (struct apdu){ .cla = b[0], .ins = b[1], .p1 = b[2], .p2 = b[3] };
        if (n == 4)
                return true;
        if (n == 5) {
                a->ne = b[4] ? b[4] : 256;
                return true;
        }
        if (b[4] != 0) {
                size_t lc = b[4];
                a->lc = lc;
                a->data = b + 5;
                if (n == 5 + lc)
                        return true;
                if (n == 6 + lc) {
                        a->ne = b[5 + lc] ? b[5 + lc] : 256;
                        return true;
                }
                return false;
        }
        /* Extended: b[4] == 0. */
        if (n < 7)
                return false;
        size_t v = ((size_t)b[5] << 8) | b[6];
        if (n == 7) {
                a->ne = v ? v : 65536;
                return true;
        }
        if (v == 0)
                return false;
        a->lc = v;
        a->data = b + 7;
        if (n == 7 + v)
                return true;
        if (n == 9 + v) {
                size_t le = ((size_t)b[7 + v] << 8) | b[8 + v];
                a->ne = le ? le : 65536;
                return true;
        }
        return false;
}

static uint16_t tries_sw(unsigned left) { return left ? (uint16_t)(0x63C0 | (left & 0x0F)) : SW_BLOCKED; }

static uint16_t cmd_select(struct vpiv *c, const struct apdu *a, struct rbuf *r) {
        if (a->p1 != 0x04)
                return SW_WRONG_P1P2;
        if (a->lc < 5 || a->lc > sizeof piv_aid || memcmp(a->data, piv_aid, a->lc) != 0)
                return SW_FILE_NOT_FOUND;
        /* Application property template (SP 800-73-4 table 3). */
        static const uint8_t algs[] = { ALG_3DES, ALG_AES128, ALG_AES192, ALG_AES256, ALG_RSA2048, ALG_P256, ALG_P384 };
        struct rbuf t = { 0 }, ac = { 0 }, auth = { 0 };
        rb_tlv(&t, 0x4F, piv_aid + 5, 6);
        rb_tlv(&auth, 0x4F, piv_aid, 5);
        rb_tlv(&t, 0x79, auth.p, auth.len);
        rb_tlv(&t, 0x50, "NETCA virtual PIV", 17);
        for (size_t i = 0; i < sizeof algs; i++)
                rb_tlv(&ac, 0x80, &algs[i], 1);
        rb_tlv(&ac, 0x06, "\x00", 1);
        rb_tlv(&t, 0xAC, ac.p, ac.len);
        rb_tlv(r, 0x61, t.p, t.len);
        bool fail = t.fail || ac.fail || auth.fail;
        rb_done(&t);
        rb_done(&ac);
        rb_done(&auth);
        return fail ? SW_UNKNOWN : SW_OK;
}

/* Key history: how many retired slots hold a certificate (all on card). */
static void keyhist_build(struct vpiv *c, struct rbuf *b) {
        uint8_t n = 0;
        for (size_t i = 4; i < N_SLOTS; i++) {
                struct obj *o = obj_by_tag(c, slot_defs[i].tag);
                if (o->data && o->len)
                        n++;
        }
        rb_tlv(b, 0xC1, &n, 1);
        rb_tlv(b, 0xC2, "\x00", 1);
        rb_tlv(b, 0xFE, NULL, 0);
}

static bool obj_needs_pin(uint32_t tag) {
        /* Fingerprints, facial image, printed information, iris images. */
        return tag == 0x5FC103 || tag == 0x5FC108 || tag == 0x5FC109 || tag == 0x5FC121;
}

/* The 5C tag list of GET/PUT DATA: one tag of 1-3 bytes. */
static bool parse_tag_list(const uint8_t *v, size_t n, uint32_t *ret) {
        if (n < 1 || n > 3)
                return false;
        uint32_t t = 0;
        for (size_t i = 0; i < n; i++)
                t = (t << 8) | v[i];
        *ret = t;
        return true;
}

static uint16_t cmd_get_data(struct vpiv *c, const struct apdu *a, struct rbuf *r) {
        if (a->p1 != 0x3F || a->p2 != 0xFF)
                return SW_WRONG_P1P2;
        size_t pos = 0;
        uint32_t t, tag;
        const uint8_t *v;
        size_t vl;
        if (!tlv_read(a->data, a->lc, &pos, &t, &v, &vl) || t != 0x5C || pos != a->lc || !parse_tag_list(v, vl, &tag))
                return SW_WRONG_DATA;
        if (tag == TAG_DISCOVERY) {
                struct rbuf d = { 0 };
                rb_tlv(&d, 0x4F, piv_aid, sizeof piv_aid);
                rb_tlv(&d, 0x5F2F, "\x40\x00", 2);      /* PIV PIN only; PIV PIN is the primary */
                rb_tlv(r, 0x7E, d.p, d.len);
                bool fail = d.fail;
                rb_done(&d);
                return fail ? SW_UNKNOWN : SW_OK;
        }
        struct obj *o = obj_by_tag(c, tag);
        if (!o)
                return SW_FILE_NOT_FOUND;
        if (obj_needs_pin(tag) && !c->pin_verified)
                return SW_SECURITY;
        if (tag == TAG_KEYHIST && !o->explicit_) {
                struct rbuf k = { 0 };
                keyhist_build(c, &k);
                rb_tlv(r, 0x53, k.p, k.len);
                bool fail = k.fail;
                rb_done(&k);
                return fail ? SW_UNKNOWN : SW_OK;
        }
        if (!o->data || !o->len)
                return SW_FILE_NOT_FOUND;
        rb_tlv(r, 0x53, o->data, o->len);
        return SW_OK;
}

static uint16_t cmd_verify(struct vpiv *c, const struct apdu *a) {
        if (a->p1 != 0x00 && a->p1 != 0xFF)
                return SW_WRONG_P1P2;
        if (a->p2 != REF_PIN && a->p2 != REF_PUK)
                return SW_REF_NOT_FOUND;
        bool is_pin = a->p2 == REF_PIN;
        unsigned *left = is_pin ? &c->pin_left : &c->puk_left;
        unsigned max = is_pin ? c->pin_max : c->puk_max;
        const uint8_t *ref = is_pin ? c->pin : c->puk;
        if (a->p1 == 0xFF) {
                if (a->lc)
                        return SW_WRONG_LENGTH;
                if (is_pin)
                        c->pin_verified = c->pin_always = false;
                return SW_OK;
        }
        if (a->lc == 0) {
                if (!*left)
                        return SW_BLOCKED;
                return is_pin && c->pin_verified ? SW_OK : tries_sw(*left);
        }
        if (a->lc != 8 || !pin_format_ok(a->data))
                return SW_WRONG_DATA;
        if (!*left)
                return SW_BLOCKED;
        if (!ct_equal(a->data, ref, 8)) {
                (*left)--;
                if (is_pin)
                        c->pin_verified = c->pin_always = false;
                return tries_sw(*left);
        }
        *left = max;
        if (is_pin)
                c->pin_verified = c->pin_always = true;
        return SW_OK;
}

static uint16_t cmd_change_ref(struct vpiv *c, const struct apdu *a) {
        if (a->p1 != 0x00)
                return SW_WRONG_P1P2;
        if (a->p2 != REF_PIN && a->p2 != REF_PUK)
                return SW_REF_NOT_FOUND;
        if (a->lc != 16 || !pin_format_ok(a->data) || !pin_format_ok(a->data + 8))
                return SW_WRONG_DATA;
        bool is_pin = a->p2 == REF_PIN;
        unsigned *left = is_pin ? &c->pin_left : &c->puk_left;
        uint8_t *ref = is_pin ? c->pin : c->puk;
        if (!*left)
                return SW_BLOCKED;
        if (!ct_equal(a->data, ref, 8)) {
                (*left)--;
                if (is_pin)
                        c->pin_verified = c->pin_always = false;
                return tries_sw(*left);
        }
        memcpy(ref, a->data + 8, 8);
        *left = is_pin ? c->pin_max : c->puk_max;
        return SW_OK;
}

static uint16_t cmd_reset_retry(struct vpiv *c, const struct apdu *a) {
        if (a->p1 != 0x00)
                return SW_WRONG_P1P2;
        if (a->p2 != REF_PIN)
                return SW_REF_NOT_FOUND;
        if (a->lc != 16 || !pin_format_ok(a->data) || !pin_format_ok(a->data + 8))
                return SW_WRONG_DATA;
        if (!c->puk_left)
                return SW_BLOCKED;
        if (!ct_equal(a->data, c->puk, 8)) {
                c->puk_left--;
                return tries_sw(c->puk_left);
        }
        c->puk_left = c->puk_max;
        memcpy(c->pin, a->data + 8, 8);
        c->pin_left = c->pin_max;
        c->pin_verified = c->pin_always = false;
        return SW_OK;
}

/* One block of the management key's cipher (ECB encrypt). */
static int mgmt_encrypt(const struct vpiv *c, const uint8_t *in, uint8_t *out) {
        int r;
        if (c->mgmt_alg == ALG_3DES) {
                mbedtls_des3_context d;
                mbedtls_des3_init(&d);
                r = mbedtls_des3_set3key_enc(&d, c->mgmt_key);
                if (r == 0)
                        r = mbedtls_des3_crypt_ecb(&d, in, out);
                mbedtls_des3_free(&d);
        } else {
                mbedtls_aes_context e;
                mbedtls_aes_init(&e);
                r = mbedtls_aes_setkey_enc(&e, c->mgmt_key, (unsigned)c->mgmt_len * 8);
                if (r == 0)
                        r = mbedtls_aes_crypt_ecb(&e, MBEDTLS_AES_ENCRYPT, in, out);
                mbedtls_aes_free(&e);
        }
        return r == 0 ? 0 : -EIO;
}

struct ga_fields {
        bool has[6];            /* tags 80..85 */
        const uint8_t *v[6];
        size_t n[6];
};

static uint16_t ga_mgmt(struct vpiv *c, const struct apdu *a, const struct ga_fields *f, enum ga_pending pending,
                        struct rbuf *r) {
        if (a->p1 != c->mgmt_alg)
                return SW_WRONG_P1P2;
        size_t bs = c->mgmt_alg == ALG_3DES ? 8 : 16;
        uint8_t blk[16], enc[16];
        struct rbuf t = { 0 };
        uint16_t sw;

        if (f->has[0] && f->n[0] == 0 && !f->has[1] && !f->has[2]) {
                /* Mutual authentication, step 1: the encrypted witness. */
                if (rng(c->ga_block, bs) < 0 || mgmt_encrypt(c, c->ga_block, enc) < 0)
                        return SW_UNKNOWN;
                c->ga_pending = GA_WITNESS;
                rb_tlv(&t, 0x80, enc, bs);
                sw = SW_OK;
        } else if (f->has[0] && f->n[0] && f->has[1] && f->n[1] && (!f->has[2] || f->n[2] == 0)) {
                /* Mutual authentication, step 2: decrypted witness + host challenge. */
                if (pending != GA_WITNESS)
                        return SW_CONDITIONS;
                if (f->n[0] != bs || f->n[1] != bs)
                        return SW_WRONG_DATA;
                if (!ct_equal(f->v[0], c->ga_block, bs))
                        return SW_SECURITY;
                if (mgmt_encrypt(c, f->v[1], enc) < 0)
                        return SW_UNKNOWN;
                c->mgmt_authed = true;
                rb_tlv(&t, 0x82, enc, bs);
                sw = SW_OK;
        } else if (f->has[1] && f->n[1] == 0 && !f->has[0] && !f->has[2]) {
                /* External authentication, step 1: a challenge. */
                if (rng(c->ga_block, bs) < 0)
                        return SW_UNKNOWN;
                c->ga_pending = GA_CHALLENGE;
                rb_tlv(&t, 0x81, c->ga_block, bs);
                sw = SW_OK;
        } else if (f->has[2] && f->n[2] && !f->has[0] && !f->has[1]) {
                /* External authentication, step 2: the encrypted challenge. */
                if (pending != GA_CHALLENGE)
                        return SW_CONDITIONS;
                if (f->n[2] != bs)
                        return SW_WRONG_DATA;
                if (mgmt_encrypt(c, c->ga_block, blk) < 0)
                        return SW_UNKNOWN;
                if (!ct_equal(blk, f->v[2], bs))
                        return SW_SECURITY;
                c->mgmt_authed = true;
                return SW_OK;
        } else if (f->has[1] && f->n[1] && f->has[2] && f->n[2] == 0 && !f->has[0]) {
                /* Internal authentication: the card encrypts a host challenge. */
                if (f->n[1] != bs)
                        return SW_WRONG_DATA;
                if (mgmt_encrypt(c, f->v[1], enc) < 0)
                        return SW_UNKNOWN;
                rb_tlv(&t, 0x82, enc, bs);
                sw = SW_OK;
        } else {
                return SW_WRONG_DATA;
        }
        rb_tlv(r, 0x7C, t.p, t.len);
        if (t.fail)
                sw = SW_UNKNOWN;
        rb_done(&t);
        mbedtls_platform_zeroize(enc, sizeof enc);
        return sw;
}

static uint16_t ga_asym(struct vpiv *c, const struct apdu *a, const struct ga_fields *f, struct rbuf *r) {
        size_t idx;
        if (!slot_by_ref(a->p2, &idx))
                return SW_WRONG_P1P2;
        struct key_slot *s = &c->slots[idx];
        if (a->p1 != ALG_RSA2048 && a->p1 != ALG_P256 && a->p1 != ALG_P384)
                return SW_WRONG_P1P2;
        if (!s->alg)
                return SW_REF_NOT_FOUND;
        if (s->alg != a->p1)
                return SW_WRONG_P1P2;
        /* Security status: 9E none, 9C a fresh VERIFY each time, others the session PIN. */
        if (a->p2 == 0x9C) {
                bool ok = c->pin_always;
                c->pin_always = false;
                if (!ok)
                        return SW_SECURITY;
        } else if (a->p2 != 0x9E && !c->pin_verified) {
                return SW_SECURITY;
        }
        /* 82 empty (response requested) with 81 challenge or 85 exponentiation. */
        if (!f->has[2] || f->n[2] != 0 || f->has[0] || f->has[3] || f->has[4])
                return SW_WRONG_DATA;
        bool sign = f->has[1] && f->n[1];
        bool ecdh = f->has[5] && f->n[5];
        if (sign == ecdh)
                return SW_WRONG_DATA;

        uint8_t out[MBEDTLS_ECDSA_MAX_LEN > 512 ? MBEDTLS_ECDSA_MAX_LEN : 512];
        size_t outlen = 0;
        int e;
        if (s->alg == ALG_RSA2048) {
                mbedtls_rsa_context *rsa = mbedtls_pk_rsa(s->pk);
                size_t klen = mbedtls_rsa_get_len(rsa);
                if (!sign || f->n[1] != klen)
                        return SW_WRONG_DATA;
                e = mbedtls_rsa_private(rsa, pkc_rng, NULL, f->v[1], out);
                if (e != 0)
                        return SW_WRONG_DATA;   /* input >= modulus */
                outlen = klen;
        } else {
                mbedtls_ecp_keypair *ec = mbedtls_pk_ec(s->pk);
                size_t fsz = (ec->grp.pbits + 7) / 8;
                if (sign) {
                        if (f->n[1] > fsz)
                                return SW_WRONG_DATA;
                        e = mbedtls_ecdsa_write_signature(ec, s->alg == ALG_P256 ? MBEDTLS_MD_SHA256 : MBEDTLS_MD_SHA384,
                                                          f->v[1], f->n[1], out, &outlen, pkc_rng, NULL);
                        if (e != 0)
                                return SW_UNKNOWN;
                } else {
                        mbedtls_ecp_point q;
                        mbedtls_mpi z;
                        mbedtls_ecp_point_init(&q);
                        mbedtls_mpi_init(&z);
                        e = mbedtls_ecp_point_read_binary(&ec->grp, &q, f->v[5], f->n[5]);
                        if (e == 0)
                                e = mbedtls_ecp_check_pubkey(&ec->grp, &q);
                        if (e == 0)
                                e = mbedtls_ecdh_compute_shared(&ec->grp, &z, &q, &ec->d, pkc_rng, NULL);
                        if (e == 0)
                                e = mbedtls_mpi_write_binary(&z, out, fsz);
                        mbedtls_ecp_point_free(&q);
                        mbedtls_mpi_free(&z);
                        if (e != 0)
                                return SW_WRONG_DATA;
                        outlen = fsz;
                }
        }
        struct rbuf t = { 0 };
        rb_tlv(&t, 0x82, out, outlen);
        rb_tlv(r, 0x7C, t.p, t.len);
        bool fail = t.fail;
        rb_done(&t);
        mbedtls_platform_zeroize(out, sizeof out);
        return fail ? SW_UNKNOWN : SW_OK;
}

static uint16_t cmd_general_auth(struct vpiv *c, const struct apdu *a, enum ga_pending pending, struct rbuf *r) {
        size_t pos = 0;
        uint32_t t;
        const uint8_t *v;
        size_t vl;
        if (!tlv_read(a->data, a->lc, &pos, &t, &v, &vl) || t != 0x7C || pos != a->lc)
                return SW_WRONG_DATA;
        struct ga_fields f = { 0 };
        size_t ip = 0;
        while (ip < vl) {
                uint32_t it;
                const uint8_t *iv;
                size_t il;
                if (!tlv_read(v, vl, &ip, &it, &iv, &il) || it < 0x80 || it > 0x85 || f.has[it - 0x80])
                        return SW_WRONG_DATA;
                f.has[it - 0x80] = true;
                f.v[it - 0x80] = iv;
                f.n[it - 0x80] = il;
        }
        if (a->p2 == KEY_MGMT)
                return ga_mgmt(c, a, &f, pending, r);
        return ga_asym(c, a, &f, r);
}

static void put_mpi(struct rbuf *b, uint32_t tag, const mbedtls_mpi *x) {
        size_t n = mbedtls_mpi_size(x);
        uint8_t buf[512];
        if (n > sizeof buf || mbedtls_mpi_write_binary(x, buf, n) != 0) {
                b->fail = true;
                return;
        }
        rb_tlv(b, tag, buf, n);
}

static uint16_t cmd_generate(struct vpiv *c, const struct apdu *a, struct rbuf *r) {
        size_t idx;
        if (a->p1 != 0x00 || !slot_by_ref(a->p2, &idx))
                return SW_WRONG_P1P2;
        if (!c->mgmt_authed)
                return SW_SECURITY;
        size_t pos = 0;
        uint32_t t;
        const uint8_t *v;
        size_t vl;
        if (!tlv_read(a->data, a->lc, &pos, &t, &v, &vl) || t != 0xAC || pos != a->lc)
                return SW_WRONG_DATA;
        uint8_t alg = 0;
        size_t ip = 0;
        while (ip < vl) {
                uint32_t it;
                const uint8_t *iv;
                size_t il;
                if (!tlv_read(v, vl, &ip, &it, &iv, &il))
                        return SW_WRONG_DATA;
                if (it == 0x80 && il == 1)
                        alg = iv[0];
                else if (it != 0xAA && it != 0xAB)     /* PIN / touch policies: accepted, not enforced */
                        return SW_WRONG_DATA;
        }
        mbedtls_pk_context pk;
        mbedtls_pk_init(&pk);
        int e;
        if (alg == ALG_RSA2048) {
                e = mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_RSA));
                if (e == 0)
                        e = mbedtls_rsa_gen_key(mbedtls_pk_rsa(pk), pkc_rng, NULL, 2048, 65537);
        } else if (alg == ALG_P256 || alg == ALG_P384) {
                e = mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
                if (e == 0)
                        e = mbedtls_ecp_gen_key(alg == ALG_P256 ? MBEDTLS_ECP_DP_SECP256R1 : MBEDTLS_ECP_DP_SECP384R1,
                                                mbedtls_pk_ec(pk), pkc_rng, NULL);
        } else {
                return SW_WRONG_DATA;
        }
        if (e != 0) {
                mbedtls_pk_free(&pk);
                return SW_UNKNOWN;
        }
        struct rbuf k = { 0 };
        if (alg == ALG_RSA2048) {
                mbedtls_mpi n, ex;
                mbedtls_mpi_init(&n);
                mbedtls_mpi_init(&ex);
                if (mbedtls_rsa_export(mbedtls_pk_rsa(pk), &n, NULL, NULL, NULL, &ex) != 0)
                        k.fail = true;
                put_mpi(&k, 0x81, &n);
                put_mpi(&k, 0x82, &ex);
                mbedtls_mpi_free(&n);
                mbedtls_mpi_free(&ex);
        } else {
                mbedtls_ecp_keypair *ec = mbedtls_pk_ec(pk);
                uint8_t pt[1 + 2 * 48];
                size_t ptlen;
                if (mbedtls_ecp_point_write_binary(&ec->grp, &ec->Q, MBEDTLS_ECP_PF_UNCOMPRESSED, &ptlen, pt,
                                                   sizeof pt) != 0)
                        k.fail = true;
                else
                        rb_tlv(&k, 0x86, pt, ptlen);
        }
        rb_tlv(r, 0x7F49, k.p, k.len);
        bool fail = k.fail;
        rb_done(&k);
        if (fail) {
                mbedtls_pk_free(&pk);
                return SW_UNKNOWN;
        }
        struct key_slot *s = &c->slots[idx];
        mbedtls_pk_free(&s->pk);
        s->pk = pk;     /* the context owns heap pointers only: moving it is fine */
        s->alg = alg;
        s->dirty = true;
        return SW_OK;
}

static uint16_t cmd_put_data(struct vpiv *c, const struct apdu *a) {
        if (a->p1 != 0x3F || a->p2 != 0xFF)
                return SW_WRONG_P1P2;
        if (!c->mgmt_authed)
                return SW_SECURITY;
        size_t pos = 0;
        uint32_t t, tag;
        const uint8_t *v;
        size_t vl;
        if (!tlv_read(a->data, a->lc, &pos, &t, &v, &vl) || t != 0x5C || !parse_tag_list(v, vl, &tag))
                return SW_WRONG_DATA;
        struct obj *o = obj_by_tag(c, tag);
        if (!o)
                return SW_WRONG_DATA;
        if (!tlv_read(a->data, a->lc, &pos, &t, &v, &vl) || t != 0x53 || pos != a->lc)
                return SW_WRONG_DATA;
        uint8_t *copy = NULL;
        if (vl) {
                copy = malloc(vl);
                if (!copy)
                        return SW_NO_SPACE;
                memcpy(copy, v, vl);
        }
        obj_set(o, copy, vl);
        o->dirty = true;
        o->explicit_ = true;
        return SW_OK;
}

static uint16_t dispatch(struct vpiv *c, const struct apdu *a, enum ga_pending pending, struct rbuf *r) {
        switch (a->ins) {
        case 0xA4: return cmd_select(c, a, r);
        case 0xCB: return cmd_get_data(c, a, r);
        case 0x20: return cmd_verify(c, a);
        case 0x24: return cmd_change_ref(c, a);
        case 0x2C: return cmd_reset_retry(c, a);
        case 0x87: return cmd_general_auth(c, a, pending, r);
        case 0x47: return cmd_generate(c, a, r);
        case 0xDB: return cmd_put_data(c, a);
        default: return SW_INS_UNKNOWN;
        }
}

/* Sends up to ne bytes of the pending response, with 61xx if more remain. */
static size_t resp_chunk(struct vpiv *c, size_t ne, uint8_t *out) {
        size_t left = c->resp_len - c->resp_off;
        size_t n = left < ne ? left : ne;
        memcpy(out, c->resp + c->resp_off, n);
        c->resp_off += n;
        left -= n;
        if (left) {
                out[n] = 0x61;
                out[n + 1] = left >= 256 ? 0x00 : (uint8_t)left;
        } else {
                out[n] = 0x90;
                out[n + 1] = 0x00;
                resp_drop(c);
        }
        return n + 2;
}

static size_t sw_only(uint16_t sw, uint8_t *out) {
        out[0] = (uint8_t)(sw >> 8);
        out[1] = (uint8_t)sw;
        return 2;
}

int vpiv_transmit(struct vpiv *c, const uint8_t *capdu, size_t clen, uint8_t *rapdu, size_t rcap, size_t *rlen) {
        if (!c || (!capdu && clen) || !rapdu || !rlen)
                return -EINVAL;
        if (rcap < 2)
                return -ENOBUFS;
        if (c->delay_ms) {
                struct timespec ts = { c->delay_ms / 1000, (long)(c->delay_ms % 1000) * 1000000L };
                while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                        ;
        }

        struct apdu a;
        if (!apdu_parse(capdu, clen, &a)) {
                *rlen = sw_only(SW_WRONG_LENGTH, rapdu);
                return 0;
        }
        if (rcap < a.ne + 2)
                return -ENOBUFS;
        enum ga_pending pending = c->ga_pending;
        c->ga_pending = GA_NONE;

        if ((a.cla & ~0x10) != 0x00) {
                *rlen = sw_only(SW_CLA_UNKNOWN, rapdu);
                return 0;
        }
        if (a.ins == 0xC0) {
                c->ga_pending = pending;        /* fetching a GENERAL AUTHENTICATE answer keeps its state */
                if (!c->resp || a.p1 || a.p2 || a.lc) {
                        uint16_t sw = c->resp ? SW_WRONG_P1P2 : SW_CONDITIONS;
                        resp_drop(c);
                        *rlen = sw_only(sw, rapdu);
                        return 0;
                }
                *rlen = resp_chunk(c, a.ne, rapdu);
                return 0;
        }
        resp_drop(c);

        /* Command chaining: collect the data, execute on the last command. */
        bool more = a.cla & 0x10;
        if (c->chaining && (a.ins != c->chain_ins || a.p1 != c->chain_p1 || a.p2 != c->chain_p2)) {
                chain_drop(c);
                *rlen = sw_only(SW_LAST_CMD_EXPECTED, rapdu);
                return 0;
        }
        if (more || c->chaining) {
                if (a.lc > MAX_CHAIN - c->chain_len) {
                        chain_drop(c);
                        *rlen = sw_only(SW_NO_SPACE, rapdu);
                        return 0;
                }
                uint8_t *p = realloc(c->chain, c->chain_len + a.lc + 1);
                if (!p) {
                        chain_drop(c);
                        return -ENOMEM;
                }
                c->chain = p;
                if (a.lc)
                        memcpy(c->chain + c->chain_len, a.data, a.lc);
                c->chain_len += a.lc;
                if (more) {
                        c->chaining = true;
                        c->chain_ins = a.ins, c->chain_p1 = a.p1, c->chain_p2 = a.p2;
                        c->ga_pending = pending;        /* a chained GENERAL AUTHENTICATE keeps its state */
                        *rlen = sw_only(SW_OK, rapdu);
                        return 0;
                }
                a.data = c->chain;
                a.lc = c->chain_len;
        }

        struct rbuf r = { 0 };
        uint16_t sw = dispatch(c, &a, pending, &r);
        chain_drop(c);
        if (r.fail) {
                rb_done(&r);
                *rlen = sw_only(SW_UNKNOWN, rapdu);
                return 0;
        }
        if (sw != SW_OK || r.len == 0) {
                rb_done(&r);
                *rlen = sw_only(sw, rapdu);
                return 0;
        }
        c->resp = r.p;
        c->resp_len = r.len;
        c->resp_off = 0;
        *rlen = resp_chunk(c, a.ne, rapdu);
        return 0;
}

int vpiv_vpcd_message(struct vpiv *c, const uint8_t *msg, size_t len, uint8_t *out, size_t cap, size_t *outlen) {
        if (!c || !msg || !out || !outlen)
                return -EINVAL;
        if (len == 0)
                return -EBADMSG;
        if (len == 1) {
                switch (msg[0]) {
                case 0x00:
                case 0x01:
                case 0x02:
                        vpiv_reset(c);
                        *outlen = 0;
                        return 0;
                case 0x04: {
                        size_t n = vpiv_atr(c, NULL, 0);
                        if (cap < n)
                                return -ENOBUFS;
                        *outlen = vpiv_atr(c, out, cap);
                        return 0;
                }
                default:
                        return -EBADMSG;
                }
        }
        return vpiv_transmit(c, msg, len, out, cap, outlen);
}
