/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests of the virtual PIV card (suite piv-emulator): every command and
 * its errors through vpiv_transmit, signatures checked with mbedTLS against
 * the certificates make-card.sh wrote.  VPIV_MAKE_CARD names make-card.sh. */
#include <mbedtls/aes.h>
#include <mbedtls/des.h>
#include <mbedtls/ecdh.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/pk.h>
#include <mbedtls/rsa.h>
#include <mbedtls/sha256.h>
#include <mbedtls/x509_crt.h>
#include <sys/wait.h>

#include "common/pkcrypto.h"
#include "tests/emulators/vpiv.h"
#include "tests/unit/unit.h"

#define ELEMS(x) (sizeof(x) / sizeof((x)[0]))

static uint8_t rbuf[65538];
static uint8_t data_out[65536];

static const uint8_t mgmt_3des[24] = { 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8 };

/* Builds an APDU: le < 0 no Le; extended when lc > 255 or le > 256 or ext. */
static size_t mk_apdu(uint8_t *out, uint8_t cla, uint8_t ins, uint8_t p1, uint8_t p2, const uint8_t *d, size_t lc,
                      long le, bool ext) {
        size_t n = 0;
        out[n++] = cla, out[n++] = ins, out[n++] = p1, out[n++] = p2;
        ext = ext || lc > 255 || le > 256;
        if (!ext) {
                if (lc) {
                        out[n++] = (uint8_t)lc;
                        memcpy(out + n, d, lc);
                        n += lc;
                }
                if (le >= 0)
                        out[n++] = (uint8_t)(le == 256 ? 0 : le);
        } else {
                out[n++] = 0;
                if (lc) {
                        out[n++] = (uint8_t)(lc >> 8), out[n++] = (uint8_t)lc;
                        memcpy(out + n, d, lc);
                        n += lc;
                }
                if (le >= 0)
                        out[n++] = (uint8_t)(le >> 8 & 0xFF), out[n++] = (uint8_t)(le & 0xFF);
        }
        return n;
}

/* One raw exchange: returns the SW, data in rbuf[0..*dlen). */
static unsigned raw(struct vpiv *c, uint8_t cla, uint8_t ins, uint8_t p1, uint8_t p2, const uint8_t *d, size_t lc,
                    long le, bool ext, size_t *dlen) {
        static uint8_t cmd[70000];
        size_t n = mk_apdu(cmd, cla, ins, p1, p2, d, lc, le, ext);
        size_t rl = 0;
        CHECK_OK(vpiv_transmit(c, cmd, n, rbuf, sizeof rbuf, &rl));
        CHECK(rl >= 2);
        if (dlen)
                *dlen = rl - 2;
        return (unsigned)rbuf[rl - 2] << 8 | rbuf[rl - 1];
}

/* A host-style exchange: short APDUs, command chaining in 255-byte pieces,
 * 61xx followed by GET RESPONSE; the whole answer in data_out. */
static unsigned xfer(struct vpiv *c, uint8_t ins, uint8_t p1, uint8_t p2, const uint8_t *d, size_t lc, size_t *dlen) {
        unsigned sw;
        size_t rl, off = 0;
        while (lc - off > 255) {
                sw = raw(c, 0x10, ins, p1, p2, d + off, 255, -1, false, &rl);
                CHECK_RC(sw, 0x9000);
                CHECK_RC(rl, 0);
                off += 255;
        }
        sw = raw(c, 0x00, ins, p1, p2, d + off, lc - off, 256, false, &rl);
        size_t total = 0;
        for (;;) {
                memcpy(data_out + total, rbuf, rl);
                total += rl;
                if ((sw & 0xFF00) != 0x6100)
                        break;
                sw = raw(c, 0x00, 0xC0, 0, 0, NULL, 0, (sw & 0xFF) ? (long)(sw & 0xFF) : 256, false, &rl);
        }
        if (dlen)
                *dlen = total;
        return sw;
}

static unsigned get_data(struct vpiv *c, uint32_t tag, size_t *dlen) {
        uint8_t d[5] = { 0x5C, 3, (uint8_t)(tag >> 16), (uint8_t)(tag >> 8), (uint8_t)tag };
        if (tag == 0x7E) {
                d[1] = 1;
                d[2] = 0x7E;
                return xfer(c, 0xCB, 0x3F, 0xFF, d, 3, dlen);
        }
        return xfer(c, 0xCB, 0x3F, 0xFF, d, 5, dlen);
}

static unsigned verify(struct vpiv *c, uint8_t ref, const char *pin) {
        uint8_t d[8];
        memset(d, 0xFF, 8);
        if (!pin)
                return raw(c, 0, 0x20, 0, ref, NULL, 0, -1, false, NULL);
        memcpy(d, pin, strlen(pin));
        return raw(c, 0, 0x20, 0, ref, d, 8, -1, false, NULL);
}

static unsigned two_pins(struct vpiv *c, uint8_t ins, uint8_t ref, const char *a, const char *b) {
        uint8_t d[16];
        memset(d, 0xFF, 16);
        memcpy(d, a, strlen(a));
        memcpy(d + 8, b, strlen(b));
        return raw(c, 0, ins, 0, ref, d, 16, -1, false, NULL);
}

/* Finds tag in a flat TLV list (1-2 byte tags, lengths up to 82 xx xx). */
static const uint8_t *find_tlv(const uint8_t *p, size_t n, unsigned tag, size_t *vlen) {
        size_t i = 0;
        while (i < n) {
                unsigned t = p[i++];
                if ((t & 0x1F) == 0x1F)
                        t = t << 8 | p[i++];
                size_t l = p[i++];
                if (l == 0x81)
                        l = p[i++];
                else if (l == 0x82)
                        l = (size_t)p[i] << 8 | p[i + 1], i += 2;
                if (t == tag) {
                        *vlen = l;
                        return p + i;
                }
                i += l;
        }
        return NULL;
}

static char dir_a[1100];

static void make_card(const char *dir, const char *extra) {
        const char *script = getenv("VPIV_MAKE_CARD");
        CHECK(script);
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "'%s' '%s' %s", script, dir, extra ? extra : "");
        CHECK_RC(system(cmd), 0);
}

static struct vpiv *open_card(const char *dir) {
        struct vpiv *c = NULL;
        char *err = NULL;
        int r = vpiv_new(dir, &c, &err);
        if (r < 0)
                fprintf(stderr, "vpiv_new: %s\n", err);
        CHECK_OK(r);
        CHECK(err == NULL);
        return c;
}

