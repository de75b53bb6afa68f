/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The PIV card application as a token (see piv.h).  Card commands and
 * their data objects follow NIST SP 800-73-4 part 2 (the card edge); the
 * PKCS#11 view of it follows OpenSC's numbering so that both stacks list the
 * same objects from the same card. */
#include "piv.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/aes.h>
#include <mbedtls/des.h>
#include <mbedtls/md.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/rsa.h>
#include <mbedtls/sha256.h>

#include "common/log.h"
#include "common/pkcrypto.h"
#include "common/secmem.h"
#include "common/util.h"
#include "piv-internal.h"

#define PIV_CLA 0x00
#define INS_SELECT 0xA4
#define INS_GET_DATA 0xCB
#define INS_PUT_DATA 0xDB
#define INS_VERIFY 0x20
#define INS_CHANGE_REF 0x24
#define INS_RESET_RETRY 0x2C
#define INS_GEN_AUTH 0x87
#define INS_GEN_KEYPAIR 0x47

#define REF_PIN 0x80
#define REF_PUK 0x81
#define REF_MGMT 0x9B

#define TAG_CHUID 0x5FC102
#define TAG_CCC 0x5FC107
#define TAG_KEY_HISTORY 0x5FC10C

#define PIV_MIN_PIN 6
#define PIV_MAX_PIN 8
/* Largest data object read or written (certificates are ~1-3 KiB). */
#define PIV_OBJ_MAX 32768
/* Largest private-key block or signature: RSA-4096. */
#define PIV_BLOCK_MAX 512

/* The PIV AID, right-truncated to the application's PIX (no version). */
static const uint8_t piv_aid[] = { 0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00 };

/* The well-known default management key (3DES). */
static const uint8_t default_mgmt_key[24] = {
        1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8,
};

static const struct driver_mech piv_mechs[] = {
        { CKM_RSA_PKCS, 1024, 4096, CKF_HW | CKF_SIGN | CKF_DECRYPT },
        { CKM_RSA_X_509, 1024, 4096, CKF_HW | CKF_SIGN | CKF_DECRYPT },
        { CKM_RSA_PKCS_PSS, 1024, 4096, CKF_HW | CKF_SIGN },
        { CKM_RSA_PKCS_OAEP, 1024, 4096, CKF_HW | CKF_DECRYPT },
        { CKM_ECDSA, 256, 384, CKF_HW | CKF_SIGN | CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS },
        { CKM_RSA_PKCS_KEY_PAIR_GEN, 2048, 2048, CKF_HW | CKF_GENERATE_KEY_PAIR },
        { CKM_EC_KEY_PAIR_GEN, 256, 384,
          CKF_HW | CKF_GENERATE_KEY_PAIR | CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS },
};

/* ---------------------------------------------------------------- slots */

const struct piv_slot_def piv_slot_defs[PIV_NSLOTS] = {
        { 0x9A, 0x5FC105, 0x01, "PIV AUTH", "PIV Authentication" },
        { 0x9C, 0x5FC10A, 0x02, "SIGN", "Digital Signature" },
        { 0x9D, 0x5FC10B, 0x03, "KEY MAN", "Key Management" },
        { 0x9E, 0x5FC101, 0x04, "CARD AUTH", "Card Authentication" },
#define RETIRED(i) { 0x82 + (i), 0x5FC10D + (i), 0x05 + (i), NULL, NULL }
        RETIRED(0),  RETIRED(1),  RETIRED(2),  RETIRED(3),  RETIRED(4),  RETIRED(5),  RETIRED(6),
        RETIRED(7),  RETIRED(8),  RETIRED(9),  RETIRED(10), RETIRED(11), RETIRED(12), RETIRED(13),
        RETIRED(14), RETIRED(15), RETIRED(16), RETIRED(17), RETIRED(18), RETIRED(19),
#undef RETIRED
};

static bool slot_is_retired(const struct piv_slot_def *d) { return d->ref >= 0x82 && d->ref <= 0x95; }

/* Sign: every slot (EC keys in 9D and the retired slots are meant for key
 * agreement, which this driver does not offer; cards sign with them, and
 * tokens often keep signing keys there).  Decrypt: RSA in 9A, 9D and the
 * retired slots. */
static bool slot_can_sign(const struct piv_key *k) { return k != NULL; }
static bool slot_can_decrypt(const struct piv_key *k) {
        return k->rsa && (k->def->ref == 0x9A || k->def->ref == 0x9D || slot_is_retired(k->def));
}

/* ---------------------------------------------------------------- card I/O */

int piv_errno_from_sw(uint16_t sw) {
        if (sw == APDU_SW_OK)
                return 0;
        if ((sw & 0xFFF0) == 0x63C0)
                return -EACCES;
        switch (sw) {
        case 0x6982: /* security status not satisfied */
                return -EPERM;
        case 0x6983: /* authentication method blocked */
                return -EKEYREVOKED;
        case 0x6A82: /* file or application not found */
        case 0x6A88: /* referenced data not found */
                return -ENOENT;
        case 0x6A84: /* not enough memory */
                return -ENOSPC;
        case 0x6A80: /* incorrect data */
                return -EBADMSG;
        case 0x6700: /* wrong length */
                return -ERANGE;
        case 0x6A81: /* function not supported */
        case 0x6A86: /* incorrect P1/P2 */
        case 0x6D00: /* INS not supported */
        case 0x6E00: /* CLA not supported */
                return -ENOTSUP;
        default:
                return -EIO;
        }
}

int piv_cmd(struct token *t, uint8_t ins, uint8_t p1, uint8_t p2, const uint8_t *data, size_t len, size_t le,
            uint8_t *out, size_t cap, size_t *outlen, uint16_t *sw) {
        size_t dummy_len;
        if (t->gone)
                return -ENODEV;
        int r = apdu_transceive(t->tr, PIV_CLA, ins, p1, p2, data, len, le, out, cap, outlen ? outlen : &dummy_len,
                                sw);
        if (r == -ENODEV) {
                log_debug(LOG_SUB_PIV, "card gone");
                t->gone = true;
        }
        if (r == -ENOBUFS && !out)
                r = 0; /* data we did not ask for (some cards echo): *sw counts */
        return r;
}

int piv_cmd_fit(struct token *t, uint8_t ins, uint8_t p1, uint8_t p2, const uint8_t *data, size_t len,
                uint8_t *out, size_t cap, size_t *outlen, uint16_t *sw) {
        int r = piv_cmd(t, ins, p1, p2, data, len, APDU_LE_MAX, out, cap, outlen, sw);
        return r == -ENOBUFS ? -EIO : r;
}

static int piv_select(struct token *t) {
        uint8_t buf[256];
        size_t n;
        uint16_t sw;
        int r = piv_cmd(t, INS_SELECT, 0x04, 0x00, piv_aid, sizeof piv_aid, 256, buf, sizeof buf, &n, &sw);
        if (r < 0)
                return r;
        if (sw != APDU_SW_OK) {
                log_debug(LOG_SUB_PIV, "SELECT PIV: %04x", sw);
                return -ENOTSUP;
        }
        return 0;
}

