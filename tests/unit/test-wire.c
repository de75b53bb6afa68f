/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The wire: message round trips checked against the op table, and the
 * failure cases (signature mismatch, truncated frame, over-cap length,
 * unknown op, trailing bytes, NULL marker vs empty blob). */
#include "unit.h"

#include "common/util.h"
#include "common/wire.h"

static void test_sign_roundtrip(void) {
        struct wire_msg m, r;
        const uint8_t data[] = { 1, 2, 3, 4 };
        wire_msg_init_write(&m, WIRE_OP_SIGN, 42, 0);
        wire_put_u64(&m, 7);                 /* session */
        wire_put_blob(&m, data, sizeof data);
        wire_put_outreq(&m, false, 256);
        CHECK_OK(wire_msg_finish(&m));
        CHECK(m.buf.len > WIRE_HDR_SIZE);

        struct wire_hdr h;
        CHECK_OK(wire_hdr_parse(m.buf.data, &h));
        CHECK(h.len + 4 == m.buf.len && h.id == 42 && h.op == WIRE_OP_SIGN && h.flags == 0);

        CHECK_OK(wire_msg_init_read(&r, m.buf.data, m.buf.len));
        uint64_t sess, cap;
        const uint8_t *p;
        size_t n;
        bool is_null;
        CHECK(wire_get_u64(&r, &sess) && sess == 7);
        CHECK(wire_get_blob(&r, &p, &n) && n == 4 && memcmp(p, data, 4) == 0);
        CHECK(wire_get_outreq(&r, &is_null, &cap) && !is_null && cap == 256);
        CHECK_OK(wire_msg_read_done(&r));
        wire_msg_done(&r);

        /* Reading it back with the wrong type fails the message. */
        CHECK_OK(wire_msg_init_read(&r, m.buf.data, m.buf.len));
        CHECK(!wire_get_blob(&r, &p, &n));
        CHECK(wire_msg_failed(&r));
        CHECK_RC(wire_msg_read_done(&r), -EBADMSG);
        wire_msg_done(&r);

        /* Not reading everything is an error too. */
        CHECK_OK(wire_msg_init_read(&r, m.buf.data, m.buf.len));
        CHECK(wire_get_u64(&r, &sess));
        CHECK_RC(wire_msg_read_done(&r), -EBADMSG);
        wire_msg_done(&r);

        /* Truncated frame: one byte short. */
        CHECK_RC(wire_msg_init_read(&r, m.buf.data, m.buf.len - 1), -EBADMSG);
        wire_msg_done(&r);
        wire_msg_done(&m);
}

static void test_signature_mismatch_write(void) {
        struct wire_msg m;
        wire_msg_init_write(&m, WIRE_OP_SIGN, 1, 0);
        wire_put_blob(&m, "x", 1); /* SIGN starts with 'u' */
        CHECK(wire_msg_failed(&m));
        CHECK(wire_msg_finish(&m) < 0);
        wire_msg_done(&m);

        /* Missing fields: finish refuses. */
        wire_msg_init_write(&m, WIRE_OP_SIGN, 1, 0);
        wire_put_u64(&m, 1);
        CHECK_RC(wire_msg_finish(&m), -EBADMSG);
        wire_msg_done(&m);

        /* Unknown op. */
        wire_msg_init_write(&m, 9999, 1, 0);
        CHECK(wire_msg_finish(&m) < 0);
        wire_msg_done(&m);
}