/* The certificate of a slot, as the card serves it, parsed. */
static void card_cert(struct vpiv *c, uint32_t tag, mbedtls_x509_crt *crt) {
        size_t n, cl;
        CHECK_RC(get_data(c, tag, &n), 0x9000);
        CHECK(data_out[0] == 0x53);
        size_t l53;
        const uint8_t *v53 = find_tlv(data_out, n, 0x53, &l53);
        CHECK(v53);
        const uint8_t *cert = find_tlv(v53, l53, 0x70, &cl);
        CHECK(cert);
        mbedtls_x509_crt_init(crt);
        CHECK_OK(mbedtls_x509_crt_parse_der(crt, cert, cl));
}

static void cert_from_file(const char *dir, const char *slot, mbedtls_x509_crt *crt) {
        char path[1200];
        snprintf(path, sizeof path, "%s/%s.crt.pem", dir, slot);
        mbedtls_x509_crt_init(crt);
        CHECK_OK(mbedtls_x509_crt_parse_file(crt, path));
}

/* GENERAL AUTHENTICATE 7C { 82 00, 81 challenge }: the 82 value in out. */
static unsigned ga_sign(struct vpiv *c, uint8_t alg, uint8_t ref, const uint8_t *chal, size_t n, uint8_t *out,
                        size_t *outlen) {
        uint8_t d[600];
        size_t i = 0;
        size_t inner = 2 + (n < 128 ? 2 : n < 256 ? 3 : 4) + n;
        d[i++] = 0x7C;
        if (inner < 128)
                d[i++] = (uint8_t)inner;
        else if (inner < 256)
                d[i++] = 0x81, d[i++] = (uint8_t)inner;
        else
                d[i++] = 0x82, d[i++] = (uint8_t)(inner >> 8), d[i++] = (uint8_t)inner;
        d[i++] = 0x82, d[i++] = 0x00, d[i++] = 0x81;
        if (n < 128)
                d[i++] = (uint8_t)n;
        else if (n < 256)
                d[i++] = 0x81, d[i++] = (uint8_t)n;
        else
                d[i++] = 0x82, d[i++] = (uint8_t)(n >> 8), d[i++] = (uint8_t)n;
        memcpy(d + i, chal, n);
        i += n;
        size_t rl;
        unsigned sw = xfer(c, 0x87, alg, ref, d, i, &rl);
        if (sw != 0x9000)
                return sw;
        size_t l7c, l82;
        const uint8_t *v7c = find_tlv(data_out, rl, 0x7C, &l7c);
        CHECK(v7c);
        const uint8_t *v82 = find_tlv(v7c, l7c, 0x82, &l82);
        CHECK(v82);
        memcpy(out, v82, l82);
        *outlen = l82;
        return sw;
}

static void sha256(const char *msg, uint8_t h[32]) {
        CHECK_OK(mbedtls_sha256_ret((const uint8_t *)msg, strlen(msg), h, 0));
}

/* Signs "msg" in an RSA slot with PKCS#1 v1.5 padding done here, and checks
 * the signature with pk. */
static void rsa_sign_check(struct vpiv *c, uint8_t ref, mbedtls_pk_context *pk) {
        uint8_t h[32], em[256], sig[512];
        size_t di_len = 60, sl;
        sha256("vpiv rsa message", h);
        uint8_t di[64];
        CHECK_OK(pkc_digest_info(CKM_SHA256, h, 32, di, &di_len));
        em[0] = 0, em[1] = 1;
        memset(em + 2, 0xFF, 256 - 3 - di_len);
        em[256 - di_len - 1] = 0;
        memcpy(em + 256 - di_len, di, di_len);
        CHECK_RC(ga_sign(c, 0x07, ref, em, 256, sig, &sl), 0x9000);
        CHECK_RC(sl, 256);
        CHECK_OK(mbedtls_pk_verify(pk, MBEDTLS_MD_SHA256, h, 32, sig, sl));
        sig[10] ^= 1;
        CHECK(mbedtls_pk_verify(pk, MBEDTLS_MD_SHA256, h, 32, sig, sl) != 0);
}

static void ec_sign_check(struct vpiv *c, uint8_t alg, uint8_t ref, mbedtls_pk_context *pk) {
        uint8_t h[48], sig[160];
        size_t sl;
        size_t hl = alg == 0x11 ? 32 : 48;
        for (size_t i = 0; i < hl; i++)
                h[i] = (uint8_t)(i * 7 + ref);
        CHECK_RC(ga_sign(c, alg, ref, h, hl, sig, &sl), 0x9000);
        CHECK(sig[0] == 0x30);
        CHECK_OK(mbedtls_pk_verify(pk, MBEDTLS_MD_NONE, h, hl, sig, sl));
        h[0] ^= 1;
        CHECK(mbedtls_pk_verify(pk, MBEDTLS_MD_NONE, h, hl, sig, sl) != 0);
}

/* ------------------------------------------------------------------ tests */

static void test_select_and_atr(struct vpiv *c) {
        uint8_t atr[64];
        size_t n = vpiv_atr(c, atr, sizeof atr);
        CHECK(n >= 4 && n <= 33 && atr[0] == 0x3B);
        uint8_t tck = 0;
        for (size_t i = 1; i < n; i++)
                tck ^= atr[i];
        CHECK(tck == 0);        /* T=1 announced: TCK makes the XOR zero */

        static const uint8_t aid[] = { 0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00 };
        size_t rl, l;
        CHECK_RC(xfer(c, 0xA4, 0x04, 0x00, aid, sizeof aid, &rl), 0x9000);
        const uint8_t *apt = find_tlv(data_out, rl, 0x61, &l);
        CHECK(apt);
        size_t l4f, l79;
        const uint8_t *v4f = find_tlv(apt, l, 0x4F, &l4f);
        CHECK(v4f && l4f == 6 && !memcmp(v4f, aid + 5, 6));
        CHECK(find_tlv(apt, l, 0x79, &l79));
        CHECK_RC(xfer(c, 0xA4, 0x04, 0x00, aid, 9, &rl), 0x9000);      /* right-truncated */
        static const uint8_t other[] = { 0xA0, 0x00, 0x00, 0x05, 0x27, 0x20, 0x01 };
        CHECK_RC(xfer(c, 0xA4, 0x04, 0x00, other, sizeof other, &rl), 0x6A82);
        CHECK_RC(xfer(c, 0xA4, 0x00, 0x00, aid, sizeof aid, &rl), 0x6A86);
}