int piv_get_data(struct token *t, uint32_t tag, uint8_t **ret, size_t *ret_len) {
        uint8_t cmd[5] = { 0x5C, 0x03, (uint8_t) (tag >> 16), (uint8_t) (tag >> 8), (uint8_t) tag };
        uint8_t *buf = malloc(PIV_OBJ_MAX);
        size_t n = 0;
        uint16_t sw;
        struct apdu_tlv x;

        if (!buf)
                return -ENOMEM;
        int r = piv_cmd(t, INS_GET_DATA, 0x3F, 0xFF, cmd, sizeof cmd, APDU_LE_MAX, buf, PIV_OBJ_MAX, &n, &sw);
        if (r == -ENOBUFS) {
                log_notice("PIV object %06x is larger than %d bytes, ignored", (unsigned) tag, PIV_OBJ_MAX);
                r = -ENOENT;
        }
        if (r >= 0)
                r = piv_errno_from_sw(sw);
        if (r >= 0) {
                /* The object comes wrapped in 53 (or 7E for discovery). */
                const uint8_t *p = buf;
                r = apdu_tlv_next(&p, buf + n, &x);
                if (r == -ENODATA)
                        r = -ENOENT;
                else if (r >= 0 && x.tag != 0x53 && x.tag != 0x7E)
                        r = -EBADMSG;
        }
        if (r >= 0) {
                uint8_t *v = malloc(x.len ? x.len : 1);
                if (!v)
                        r = -ENOMEM;
                else {
                        memcpy(v, x.value, x.len);
                        *ret = v;
                        *ret_len = x.len;
                }
        }
        free(buf);
        if (r == -EBADMSG) {
                log_notice("PIV object %06x is malformed, ignored", (unsigned) tag);
                r = -ENOENT;
        }
        return r;
}

int piv_put_data(struct token *t, uint32_t tag, const uint8_t *contents, size_t len) {
        size_t cap = 5 + 8 + len;
        uint8_t *cmd = malloc(cap);
        uint16_t sw;
        if (!cmd)
                return -ENOMEM;
        size_t n = 0;
        cmd[n++] = 0x5C;
        cmd[n++] = 0x03;
        cmd[n++] = (uint8_t) (tag >> 16);
        cmd[n++] = (uint8_t) (tag >> 8);
        cmd[n++] = (uint8_t) tag;
        n += apdu_tlv_put_header(cmd + n, 0x53, len);
        if (len)
                memcpy(cmd + n, contents, len);
        n += len;
        int r = piv_cmd(t, INS_PUT_DATA, 0x3F, 0xFF, cmd, n, APDU_LE_NONE, NULL, 0, NULL, &sw);
        free(cmd);
        if (r < 0)
                return r;
        r = piv_errno_from_sw(sw);
        if (r == -EPERM)
                r = -EROFS;
        return r;
}

/* ---------------------------------------------------------------- info */

void piv_publish_info(struct token *t) {
        struct token_desc d;
        memset(&d, 0, sizeof d);
        snprintf(d.label, sizeof d.label, "%s", t->label);
        snprintf(d.manufacturer, sizeof d.manufacturer, "%s", "PIV");
        snprintf(d.model, sizeof d.model, "%s", "PIV II");
        snprintf(d.serial, sizeof d.serial, "%s", t->serial);
        d.kind = t->kind;
        d.flags = CKF_LOGIN_REQUIRED | CKF_USER_PIN_INITIALIZED | CKF_TOKEN_INITIALIZED;
        if (t->pin_failed)
                d.flags |= CKF_USER_PIN_COUNT_LOW;
        if (t->pin_tries == 1)
                d.flags |= CKF_USER_PIN_FINAL_TRY;
        if (t->pin_tries == 0)
                d.flags |= CKF_USER_PIN_LOCKED;
        if (t->puk_failed)
                d.flags |= CKF_SO_PIN_COUNT_LOW;
        if (t->puk_tries == 1)
                d.flags |= CKF_SO_PIN_FINAL_TRY;
        if (t->puk_tries == 0)
                d.flags |= CKF_SO_PIN_LOCKED;
        d.min_pin = PIV_MIN_PIN;
        d.max_pin = PIV_MAX_PIN;
        d.hw = (CK_VERSION){ 1, 0 };
        d.fw = (CK_VERSION){ 1, 0 };
        d.user_tries_left = t->pin_tries;
        d.user_tries_max = -1; /* PIV has no way to read the limit */
        d.so_tries_left = t->puk_tries;
        d.so_tries_max = -1;
        token_desc_copy(&t->info_lock, &t->info, &d);
}

static int piv_get_info(struct token *t, struct token_desc *ret) {
        if (!t || !ret)
                return -EINVAL;
        token_desc_copy(&t->info_lock, ret, &t->info);
        return 0;
}

static int piv_get_mechanisms(struct token *t, const struct driver_mech **ret, size_t *ret_n) {
        *ret = piv_mechs;
        *ret_n = ELEMENTSOF(piv_mechs);
        return 0;
}

/* ---------------------------------------------------------------- serial */

/* FASC-N (SP 800-73-4 / TIG SCEPACS): 40 characters of 5 bits (4 data bits,
 * least significant first, then odd parity).  The serial is agency code,
 * system code and credential number: characters 1-4, 6-9, 11-16. */
static bool fascn_serial(const uint8_t *f, size_t len, char out[17]) {
        if (len != 25)
                return false;
        char digits[40];
        for (size_t i = 0; i < 40; i++) {
                unsigned v = 0;
                for (size_t b = 0; b < 5; b++) {
                        size_t bit = i * 5 + b;
                        v = v << 1 | ((f[bit / 8] >> (7 - bit % 8)) & 1);
                }
                /* v = b1 b2 b3 b4 p; value = b1 + 2 b2 + 4 b3 + 8 b4 */
                unsigned val = ((v >> 4) & 1) | ((v >> 3) & 1) << 1 | ((v >> 2) & 1) << 2 | ((v >> 1) & 1) << 3;
                digits[i] = val <= 9 ? (char) ('0' + val) : '?';
        }
        size_t n = 0;
        static const size_t pos[] = { 1, 2, 3, 4, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16 };
        for (size_t i = 0; i < ELEMENTSOF(pos); i++) {
                if (digits[pos[i]] == '?')
                        return false;
                out[n++] = digits[pos[i]];
        }
        out[n] = '\0';
        return true;
}

static bool all_zero(const uint8_t *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (p[i])
                        return false;
        return true;
}

static void hex_serial(const uint8_t *p, size_t n, char out[17]) {
        static const char hx[] = "0123456789ABCDEF";
        size_t o = 0;
        for (size_t i = 0; i < n && o + 2 <= 16; i++) {
                out[o++] = hx[p[i] >> 4];
                out[o++] = hx[p[i] & 15];
        }
        out[o] = '\0';
}

/* Serial: the CHUID's GUID (its first 8 bytes in hex), else its FASC-N,
 * else the CCC's card identifier (last 8 bytes), else "0". */
static int read_serial(struct token *t) {
        uint8_t *obj = NULL;
        size_t n = 0;
        struct apdu_tlv x;
        int r = piv_get_data(t, TAG_CHUID, &obj, &n);
        if (r == -ENODEV || r == -ENOMEM || r == -EIO)
                return r;
        if (r >= 0) {
                if (apdu_tlv_find(obj, n, 0x34, &x) >= 0 && x.len == 16 && !all_zero(x.value, 16))
                        hex_serial(x.value, 8, t->serial);
                else if (apdu_tlv_find(obj, n, 0x30, &x) < 0 || !fascn_serial(x.value, x.len, t->serial))
                        t->serial[0] = '\0';
                free(obj);
                obj = NULL;
                if (t->serial[0])
                        return 0;
        }
        r = piv_get_data(t, TAG_CCC, &obj, &n);
        if (r == -ENODEV || r == -ENOMEM || r == -EIO)
                return r;
        if (r >= 0 && apdu_tlv_find(obj, n, 0xF0, &x) >= 0 && x.len >= 8 && !all_zero(x.value, x.len))
                hex_serial(x.value + x.len - 8, 8, t->serial);
        free(obj);
        if (!t->serial[0])
                snprintf(t->serial, sizeof t->serial, "0");
        return 0;
}

