/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The CCID layer alone (drivers/usb/ccid.c), against a scripted reader:
 * descriptor parsing and verdicts, reply checks (bSeq, slot, type, status
 * mapping), time extension, XfrBlock chaining both ways, ISO command
 * chaining on short-only readers, 61xx/6Cxx with iso_auto. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/usb/ccid.h"

static int failures;
#define CHECK(c)                                                                              \
        do {                                                                                  \
                if (!(c)) {                                                                   \
                        fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c); \
                        failures++;                                                           \
                }                                                                             \
        } while (0)

static void put32(uint8_t *p, uint32_t v) {
        for (int i = 0; i < 4; i++)
                p[i] = (uint8_t)(v >> (8 * i));
}

static void make_desc(uint8_t d[54], uint32_t features, uint32_t max_msg) {
        memset(d, 0, 54);
        d[0] = 54;
        d[1] = 0x21;
        d[2] = 0x10;
        d[3] = 0x01;
        put32(d + 6, 2);
        put32(d + 40, features);
        put32(d + 44, max_msg);
        d[48] = 0xFF;
        d[49] = 0xFF;
}

/* ------------------------------------------------------- scripted reader */

#define MAXQ 32
struct fake {
        /* Replies to hand out, in order; bSeq patched to the last one sent
         * unless seq_offset says otherwise. */
        uint8_t *rep[MAXQ];
        size_t rep_len[MAXQ];
        int n, next;
        uint8_t last_seq;
        int seq_offset;
        /* What the host sent. */
        uint8_t sent[MAXQ][1024];
        size_t sent_len[MAXQ];
        int nsent;
};

static void fake_reply(struct fake *f, uint8_t type, uint8_t status, uint8_t error, uint8_t param, const void *data,
                       size_t len) {
        uint8_t *b = malloc(CCID_HDR_LEN + len);
        b[0] = type;
        put32(b + 1, (uint32_t)len);
        b[5] = 0;
        b[6] = 0;
        b[7] = status;
        b[8] = error;
        b[9] = param;
        if (len)
                memcpy(b + CCID_HDR_LEN, data, len);
        f->rep[f->n] = b;
        f->rep_len[f->n++] = CCID_HDR_LEN + len;
}

static void fake_reset(struct fake *f) {
        for (int i = 0; i < f->n; i++)
                free(f->rep[i]);
        memset(f, 0, sizeof *f);
}

static int fsend(void *ud, const uint8_t *buf, size_t len) {
        struct fake *f = ud;
        f->last_seq = buf[6];
        if (f->nsent < MAXQ) {
                size_t n = len < 1024 ? len : 1024;
                memcpy(f->sent[f->nsent], buf, n);
                f->sent_len[f->nsent++] = len;
        }
        return 0;
}

static int frecv(void *ud, uint8_t *buf, size_t cap, size_t *ret) {
        struct fake *f = ud;
        if (f->next >= f->n)
                return -ETIMEDOUT;
        size_t n = f->rep_len[f->next];
        memcpy(buf, f->rep[f->next], n);
        buf[6] = (uint8_t)(f->last_seq + f->seq_offset);
        f->next++;
        *ret = n;
        return 0;
}

static void slot_new(struct ccid_slot *s, struct fake *f, uint32_t features, uint32_t max_msg) {
        uint8_t raw[54];
        struct ccid_desc d;
        make_desc(raw, features, max_msg);
        CHECK(ccid_desc_parse(raw, sizeof raw, &d) == 0);
        struct ccid_io io = { .userdata = f, .send = fsend, .recv = frecv };
        CHECK(ccid_slot_init(s, &io, &d, 0) == 0);
}

static const uint8_t get_data[] = { 0x00, 0xCB, 0x3F, 0xFF, 0x05, 0x5C, 0x03, 0x5F, 0xC1, 0x02, 0x00 };