static void test_get_data(struct vpiv *c, const char *dir) {
        size_t n, l, l2;
        /* CHUID carries the GUID of card.conf. */
        CHECK_RC(get_data(c, 0x5FC102, &n), 0x9000);
        const uint8_t *v = find_tlv(data_out, n, 0x53, &l);
        CHECK(v);
        const uint8_t *guid = find_tlv(v, l, 0x34, &l2);
        CHECK(guid && l2 == 16);
        char path[1200], line[256], hex[33] = "";
        snprintf(path, sizeof path, "%s/card.conf", dir);
        FILE *f = fopen(path, "r");
        CHECK(f);
        while (fgets(line, sizeof line, f))
                if (!strncmp(line, "guid = ", 7))
                        memcpy(hex, line + 7, 32);
        fclose(f);
        char got[33];
        for (int i = 0; i < 16; i++)
                snprintf(got + 2 * i, 3, "%02x", guid[i]);
        CHECK(!strcmp(got, hex));
        /* CCC: card identifier ends with the GUID. */
        CHECK_RC(get_data(c, 0x5FC107, &n), 0x9000);
        v = find_tlv(data_out, n, 0x53, &l);
        const uint8_t *cid = find_tlv(v, l, 0xF0, &l2);
        CHECK(cid && l2 == 21);
        CHECK_RC(get_data(c, 0x5FC102, &n), 0x9000);      /* guid points into data_out: read it again */
        v = find_tlv(data_out, n, 0x53, &l);
        guid = find_tlv(v, l, 0x34, &l2);
        uint8_t g[16];
        memcpy(g, guid, 16);
        CHECK_RC(get_data(c, 0x5FC107, &n), 0x9000);
        v = find_tlv(data_out, n, 0x53, &l);
        cid = find_tlv(v, l, 0xF0, &l2);
        CHECK(!memcmp(cid + 5, g, 16));
        /* Discovery object. */
        CHECK_RC(get_data(c, 0x7E, &n), 0x9000);
        CHECK(data_out[0] == 0x7E);
        v = find_tlv(data_out, n, 0x7E, &l);
        CHECK(find_tlv(v, l, 0x4F, &l2) && l2 == 11);
        CHECK(find_tlv(v, l, 0x5F2F, &l2) && l2 == 2);
        /* Certificates: the card serves exactly the files. */
        static const struct { uint32_t tag; const char *slot; } certs[] = {
                { 0x5FC105, "9a" }, { 0x5FC10A, "9c" }, { 0x5FC10B, "9d" }, { 0x5FC101, "9e" }, { 0x5FC10D, "82" },
        };
        for (size_t i = 0; i < ELEMS(certs); i++) {
                mbedtls_x509_crt a, b;
                card_cert(c, certs[i].tag, &a);
                cert_from_file(dir, certs[i].slot, &b);
                CHECK(a.raw.len == b.raw.len && !memcmp(a.raw.p, b.raw.p, a.raw.len));
                mbedtls_x509_crt_free(&a);
                mbedtls_x509_crt_free(&b);
        }
        /* Key history: one retired key (82) with its certificate on the card. */
        CHECK_RC(get_data(c, 0x5FC10C, &n), 0x9000);
        v = find_tlv(data_out, n, 0x53, &l);
        const uint8_t *c1 = find_tlv(v, l, 0xC1, &l2);
        CHECK(c1 && l2 == 1 && c1[0] == 1);
        /* Empty retired slot, unknown tags, bad requests. */
        CHECK_RC(get_data(c, 0x5FC10E, &n), 0x6A82);
        CHECK_RC(get_data(c, 0x5FC1FF, &n), 0x6A82);
        CHECK_RC(get_data(c, 0x5FC109, &n), 0x6982);    /* printed information needs the PIN */
        static const uint8_t bad1[] = { 0x5D, 0x01, 0x7E };
        CHECK_RC(xfer(c, 0xCB, 0x3F, 0xFF, bad1, 3, &n), 0x6A80);
        static const uint8_t bad2[] = { 0x5C, 0x05, 0x7E };
        CHECK_RC(xfer(c, 0xCB, 0x3F, 0xFF, bad2, 3, &n), 0x6A80);
        static const uint8_t good[] = { 0x5C, 0x01, 0x7E };
        CHECK_RC(xfer(c, 0xCB, 0x3F, 0xFE, good, 3, &n), 0x6A86);
}

static void test_response_chaining(struct vpiv *c) {
        static const uint8_t tl[] = { 0x5C, 0x03, 0x5F, 0xC1, 0x05 };
        size_t n, total = 0;
        /* Extended Le: the whole object at once. */
        unsigned sw = raw(c, 0, 0xCB, 0x3F, 0xFF, tl, 5, 65536, true, &n);
        CHECK_RC(sw, 0x9000);
        CHECK(n > 256);
        static uint8_t whole[4096];
        memcpy(whole, rbuf, n);
        size_t whole_len = n;
        /* Short Le=00: 256 bytes + 61xx, then GET RESPONSE with small Le. */
        sw = raw(c, 0, 0xCB, 0x3F, 0xFF, tl, 5, 256, false, &n);
        CHECK_RC(n, 256);
        CHECK((sw & 0xFF00) == 0x6100);
        static uint8_t acc[4096];
        memcpy(acc, rbuf, n);
        total = n;
        while ((sw & 0xFF00) == 0x6100) {
                sw = raw(c, 0, 0xC0, 0, 0, NULL, 0, 100, false, &n);
                CHECK(n <= 100);
                memcpy(acc + total, rbuf, n);
                total += n;
        }
        CHECK_RC(sw, 0x9000);
        CHECK(total == whole_len && !memcmp(acc, whole, total));
        /* No Le: no data, 61xx announces it. */
        sw = raw(c, 0, 0xCB, 0x3F, 0xFF, tl, 5, -1, false, &n);
        CHECK_RC(n, 0);
        CHECK_RC(sw, 0x6100);   /* more than 255 bytes pending */
        /* Another command drops the pending response. */
        CHECK_RC(verify(c, 0x80, NULL), 0x63C3);
        CHECK_RC(raw(c, 0, 0xC0, 0, 0, NULL, 0, 256, false, &n), 0x6985);
}