/* ---------------------------------------------------------------- keys */

void piv_key_clear(struct piv_key *k) {
        free(k->cert);
        k->cert = NULL;
        k->cert_len = 0;
        mbedtls_pk_free(&k->pk);
        mbedtls_pk_init(&k->pk);
        k->present = false;
        k->local = false;
        k->rsa = false;
        k->alg = 0;
        k->size = 0;
}

/* Sets the key's algorithm from its public key.  -ENOTSUP unusable. */
int piv_key_set_alg(struct piv_key *k) {
        size_t bits = mbedtls_pk_get_bitlen(&k->pk);
        mbedtls_pk_type_t pt = mbedtls_pk_get_type(&k->pk);
        if (pt == MBEDTLS_PK_RSA) {
                k->rsa = true;
                k->size = (bits + 7) / 8;
                switch (bits) {
                case 1024: k->alg = PIV_ALG_RSA1024; return 0;
                case 2048: k->alg = PIV_ALG_RSA2048; return 0;
                case 3072: k->alg = PIV_ALG_RSA3072; return 0;
                case 4096: k->alg = PIV_ALG_RSA4096; return 0;
                default: return -ENOTSUP;
                }
        }
        if (pt == MBEDTLS_PK_ECKEY || pt == MBEDTLS_PK_ECDSA) {
                k->rsa = false;
                switch (mbedtls_pk_ec(k->pk)->grp.id) {
                case MBEDTLS_ECP_DP_SECP256R1: k->alg = PIV_ALG_ECC256; k->size = 32; return 0;
                case MBEDTLS_ECP_DP_SECP384R1: k->alg = PIV_ALG_ECC384; k->size = 48; return 0;
                default: return -ENOTSUP;
                }
        }
        return -ENOTSUP;
}

/* Installs a certificate (DER) as the slot's; the key's public part is
 * taken from it.  -EDOM not a usable certificate. */
int piv_key_set_cert(struct piv_key *k, const uint8_t *der, size_t len) {
        struct nattrs a;
        mbedtls_pk_context pk;
        nattrs_init(&a);
        mbedtls_pk_init(&pk);
        int r = nattrs_set_ulong(&a, CKA_CLASS, CKO_CERTIFICATE);
        if (r >= 0)
                r = nattrs_set(&a, CKA_VALUE, der, len);
        if (r >= 0)
                r = pkc_pk_from_attrs(&a, &pk);
        nattrs_done(&a);
        if (r < 0) {
                mbedtls_pk_free(&pk);
                return r == -ENOMEM ? r : -EDOM;
        }
        uint8_t *c = malloc(len);
        if (!c) {
                mbedtls_pk_free(&pk);
                return -ENOMEM;
        }
        memcpy(c, der, len);
        piv_key_clear(k);
        k->pk = pk;
        k->cert = c;
        k->cert_len = len;
        k->present = true;
        r = piv_key_set_alg(k);
        if (r < 0) {
                piv_key_clear(k);
                return -EDOM;
        }
        return 0;
}

/* Reads a slot's certificate object: 53 { 70 cert, 71 CertInfo, FE LRC }. */
static int read_cert(struct token *t, struct piv_key *k) {
        uint8_t *obj = NULL;
        size_t n = 0;
        struct apdu_tlv cert, info;
        int r = piv_get_data(t, k->def->tag, &obj, &n);
        if (r < 0)
                return r;
        r = apdu_tlv_find(obj, n, 0x70, &cert);
        if (r < 0 || cert.len == 0) {
                log_notice("PIV slot %02X: certificate object without a certificate, ignored", k->def->ref);
                free(obj);
                return -ENOENT;
        }
        if (apdu_tlv_find(obj, n, 0x71, &info) >= 0 && info.len >= 1 && (info.value[0] & 0x01)) {
                log_notice("PIV slot %02X: compressed certificates are not supported, slot ignored", k->def->ref);
                free(obj);
                return -ENOENT;
        }
        r = piv_key_set_cert(k, cert.value, cert.len);
        free(obj);
        if (r == -EDOM) {
                log_notice("PIV slot %02X: the certificate cannot be parsed or has an unsupported key, ignored",
                           k->def->ref);
                return -ENOENT;
        }
        return r;
}

/* How many retired key slots hold certificates, from the Key History
 * object; -1 when the card has none (then every retired slot is tried). */
static int read_key_history(struct token *t, int *ret) {
        uint8_t *obj = NULL;
        size_t n = 0;
        struct apdu_tlv x;
        *ret = -1;
        int r = piv_get_data(t, TAG_KEY_HISTORY, &obj, &n);
        if (r == -ENOENT || r == -EPERM || r == -ENOTSUP)
                return 0;
        if (r < 0)
                return r;
        if (apdu_tlv_find(obj, n, 0xC1, &x) >= 0 && x.len == 1 && x.value[0] <= 20)
                *ret = x.value[0];
        free(obj);
        return 0;
}

static int read_keys(struct token *t) {
        int retired = -1;
        int r = read_key_history(t, &retired);
        if (r < 0)
                return r;
        for (size_t i = 0; i < PIV_NSLOTS; i++) {
                struct piv_key *k = &t->keys[i];
                if (slot_is_retired(k->def) && retired >= 0 && k->def->ref >= 0x82 + retired)
                        continue;
                r = read_cert(t, k);
                if (r == -ENODEV || r == -ENOMEM || r == -EIO || r == -ETIMEDOUT)
                        return r;
        }
        return 0;
}

struct piv_key *piv_key_by_ref(struct token *t, uint8_t ref) {
        for (size_t i = 0; i < PIV_NSLOTS; i++)
                if (t->keys[i].def->ref == ref)
                        return &t->keys[i];
        return NULL;
}

static struct piv_key *key_by_object(struct token *t, uint64_t id, unsigned kind) {
        if ((id >> 8) != kind)
                return NULL;
        struct piv_key *k = piv_key_by_ref(t, (uint8_t) id);
        return k && k->present ? k : NULL;
}

/* The private key a sign or decrypt names (under t->lock): -ENODEV once the
 * card is gone, -ENOENT no such key. */
static int op_private_key(struct token *t, uint64_t id, struct piv_key **ret) {
        if (t->gone)
                return -ENODEV;
        *ret = key_by_object(t, id, PIV_OBJ_PRIV);
        return *ret ? 0 : -ENOENT;
}

/* ---------------------------------------------------------------- objects */

static void slot_labels(const struct piv_slot_def *d, char *key, char *cert, char *pub, size_t cap) {
        if (d->short_name) {
                snprintf(key, cap, "%s key", d->short_name);
                snprintf(cert, cap, "Certificate for %s", d->long_name);
                snprintf(pub, cap, "%s pubkey", d->short_name);
        } else {
                unsigned i = d->ref - 0x82 + 1;
                snprintf(key, cap, "RETIRED KEY MAN %u key", i);
                snprintf(cert, cap, "Retired Certificate for Key Management %u", i);
                snprintf(pub, cap, "RETIRED KEY MAN %u pubkey", i);
        }
}