static void test_header_limits(void) {
        struct wire_hdr h;
        uint8_t hdr[WIRE_HDR_SIZE] = { 0 };
        /* Length under 8: malformed. */
        hdr[3] = 4;
        CHECK_RC(wire_hdr_parse(hdr, &h), -EBADMSG);
        /* Over the cap: refused before any allocation. */
        hdr[0] = 0x7f;
        hdr[1] = 0xff;
        hdr[2] = 0xff;
        hdr[3] = 0xff;
        CHECK_RC(wire_hdr_parse(hdr, &h), -EMSGSIZE);
        uint32_t just = WIRE_FRAME_MAX - 4;
        hdr[0] = (uint8_t) (just >> 24);
        hdr[1] = (uint8_t) (just >> 16);
        hdr[2] = (uint8_t) (just >> 8);
        hdr[3] = (uint8_t) just;
        CHECK_OK(wire_hdr_parse(hdr, &h));
        just++;
        hdr[3] = (uint8_t) just;
        hdr[2] = (uint8_t) (just >> 8);
        hdr[1] = (uint8_t) (just >> 16);
        CHECK_RC(wire_hdr_parse(hdr, &h), -EMSGSIZE);

        /* A frame whose declared length disagrees with its size. */
        struct wire_msg m, r;
        wire_msg_init_write(&m, WIRE_OP_PING, 3, 0);
        CHECK_OK(wire_msg_finish(&m));
        m.buf.data[3] += 1;
        CHECK_RC(wire_msg_init_read(&r, m.buf.data, m.buf.len), -EBADMSG);
        wire_msg_done(&r);
        wire_msg_done(&m);

        /* Unknown op read: id and op kept for the error reply. */
        wire_msg_init_write(&m, WIRE_OP_PING, 77, 0);
        CHECK_OK(wire_msg_finish(&m));
        m.buf.data[8] = 0x7f;
        CHECK_RC(wire_msg_init_read(&r, m.buf.data, m.buf.len), -ENOTSUP);
        CHECK(r.id == 77 && r.opnum == 0x7f00 + WIRE_OP_PING);
        wire_msg_done(&r);
        wire_msg_done(&m);
}

static void test_null_vs_empty(void) {
        struct wire_msg m, r;
        /* GENERATE_RANDOM reply "uz": NULL blob vs empty blob stay distinct. */
        for (int pass = 0; pass < 2; pass++) {
                wire_msg_init_write(&m, WIRE_OP_GENERATE_RANDOM, 5, WIRE_F_REPLY);
                wire_put_u64(&m, CKR_OK);
                wire_put_blob(&m, pass ? "" : NULL, 0);
                CHECK_OK(wire_msg_finish(&m));
                CHECK_OK(wire_msg_init_read(&r, m.buf.data, m.buf.len));
                uint64_t rv;
                const uint8_t *p = (const uint8_t *) "sentinel";
                size_t n = 99;
                CHECK(wire_get_u64(&r, &rv) && rv == CKR_OK);
                CHECK(wire_get_blob(&r, &p, &n));
                CHECK(n == 0);
                CHECK(pass ? p != NULL : p == NULL);
                CHECK_OK(wire_msg_read_done(&r));
                wire_msg_done(&r);
                wire_msg_done(&m);
        }
}

static void test_attrs_and_mechanism(void) {
        struct wire_msg m, r;
        CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
        CK_BBOOL tru = CK_TRUE;
        CK_ATTRIBUTE t[] = {
                { CKA_CLASS, &cls, sizeof cls },
                { CKA_SIGN, &tru, sizeof tru },
                { CKA_LABEL, NULL, 0 },
        };
        CK_RSA_PKCS_PSS_PARAMS pss = { CKM_SHA256, CKG_MGF1_SHA256, 32 };
        CK_MECHANISM mech = { CKM_RSA_PKCS_PSS, &pss, sizeof pss };

        wire_msg_init_write(&m, WIRE_OP_SIGN_INIT, 9, 0);
        wire_put_u64(&m, 1);
        wire_put_mechanism(&m, &mech);
        wire_put_u64(&m, 2);
        CHECK_OK(wire_msg_finish(&m));
        CHECK_OK(wire_msg_init_read(&r, m.buf.data, m.buf.len));
        uint64_t a, b;
        CK_MECHANISM got;
        CHECK(wire_get_u64(&r, &a) && a == 1);
        CHECK(wire_get_mechanism(&r, &got));
        CHECK(got.mechanism == CKM_RSA_PKCS_PSS && got.ulParameterLen == sizeof pss);
        CHECK(memcmp(got.pParameter, &pss, sizeof pss) == 0);
        CHECK(wire_get_u64(&r, &b) && b == 2);
        CHECK_OK(wire_msg_read_done(&r));
        wire_msg_done(&r);
        wire_msg_done(&m);

        wire_msg_init_write(&m, WIRE_OP_CREATE_OBJECT, 10, 0);
        wire_put_u64(&m, 1);
        wire_put_attrs(&m, t, 3);
        CHECK_OK(wire_msg_finish(&m));
        CHECK_OK(wire_msg_init_read(&r, m.buf.data, m.buf.len));
        CK_ATTRIBUTE *gt = NULL;
        CK_ULONG gn = 0;
        CHECK(wire_get_u64(&r, &a));
        CHECK(wire_get_attrs(&r, &gt, &gn));
        CHECK(gn == 3);
        CHECK(gt[0].type == CKA_CLASS && gt[0].ulValueLen == sizeof cls &&
              memcmp(gt[0].pValue, &cls, sizeof cls) == 0);
        CHECK(gt[1].type == CKA_SIGN && gt[1].ulValueLen == 1);
        CHECK(gt[2].type == CKA_LABEL && gt[2].ulValueLen == 0);
        CHECK_OK(wire_msg_read_done(&r));
        free(gt);
        wire_msg_done(&r);
        wire_msg_done(&m);
}