static void test_pin(struct vpiv *c) {
        vpiv_reset(c);
        CHECK_RC(verify(c, 0x80, NULL), 0x63C3);
        CHECK_RC(verify(c, 0x80, "654321"), 0x63C2);
        CHECK_RC(verify(c, 0x80, NULL), 0x63C2);
        CHECK_RC(verify(c, 0x80, "123456"), 0x9000);
        CHECK_RC(verify(c, 0x80, NULL), 0x9000);
        /* P1=FF resets the verified state. */
        CHECK_RC(raw(c, 0, 0x20, 0xFF, 0x80, NULL, 0, -1, false, NULL), 0x9000);
        CHECK_RC(verify(c, 0x80, NULL), 0x63C3);
        /* Malformed PIN blocks: no try used. */
        CHECK_RC(verify(c, 0x80, "12345"), 0x6A80);
        uint8_t odd[8] = { '1', '2', '3', '4', '5', '6', 0xFF, '7' };
        CHECK_RC(raw(c, 0, 0x20, 0, 0x80, odd, 8, -1, false, NULL), 0x6A80);
        CHECK_RC(raw(c, 0, 0x20, 0, 0x80, odd, 6, -1, false, NULL), 0x6A80);
        CHECK_RC(verify(c, 0x80, NULL), 0x63C3);
        CHECK_RC(verify(c, 0x9A, "123456"), 0x6A88);
        /* Three wrong PINs lock; the right one no longer works. */
        CHECK_RC(verify(c, 0x80, "000000"), 0x63C2);
        CHECK_RC(verify(c, 0x80, "000000"), 0x63C1);
        CHECK_RC(verify(c, 0x80, "000000"), 0x6983);
        CHECK_RC(verify(c, 0x80, "123456"), 0x6983);
        CHECK_RC(verify(c, 0x80, NULL), 0x6983);
        /* PUK status, wrong PUK, unblock. */
        CHECK_RC(verify(c, 0x81, NULL), 0x63C3);
        CHECK_RC(two_pins(c, 0x2C, 0x80, "87654321", "111111"), 0x63C2);
        CHECK_RC(verify(c, 0x81, NULL), 0x63C2);
        CHECK_RC(two_pins(c, 0x2C, 0x81, "12345678", "111111"), 0x6A88);
        CHECK_RC(two_pins(c, 0x2C, 0x80, "12345678", "111111"), 0x9000);
        CHECK_RC(verify(c, 0x81, NULL), 0x63C3);
        CHECK_RC(verify(c, 0x80, NULL), 0x63C3);
        CHECK_RC(verify(c, 0x80, "123456"), 0x63C2);
        CHECK_RC(verify(c, 0x80, "111111"), 0x9000);
        /* CHANGE REFERENCE DATA. */
        CHECK_RC(two_pins(c, 0x24, 0x80, "999999", "123456"), 0x63C2);
        CHECK_RC(two_pins(c, 0x24, 0x80, "111111", "12345"), 0x6A80);
        CHECK_RC(two_pins(c, 0x24, 0x80, "111111", "123456"), 0x9000);
        CHECK_RC(verify(c, 0x80, NULL), 0x63C3);        /* the wrong old PIN above cleared the session */
        CHECK_RC(verify(c, 0x80, "111111"), 0x63C2);
        CHECK_RC(verify(c, 0x80, "123456"), 0x9000);
        CHECK_RC(two_pins(c, 0x24, 0x81, "12345678", "87654321"), 0x9000);
        CHECK_RC(two_pins(c, 0x24, 0x81, "87654321", "12345678"), 0x9000);
        /* A blocked PUK is final. */
        for (int i = 2; i >= 0; i--)
                CHECK_RC(two_pins(c, 0x2C, 0x80, "00000000", "222222"), i ? 0x63C0u + (unsigned)i : 0x6983u);
        CHECK_RC(two_pins(c, 0x2C, 0x80, "12345678", "222222"), 0x6983);
        CHECK_RC(verify(c, 0x81, NULL), 0x6983);
        CHECK_RC(two_pins(c, 0x24, 0x81, "12345678", "87654321"), 0x6983);
        CHECK_RC(verify(c, 0x80, "123456"), 0x9000);    /* the PIN still works */
}

