/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* apdu_transceive() against a scripted card that checks every command it
 * gets: short and extended encodings, command chaining with CLA | 0x10,
 * GET RESPONSE on 61xx, the re-send on 6Cxx, bounded loops, overflow,
 * malformed responses and transport errors; and the BER-TLV parser on
 * well-formed and malformed input. */
#include "drivers/apdu.h"
#include "tests/unit/unit.h"

#define MAX_STEPS 64

/* One expected command and the answer to it. */
struct step {
        uint8_t cmd[300];
        size_t clen;            /* 0: do not check the command */
        uint8_t resp[300];
        size_t rlen;
        int err;                /* transport error instead of an answer */
};

struct script {
        struct apdu_transport base;
        size_t max_data;
        struct step steps[MAX_STEPS];
        size_t n, pos;
        unsigned loop_61;       /* answer 61 01 forever (after pos reaches n) */
};

static int sc_transmit(struct apdu_transport *b, const uint8_t *c, size_t clen, uint8_t *r, size_t rcap, size_t *rlen) {
        struct script *s = (struct script *) b;
        if (s->pos >= s->n) {
                CHECK(s->loop_61);
                r[0] = 0xAA;
                r[1] = 0x61;
                r[2] = 0x01;
                *rlen = 3;
                return 0;
        }
        struct step *st = &s->steps[s->pos++];
        if (st->clen) {
                if (clen != st->clen || memcmp(c, st->cmd, clen) != 0) {
                        fprintf(stderr, "step %zu: unexpected command (%zu bytes):", s->pos - 1, clen);
                        for (size_t i = 0; i < clen && i < 16; i++)
                                fprintf(stderr, " %02x", c[i]);
                        fprintf(stderr, "\n");
                        exit(EXIT_FAILURE);
                }
        }
        if (st->err)
                return st->err;
        CHECK(st->rlen <= rcap);
        memcpy(r, st->resp, st->rlen);
        *rlen = st->rlen;
        return 0;
}

static size_t sc_max_data(struct apdu_transport *b) { return ((struct script *) b)->max_data; }

static const struct apdu_transport_ops sc_ops = { .transmit = sc_transmit, .max_data = sc_max_data };

static void sc_init(struct script *s, size_t max_data) {
        memset(s, 0, sizeof *s);
        s->base.ops = &sc_ops;
        s->max_data = max_data;
}

static void expect(struct script *s, const void *cmd, size_t clen, const void *resp, size_t rlen) {
        CHECK(s->n < MAX_STEPS);
        struct step *st = &s->steps[s->n++];
        memcpy(st->cmd, cmd, clen);
        st->clen = clen;
        memcpy(st->resp, resp, rlen);
        st->rlen = rlen;
}

static void test_simple(void) {
        struct script s;
        uint8_t out[512];
        size_t ol = 0;
        uint16_t sw = 0;

        /* Short: data and Le 256 (00). */
        sc_init(&s, 255);
        expect(&s, "\x00\xA4\x04\x00\x02\xA0\x00\x00", 8, "\x61\x01\x90\x00", 4);
        CHECK_OK(apdu_transceive(&s.base, 0, 0xA4, 4, 0, (const uint8_t *) "\xA0\x00", 2, 256, out, sizeof out, &ol, &sw));
        CHECK(ol == 2 && sw == 0x9000 && out[0] == 0x61);
        /* No Le, a status that is not 9000 is returned, not an error. */
        expect(&s, "\x00\x20\x00\x80", 4, "\x63\xC2", 2);
        CHECK_OK(apdu_transceive(&s.base, 0, 0x20, 0, 0x80, NULL, 0, APDU_LE_NONE, NULL, 0, &ol, &sw));
        CHECK(ol == 0 && sw == 0x63C2);
        /* Extended: Le > 256 on an extended transport: 00 Le1 Le2. */
        sc_init(&s, 65535);
        expect(&s, "\x00\xCB\x3F\xFF\x00\x00\x01\x5C\x00\x00", 10, "\x53\x00\x90\x00", 4);
        CHECK_OK(apdu_transceive(&s.base, 0, 0xCB, 0x3F, 0xFF, (const uint8_t *) "\x5C", 1, APDU_LE_MAX, out,
                                 sizeof out, &ol, &sw));
        CHECK(ol == 2 && sw == 0x9000);
        /* Extended without data: 00 then two Le bytes. */
        expect(&s, "\x00\xCA\x00\x00\x00\x02\x00", 7, "\x90\x00", 2);
        CHECK_OK(apdu_transceive(&s.base, 0, 0xCA, 0, 0, NULL, 0, 512, out, sizeof out, &ol, &sw));
}

