/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* daemon/dispatch.c against frames no honest module sends: trailing bytes,
 * truncated fields, bad markers, wrong flags, huge capacities.  Every one
 * must get a well-formed reply (an error reply for undecodable requests),
 * and huge output capacities must be capped, not allocated. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "common/wire.h"
#include "coresetup.h"
#include "daemon/core.h"
#include "daemon/dispatch.h"
#include "testutil.h"

static struct core_client *cl;

/* Runs a whole frame through the dispatcher; *rep must be wire_msg_done'd
 * by the caller; returns the reply's flags and first u64 (the CK_RV). */
static bool run(struct nbuf *frame, struct wire_msg *rep, uint16_t *ret_flags, uint64_t *ret_rv,
                uint8_t **ret_copy) {
        struct wire_msg req, rd;
        if (wire_msg_init_read(&req, frame->data, frame->len) < 0)
                return false;
        if (dispatch_p11(cl, &req, rep) < 0)
                return false;
        /* The reply must itself be a valid frame. */
        uint8_t *copy = malloc(rep->buf.len);
        memcpy(copy, rep->buf.data, rep->buf.len);
        if (wire_msg_init_read(&rd, copy, rep->buf.len) < 0 || !(rd.flags & WIRE_F_REPLY) ||
            rd.opnum != req.opnum || rd.id != req.id || !wire_get_u64(&rd, ret_rv)) {
                free(copy);
                return false;
        }
        *ret_flags = rd.flags;
        *ret_copy = copy;
        return true;
}

/* A finished request frame, then extra raw bytes, length re-patched. */
static void append_raw(struct wire_msg *m, const void *p, size_t n) {
        nbuf_put_raw(&m->buf, p, n);
        nbuf_set_u32_at(&m->buf, 0, (uint32_t)(m->buf.len - 4));
}

static void expect_error(struct wire_msg *m, const char *what) {
        struct wire_msg rep;
        uint16_t flags = 0;
        uint64_t rv = 0;
        uint8_t *copy = NULL;
        memset(&rep, 0, sizeof rep);
        if (!run(&m->buf, &rep, &flags, &rv, &copy)) {
                tu_failures++;
                fprintf(stderr, "FAIL: %s: no valid reply\n", what);
        } else if (!(flags & WIRE_F_ERROR) || rv != CKR_ARGUMENTS_BAD) {
                tu_failures++;
                fprintf(stderr, "FAIL: %s: flags 0x%x rv 0x%lx, want an error reply CKR_ARGUMENTS_BAD\n", what,
                        flags, (unsigned long)rv);
        }
        free(copy);
        wire_msg_done(&rep);
        wire_msg_done(m);
}

static CK_SESSION_HANDLE open_session(void) {
        struct wire_msg m, rep;
        uint16_t flags;
        uint64_t rv, h = 0;
        uint8_t *copy = NULL;
        CK_SLOT_ID slot = 0;
        CK_ULONG count = 1;
        CHECK(core_get_slot_list(cl, CK_TRUE, &slot, &count) == CKR_OK && count == 1);
        wire_msg_init_write(&m, WIRE_OP_OPEN_SESSION, 7, 0);
        wire_put_u64(&m, slot);
        wire_put_u64(&m, CKF_SERIAL_SESSION | CKF_RW_SESSION);
        CHECK(wire_msg_finish(&m) == 0);
        memset(&rep, 0, sizeof rep);
        if (run(&m.buf, &rep, &flags, &rv, &copy) && rv == CKR_OK) {
                struct wire_msg rd;
                wire_msg_init_read(&rd, copy, rep.buf.len);
                wire_get_u64(&rd, &rv);
                CHECK(wire_get_u64(&rd, &h) && wire_msg_read_done(&rd) == 0);
        }
        CHECK(h != 0);
        free(copy);
        wire_msg_done(&rep);
        wire_msg_done(&m);
        return h;
}