static void test_sign(struct vpiv *c, const char *dir) {
        mbedtls_x509_crt c9a, c9c, c9d, c9e, c82;
        cert_from_file(dir, "9a", &c9a);
        cert_from_file(dir, "9c", &c9c);
        cert_from_file(dir, "9d", &c9d);
        cert_from_file(dir, "9e", &c9e);
        cert_from_file(dir, "82", &c82);
        uint8_t h[32] = { 1, 2, 3 }, out[600], big[256];
        size_t ol;
        memset(big, 0x11, sizeof big);

        vpiv_reset(c);
        /* Security status. */
        CHECK_RC(ga_sign(c, 0x07, 0x9A, big, 256, out, &ol), 0x6982);
        CHECK_RC(ga_sign(c, 0x11, 0x9C, h, 32, out, &ol), 0x6982);
        CHECK_RC(ga_sign(c, 0x14, 0x82, h, 32, out, &ol), 0x6982);
        ec_sign_check(c, 0x11, 0x9E, &c9e.pk);                  /* 9E: no PIN */
        CHECK_RC(verify(c, 0x80, "123456"), 0x9000);
        rsa_sign_check(c, 0x9A, &c9a.pk);
        rsa_sign_check(c, 0x9A, &c9a.pk);                       /* 9A: PIN once per session */
        ec_sign_check(c, 0x14, 0x82, &c82.pk);                  /* retired P-384 */
        /* 9C: PIN always, even inside a verified session. */
        ec_sign_check(c, 0x11, 0x9C, &c9c.pk);
        CHECK_RC(ga_sign(c, 0x11, 0x9C, h, 32, out, &ol), 0x6982);
        CHECK_RC(verify(c, 0x80, NULL), 0x9000);
        CHECK_RC(ga_sign(c, 0x11, 0x9C, h, 32, out, &ol), 0x6982);     /* a status query is no VERIFY */
        CHECK_RC(verify(c, 0x80, "123456"), 0x9000);
        size_t n;
        CHECK_RC(get_data(c, 0x5FC102, &n), 0x9000);           /* other commands in between are fine */
        ec_sign_check(c, 0x11, 0x9C, &c9c.pk);
        /* Wrong algorithm, wrong input, no key, unknown ref. */
        CHECK_RC(ga_sign(c, 0x11, 0x9A, h, 32, out, &ol), 0x6A86);
        CHECK_RC(ga_sign(c, 0x07, 0x9A, big, 255, out, &ol), 0x6A80);
        memset(big, 0xFF, sizeof big);                          /* >= modulus */
        CHECK_RC(ga_sign(c, 0x07, 0x9A, big, 256, out, &ol), 0x6A80);
        uint8_t h49[49] = { 0 };
        CHECK_RC(ga_sign(c, 0x14, 0x82, h49, 49, out, &ol), 0x6A80);
        CHECK_RC(ga_sign(c, 0x11, 0x83, h, 32, out, &ol), 0x6A88);
        CHECK_RC(ga_sign(c, 0x11, 0x77, h, 32, out, &ol), 0x6A86);
        static const uint8_t not7c[] = { 0x7D, 0x02, 0x82, 0x00 };
        CHECK_RC(xfer(c, 0x87, 0x11, 0x9E, not7c, sizeof not7c, &n), 0x6A80);
        static const uint8_t dup[] = { 0x7C, 0x06, 0x82, 0x00, 0x81, 0x00, 0x81, 0x00 };
        CHECK_RC(xfer(c, 0x87, 0x11, 0x9E, dup, sizeof dup, &n), 0x6A80);

        /* RSA decrypt with 9D: PKCS#1 v1.5 encryption to the certificate. */
        const char *msg = "session key material";
        uint8_t ct[256], pt[600];
        CHECK_OK(mbedtls_rsa_pkcs1_encrypt(mbedtls_pk_rsa(c9d.pk), pkc_rng, NULL, MBEDTLS_RSA_PUBLIC, strlen(msg),
                                           (const uint8_t *)msg, ct));
        CHECK_RC(ga_sign(c, 0x07, 0x9D, ct, 256, pt, &ol), 0x9000);
        CHECK(ol == 256 && pt[0] == 0 && pt[1] == 2 && !memcmp(pt + 256 - strlen(msg), msg, strlen(msg)));

        /* ECDH with 9E: 7C { 82 00, 85 point }. */
        mbedtls_ecp_keypair eph;
        mbedtls_ecp_keypair_init(&eph);
        CHECK_OK(mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, &eph, pkc_rng, NULL));
        uint8_t q[65], d[80] = { 0x7C, 69, 0x82, 0x00, 0x85, 65 };
        size_t ql;
        CHECK_OK(mbedtls_ecp_point_write_binary(&eph.grp, &eph.Q, MBEDTLS_ECP_PF_UNCOMPRESSED, &ql, q, sizeof q));
        memcpy(d + 6, q, 65);
        CHECK_RC(xfer(c, 0x87, 0x11, 0x9E, d, 71, &n), 0x9000);
        size_t l7c, l82;
        const uint8_t *v7c = find_tlv(data_out, n, 0x7C, &l7c);
        const uint8_t *z = find_tlv(v7c, l7c, 0x82, &l82);
        CHECK(z && l82 == 32);
        mbedtls_mpi zz;
        mbedtls_mpi_init(&zz);
        mbedtls_ecp_keypair *card_pub = mbedtls_pk_ec(c9e.pk);
        CHECK_OK(mbedtls_ecdh_compute_shared(&eph.grp, &zz, &card_pub->Q, &eph.d, pkc_rng, NULL));
        uint8_t zb[32];
        CHECK_OK(mbedtls_mpi_write_binary(&zz, zb, 32));
        CHECK(!memcmp(zb, z, 32));
        d[8] ^= 0x55;                                           /* not on the curve */
        CHECK_RC(xfer(c, 0x87, 0x11, 0x9E, d, 71, &n), 0x6A80);
        mbedtls_mpi_free(&zz);
        mbedtls_ecp_keypair_free(&eph);

        mbedtls_x509_crt_free(&c9a);
        mbedtls_x509_crt_free(&c9c);
        mbedtls_x509_crt_free(&c9d);
        mbedtls_x509_crt_free(&c9e);
        mbedtls_x509_crt_free(&c82);
}

static void block_encrypt(uint8_t alg, const uint8_t *key, size_t klen, const uint8_t *in, uint8_t *out, bool enc) {
        if (alg == 0x03) {
                mbedtls_des3_context d;
                mbedtls_des3_init(&d);
                CHECK_OK(enc ? mbedtls_des3_set3key_enc(&d, key) : mbedtls_des3_set3key_dec(&d, key));
                CHECK_OK(mbedtls_des3_crypt_ecb(&d, in, out));
                mbedtls_des3_free(&d);
        } else {
                mbedtls_aes_context a;
                mbedtls_aes_init(&a);
                CHECK_OK(enc ? mbedtls_aes_setkey_enc(&a, key, (unsigned)klen * 8)
                             : mbedtls_aes_setkey_dec(&a, key, (unsigned)klen * 8));
                CHECK_OK(mbedtls_aes_crypt_ecb(&a, enc ? MBEDTLS_AES_ENCRYPT : MBEDTLS_AES_DECRYPT, in, out));
                mbedtls_aes_free(&a);
        }
}

/* Mutual authentication; corrupt: send a wrong witness.  Returns the SW of step 2. */
static unsigned mgmt_mutual(struct vpiv *c, uint8_t alg, const uint8_t *key, size_t klen, bool corrupt) {
        size_t bs = alg == 0x03 ? 8 : 16, n, l7c, l80;
        static const uint8_t step1[] = { 0x7C, 0x02, 0x80, 0x00 };
        CHECK_RC(xfer(c, 0x87, alg, 0x9B, step1, sizeof step1, &n), 0x9000);
        const uint8_t *v7c = find_tlv(data_out, n, 0x7C, &l7c);
        const uint8_t *w = find_tlv(v7c, l7c, 0x80, &l80);
        CHECK(w && l80 == bs);
        uint8_t witness[16], chal[16], expect[16];
        block_encrypt(alg, key, klen, w, witness, false);
        if (corrupt)
                witness[0] ^= 1;
        CHECK_OK(pkc_random(chal, bs));
        uint8_t d[64];
        size_t i = 0;
        d[i++] = 0x7C, d[i++] = (uint8_t)(2 * (2 + bs) + 2);
        d[i++] = 0x80, d[i++] = (uint8_t)bs;
        memcpy(d + i, witness, bs), i += bs;
        d[i++] = 0x81, d[i++] = (uint8_t)bs;
        memcpy(d + i, chal, bs), i += bs;
        d[i++] = 0x82, d[i++] = 0x00;
        unsigned sw = xfer(c, 0x87, alg, 0x9B, d, i, &n);
        if (sw != 0x9000)
                return sw;
        size_t l82;
        v7c = find_tlv(data_out, n, 0x7C, &l7c);
        const uint8_t *r = find_tlv(v7c, l7c, 0x82, &l82);
        CHECK(r && l82 == bs);
        block_encrypt(alg, key, klen, chal, expect, true);
        CHECK(!memcmp(expect, r, bs));  /* the card proved it holds the key */
        return sw;
}