static int build_cert(const struct piv_key *k, const char *label, struct dobj *o) {
        o->id = PIV_OBJ_CERT << 8 | k->def->ref;
        nattrs_init(&o->attrs);
        int r = pkc_cert_attrs(k->cert, k->cert_len, &o->attrs);
        if (r >= 0) r = nattrs_set_bool(&o->attrs, CKA_TOKEN, true);
        if (r >= 0) r = nattrs_set_bool(&o->attrs, CKA_PRIVATE, false);
        if (r >= 0) r = nattrs_set_bool(&o->attrs, CKA_MODIFIABLE, false);
        if (r >= 0) r = nattrs_set_bool(&o->attrs, CKA_COPYABLE, false);
        if (r >= 0) r = nattrs_set_bool(&o->attrs, CKA_DESTROYABLE, true);
        if (r >= 0) r = nattrs_set(&o->attrs, CKA_LABEL, label, strlen(label));
        if (r >= 0) r = nattrs_set(&o->attrs, CKA_ID, &k->def->id, 1);
        return r;
}

static int build_key_common(const struct piv_key *k, CK_OBJECT_CLASS cls, const char *label, struct nattrs *a) {
        int r = pkc_pub_attrs_from_pk(&k->pk, a);
        if (r >= 0) r = nattrs_set_ulong(a, CKA_CLASS, cls);
        if (r >= 0) r = nattrs_set_bool(a, CKA_TOKEN, true);
        if (r >= 0) r = nattrs_set_bool(a, CKA_MODIFIABLE, false);
        if (r >= 0) r = nattrs_set_bool(a, CKA_COPYABLE, false);
        if (r >= 0) r = nattrs_set_bool(a, CKA_DESTROYABLE, false);
        if (r >= 0) r = nattrs_set(a, CKA_LABEL, label, strlen(label));
        if (r >= 0) r = nattrs_set(a, CKA_ID, &k->def->id, 1);
        if (r >= 0) r = nattrs_set_bool(a, CKA_LOCAL, k->local);
        if (r >= 0)
                r = nattrs_set_ulong(a, CKA_KEY_GEN_MECHANISM,
                                     !k->local ? CK_UNAVAILABLE_INFORMATION
                                     : k->rsa  ? CKM_RSA_PKCS_KEY_PAIR_GEN
                                               : CKM_EC_KEY_PAIR_GEN);
        if (r >= 0) r = nattrs_set_bool(a, CKA_DERIVE, false);
        if (r >= 0) r = nattrs_set(a, CKA_START_DATE, NULL, 0);
        if (r >= 0) r = nattrs_set(a, CKA_END_DATE, NULL, 0);
        if (r >= 0) r = pkc_set_spki(a, (mbedtls_pk_context *) &k->pk);
        return r;
}

static int build_pub(const struct piv_key *k, const char *label, struct dobj *o) {
        o->id = PIV_OBJ_PUB << 8 | k->def->ref;
        nattrs_init(&o->attrs);
        struct nattrs *a = &o->attrs;
        int r = build_key_common(k, CKO_PUBLIC_KEY, label, a);
        if (r >= 0) r = nattrs_set_bool(a, CKA_PRIVATE, false);
        if (r >= 0) r = nattrs_set_bool(a, CKA_VERIFY, slot_can_sign(k));
        if (r >= 0) r = nattrs_set_bool(a, CKA_VERIFY_RECOVER, false);
        if (r >= 0) r = nattrs_set_bool(a, CKA_ENCRYPT, slot_can_decrypt(k));
        if (r >= 0) r = nattrs_set_bool(a, CKA_WRAP, false);
        if (r >= 0) r = nattrs_set_bool(a, CKA_TRUSTED, false);
        if (r >= 0 && k->cert) {
                /* The certificate's subject, as OpenSC gives it. */
                struct nattrs c;
                nattrs_init(&c);
                if (pkc_cert_attrs(k->cert, k->cert_len, &c) >= 0 && nattrs_get(&c, CKA_SUBJECT))
                        r = nattrs_set(a, CKA_SUBJECT, nattrs_get(&c, CKA_SUBJECT)->value,
                                       nattrs_get(&c, CKA_SUBJECT)->len);
                nattrs_done(&c);
        }
        return r;
}

static int build_priv(const struct piv_key *k, const char *label, struct dobj *o) {
        o->id = PIV_OBJ_PRIV << 8 | k->def->ref;
        nattrs_init(&o->attrs);
        struct nattrs *a = &o->attrs;
        int r = build_key_common(k, CKO_PRIVATE_KEY, label, a);
        nattrs_remove(a, CKA_MODULUS_BITS);
        if (r >= 0) r = nattrs_set_bool(a, CKA_PRIVATE, true);
        if (r >= 0) r = nattrs_set_bool(a, CKA_SENSITIVE, true);
        if (r >= 0) r = nattrs_set_bool(a, CKA_EXTRACTABLE, false);
        if (r >= 0) r = nattrs_set_bool(a, CKA_ALWAYS_SENSITIVE, k->local);
        if (r >= 0) r = nattrs_set_bool(a, CKA_NEVER_EXTRACTABLE, k->local);
        if (r >= 0) r = nattrs_set_bool(a, CKA_SIGN, slot_can_sign(k));
        if (r >= 0) r = nattrs_set_bool(a, CKA_SIGN_RECOVER, false);
        if (r >= 0) r = nattrs_set_bool(a, CKA_DECRYPT, slot_can_decrypt(k));
        if (r >= 0) r = nattrs_set_bool(a, CKA_UNWRAP, false);
        if (r >= 0) r = nattrs_set_bool(a, CKA_WRAP_WITH_TRUSTED, false);
        if (r >= 0) r = nattrs_set_bool(a, CKA_ALWAYS_AUTHENTICATE, k->def->ref == 0x9C);
        if (r >= 0) r = nattrs_set(a, CKA_SUBJECT, NULL, 0);
        return r;
}

/* The objects of one slot (cert if any, public key, private key). */
static int build_slot_objects(const struct piv_key *k, struct dobj *v, size_t *n) {
        char lk[64], lc[64], lp[64];
        int r = 0;
        slot_labels(k->def, lk, lc, lp, sizeof lk);
        if (k->cert) {
                r = build_cert(k, lc, &v[(*n)++]);
                if (r < 0)
                        return r;
        }
        r = build_pub(k, lp, &v[(*n)++]);
        if (r >= 0)
                r = build_priv(k, lk, &v[(*n)++]);
        return r;
}

int piv_build_object(struct token *t, uint64_t id, struct dobj *ret) {
        struct dobj v[3];
        size_t n = 0;
        struct piv_key *k = piv_key_by_ref(t, (uint8_t) id);
        if (!k || !k->present)
                return -ENOENT;
        memset(v, 0, sizeof v);
        int r = build_slot_objects(k, v, &n);
        for (size_t i = 0; i < n; i++) {
                if (r >= 0 && v[i].id == id) {
                        *ret = v[i];
                        nattrs_init(&v[i].attrs);
                        r = 1;
                }
                dobj_done(&v[i]);
        }
        return r < 0 ? r : r == 1 ? 0 : -ENOENT;
}