static void test_descriptors(void) {
        uint8_t raw[64];
        struct ccid_desc d;
        const char *why;
        /* Preceded by another descriptor, as in an interface's extras. */
        raw[0] = 5;
        raw[1] = 0x24;
        make_desc(raw + 5, CCID_FEAT_LEVEL_EXT_APDU | 0xFE, 3072);
        CHECK(ccid_desc_parse(raw, 59, &d) == 0);
        CHECK(d.max_msg_len == 3072 && d.bcd_ccid == 0x0110 && d.protocols == 2);
        CHECK(ccid_desc_verdict(&d, 0, 3, &why) && strstr(why, "extended"));
        CHECK(!ccid_desc_verdict(&d, 2, 3, &why) && strstr(why, "ICCD"));
        CHECK(ccid_desc_parse(raw, 40, &d) == -EBADMSG); /* truncated */
        raw[0] = 0;
        CHECK(ccid_desc_parse(raw, 59, &d) == -EBADMSG); /* zero length */
        raw[0] = 5;
        raw[6] = 0x11;
        CHECK(ccid_desc_parse(raw, 59, &d) == -ENOENT);
        make_desc(raw, CCID_FEAT_LEVEL_TPDU, 271);
        CHECK(ccid_desc_parse(raw, 54, &d) == 0 && !ccid_desc_verdict(&d, 0, 3, &why) && strstr(why, "TPDU"));
        make_desc(raw, 0, 271);
        CHECK(ccid_desc_parse(raw, 54, &d) == 0 && !ccid_desc_verdict(&d, 0, 3, &why) && strstr(why, "character"));
        make_desc(raw, CCID_FEAT_LEVEL_SHORT_APDU, 200);
        CHECK(ccid_desc_parse(raw, 54, &d) == 0 && !ccid_desc_verdict(&d, 0, 3, &why) && strstr(why, "too small"));
        make_desc(raw, CCID_FEAT_LEVEL_SHORT_APDU, 271);
        CHECK(ccid_desc_parse(raw, 54, &d) == 0 && ccid_desc_verdict(&d, 0, 3, &why) && strstr(why, "short"));
}

static void test_replies(void) {
        uint8_t b[16] = { 0x80, 2, 0, 0, 0, 0, 7, 0, 0, 0, 0x90, 0x00 };
        struct ccid_reply r;
        CHECK(ccid_reply_parse(b, 12, &r) == 0 && r.len == 2 && r.seq == 7);
        CHECK(ccid_reply_parse(b, 11, &r) == -EBADMSG); /* dwLength over what came */
        CHECK(ccid_reply_parse(b, 13, &r) == -EBADMSG); /* trailing bytes */
        CHECK(ccid_reply_parse(b, 9, &r) == -EBADMSG);
        CHECK(ccid_reply_parse(b, 12, &r) == 0 && ccid_reply_check(&r, 0x80, 0, 7) == CCID_REPLY_OK);
        CHECK(ccid_reply_check(&r, 0x80, 0, 8) == -EIO); /* bSeq */
        CHECK(ccid_reply_check(&r, 0x81, 0, 7) == -EIO); /* type */
        CHECK(ccid_reply_check(&r, 0x80, 1, 7) == -EIO); /* slot */
        b[7] = 0x80;
        CHECK(ccid_reply_parse(b, 12, &r) == 0 && ccid_reply_check(&r, 0x80, 0, 7) == CCID_REPLY_TIME_EXTENSION);
        b[7] = 0x42;
        b[8] = 0xFE;
        CHECK(ccid_reply_parse(b, 12, &r) == 0 && ccid_reply_check(&r, 0x80, 0, 7) == -ENODEV);
        b[7] = 0x40;
        CHECK(ccid_reply_parse(b, 12, &r) == 0 && ccid_reply_check(&r, 0x80, 0, 7) == -ETIMEDOUT);
        b[8] = 0xFB;
        CHECK(ccid_reply_parse(b, 12, &r) == 0 && ccid_reply_check(&r, 0x80, 0, 7) == -EIO);
        b[8] = 0x00;
        CHECK(ccid_reply_parse(b, 12, &r) == 0 && ccid_reply_check(&r, 0x80, 0, 7) == -ENOTSUP);

        bool present, changed;
        uint8_t n1[] = { 0x50, 0x03 }, n2[] = { 0x50, 0x02 }, n3[] = { 0x50, 0x00, 0x0C };
        CHECK(ccid_notify_parse(n1, 2, 0, &present, &changed) == 0 && present && changed);
        CHECK(ccid_notify_parse(n2, 2, 0, &present, &changed) == 0 && !present && changed);
        CHECK(ccid_notify_parse(n3, 3, 5, &present, &changed) == 0 && present && changed);
        CHECK(ccid_notify_parse(n3, 3, 4, &present, &changed) == 0 && !present && !changed);
        CHECK(ccid_notify_parse(n1, 2, 4, &present, &changed) == -EBADMSG);
        uint8_t hw[] = { 0x51, 0, 1, 2 };
        CHECK(ccid_notify_parse(hw, 4, 0, &present, &changed) == -ENOMSG);
}

