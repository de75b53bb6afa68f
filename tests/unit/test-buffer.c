/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* nbuf: big-endian round trips, blobs with the NULL marker, sticky failure,
 * the hard cap. */
#include "unit.h"

#include "common/buffer.h"

static void test_roundtrip(void) {
        struct nbuf b;
        nbuf_init(&b, 1024);
        nbuf_put_u8(&b, 0xab);
        nbuf_put_u16(&b, 0x1234);
        nbuf_put_u32(&b, 0xdeadbeef);
        nbuf_put_u64(&b, UINT64_C(0x0102030405060708));
        nbuf_put_blob(&b, "hello", 5);
        nbuf_put_blob(&b, "", 0);
        nbuf_put_blob(&b, NULL, 0);
        nbuf_put_str(&b, "str");
        CHECK(!nbuf_failed(&b));
        /* Big-endian on the wire. */
        CHECK(b.data[0] == 0xab && b.data[1] == 0x12 && b.data[2] == 0x34);
        CHECK(b.data[3] == 0xde && b.data[6] == 0xef);
        CHECK(b.data[7] == 0x01 && b.data[14] == 0x08);

        uint8_t u8;
        uint16_t u16;
        uint32_t u32;
        uint64_t u64;
        const uint8_t *p;
        size_t n;
        CHECK(nbuf_get_u8(&b, &u8) && u8 == 0xab);
        CHECK(nbuf_get_u16(&b, &u16) && u16 == 0x1234);
        CHECK(nbuf_get_u32(&b, &u32) && u32 == 0xdeadbeef);
        CHECK(nbuf_get_u64(&b, &u64) && u64 == UINT64_C(0x0102030405060708));
        CHECK(nbuf_get_blob(&b, &p, &n) && n == 5 && memcmp(p, "hello", 5) == 0);
        /* Empty blob: non-NULL pointer, length 0; NULL marker: NULL pointer. */
        CHECK(nbuf_get_blob(&b, &p, &n) && n == 0 && p != NULL);
        CHECK(nbuf_get_blob(&b, &p, &n) && n == 0 && p == NULL);
        CHECK(nbuf_get_blob(&b, &p, &n) && n == 3 && memcmp(p, "str", 3) == 0);
        CHECK(nbuf_remaining(&b) == 0);
        CHECK(!nbuf_failed(&b));
        /* Reading past the end fails, and the failure sticks. */
        CHECK(!nbuf_get_u8(&b, &u8));
        CHECK(nbuf_failed(&b));
        nbuf_done(&b);
}

static void test_truncated_blob(void) {
        /* A blob that claims more bytes than there are. */
        const uint8_t raw[] = { 0x00, 0x00, 0x00, 0x10, 'a', 'b' };
        struct nbuf b;
        const uint8_t *p;
        size_t n;
        nbuf_init_const(&b, raw, sizeof raw);
        CHECK(!nbuf_get_blob(&b, &p, &n));
        CHECK(nbuf_failed(&b));
        /* Sticky: even a 1-byte read now fails. */
        uint8_t u8;
        CHECK(!nbuf_get_u8(&b, &u8));
}

static void test_cap(void) {
        struct nbuf b;
        nbuf_init(&b, 8);
        nbuf_put_u32(&b, 1);
        nbuf_put_u32(&b, 2);
        CHECK(!nbuf_failed(&b));
        CHECK(b.len == 8);
        nbuf_put_u8(&b, 3);
        CHECK(nbuf_failed(&b));
        CHECK(b.len <= 8);
        /* Failed: later puts do nothing. */
        size_t len = b.len;
        nbuf_put_u8(&b, 4);
        CHECK(b.len == len);
        nbuf_reset(&b);
        CHECK(!nbuf_failed(&b) && b.len == 0);
        nbuf_put_u64(&b, 7);
        CHECK(!nbuf_failed(&b));
        nbuf_done(&b);

        /* A huge blob length is refused, never allocated. */
        nbuf_init(&b, 64);
        CHECK(nbuf_append_space(&b, SIZE_MAX / 2) == NULL);
        CHECK(nbuf_failed(&b));
        nbuf_done(&b);
}

static void test_set_u32_at(void) {
        struct nbuf b;
        uint32_t v;
        nbuf_init(&b, 64);
        nbuf_put_u32(&b, 0);
        nbuf_put_u32(&b, 9);
        nbuf_set_u32_at(&b, 0, 0xcafebabe);
        CHECK(nbuf_get_u32(&b, &v) && v == 0xcafebabe);
        CHECK(nbuf_get_u32(&b, &v) && v == 9);
        nbuf_set_u32_at(&b, 6, 1); /* would run past the end */
        CHECK(nbuf_failed(&b));
        nbuf_done(&b);
}

int main(void) {
        test_roundtrip();
        test_truncated_blob();
        test_cap();
        test_set_u32_at();
        return 0;
}