static int piv_load_objects(struct token *t, struct dobj **ret, size_t *ret_n) {
        pthread_mutex_lock(&t->lock);
        struct dobj *v = calloc(3 * PIV_NSLOTS, sizeof *v);
        size_t n = 0;
        int r = v ? 0 : -ENOMEM;
        for (size_t i = 0; r >= 0 && i < PIV_NSLOTS; i++)
                if (t->keys[i].present)
                        r = build_slot_objects(&t->keys[i], v, &n);
        pthread_mutex_unlock(&t->lock);
        if (r < 0) {
                /* A partly built object is in v[n-1] too: free all touched. */
                dobj_free_array(v, v ? n : 0);
                return r;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

/* ---------------------------------------------------------------- PINs */

/* PIV reference data: 8 bytes, the PIN padded with FF. */
static int pin_block(const char *pin, size_t len, uint8_t out[8]) {
        if (!pin || len < PIV_MIN_PIN || len > PIV_MAX_PIN)
                return -EMSGSIZE;
        memset(out, 0xFF, 8);
        memcpy(out, pin, len);
        return 0;
}

/* Records what a VERIFY / CHANGE / RESET answer says about a counter.  The
 * limit cannot be read, so a success sets the counter back to the highest
 * value seen (the first status query at insertion usually shows it). */
static void note_tries(struct token *t, uint8_t ref, uint16_t sw, bool tried) {
        int *tries = ref == REF_PIN ? &t->pin_tries : &t->puk_tries;
        int *max = ref == REF_PIN ? &t->pin_tries_seen : &t->puk_tries_seen;
        bool *failed = ref == REF_PIN ? &t->pin_failed : &t->puk_failed;
        if ((sw & 0xFFF0) == 0x63C0) {
                *tries = sw & 0x0F;
                if (*tries > *max)
                        *max = *tries;
                if (tried)
                        *failed = true;
        } else if (sw == 0x6983) {
                *tries = 0;
        } else if (sw == APDU_SW_OK && tried) {
                *failed = false;
                *tries = *max;
        }
}

/* VERIFY with empty data: the counter, without trying. */
static void query_tries(struct token *t, uint8_t ref) {
        uint16_t sw;
        if (piv_cmd(t, INS_VERIFY, 0x00, ref, NULL, 0, APDU_LE_NONE, NULL, 0, NULL, &sw) >= 0)
                note_tries(t, ref, sw, false);
}

/* VERIFY: 0 or the status as an errno (piv_errno_from_sw). */
static int verify(struct token *t, uint8_t ref, const char *pin, size_t len) {
        uint8_t blk[8];
        uint16_t sw;
        int r = pin_block(pin, len, blk);
        if (r < 0)
                return r;
        r = piv_cmd(t, INS_VERIFY, 0x00, ref, blk, sizeof blk, APDU_LE_NONE, NULL, 0, NULL, &sw);
        secure_wipe(blk, sizeof blk);
        if (r < 0)
                return r;
        note_tries(t, ref, sw, true);
        return piv_errno_from_sw(sw);
}

static int piv_login(struct token *t, CK_USER_TYPE user, const char *pin, size_t pin_len) {
        int r;
        if (!t || (!pin && pin_len))
                return -EINVAL;
        pthread_mutex_lock(&t->lock);
        switch (user) {
        case CKU_USER:
        case CKU_CONTEXT_SPECIFIC:
                r = verify(t, REF_PIN, pin, pin_len);
                if (r == -ENOENT || r == -EBADMSG || r == -ENOTSUP)
                        r = -EIO;
                if (r >= 0)
                        t->user_logged = true;
                break;
        case CKU_SO: {
                uint8_t blk[8];
                r = pin_block(pin, pin_len, blk);
                if (r < 0)
                        break;
                secure_wipe(blk, sizeof blk);
                r = verify(t, REF_PUK, pin, pin_len);
                if (r == -ENOTSUP || r == -ENOENT) {
                        /* Standard PIV: no VERIFY for the PUK; RESET RETRY
                         * COUNTER will check it. */
                        r = 0;
                }
                if (r < 0)
                        break;
                secure_free(t->puk);
                t->puk = secure_strndup(pin, pin_len);
                t->puk_len = pin_len;
                if (!t->puk) {
                        r = -ENOMEM;
                        break;
                }
                t->so_logged = true;
                break;
        }
        default:
                r = -EINVAL;
        }
        piv_publish_info(t);
        pthread_mutex_unlock(&t->lock);
        return r;
}

static int piv_logout(struct token *t) {
        uint16_t sw;
        int r = 0;
        pthread_mutex_lock(&t->lock);
        t->puk = secure_free(t->puk);
        t->puk_len = 0;
        t->so_logged = false;
        if (t->user_logged) {
                t->user_logged = false;
                /* SP 800-73-4: VERIFY with P1 = FF resets the PIN's status. */
                r = piv_cmd(t, INS_VERIFY, 0xFF, REF_PIN, NULL, 0, APDU_LE_NONE, NULL, 0, NULL, &sw);
                if (r >= 0 && sw != APDU_SW_OK) {
                        /* Older cards: a reset drops the security state. */
                        uint8_t atr[64];
                        size_t atr_len;
                        r = t->tr->ops->reset ? t->tr->ops->reset(t->tr, atr, sizeof atr, &atr_len) : -ENOTSUP;
                        if (r == -ENODEV)
                                t->gone = true;
                        if (r >= 0)
                                r = piv_select(t);
                }
        }
        pthread_mutex_unlock(&t->lock);
        return r;
}

static int piv_init_pin(struct token *t, const char *pin, size_t pin_len) {
        uint8_t blk[16];
        uint16_t sw;
        int r;
        pthread_mutex_lock(&t->lock);
        if (!t->so_logged || !t->puk) {
                r = -EPERM;
                goto out;
        }
        r = pin_block(t->puk, t->puk_len, blk);
        if (r >= 0)
                r = pin_block(pin, pin_len, blk + 8);
        if (r < 0)
                goto out;
        r = piv_cmd(t, INS_RESET_RETRY, 0x00, REF_PIN, blk, sizeof blk, APDU_LE_NONE, NULL, 0, NULL, &sw);
        secure_wipe(blk, sizeof blk);
        if (r < 0)
                goto out;
        note_tries(t, REF_PUK, sw, true);
        r = piv_errno_from_sw(sw);
        if (r >= 0) {
                t->pin_failed = false;
                t->pin_tries = -1;
                query_tries(t, REF_PIN);
        } else if (r == -ENOENT || r == -EBADMSG)
                r = -EIO;
out:
        piv_publish_info(t);
        pthread_mutex_unlock(&t->lock);
        return r;
}

static int piv_set_pin(struct token *t, CK_USER_TYPE user, const char *old_pin, size_t old_len, const char *new_pin,
                       size_t new_len) {
        uint8_t blk[16];
        uint16_t sw;
        uint8_t ref = user == CKU_SO ? REF_PUK : REF_PIN;
        pthread_mutex_lock(&t->lock);
        int r = pin_block(old_pin, old_len, blk);
        if (r >= 0)
                r = pin_block(new_pin, new_len, blk + 8);
        if (r >= 0)
                r = piv_cmd(t, INS_CHANGE_REF, 0x00, ref, blk, sizeof blk, APDU_LE_NONE, NULL, 0, NULL, &sw);
        secure_wipe(blk, sizeof blk);
        if (r >= 0) {
                note_tries(t, ref, sw, true);
                r = piv_errno_from_sw(sw);
                if (r == -ENOENT || r == -EBADMSG)
                        r = -EIO;
                if (r >= 0 && ref == REF_PUK && t->puk) {
                        /* The SO's stored PUK follows the change. */
                        secure_free(t->puk);
                        t->puk = secure_strndup(new_pin, new_len);
                        t->puk_len = t->puk ? new_len : 0;
                        t->so_logged = t->puk != NULL;
                }
        }
        piv_publish_info(t);
        pthread_mutex_unlock(&t->lock);
        return r;
}

/* ---------------------------------------------------------------- crypto */

/* GENERAL AUTHENTICATE with a key: 7C { 82 (empty), tag in } -> 7C { 82 out }. */
int piv_general_auth(struct token *t, uint8_t alg, uint8_t ref, uint8_t tag, const uint8_t *in, size_t in_len,
                     uint8_t *out, size_t cap, size_t *outlen) {
        size_t inner = 2 + 1 + (in_len < 0x80 ? 1 : in_len <= 0xFF ? 2 : 3) + in_len;
        size_t cmd_cap = inner + 8, resp_cap = cap + 16; /* 7C and 82 headers */
        uint8_t *cmd = malloc(cmd_cap), *resp = malloc(resp_cap);
        size_t n = 0, rlen = 0;
        uint16_t sw;
        struct apdu_tlv x, y;
        int r;

        if (!cmd || !resp) {
                r = -ENOMEM;
                goto out;
        }
        n = apdu_tlv_put_header(cmd, 0x7C, inner);
        cmd[n++] = 0x82;
        cmd[n++] = 0x00;
        n += apdu_tlv_put_header(cmd + n, tag, in_len);
        memcpy(cmd + n, in, in_len);
        n += in_len;
        r = piv_cmd_fit(t, INS_GEN_AUTH, alg, ref, cmd, n, resp, resp_cap, &rlen, &sw);
        if (r < 0)
                goto out;
        r = piv_errno_from_sw(sw);
        if (r < 0) {
                log_debug(LOG_SUB_PIV, "GENERAL AUTHENTICATE key %02X: %04x", ref, sw);
                if (r == -ENOENT || r == -ENOTSUP)
                        r = -EIO; /* no such key on the card although a certificate said so */
                goto out;
        }
        if (apdu_tlv_find(resp, rlen, 0x7C, &x) < 0 || apdu_tlv_find(x.value, x.len, 0x82, &y) < 0) {
                r = -EIO;
                goto out;
        }
        if (y.len > cap) {
                r = -EIO;
                goto out;
        }
        memcpy(out, y.value, y.len);
        *outlen = y.len;
out:
        apdu_buf_free(cmd, cmd_cap);
        apdu_buf_free(resp, resp_cap);
        return r;
}

/* MGF1 (RFC 8017 B.2.1): out ^= MGF1(seed, len). */
static int mgf1_xor(mbedtls_md_type_t mdt, const uint8_t *seed, size_t seed_len, uint8_t *out, size_t len) {
        const mbedtls_md_info_t *md = mbedtls_md_info_from_type(mdt);
        uint8_t h[MBEDTLS_MD_MAX_SIZE];
        size_t hl = mbedtls_md_get_size(md);
        mbedtls_md_context_t ctx;
        int rc = 0;
        mbedtls_md_init(&ctx);
        if (mbedtls_md_setup(&ctx, md, 0) != 0) {
                mbedtls_md_free(&ctx);
                return -ENOMEM;
        }
        for (uint32_t c = 0; len > 0 && rc == 0; c++) {
                uint8_t cnt[4] = { (uint8_t) (c >> 24), (uint8_t) (c >> 16), (uint8_t) (c >> 8), (uint8_t) c };
                rc = mbedtls_md_starts(&ctx);
                if (rc == 0) rc = mbedtls_md_update(&ctx, seed, seed_len);
                if (rc == 0) rc = mbedtls_md_update(&ctx, cnt, 4);
                if (rc == 0) rc = mbedtls_md_finish(&ctx, h);
                size_t n = len < hl ? len : hl;
                for (size_t i = 0; i < n; i++)
                        out[i] ^= h[i];
                out += n;
                len -= n;
        }
        mbedtls_md_free(&ctx);
        mbedtls_platform_zeroize(h, sizeof h);
        return rc == 0 ? 0 : -EIO;
}

/* EMSA-PSS-ENCODE (RFC 8017 9.1.1) of a hash into em (k bytes, the RSA
 * input; emBits = modBits - 1). */
static int pss_encode(const mbedtls_pk_context *pk, const CK_MECHANISM *mech, const uint8_t *hash, size_t hlen,
                      uint8_t *em, size_t k) {
        mbedtls_md_type_t md, mgf;
        size_t slen;
        int r = pkc_pss_params(mech, pk, hlen, &md, &mgf, &slen);
        if (r < 0)
                return r;
        const mbedtls_md_info_t *mi = mbedtls_md_info_from_type(md);
        size_t hl = mbedtls_md_get_size(mi);
        size_t embits = mbedtls_pk_get_bitlen(pk) - 1, emlen = (embits + 7) / 8;
        size_t dblen = emlen - hl - 1;
        uint8_t salt[1024], mprime_h[MBEDTLS_MD_MAX_SIZE], zeros[8] = { 0 };
        mbedtls_md_context_t ctx;
        r = pkc_random(salt, slen);
        if (r < 0)
                return r;
        mbedtls_md_init(&ctx);
        int rc = mbedtls_md_setup(&ctx, mi, 0);
        if (rc == 0) rc = mbedtls_md_starts(&ctx);
        if (rc == 0) rc = mbedtls_md_update(&ctx, zeros, 8);
        if (rc == 0) rc = mbedtls_md_update(&ctx, hash, hl);
        if (rc == 0) rc = mbedtls_md_update(&ctx, salt, slen);
        if (rc == 0) rc = mbedtls_md_finish(&ctx, mprime_h);
        mbedtls_md_free(&ctx);
        if (rc != 0)
                return -EIO;
        memset(em, 0, k);
        uint8_t *e = em + (k - emlen);
        /* DB = PS || 01 || salt, masked with MGF1(H). */
        e[dblen - slen - 1] = 0x01;
        memcpy(e + dblen - slen, salt, slen);
        r = mgf1_xor(mgf, mprime_h, hl, e, dblen);
        if (r < 0)
                return r;
        e[0] &= (uint8_t) (0xFF >> (8 * emlen - embits));
        memcpy(e + dblen, mprime_h, hl);
        e[emlen - 1] = 0xBC;
        mbedtls_platform_zeroize(salt, slen);
        return 0;
}

/* EME-OAEP-DECODE (RFC 8017 7.1.2), empty label.  -EBADMSG on any error,
 * checked without early exit on the secret-dependent parts. */
static int oaep_decode(const CK_MECHANISM *mech, uint8_t *em, size_t k, uint8_t *out, size_t *outlen,
                       size_t *ret_mlen) {
        mbedtls_md_type_t md;
        if (pkc_oaep_params(mech, &md) < 0)
                return -EBADR;
        size_t hl = mbedtls_md_get_size(mbedtls_md_info_from_type(md));
        if (k < 2 * hl + 2)
                return -EBADMSG;
        uint8_t lhash[MBEDTLS_MD_MAX_SIZE];
        if (mbedtls_md(mbedtls_md_info_from_type(md), (const uint8_t *) "", 0, lhash) != 0)
                return -EIO;
        uint8_t *seed = em + 1, *db = em + 1 + hl;
        size_t dblen = k - hl - 1;
        if (mgf1_xor(md, db, dblen, seed, hl) < 0 || mgf1_xor(md, seed, hl, db, dblen) < 0)
                return -EIO;
        unsigned bad = em[0];
        for (size_t i = 0; i < hl; i++)
                bad |= db[i] ^ lhash[i];
        size_t idx = 0;
        unsigned found = 0;
        for (size_t i = hl; i < dblen; i++) {
                unsigned is_one = db[i] == 0x01, is_zero = db[i] == 0x00;
                unsigned take = is_one & !found;
                idx = take ? i : idx;
                found |= is_one;
                bad |= !found & !is_zero & !is_one;
        }
        if (bad || !found)
                return -EBADMSG;
        size_t mlen = dblen - idx - 1;
        *ret_mlen = mlen;
        if (out) {
                if (*outlen < mlen)
                        return -ENOBUFS;
                memcpy(out, db + idx + 1, mlen);
        }
        return 0;
}

/* EME-PKCS1-v1_5 decoding: 00 02 PS(>= 8 non-zero) 00 M. */
static int pkcs1_unpad(const uint8_t *em, size_t k, size_t *ret_off) {
        unsigned bad = em[0] | (em[1] ^ 0x02);
        size_t sep = 0;
        unsigned found = 0;
        for (size_t i = 2; i < k; i++) {
                unsigned z = em[i] == 0;
                sep = (z & !found) ? i : sep;
                found |= z;
        }
        bad |= !found;
        bad |= sep < 10;
        if (bad)
                return -EBADMSG;
        *ret_off = sep + 1;
        return 0;
}

/* DER ECDSA-Sig-Value -> r||s, each n bytes. */
int piv_ecdsa_der_to_raw(const uint8_t *der, size_t len, uint8_t *out, size_t n) {
        struct apdu_tlv seq, ri, si;
        const uint8_t *p = der;
        if (apdu_tlv_next(&p, der + len, &seq) < 0 || seq.tag != 0x30)
                return -EIO;
        p = seq.value;
        const uint8_t *end = seq.value + seq.len;
        if (apdu_tlv_next(&p, end, &ri) < 0 || ri.tag != 0x02 || apdu_tlv_next(&p, end, &si) < 0 ||
            si.tag != 0x02)
                return -EIO;
        const struct apdu_tlv *v[2] = { &ri, &si };
        for (int i = 0; i < 2; i++) {
                const uint8_t *x = v[i]->value;
                size_t l = v[i]->len;
                while (l > 0 && x[0] == 0) {
                        x++;
                        l--;
                }
                if (l > n)
                        return -EIO;
                memset(out + i * n, 0, n - l);
                memcpy(out + i * n + n - l, x, l);
        }
        return 0;
}

static int piv_sign(struct token *t, uint64_t key, const CK_MECHANISM *mech, const uint8_t *in, size_t in_len,
                    uint8_t *out, size_t *outlen) {
        /* Stack buffers, wiped: RSA-4096 blocks, DER ECDSA signatures. */
        uint8_t blk[PIV_BLOCK_MAX], resp[PIV_BLOCK_MAX];
        size_t rlen = 0;
        int r;

        if (!t || !mech || !outlen || (!in && in_len))
                return -EINVAL;
        memset(blk, 0, sizeof blk);
        pthread_mutex_lock(&t->lock);
        struct piv_key *k = NULL;
        r = op_private_key(t, key, &k);
        if (r < 0)
                goto out;
        bool rsa_mech = mech->mechanism == CKM_RSA_PKCS || mech->mechanism == CKM_RSA_X_509 ||
                        mech->mechanism == CKM_RSA_PKCS_PSS;
        if (!rsa_mech && mech->mechanism != CKM_ECDSA) {
                r = -ENOTSUP;
                goto out;
        }
        if (rsa_mech != k->rsa) {
                r = -ENOKEY;
                goto out;
        }
        if (!slot_can_sign(k)) {
                r = -EKEYEXPIRED;
                goto out;
        }
        size_t sz = k->rsa ? k->size : 2 * k->size;
        if (!out) {
                *outlen = sz;
                r = 0;
                goto out;
        }
        if (*outlen < sz) {
                *outlen = sz;
                r = -ENOBUFS;
                goto out;
        }
        if (!t->user_logged) {
                r = -EPERM;
                goto out;
        }
        size_t blen = k->size;
        if (blen > sizeof blk) {
                r = -ENOKEY;
                goto out;
        }
        switch (mech->mechanism) {
        case CKM_RSA_PKCS:
                /* EMSA-PKCS1-v1_5: 00 01 FF.. 00 DigestInfo (the core built it). */
                if (in_len + 11 > blen) {
                        r = -ERANGE;
                        goto out;
                }
                blk[0] = 0x00;
                blk[1] = 0x01;
                memset(blk + 2, 0xFF, blen - in_len - 3);
                blk[blen - in_len - 1] = 0x00;
                memcpy(blk + blen - in_len, in, in_len);
                break;
        case CKM_RSA_X_509:
                if (in_len > blen) {
                        r = -ERANGE;
                        goto out;
                }
                memcpy(blk + blen - in_len, in, in_len);
                break;
        case CKM_RSA_PKCS_PSS:
                r = pss_encode(&k->pk, mech, in, in_len, blk, blen);
                if (r < 0)
                        goto out;
                break;
        default:
                /* ECDSA: the hash as an integer of the order's size (the
                 * leftmost bytes when longer, as ECDSA truncates). */
                if (in_len == 0) {
                        r = -ERANGE;
                        goto out;
                }
                if (in_len >= blen)
                        memcpy(blk, in, blen);
                else
                        memcpy(blk + blen - in_len, in, in_len);
                break;
        }
        r = piv_general_auth(t, k->alg, k->def->ref, 0x81, blk, blen, resp, sizeof resp, &rlen);
        if (r == -EBADMSG)
                r = k->rsa && mech->mechanism == CKM_RSA_X_509 ? -ERANGE : -EIO;
        if (r < 0)
                goto out;
        if (k->rsa) {
                if (rlen > sz) {
                        r = -EIO;
                        goto out;
                }
                memset(out, 0, sz - rlen);
                memcpy(out + sz - rlen, resp, rlen);
        } else {
                r = piv_ecdsa_der_to_raw(resp, rlen, out, k->size);
                if (r < 0)
                        goto out;
        }
        *outlen = sz;
        r = 0;
out:
        secure_wipe(blk, sizeof blk);
        secure_wipe(resp, sizeof resp);
        pthread_mutex_unlock(&t->lock);
        return r;
}

static int piv_decrypt(struct token *t, uint64_t key, const CK_MECHANISM *mech, const uint8_t *in, size_t in_len,
                       uint8_t *out, size_t *outlen) {
        uint8_t em[PIV_BLOCK_MAX];
        size_t rlen = 0;
        int r;

        if (!t || !mech || !outlen || (!in && in_len))
                return -EINVAL;
        if (mech->mechanism != CKM_RSA_PKCS && mech->mechanism != CKM_RSA_X_509 &&
            mech->mechanism != CKM_RSA_PKCS_OAEP)
                return -ENOTSUP;
        pthread_mutex_lock(&t->lock);
        struct piv_key *k = NULL;
        r = op_private_key(t, key, &k);
        if (r < 0)
                goto out;
        if (!k->rsa) {
                r = -ENOKEY;
                goto out;
        }
        if (!slot_can_decrypt(k)) {
                r = -EKEYEXPIRED;
                goto out;
        }
        size_t sz = k->size;
        if (!out) {
                *outlen = sz;
                r = 0;
                goto out;
        }
        if (in_len != sz) {
                r = -ERANGE;
                goto out;
        }
        if (!t->user_logged) {
                r = -EPERM;
                goto out;
        }
        if (sz > sizeof em) {
                r = -ENOKEY;
                goto out;
        }
        r = piv_general_auth(t, k->alg, k->def->ref, 0x81, in, in_len, em, sizeof em, &rlen);
        if (r < 0)
                goto out;
        if (rlen > sz) {
                r = -EIO;
                goto out;
        }
        /* Left-align to k bytes (a card may drop leading zeros). */
        memmove(em + sz - rlen, em, rlen);
        memset(em, 0, sz - rlen);
        size_t off = 0, mlen = 0;
        switch (mech->mechanism) {
        case CKM_RSA_X_509:
                off = 0;
                mlen = sz;
                break;
        case CKM_RSA_PKCS:
                r = pkcs1_unpad(em, sz, &off);
                if (r < 0)
                        goto out;
                mlen = sz - off;
                break;
        default: {
                size_t cap = *outlen;
                r = oaep_decode(mech, em, sz, NULL, &cap, &mlen);
                if (r < 0)
                        goto out;
                /* oaep_decode unmasked em in place: the message is at its end. */
                off = sz - mlen;
                break;
        }
        }
        if (*outlen < mlen) {
                *outlen = mlen;
                r = -ENOBUFS;
                goto out;
        }
        memcpy(out, em + off, mlen);
        *outlen = mlen;
        r = 0;
out:
        secure_wipe(em, sizeof em);
        pthread_mutex_unlock(&t->lock);
        return r;
}

/* ---------------------------------------------------------------- lifecycle */

static void piv_free(struct token *t) {
        if (!t)
                return;
        for (size_t i = 0; i < PIV_NSLOTS; i++)
                piv_key_clear(&t->keys[i]);
        secure_free(t->puk);
        secure_free(t->mgmt_key);
        apdu_transport_free(t->tr);
        pthread_mutex_destroy(&t->lock);
        pthread_mutex_destroy(&t->info_lock);
        free(t);
}

static int mgmt_key_len_ok(enum piv_mgmt_alg alg, size_t len) {
        switch (alg) {
        case PIV_MGMT_3DES: return len == 24;
        case PIV_MGMT_AES128: return len == 16;
        case PIV_MGMT_AES192: return len == 24;
        case PIV_MGMT_AES256: return len == 32;
        default: return 0;
        }
}

int piv_token_set_mgmt_key(struct token *t, enum piv_mgmt_alg alg, const uint8_t *key, size_t len) {
        if (!t || !key || !mgmt_key_len_ok(alg, len))
                return -EINVAL;
        uint8_t *k = secure_alloc(len);
        if (!k)
                return -ENOMEM;
        memcpy(k, key, len);
        pthread_mutex_lock(&t->lock);
        secure_free(t->mgmt_key);
        t->mgmt_key = k;
        t->mgmt_len = len;
        t->mgmt_alg = alg;
        pthread_mutex_unlock(&t->lock);
        return 0;
}

/* $NETCA_PIV_MGMT_KEY = "alg:hex". */
static void mgmt_key_from_env(struct token *t) {
        const char *e = secure_getenv("NETCA_PIV_MGMT_KEY");
        if (!e || !*e)
                return;
        static const struct {
                const char *name;
                enum piv_mgmt_alg alg;
        } algs[] = { { "3des:", PIV_MGMT_3DES },
                     { "aes128:", PIV_MGMT_AES128 },
                     { "aes192:", PIV_MGMT_AES192 },
                     { "aes256:", PIV_MGMT_AES256 } };
        for (size_t i = 0; i < ELEMENTSOF(algs); i++) {
                size_t pl = strlen(algs[i].name);
                if (strncmp(e, algs[i].name, pl) != 0)
                        continue;
                const char *h = e + pl;
                size_t hl = strlen(h);
                uint8_t key[32];
                if (hl % 2 || hl / 2 > sizeof key)
                        break;
                bool ok = true;
                for (size_t j = 0; j < hl / 2 && ok; j++) {
                        unsigned v;
                        ok = sscanf(h + 2 * j, "%2x", &v) == 1 && strchr("0123456789abcdefABCDEF", h[2 * j]) &&
                             strchr("0123456789abcdefABCDEF", h[2 * j + 1]);
                        key[j] = (uint8_t) v;
                }
                int r = ok ? piv_token_set_mgmt_key(t, algs[i].alg, key, hl / 2) : -EINVAL;
                mbedtls_platform_zeroize(key, sizeof key);
                if (r < 0)
                        break;
                return;
        }
        log_warning("NETCA_PIV_MGMT_KEY is malformed (want 3des|aes128|aes192|aes256:HEX); using the default key");
}

int piv_token_new(struct apdu_transport *tr, const char *kind, const char *reader_name, struct token **ret,
                  char **slot_key) {
        if (!tr || !tr->ops || !ret) {
                apdu_transport_free(tr);
                return -EINVAL;
        }
        struct token *t = calloc(1, sizeof *t);
        if (!t) {
                apdu_transport_free(tr);
                return -ENOMEM;
        }
        pthread_mutex_init(&t->lock, NULL);
        pthread_mutex_init(&t->info_lock, NULL);
        t->tr = tr;
        t->kind = kind ? kind : "usb";
        t->pin_tries = t->puk_tries = -1;
        for (size_t i = 0; i < PIV_NSLOTS; i++) {
                t->keys[i].def = &piv_slot_defs[i];
                mbedtls_pk_init(&t->keys[i].pk);
        }
        int r = piv_token_set_mgmt_key(t, PIV_MGMT_3DES, default_mgmt_key, sizeof default_mgmt_key);
        if (r < 0)
                goto fail;
        mgmt_key_from_env(t);

        r = piv_select(t);
        if (r < 0)
                goto fail;
        r = read_serial(t);
        if (r < 0)
                goto fail;
        query_tries(t, REF_PIN);
        query_tries(t, REF_PUK);
        if (t->gone) {
                r = -ENODEV;
                goto fail;
        }
        r = read_keys(t);
        if (r < 0)
                goto fail;
        snprintf(t->label, sizeof t->label, "PIV %s", t->serial);
        if (slot_key) {
                if (asprintf(slot_key, "%s:%s", t->kind, t->serial) < 0) {
                        *slot_key = NULL;
                        r = -ENOMEM;
                        goto fail;
                }
        }
        piv_publish_info(t);
        log_debug(LOG_SUB_PIV, "PIV card %s in %s", t->serial, reader_name ? reader_name : "?");
        *ret = t;
        return 0;
fail:
        log_debug(LOG_SUB_PIV, "PIV card in %s: %s", reader_name ? reader_name : "?", strerror(-r));
        piv_free(t);
        return r;
}

int piv_token_factory(void *kind, struct apdu_transport *t, const char *reader_name,
                      const struct driver_ops **ret_ops, struct token **ret_token, char **ret_slot_key) {
        int r = piv_token_new(t, kind, reader_name, ret_token, ret_slot_key);
        if (r < 0)
                return r;
        *ret_ops = &piv_ops;
        return 0;
}

const struct driver_ops piv_ops = {
        .name = "piv",
        .parallel_crypto = false,
        .writes_affect_others = true,
        .get_info = piv_get_info,
        .get_mechanisms = piv_get_mechanisms,
        .load_objects = piv_load_objects,
        .login = piv_login,
        .logout = piv_logout,
        .init_pin = piv_init_pin,
        .set_pin = piv_set_pin,
        .create_object = piv_create_object,
        .destroy_object = piv_destroy_object,
        .generate_key_pair = piv_generate_key_pair,
        .sign = piv_sign,
        .decrypt = piv_decrypt,
        .free = piv_free,
};