static void check_malformed(void) {
        struct wire_msg m;
        uint8_t extra = 0;

        /* Trailing byte. */
        wire_msg_init_write(&m, WIRE_OP_GET_SLOT_LIST, 1, 0);
        wire_put_u8(&m, 1);
        wire_put_outreq(&m, false, 16);
        CHECK(wire_msg_finish(&m) == 0);
        append_raw(&m, &extra, 1);
        expect_error(&m, "trailing byte");

        /* Truncated: the 'q' is missing. */
        wire_msg_init_write(&m, WIRE_OP_GET_SLOT_LIST, 2, 0);
        wire_put_u8(&m, 1);
        m.sigp = "";   /* finish without the rest of the signature */
        CHECK(wire_msg_finish(&m) == 0);
        expect_error(&m, "truncated request");

        /* is_null marker that is neither 0 nor 1. */
        wire_msg_init_write(&m, WIRE_OP_GET_SLOT_LIST, 3, 0);
        wire_put_u8(&m, 1);
        m.sigp = "";
        CHECK(wire_msg_finish(&m) == 0);
        uint8_t q[9] = { 2, 0, 0, 0, 0, 0, 0, 0, 16 };
        append_raw(&m, q, sizeof q);
        expect_error(&m, "bad is_null marker");

        /* A blob longer than the frame. */
        wire_msg_init_write(&m, WIRE_OP_LOGIN, 4, 0);
        wire_put_u64(&m, 1);
        wire_put_u64(&m, CKU_USER);
        m.sigp = "";
        CHECK(wire_msg_finish(&m) == 0);
        uint8_t blob[6] = { 0, 0, 0x10, 0, '1', '2' };
        append_raw(&m, blob, sizeof blob);
        expect_error(&m, "blob past the end");

        /* Too many attributes. */
        wire_msg_init_write(&m, WIRE_OP_FIND_OBJECTS_INIT, 5, 0);
        wire_put_u64(&m, 1);
        m.sigp = "";
        CHECK(wire_msg_finish(&m) == 0);
        uint8_t cnt[4] = { 0, 0, 0x08, 0 };   /* 2048 > WIRE_MAX_ATTRS */
        append_raw(&m, cnt, sizeof cnt);
        expect_error(&m, "attribute count over the cap");

        /* A "request" flagged as a reply. */
        wire_msg_init_write(&m, WIRE_OP_GET_SLOT_LIST, 6, 0);
        wire_put_u8(&m, 1);
        wire_put_outreq(&m, true, 0);
        CHECK(wire_msg_finish(&m) == 0);
        m.buf.data[11] = WIRE_F_REPLY;
        expect_error(&m, "reply flag on a request");
}

/* DIGEST of "abc" with the given output request; returns the reply. */
static void digest(CK_SESSION_HANDLE h, bool init, bool is_null, uint64_t cap, uint64_t *ret_rv, uint64_t *ret_len,
                   uint8_t out[32], bool *ret_has) {
        struct wire_msg m, rep, rd;
        uint16_t flags;
        uint64_t rv;
        uint8_t *copy = NULL;
        CK_MECHANISM mech = { CKM_SHA256, NULL, 0 };

        if (init) {
                wire_msg_init_write(&m, WIRE_OP_DIGEST_INIT, 8, 0);
                wire_put_u64(&m, h);
                wire_put_mechanism(&m, &mech);
                CHECK(wire_msg_finish(&m) == 0);
                memset(&rep, 0, sizeof rep);
                CHECK(run(&m.buf, &rep, &flags, &rv, &copy) && rv == CKR_OK);
                free(copy);
                copy = NULL;
                wire_msg_done(&rep);
                wire_msg_done(&m);
        }

        wire_msg_init_write(&m, WIRE_OP_DIGEST, 9, 0);
        wire_put_u64(&m, h);
        wire_put_blob(&m, "abc", 3);
        wire_put_outreq(&m, is_null, cap);
        CHECK(wire_msg_finish(&m) == 0);
        memset(&rep, 0, sizeof rep);
        *ret_has = false;
        if (run(&m.buf, &rep, &flags, &rv, &copy)) {
                const uint8_t *p;
                size_t n;
                wire_msg_init_read(&rd, copy, rep.buf.len);
                wire_get_u64(&rd, ret_rv);
                CHECK(wire_get_outbytes(&rd, ret_len, &p, &n) && wire_msg_read_done(&rd) == 0);
                if (p && n == 32) {
                        memcpy(out, p, 32);
                        *ret_has = true;
                }
        } else
                CHECK(!"digest reply");
        free(copy);
        wire_msg_done(&rep);
        wire_msg_done(&m);
}