static void test_get_response(void) {
        struct script s;
        uint8_t out[16];
        size_t ol = 0;
        uint16_t sw = 0;

        sc_init(&s, 255);
        expect(&s, "\x00\xCB\x3F\xFF\x00", 5, "\x01\x02\x61\x03", 4);
        expect(&s, "\x00\xC0\x00\x00\x03", 5, "\x03\x04\x05\x61\x00", 5);
        expect(&s, "\x00\xC0\x00\x00\x00", 5, "\x06\x90\x00", 3);
        CHECK_OK(apdu_transceive(&s.base, 0, 0xCB, 0x3F, 0xFF, NULL, 0, 256, out, sizeof out, &ol, &sw));
        CHECK(ol == 6 && sw == 0x9000 && memcmp(out, "\x01\x02\x03\x04\x05\x06", 6) == 0);

        /* More than fits: -ENOBUFS, after draining the card. */
        sc_init(&s, 255);
        expect(&s, "\x00\xCB\x3F\xFF\x00", 5, "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0A\x61\x08", 12);
        expect(&s, "\x00\xC0\x00\x00\x08", 5, "\x01\x02\x03\x04\x05\x06\x07\x08\x90\x00", 10);
        CHECK_RC(apdu_transceive(&s.base, 0, 0xCB, 0x3F, 0xFF, NULL, 0, 256, out, sizeof out, &ol, &sw), -ENOBUFS);
        CHECK(s.pos == 2 && sw == 0x9000 && ol == 10);

        /* A card that never stops saying 61xx: bounded, -EIO. */
        sc_init(&s, 255);
        s.loop_61 = 1;
        uint8_t big[4096];
        CHECK_RC(apdu_transceive(&s.base, 0, 0xCB, 0x3F, 0xFF, NULL, 0, 256, big, sizeof big, &ol, &sw), -EIO);
}

static void test_6c(void) {
        struct script s;
        uint8_t out[64];
        size_t ol = 0;
        uint16_t sw = 0;

        sc_init(&s, 255);
        expect(&s, "\x00\xCA\x01\x02\x00", 5, "\x6C\x04", 2);
        expect(&s, "\x00\xCA\x01\x02\x04", 5, "\xDE\xAD\xBE\xEF\x90\x00", 6);
        CHECK_OK(apdu_transceive(&s.base, 0, 0xCA, 1, 2, NULL, 0, 256, out, sizeof out, &ol, &sw));
        CHECK(ol == 4 && sw == 0x9000 && memcmp(out, "\xDE\xAD\xBE\xEF", 4) == 0);
        /* Also for a command that had no Le: one is added. */
        expect(&s, "\x00\x20\x00\x80\x01\x31", 6, "\x6C\x02", 2);
        expect(&s, "\x00\x20\x00\x80\x01\x31\x02", 7, "\x01\x02\x90\x00", 4);
        CHECK_OK(apdu_transceive(&s.base, 0, 0x20, 0, 0x80, (const uint8_t *) "1", 1, APDU_LE_NONE, out, sizeof out,
                                 &ol, &sw));
        CHECK(ol == 2);
        /* Bounded: after three 6Cxx the status is returned as it is. */
        sc_init(&s, 255);
        for (int i = 0; i < 4; i++)
                expect(&s, "", 0, "\x6C\x10", 2);
        CHECK_OK(apdu_transceive(&s.base, 0, 0xCA, 1, 2, NULL, 0, 256, out, sizeof out, &ol, &sw));
        CHECK(sw == 0x6C10 && s.pos == 4);
}

static void test_chaining(void) {
        struct script s;
        uint8_t data[600], cmd[300], out[16];
        size_t ol = 0;
        uint16_t sw = 0;
        for (size_t i = 0; i < sizeof data; i++)
                data[i] = (uint8_t) i;

        /* 600 bytes on a short reader: 255 + 255 (CLA 10) + 90. */
        sc_init(&s, 255);
        for (size_t off = 0; off < 600; off += 255) {
                size_t n = 600 - off > 255 ? 255 : 600 - off;
                cmd[0] = off + n < 600 ? 0x10 : 0x00;
                memcpy(cmd + 1, "\xDB\x3F\xFF", 3);
                cmd[4] = (uint8_t) n;
                memcpy(cmd + 5, data + off, n);
                expect(&s, cmd, 5 + n, "\x90\x00", 2);
        }
        CHECK_OK(apdu_transceive(&s.base, 0, 0xDB, 0x3F, 0xFF, data, sizeof data, APDU_LE_NONE, out, sizeof out, &ol,
                                 &sw));
        CHECK(sw == 0x9000 && s.pos == 3);

        /* An error in the middle ends the chain with that status. */
        sc_init(&s, 255);
        expect(&s, "", 0, "\x90\x00", 2);
        expect(&s, "", 0, "\x6A\x84", 2);
        CHECK_OK(apdu_transceive(&s.base, 0, 0xDB, 0x3F, 0xFF, data, sizeof data, APDU_LE_NONE, out, sizeof out, &ol,
                                 &sw));
        CHECK(sw == 0x6A84 && s.pos == 2 && ol == 0);

        /* An extended reader sends it in one APDU: 00 Lc1 Lc2. */
        sc_init(&s, 65535);
        s.steps[0].clen = 0;
        expect(&s, "", 0, "\x90\x00", 2);
        CHECK_OK(apdu_transceive(&s.base, 0, 0xDB, 0x3F, 0xFF, data, sizeof data, APDU_LE_NONE, out, sizeof out, &ol,
                                 &sw));
        CHECK(s.pos == 1);
}