static unsigned mgmt_external(struct vpiv *c, uint8_t alg, const uint8_t *key, size_t klen, bool corrupt) {
        size_t bs = alg == 0x03 ? 8 : 16, n, l7c, l81;
        static const uint8_t step1[] = { 0x7C, 0x02, 0x81, 0x00 };
        CHECK_RC(xfer(c, 0x87, alg, 0x9B, step1, sizeof step1, &n), 0x9000);
        const uint8_t *v7c = find_tlv(data_out, n, 0x7C, &l7c);
        const uint8_t *ch = find_tlv(v7c, l7c, 0x81, &l81);
        CHECK(ch && l81 == bs);
        uint8_t d[32] = { 0x7C, (uint8_t)(bs + 2), 0x82, (uint8_t)bs };
        block_encrypt(alg, key, klen, ch, d + 4, true);
        if (corrupt)
                d[4] ^= 1;
        return xfer(c, 0x87, alg, 0x9B, d, 4 + bs, &n);
}

/* GENERATE in a slot: the public key TLV 7F49 in data_out, its length returned. */
static unsigned generate(struct vpiv *c, uint8_t ref, uint8_t alg, size_t *n) {
        uint8_t d[] = { 0xAC, 0x03, 0x80, 0x01, alg };
        return xfer(c, 0x47, 0x00, ref, d, sizeof d, n);
}

static void test_mgmt_3des(struct vpiv *c) {
        size_t n;
        vpiv_reset(c);
        CHECK_RC(generate(c, 0x9A, 0x11, &n), 0x6982);
        CHECK_RC(mgmt_mutual(c, 0x03, mgmt_3des, 24, true), 0x6982);
        CHECK_RC(generate(c, 0x9A, 0x11, &n), 0x6982);
        /* Step 2 without step 1, or after another command. */
        uint8_t d[] = { 0x7C, 0x16, 0x80, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0x81, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0x82, 0 };
        CHECK_RC(xfer(c, 0x87, 0x03, 0x9B, d, sizeof d, &n), 0x6985);
        static const uint8_t step1[] = { 0x7C, 0x02, 0x80, 0x00 };
        CHECK_RC(xfer(c, 0x87, 0x03, 0x9B, step1, sizeof step1, &n), 0x9000);
        CHECK_RC(verify(c, 0x80, NULL), 0x63C3);
        CHECK_RC(xfer(c, 0x87, 0x03, 0x9B, d, sizeof d, &n), 0x6985);
        CHECK_RC(xfer(c, 0x87, 0x08, 0x9B, step1, sizeof step1, &n), 0x6A86);  /* not the card's alg */
        CHECK_RC(mgmt_external(c, 0x03, mgmt_3des, 24, true), 0x6982);
        CHECK_RC(generate(c, 0x9A, 0x11, &n), 0x6982);
        CHECK_RC(mgmt_external(c, 0x03, mgmt_3des, 24, false), 0x9000);
        CHECK_RC(generate(c, 0x85, 0x11, &n), 0x9000);
        vpiv_reset(c);
        CHECK_RC(generate(c, 0x85, 0x11, &n), 0x6982);         /* reset drops the authentication */
        CHECK_RC(mgmt_mutual(c, 0x03, mgmt_3des, 24, false), 0x9000);
        CHECK_RC(generate(c, 0x85, 0x11, &n), 0x9000);
}

static void test_mgmt_aes(void) {
        static const struct { const char *name; uint8_t alg; size_t len; } algs[] = {
                { "aes128", 0x08, 16 }, { "aes192", 0x0A, 24 }, { "aes256", 0x0C, 32 },
        };
        for (size_t i = 0; i < ELEMS(algs); i++) {
                uint8_t key[32];
                char hex[65], dir[1200], extra[256];
                for (size_t k = 0; k < algs[i].len; k++) {
                        key[k] = (uint8_t)(0xA0 + k * 3);
                        snprintf(hex + 2 * k, 3, "%02x", key[k]);
                }
                snprintf(dir, sizeof dir, "%s/%s", unit_tmpdir, algs[i].name);
                snprintf(extra, sizeof extra, "--mgmt-alg %s --mgmt-key %s", algs[i].name, hex);
                make_card(dir, extra);
                struct vpiv *c = open_card(dir);
                size_t n;
                static const uint8_t step1[] = { 0x7C, 0x02, 0x80, 0x00 };
                CHECK_RC(xfer(c, 0x87, 0x03, 0x9B, step1, sizeof step1, &n), 0x6A86);  /* 3DES: not this card */
                CHECK_RC(mgmt_mutual(c, algs[i].alg, key, algs[i].len, true), 0x6982);
                CHECK_RC(generate(c, 0x9E, 0x11, &n), 0x6982);
                CHECK_RC(mgmt_mutual(c, algs[i].alg, key, algs[i].len, false), 0x9000);
                CHECK_RC(generate(c, 0x9E, 0x11, &n), 0x9000);
                vpiv_reset(c);
                CHECK_RC(mgmt_external(c, algs[i].alg, key, algs[i].len, true), 0x6982);
                CHECK_RC(generate(c, 0x9E, 0x11, &n), 0x6982);
                CHECK_RC(mgmt_external(c, algs[i].alg, key, algs[i].len, false), 0x9000);
                CHECK_RC(generate(c, 0x9E, 0x11, &n), 0x9000);
                vpiv_free(c);
        }
}