/* Nested templates (CKA_WRAP_TEMPLATE...) are refused by both sides: the
 * decoder must not hand a byte blob to code that expects CK_ATTRIBUTEs. */
static void test_array_attribute_refused(void) {
        struct wire_msg m, r;
        uint8_t junk[16] = { 0 };
        CK_ATTRIBUTE t[] = { { CKA_WRAP_TEMPLATE, junk, sizeof junk } };

        wire_msg_init_write(&m, WIRE_OP_CREATE_OBJECT, 11, 0);
        wire_put_u64(&m, 1);
        wire_put_attrs(&m, t, 1);
        CHECK(wire_msg_finish(&m) < 0);
        wire_msg_done(&m);

        /* Hand-made frame carrying one: CREATE_OBJECT "uA". */
        struct nbuf b;
        nbuf_init(&b, 256);
        nbuf_put_u32(&b, 0);
        nbuf_put_u32(&b, 12);
        nbuf_put_u16(&b, WIRE_OP_CREATE_OBJECT);
        nbuf_put_u16(&b, 0);
        nbuf_put_u64(&b, 1);
        nbuf_put_u32(&b, 1);
        nbuf_put_u64(&b, CKA_WRAP_TEMPLATE);
        nbuf_put_blob(&b, junk, sizeof junk);
        nbuf_set_u32_at(&b, 0, (uint32_t)(b.len - 4));
        CHECK(!nbuf_failed(&b));
        CHECK_OK(wire_msg_init_read(&r, b.data, b.len));
        uint64_t a;
        CK_ATTRIBUTE *gt = NULL;
        CK_ULONG gn = 0;
        CHECK(wire_get_u64(&r, &a));
        CHECK(!wire_get_attrs(&r, &gt, &gn));
        CHECK(gt == NULL);
        CHECK(wire_msg_failed(&r));
        wire_msg_done(&r);
        nbuf_done(&b);
}

/* The op table's derived facts: every op is found by its number and only
 * by it; an op routed by its first argument has a u64 there; the secret
 * replies are exactly the ones that may carry plaintext or key material;
 * kinds follow the number ranges. */