static void test_errors(void) {
        struct script s;
        uint8_t out[16];
        size_t ol = 0;
        uint16_t sw = 0;

        sc_init(&s, 255);
        expect(&s, "", 0, "\x90", 1); /* one byte: no status word */
        CHECK_RC(apdu_transceive(&s.base, 0, 0xCA, 0, 0, NULL, 0, 256, out, sizeof out, &ol, &sw), -EIO);
        s.steps[s.n].err = -ENODEV;
        s.n++;
        CHECK_RC(apdu_transceive(&s.base, 0, 0xCA, 0, 0, NULL, 0, 256, out, sizeof out, &ol, &sw), -ENODEV);
        s.steps[s.n].err = -EPROTO;
        s.n++;
        CHECK_RC(apdu_transceive(&s.base, 0, 0xCA, 0, 0, NULL, 0, 256, out, sizeof out, &ol, &sw), -EIO);
        s.steps[s.n].err = -ETIMEDOUT;
        s.n++;
        CHECK_RC(apdu_transceive(&s.base, 0, 0xCA, 0, 0, NULL, 0, 256, out, sizeof out, &ol, &sw), -ETIMEDOUT);
        /* Arguments. */
        CHECK_RC(apdu_transceive(NULL, 0, 0xCA, 0, 0, NULL, 0, 256, out, sizeof out, &ol, &sw), -EINVAL);
        CHECK_RC(apdu_transceive(&s.base, 0, 0xCA, 0, 0, NULL, 5, 256, out, sizeof out, &ol, &sw), -EINVAL);
        CHECK_RC(apdu_transceive(&s.base, 0, 0xCA, 0, 0, NULL, 0, APDU_LE_MAX + 1, out, sizeof out, &ol, &sw), -EINVAL);
}

static void test_tlv(void) {
        struct apdu_tlv x;
        const uint8_t *p, *end;

        /* Multi-byte tag, long-form length, padding skipped. */
        static const uint8_t a[] = { 0x00, 0x5F, 0xC1, 0x02, 0x81, 0x02, 0xAA, 0xBB, 0xFF, 0x7F, 0x49, 0x03,
                                     0x86, 0x01, 0x04 };
        p = a;
        end = a + sizeof a;
        CHECK_OK(apdu_tlv_next(&p, end, &x));
        CHECK(x.tag == 0x5FC102 && x.len == 2 && x.value == a + 6 && !x.constructed);
        CHECK_OK(apdu_tlv_next(&p, end, &x));
        CHECK(x.tag == 0x7F49 && x.len == 3 && x.constructed);
        CHECK_RC(apdu_tlv_next(&p, end, &x), -ENODATA);
        CHECK_OK(apdu_tlv_find(a, sizeof a, 0x7F49, &x));
        struct apdu_tlv y;
        CHECK_OK(apdu_tlv_find(x.value, x.len, 0x86, &y));
        CHECK(y.len == 1 && y.value[0] == 0x04);
        CHECK_RC(apdu_tlv_find(a, sizeof a, 0x53, &x), -ENOENT);

        /* Malformed: value past the end, truncated tag, truncated length,
         * indefinite length, 5 length bytes, a tag of 5 bytes. */
        static const struct {
                uint8_t b[8];
                size_t n;
        } bad[] = {
                { { 0x53, 0x05, 0x01 }, 3 },
                { { 0x5F, 0xC1 }, 2 },
                { { 0x53 }, 1 },
                { { 0x53, 0x82, 0x01 }, 3 },
                { { 0x30, 0x80, 0x00, 0x00 }, 4 },
                { { 0x53, 0x85, 0, 0, 0, 0, 1 }, 7 },
                { { 0x5F, 0x81, 0x81, 0x81, 0x01, 0x00 }, 6 },
                { { 0x53, 0x84, 0xFF, 0xFF, 0xFF, 0xFF }, 6 },
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                p = bad[i].b;
                CHECK_RC(apdu_tlv_next(&p, bad[i].b + bad[i].n, &x), -EBADMSG);
                CHECK_RC(apdu_tlv_find(bad[i].b, bad[i].n, 0x01, &x), -EBADMSG);
        }

        /* Headers round-trip through the parser. */
        static const size_t lens[] = { 0, 1, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x10000 };
        static const uint32_t tags[] = { 0x53, 0x7F49, 0x5FC105 };
        uint8_t *buf = malloc(0x10000 + 16);
        CHECK(buf);
        for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++)
                for (size_t j = 0; j < 3; j++) {
                        size_t h = apdu_tlv_put_header(buf, tags[j], lens[i]);
                        memset(buf + h, 0x11, lens[i]);
                        p = buf;
                        CHECK_OK(apdu_tlv_next(&p, buf + h + lens[i], &x));
                        CHECK(x.tag == tags[j] && x.len == lens[i] && p == buf + h + lens[i]);
                }
        free(buf);
}

int main(void) {
        test_simple();
        test_get_response();
        test_6c();
        test_chaining();
        test_errors();
        test_tlv();
        printf("apdu: all tests passed\n");
        return 0;
}