static void test_generate(const char *dir) {
        struct vpiv *c = open_card(dir);
        size_t n, l, l2;
        CHECK_RC(mgmt_mutual(c, 0x03, mgmt_3des, 24, false), 0x9000);
        CHECK_RC(generate(c, 0x9A, 0x05, &n), 0x6A80);         /* unsupported algorithm */
        CHECK_RC(generate(c, 0x9B, 0x11, &n), 0x6A86);
        static const uint8_t noac[] = { 0xAD, 0x03, 0x80, 0x01, 0x11 };
        CHECK_RC(xfer(c, 0x47, 0, 0x9A, noac, sizeof noac, &n), 0x6A80);

        /* P-256 in 9A, then a signature checked against the returned point. */
        CHECK_RC(generate(c, 0x9A, 0x11, &n), 0x9000);
        const uint8_t *v = find_tlv(data_out, n, 0x7F49, &l);
        CHECK(v);
        const uint8_t *pt = find_tlv(v, l, 0x86, &l2);
        CHECK(pt && l2 == 65 && pt[0] == 0x04);
        mbedtls_pk_context pk;
        mbedtls_pk_init(&pk);
        CHECK_OK(mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)));
        CHECK_OK(mbedtls_ecp_group_load(&mbedtls_pk_ec(pk)->grp, MBEDTLS_ECP_DP_SECP256R1));
        CHECK_OK(mbedtls_ecp_point_read_binary(&mbedtls_pk_ec(pk)->grp, &mbedtls_pk_ec(pk)->Q, pt, l2));
        CHECK_RC(verify(c, 0x80, "123456"), 0x9000);
        ec_sign_check(c, 0x11, 0x9A, &pk);
        mbedtls_pk_free(&pk);

        /* P-384 in retired 95. */
        CHECK_RC(generate(c, 0x95, 0x14, &n), 0x9000);
        v = find_tlv(data_out, n, 0x7F49, &l);
        pt = find_tlv(v, l, 0x86, &l2);
        CHECK(pt && l2 == 97);
        mbedtls_pk_init(&pk);
        CHECK_OK(mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)));
        CHECK_OK(mbedtls_ecp_group_load(&mbedtls_pk_ec(pk)->grp, MBEDTLS_ECP_DP_SECP384R1));
        CHECK_OK(mbedtls_ecp_point_read_binary(&mbedtls_pk_ec(pk)->grp, &mbedtls_pk_ec(pk)->Q, pt, l2));
        ec_sign_check(c, 0x14, 0x95, &pk);
        mbedtls_pk_free(&pk);

        /* RSA-2048 in 9D: modulus and exponent, through response chaining. */
        CHECK_RC(generate(c, 0x9D, 0x07, &n), 0x9000);
        v = find_tlv(data_out, n, 0x7F49, &l);
        size_t lm, le;
        const uint8_t *mod = find_tlv(v, l, 0x81, &lm);
        const uint8_t *ex = find_tlv(v, l, 0x82, &le);
        CHECK(mod && lm == 256 && ex && le == 3 && !memcmp(ex, "\x01\x00\x01", 3));
        mbedtls_pk_init(&pk);
        CHECK_OK(mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_RSA)));
        CHECK_OK(mbedtls_rsa_import_raw(mbedtls_pk_rsa(pk), mod, lm, NULL, 0, NULL, 0, NULL, 0, ex, le));
        CHECK_OK(mbedtls_rsa_complete(mbedtls_pk_rsa(pk)));
        rsa_sign_check(c, 0x9D, &pk);

        /* Saved and loaded again: the generated keys survive. */
        CHECK_OK(vpiv_save(c));
        vpiv_free(c);
        c = open_card(dir);
        CHECK_RC(verify(c, 0x80, "123456"), 0x9000);
        rsa_sign_check(c, 0x9D, &pk);
        mbedtls_pk_free(&pk);
        vpiv_free(c);
}

static void test_put_data(const char *dir) {
        struct vpiv *c = open_card(dir);
        /* A ~0.9 KB certificate into retired slot 83 (5FC10E), by chaining. */
        char path[1200];
        snprintf(path, sizeof path, "%s/9a.crt.pem", dir);
        mbedtls_x509_crt crt;
        mbedtls_x509_crt_init(&crt);
        CHECK_OK(mbedtls_x509_crt_parse_file(&crt, path));
        static uint8_t d[4096];
        size_t i = 0, clen = crt.raw.len, n;
        size_t inner = 4 + clen + 3 + 2;
        d[i++] = 0x5C, d[i++] = 3, d[i++] = 0x5F, d[i++] = 0xC1, d[i++] = 0x0E;
        d[i++] = 0x53, d[i++] = 0x82, d[i++] = (uint8_t)(inner >> 8), d[i++] = (uint8_t)inner;
        d[i++] = 0x70, d[i++] = 0x82, d[i++] = (uint8_t)(clen >> 8), d[i++] = (uint8_t)clen;
        memcpy(d + i, crt.raw.p, clen), i += clen;
        d[i++] = 0x71, d[i++] = 1, d[i++] = 0;
        d[i++] = 0xFE, d[i++] = 0;
        CHECK(i > 3 * 255);     /* four chained pieces */
        CHECK_RC(xfer(c, 0xDB, 0x3F, 0xFF, d, i, &n), 0x6982);
        CHECK_RC(mgmt_mutual(c, 0x03, mgmt_3des, 24, false), 0x9000);
        CHECK_RC(xfer(c, 0xDB, 0x3F, 0xFE, d, i, &n), 0x6A86);
        static const uint8_t bad_tag[] = { 0x5C, 0x01, 0x7E, 0x53, 0x00 };
        CHECK_RC(xfer(c, 0xDB, 0x3F, 0xFF, bad_tag, sizeof bad_tag, &n), 0x6A80);
        static const uint8_t no53[] = { 0x5C, 0x03, 0x5F, 0xC1, 0x0E, 0x54, 0x00 };
        CHECK_RC(xfer(c, 0xDB, 0x3F, 0xFF, no53, sizeof no53, &n), 0x6A80);
        CHECK_RC(xfer(c, 0xDB, 0x3F, 0xFF, d, i, &n), 0x9000);
        mbedtls_x509_crt got;
        card_cert(c, 0x5FC10E, &got);
        CHECK(got.raw.len == clen && !memcmp(got.raw.p, crt.raw.p, clen));
        mbedtls_x509_crt_free(&got);
        /* Key history counts it. */
        size_t l, l2;
        CHECK_RC(get_data(c, 0x5FC10C, &n), 0x9000);
        const uint8_t *v = find_tlv(data_out, n, 0x53, &l);
        const uint8_t *c1 = find_tlv(v, l, 0xC1, &l2);
        CHECK(c1 && c1[0] == 2);
        /* The same in one extended APDU, into 84 (5FC10F). */
        d[4] = 0x0F;
        CHECK_RC(raw(c, 0, 0xDB, 0x3F, 0xFF, d, i, -1, true, &n), 0x9000);
        card_cert(c, 0x5FC10F, &got);
        CHECK(got.raw.len == clen);
        mbedtls_x509_crt_free(&got);
        /* Delete 84 (empty 53), save, reload: 83 kept, 84 gone. */
        static const uint8_t del[] = { 0x5C, 0x03, 0x5F, 0xC1, 0x0F, 0x53, 0x00 };
        CHECK_RC(xfer(c, 0xDB, 0x3F, 0xFF, del, sizeof del, &n), 0x9000);
        CHECK_RC(get_data(c, 0x5FC10F, &n), 0x6A82);
        CHECK_OK(vpiv_save(c));
        vpiv_free(c);
        snprintf(path, sizeof path, "%s/83.crt.der", dir);
        CHECK(access(path, F_OK) == 0);
        c = open_card(dir);
        card_cert(c, 0x5FC10E, &got);
        CHECK(got.raw.len == clen && !memcmp(got.raw.p, crt.raw.p, clen));
        mbedtls_x509_crt_free(&got);
        CHECK_RC(get_data(c, 0x5FC10F, &n), 0x6A82);
        mbedtls_x509_crt_free(&crt);
        vpiv_free(c);
}