static void check_outputs(CK_SESSION_HANDLE h) {
        static const uint8_t abc[32] = { 0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40,
                                         0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17,
                                         0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad };
        uint64_t rv, len;
        uint8_t out[32];
        bool has;

        /* A capacity far beyond anything allocatable is capped. */
        digest(h, true, false, UINT64_C(1) << 50, &rv, &len, out, &has);
        CHECK(rv == CKR_OK && len == 32 && has && memcmp(out, abc, 32) == 0);
        /* Length query: the length, no bytes; the operation goes on. */
        digest(h, true, true, 0, &rv, &len, out, &has);
        CHECK(rv == CKR_OK && len == 32 && !has);
        /* Too small: the length needed, no bytes; still going on. */
        digest(h, false, false, 8, &rv, &len, out, &has);
        CHECK(rv == CKR_BUFFER_TOO_SMALL && len == 32 && !has);
        digest(h, false, false, 32, &rv, &len, out, &has);
        CHECK(rv == CKR_OK && len == 32 && has && memcmp(out, abc, 32) == 0);
}

static void check_attr_caps(CK_SESSION_HANDLE h) {
        struct wire_msg m, rep, rd;
        uint16_t flags;
        uint64_t rv, obj = 0;
        uint8_t *copy = NULL;
        CK_OBJECT_CLASS cls = CKO_DATA;
        CK_BBOOL no = CK_FALSE;
        CK_ATTRIBUTE t[] = {
                { CKA_CLASS, &cls, sizeof cls },
                { CKA_TOKEN, &no, sizeof no },
                { CKA_LABEL, "d", 1 },
                { CKA_VALUE, "value", 5 },
        };

        wire_msg_init_write(&m, WIRE_OP_CREATE_OBJECT, 10, 0);
        wire_put_u64(&m, h);
        wire_put_attrs(&m, t, ELEMENTSOF(t));
        CHECK(wire_msg_finish(&m) == 0);
        memset(&rep, 0, sizeof rep);
        if (run(&m.buf, &rep, &flags, &rv, &copy) && rv == CKR_OK) {
                wire_msg_init_read(&rd, copy, rep.buf.len);
                wire_get_u64(&rd, &rv);
                CHECK(wire_get_u64(&rd, &obj));
        }
        CHECK(obj != 0);
        free(copy);
        wire_msg_done(&rep);
        wire_msg_done(&m);

        /* Huge capacities, a NULL buffer and an unknown attribute. */
        static uint8_t dummy;
        CK_ATTRIBUTE q[] = {
                { CKA_VALUE, &dummy, (CK_ULONG)1 << 40 },
                { CKA_LABEL, NULL, 0 },
                { CKA_APPLICATION, &dummy, (CK_ULONG)1 << 40 },
                { CKA_VENDOR_DEFINED | 0x999, &dummy, 10 },
        };
        wire_msg_init_write(&m, WIRE_OP_GET_ATTRIBUTE_VALUE, 11, 0);
        wire_put_u64(&m, h);
        wire_put_u64(&m, obj);
        wire_put_attr_query(&m, q, ELEMENTSOF(q));
        CHECK(wire_msg_finish(&m) == 0);
        memset(&rep, 0, sizeof rep);
        copy = NULL;
        if (run(&m.buf, &rep, &flags, &rv, &copy)) {
                CK_ATTRIBUTE *r = NULL;
                CK_ULONG n = 0;
                wire_msg_init_read(&rd, copy, rep.buf.len);
                wire_get_u64(&rd, &rv);
                CHECK(rv == CKR_ATTRIBUTE_TYPE_INVALID);
                CHECK(wire_get_attr_result(&rd, &r, &n) && wire_msg_read_done(&rd) == 0 && n == 4);
                if (n == 4) {
                        CHECK(r[0].ulValueLen == 5 && r[0].pValue && memcmp(r[0].pValue, "value", 5) == 0);
                        CHECK(r[1].ulValueLen == 1 && r[1].pValue == NULL);
                        CHECK(r[3].ulValueLen == CK_UNAVAILABLE_INFORMATION && r[3].pValue == NULL);
                }
                free(r);
        } else
                CHECK(!"attribute reply");
        free(copy);
        wire_msg_done(&rep);
        wire_msg_done(&m);
}

int main(void) {
        struct core *core = coresetup_new("dispatch");
        if (!core)
                return 1;
        struct core_peer peer = { .pid = getpid(), .uid = getuid(), .gid = getgid() };
        if (core_client_new(core, &peer, &cl) < 0) {
                coresetup_free();
                return 1;
        }
        check_malformed();
        CK_SESSION_HANDLE h = open_session();
        if (h) {
                check_outputs(h);
                check_attr_caps(h);
        }
        cl = core_client_free(cl);
        coresetup_free();
        if (tu_failures) {
                fprintf(stderr, "dispatch-errors: %u check(s) failed\n", tu_failures);
                return 1;
        }
        fprintf(stderr, "dispatch-errors: all checks passed\n");
        return 0;
}