static void test_exchange(void) {
        struct fake f = { 0 };
        struct ccid_slot s;
        uint8_t r[70000];
        size_t n = 0;

        /* Power on: the ATR; time extensions read through. */
        slot_new(&s, &f, CCID_FEAT_LEVEL_EXT_APDU, 271);
        fake_reply(&f, 0x80, 0x80, 1, 0, NULL, 0);
        fake_reply(&f, 0x80, 0x80, 1, 0, NULL, 0);
        fake_reply(&f, 0x80, 0x00, 0, 0, "\x3B\x80\x80\x01\x01", 5);
        CHECK(ccid_power_on(&s, r, sizeof r, &n) == 0 && n == 5 && r[0] == 0x3B);
        CHECK(s.n_time_ext == 2 && f.sent[0][0] == CCID_PC_TO_RDR_ICC_POWER_ON);
        ccid_slot_done(&s);
        fake_reset(&f);

        /* bSeq increments; a wrong one is an error. */
        slot_new(&s, &f, CCID_FEAT_LEVEL_EXT_APDU, 271);
        fake_reply(&f, 0x80, 0, 0, 0, "\x90\x00", 2);
        fake_reply(&f, 0x80, 0, 0, 0, "\x90\x00", 2);
        CHECK(ccid_transmit(&s, get_data, sizeof get_data, r, sizeof r, &n) == 0 && n == 2);
        f.seq_offset = 1;
        CHECK(ccid_transmit(&s, get_data, sizeof get_data, r, sizeof r, &n) == -EIO);
        CHECK(f.sent[0][6] + 1 == f.sent[1][6]);
        ccid_slot_done(&s);
        fake_reset(&f);

        /* An extended command over 271-byte messages: wLevelParameter 1, 3, 2;
         * the response in parts (bChainParameter 1, 3, 2) asked with 0x10. */
        slot_new(&s, &f, CCID_FEAT_LEVEL_EXT_APDU, 271);
        static uint8_t big[7 + 600 + 2];
        memcpy(big, "\x00\xDB\x3F\xFF\x00\x02\x58", 7);
        for (int i = 0; i < 600; i++)
                big[7 + i] = (uint8_t)i;
        fake_reply(&f, 0x80, 0, 0, 0x10, NULL, 0);
        fake_reply(&f, 0x80, 0, 0, 0x10, NULL, 0);
        static uint8_t part[261];
        memset(part, 0xAB, sizeof part);
        fake_reply(&f, 0x80, 0, 0, 0x01, part, 261);
        fake_reply(&f, 0x80, 0, 0, 0x03, part, 261);
        fake_reply(&f, 0x80, 0, 0, 0x02, "\xAB\x90\x00", 3);
        CHECK(ccid_transmit(&s, big, sizeof big, r, sizeof r, &n) == 0);
        CHECK(n == 261 * 2 + 3 && r[n - 2] == 0x90 && s.n_xfr_chained == 1);
        CHECK(f.nsent == 5);
        CHECK(f.sent[0][8] == 1 && f.sent[1][8] == 3 && f.sent[2][8] == 2 && f.sent[3][8] == 0x10 &&
              f.sent[4][8] == 0x10);
        CHECK(f.sent_len[0] == 271 && f.sent_len[1] == 271 && f.sent_len[2] == 10 + sizeof big - 2 * 261);
        CHECK(f.sent[1][10] == big[261] && f.sent[2][10] == big[522]);
        ccid_slot_done(&s);
        fake_reset(&f);

        /* A short-only reader: an extended APDU goes as ISO command chaining. */
        slot_new(&s, &f, CCID_FEAT_LEVEL_SHORT_APDU, 271);
        fake_reply(&f, 0x80, 0, 0, 0, "\x90\x00", 2);
        fake_reply(&f, 0x80, 0, 0, 0, "\x90\x00", 2);
        fake_reply(&f, 0x80, 0, 0, 0, "\x01\x90\x00", 3);
        CHECK(ccid_transmit(&s, big, sizeof big, r, sizeof r, &n) == 0 && n == 3 && r[0] == 1);
        CHECK(f.nsent == 3 && s.n_cmd_chained == 1);
        CHECK(f.sent[0][10] == 0x10 && f.sent[0][14] == 255 && f.sent[1][10] == 0x10 && f.sent[2][10] == 0x00);
        CHECK(f.sent[2][14] == 600 - 510 && f.sent_len[2] == 10 + 5 + 90 + 1);
        ccid_slot_done(&s);
        fake_reset(&f);

        /* Raw mode (the transport): 61xx and 6Cxx come back as they are. */
        slot_new(&s, &f, CCID_FEAT_LEVEL_SHORT_APDU, 271);
        fake_reply(&f, 0x80, 0, 0, 0, "\x01\x02\x61\x02", 4);
        CHECK(ccid_transmit(&s, get_data, sizeof get_data, r, sizeof r, &n) == 0 && n == 4 && r[2] == 0x61);
        /* iso_auto: GET RESPONSE joins the parts; 6Cxx resends with Le. */
        s.iso_auto = true;
        fake_reply(&f, 0x80, 0, 0, 0, "\x01\x02\x61\x02", 4);
        fake_reply(&f, 0x80, 0, 0, 0, "\x6C\x02", 2);
        fake_reply(&f, 0x80, 0, 0, 0, "\x03\x04\x90\x00", 4);
        CHECK(ccid_transmit(&s, get_data, sizeof get_data, r, sizeof r, &n) == 0);
        CHECK(n == 6 && !memcmp(r, "\x01\x02\x03\x04\x90\x00", 6));
        CHECK(f.nsent == 4 && f.sent[2][11] == 0xC0 && f.sent[2][14] == 2 && f.sent[3][14] == 2);
        CHECK(s.n_get_response == 1 && s.n_wrong_le == 1);
        /* The response does not fit the caller's buffer. */
        fake_reply(&f, 0x80, 0, 0, 0, "\x01\x02\x03\x04\x90\x00", 6);
        CHECK(ccid_transmit(&s, get_data, sizeof get_data, r, 4, &n) == -ENOBUFS);
        /* Malformed command APDUs never reach the reader. */
        int before = f.nsent;
        CHECK(ccid_transmit(&s, get_data, 3, r, sizeof r, &n) == -EINVAL);
        CHECK(ccid_transmit(&s, get_data, 7, r, sizeof r, &n) == -EINVAL);
        CHECK(f.nsent == before);
        /* No ICC: -ENODEV; a mute card: -ETIMEDOUT; silence: the io's error. */
        fake_reply(&f, 0x80, 0x42, 0xFE, 0, NULL, 0);
        CHECK(ccid_transmit(&s, get_data, sizeof get_data, r, sizeof r, &n) == -ENODEV);
        fake_reply(&f, 0x80, 0x40, 0xFE, 0, NULL, 0);
        CHECK(ccid_transmit(&s, get_data, sizeof get_data, r, sizeof r, &n) == -ETIMEDOUT);
        CHECK(ccid_transmit(&s, get_data, sizeof get_data, r, sizeof r, &n) == -ETIMEDOUT);
        /* A reply of one byte less than dwLength says. */
        fake_reply(&f, 0x80, 0, 0, 0, "\x90\x00", 2);
        f.rep_len[f.n - 1]--;
        CHECK(ccid_transmit(&s, get_data, sizeof get_data, r, sizeof r, &n) == -EIO);
        /* Endless time extensions are bounded. */
        s.max_time_ext = 3;
        for (int i = 0; i < 5; i++)
                fake_reply(&f, 0x80, 0x80, 1, 0, NULL, 0);
        CHECK(ccid_transmit(&s, get_data, sizeof get_data, r, sizeof r, &n) == -ETIMEDOUT);
        ccid_slot_done(&s);
        fake_reset(&f);

        /* GetSlotStatus and GetParameters. */
        slot_new(&s, &f, CCID_FEAT_LEVEL_SHORT_APDU, 271);
        uint8_t icc = 9, proto = 9;
        fake_reply(&f, 0x81, 0x01, 0, 0, NULL, 0);
        CHECK(ccid_slot_status(&s, &icc) == 0 && icc == CCID_ICC_INACTIVE);
        fake_reply(&f, 0x81, 0x42, 0xFE, 0, NULL, 0);
        CHECK(ccid_slot_status(&s, &icc) == 0 && icc == CCID_ICC_ABSENT);
        fake_reply(&f, 0x82, 0x00, 0, 1, "\x11\x10\xFE\x00\x00\xFE\x00", 7);
        CHECK(ccid_get_parameters(&s, &proto, NULL, 0, NULL) == 0 && proto == 1);
        fake_reply(&f, 0x81, 0x40, 0x00, 0, NULL, 0);
        CHECK(ccid_get_parameters(&s, &proto, NULL, 0, NULL) == -ENOTSUP);
        ccid_slot_done(&s);
        fake_reset(&f);
}

int main(void) {
        test_descriptors();
        test_replies();
        test_exchange();
        if (failures) {
                fprintf(stderr, "test-ccid: %d failures\n", failures);
                return 1;
        }
        printf("test-ccid: OK\n");
        return 0;
}