static void test_chaining_and_errors(struct vpiv *c) {
        size_t n;
        vpiv_reset(c);
        /* VERIFY split over two chained commands. */
        CHECK_RC(raw(c, 0x10, 0x20, 0, 0x80, (const uint8_t *)"1234", 4, -1, false, &n), 0x9000);
        uint8_t rest[4] = { '5', '6', 0xFF, 0xFF };
        CHECK_RC(raw(c, 0x00, 0x20, 0, 0x80, rest, 4, -1, false, &n), 0x9000);
        CHECK_RC(verify(c, 0x80, NULL), 0x9000);
        /* A chain broken by another command. */
        CHECK_RC(raw(c, 0x10, 0xDB, 0x3F, 0xFF, rest, 4, -1, false, &n), 0x9000);
        CHECK_RC(raw(c, 0x00, 0xCB, 0x3F, 0xFF, rest, 4, -1, false, &n), 0x6883);
        CHECK_RC(verify(c, 0x80, NULL), 0x9000);                /* the card carries on */
        /* A chain too long. */
        static uint8_t blob[255];
        unsigned sw = 0;
        for (int i = 0; i < 100 && sw != 0x6A84; i++)
                sw = raw(c, 0x10, 0xDB, 0x3F, 0xFF, blob, sizeof blob, -1, false, &n);
        CHECK_RC(sw, 0x6A84);
        /* Class, instruction, length errors. */
        CHECK_RC(raw(c, 0x80, 0xCB, 0x3F, 0xFF, NULL, 0, 256, false, &n), 0x6E00);
        CHECK_RC(raw(c, 0x00, 0x12, 0, 0, NULL, 0, -1, false, &n), 0x6D00);
        uint8_t bad[] = { 0x00, 0x20, 0x00, 0x80, 0x08, '1', '2' };
        size_t rl;
        CHECK_OK(vpiv_transmit(c, bad, sizeof bad, rbuf, sizeof rbuf, &rl));
        CHECK(rl == 2 && rbuf[0] == 0x67 && rbuf[1] == 0x00);
        uint8_t ext_bad[] = { 0x00, 0xCB, 0x3F, 0xFF, 0x00, 0x01 };
        CHECK_OK(vpiv_transmit(c, ext_bad, sizeof ext_bad, rbuf, sizeof rbuf, &rl));
        CHECK(rl == 2 && rbuf[0] == 0x67);
        CHECK_OK(vpiv_transmit(c, bad, 3, rbuf, sizeof rbuf, &rl));
        CHECK(rl == 2 && rbuf[0] == 0x67);
        /* Buffer too small for Ne. */
        uint8_t ge[] = { 0x00, 0xCB, 0x3F, 0xFF, 0x03, 0x5C, 0x01, 0x7E, 0x00 };
        CHECK_RC(vpiv_transmit(c, ge, sizeof ge, rbuf, 100, &rl), -ENOBUFS);
        CHECK_RC(vpiv_transmit(c, ge, sizeof ge, rbuf, 258, &rl), 0);
        CHECK_RC(vpiv_transmit(NULL, ge, sizeof ge, rbuf, 258, &rl), -EINVAL);
        /* vpcd control messages. */
        uint8_t atr[64], m = 0x04;
        CHECK_OK(vpiv_vpcd_message(c, &m, 1, atr, sizeof atr, &rl));
        CHECK(rl == vpiv_atr(c, NULL, 0) && atr[0] == 0x3B);
        m = 0x02;
        CHECK_OK(vpiv_vpcd_message(c, &m, 1, atr, sizeof atr, &rl));
        CHECK_RC(rl, 0);
        CHECK_RC(verify(c, 0x80, NULL), 0x63C3);                /* reset cleared the PIN */
        m = 0x07;
        CHECK_RC(vpiv_vpcd_message(c, &m, 1, atr, sizeof atr, &rl), -EBADMSG);
}

static void test_persistence(const char *dir) {
        struct vpiv *c = open_card(dir);
        CHECK_RC(verify(c, 0x80, "000000"), 0x63C2);
        CHECK_RC(two_pins(c, 0x24, 0x81, "12345678", "11223344"), 0x9000);
        CHECK_OK(vpiv_save(c));
        vpiv_free(c);
        c = open_card(dir);
        CHECK_RC(verify(c, 0x80, NULL), 0x63C2);
        CHECK_RC(two_pins(c, 0x2C, 0x80, "11223344", "654321"), 0x9000);
        CHECK_OK(vpiv_save(c));
        vpiv_free(c);
        c = open_card(dir);
        CHECK_RC(verify(c, 0x80, "654321"), 0x9000);
        vpiv_free(c);
        /* Bad directories: a clear error, never a crash. */
        char *err = NULL;
        struct vpiv *x = NULL;
        CHECK(vpiv_new("/nonexistent/vpiv", &x, &err) < 0 && err && !x);
        free(err);
        char bad[1200], cmd[4096];
        snprintf(bad, sizeof bad, "%s/bad", unit_tmpdir);
        snprintf(cmd, sizeof cmd, "mkdir -p '%s' && echo 'pin = 12' > '%s/card.conf'", bad, bad);
        CHECK_RC(system(cmd), 0);
        CHECK_RC(vpiv_new(bad, &x, &err), -EINVAL);
        CHECK(err && !strstr(err, "= 12"));
        free(err);
        snprintf(cmd, sizeof cmd, "echo 'not a key' > '%s/card.conf' && rm -f '%s/card.conf' && echo junk > '%s/9a.key.pem'",
                 bad, bad, bad);
        CHECK_RC(system(cmd), 0);
        CHECK_RC(vpiv_new(bad, &x, &err), -EINVAL);
        free(err);
}

int main(void) {
        const char *tmp = unit_tmpdir_new();
        snprintf(dir_a, sizeof dir_a, "%s/card", tmp);
        make_card(dir_a, NULL);
        struct vpiv *c = open_card(dir_a);

        test_select_and_atr(c);
        test_get_data(c, dir_a);
        test_response_chaining(c);
        test_sign(c, dir_a);
        test_pin(c);
        test_mgmt_3des(c);
        test_chaining_and_errors(c);
        vpiv_free(c);
        test_mgmt_aes();
        test_generate(dir_a);
        test_put_data(dir_a);
        test_persistence(dir_a);
        printf("vpiv: all tests passed\n");
        return 0;
}