static void test_op_table(void) {
        static const struct {
                uint16_t op;
                const char *name;
        } ops[] = {
#define ROW(name, num, req, rep, kind, route, reply, handler) { num, #name },
                WIRE_OPS(ROW)
#undef ROW
        };
        unsigned found = 0;
        for (unsigned n = 0; n < 65536; n++) {
                const struct wire_op *o = wire_op_lookup((uint16_t)n);
                if (!o)
                        continue;
                found++;
                CHECK(o->op == n);
                bool listed = false;
                for (size_t i = 0; i < ELEMENTSOF(ops); i++)
                        listed |= ops[i].op == n && strcmp(ops[i].name, o->name) == 0;
                CHECK(listed);
                if (o->route == WIRE_ROUTE_SLOT_DEVICE || o->route == WIRE_ROUTE_SESSION ||
                    o->route == WIRE_ROUTE_SESSION_LOAD || o->route == WIRE_ROUTE_SESSION_DEVICE ||
                    o->route == WIRE_ROUTE_SESSION_CPU)
                        CHECK(o->req[0] == 'u');
                CHECK((o->kind == WIRE_KIND_P11) == (n >= 16 && n < 256));
                CHECK((o->kind == WIRE_KIND_MGMT) == (n >= 256));
                CHECK((o->route == WIRE_ROUTE_LOOP) == (o->kind == WIRE_KIND_LOOP || o->kind == WIRE_KIND_PUSH));
        }
        CHECK(found == ELEMENTSOF(ops));
        const uint16_t secret[] = { WIRE_OP_DECRYPT,        WIRE_OP_DECRYPT_UPDATE, WIRE_OP_DECRYPT_FINAL,
                                    WIRE_OP_GET_ATTRIBUTE_VALUE, WIRE_OP_GET_OBJECTS, WIRE_OP_GENERATE_RANDOM,
                                    WIRE_OP_WRAP_KEY };
        unsigned nsecret = 0;
        for (size_t i = 0; i < ELEMENTSOF(ops); i++)
                nsecret += wire_op_lookup(ops[i].op)->secret;
        CHECK(nsecret == ELEMENTSOF(secret));
        for (size_t i = 0; i < ELEMENTSOF(secret); i++)
                CHECK(wire_op_lookup(secret[i])->secret);
        CHECK(wire_op_lookup(WIRE_OP_SIGN)->route == WIRE_ROUTE_SESSION_DEVICE);
        CHECK(wire_op_lookup(WIRE_OP_GET_SLOT_LIST)->route == WIRE_ROUTE_GENERAL);
        CHECK(wire_op_lookup(WIRE_OP_MGMT_STATUS)->kind == WIRE_KIND_MGMT);

        /* The routing peek: the first u64, or -EBADMSG. */
        struct wire_msg m;
        wire_msg_init_write(&m, WIRE_OP_SIGN_INIT, 5, 0);
        wire_put_u64(&m, 0x0102030405060708ull);
        CK_MECHANISM mech = { CKM_ECDSA, NULL, 0 };
        wire_put_mechanism(&m, &mech);
        wire_put_u64(&m, 9);
        CHECK_OK(wire_msg_finish(&m));
        uint64_t v = 0;
        CHECK_OK(wire_frame_first_u64(m.buf.data, m.buf.len, &v));
        CHECK(v == 0x0102030405060708ull);
        CHECK(wire_frame_first_u64(m.buf.data, WIRE_HDR_SIZE + 7, &v) == -EBADMSG);
        wire_msg_done(&m);
        wire_msg_init_write(&m, WIRE_OP_GET_SLOT_LIST, 5, 0);
        wire_put_u8(&m, 1);
        wire_put_outreq(&m, false, 8);
        CHECK_OK(wire_msg_finish(&m));
        CHECK(wire_frame_first_u64(m.buf.data, m.buf.len, &v) == -EBADMSG); /* "yq": no u64 first */
        wire_msg_done(&m);

        /* Error replies echo any op number, known or not. */
        CHECK_OK(wire_error_reply(&m, 999, 77, CKR_FUNCTION_NOT_SUPPORTED));
        struct wire_hdr h;
        CHECK_OK(wire_hdr_parse(m.buf.data, &h));
        CHECK(h.op == 999 && h.id == 77 && h.flags == (WIRE_F_REPLY | WIRE_F_ERROR) && h.len + 4 == m.buf.len);
        CHECK(m.buf.len == WIRE_HDR_SIZE + 8);
        wire_msg_done(&m);
        /* ... but a normal reply or request to an unknown op fails. */
        wire_msg_init_write(&m, 999, 1, WIRE_F_REPLY);
        wire_put_u64(&m, 0);
        CHECK(wire_msg_finish(&m) < 0);
        wire_msg_done(&m);
}

int main(void) {
        test_op_table();
        test_sign_roundtrip();
        test_signature_mismatch_write();
        test_header_limits();
        test_null_vs_empty();
        test_attrs_and_mechanism();
        test_array_attribute_refused();
        return 0;
}
