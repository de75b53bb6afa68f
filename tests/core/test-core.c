/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The core's PKCS#11 semantics against a scripted in-memory driver: slot
 * ids kept across removal, per-client login, private object visibility,
 * sessions closed by removal and by the client going away, events, output
 * buffer conventions, and errno -> CK_RV translation. */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/core.h"

static int failures;
#define CHECK(cond)                                                                     \
        do {                                                                            \
                if (!(cond)) {                                                          \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
                        failures++;                                                     \
                }                                                                       \
        } while (0)
#define CHECK_RV(expr, want)                                                            \
        do {                                                                            \
                CK_RV _rv = (expr);                                                     \
                if (_rv != (CK_RV)(want)) {                                             \
                        fprintf(stderr, "%s:%d: %s = 0x%lx, want 0x%lx\n", __FILE__, __LINE__, #expr, \
                                (unsigned long)_rv, (unsigned long)(want));             \
                        failures++;                                                     \
                }                                                                       \
        } while (0)

/* ---- a fake token: one public cert-like data object, one private key ---- */

struct token {
        int logged_in;     /* number of driver-level logins outstanding */
        int logouts;
        int loads;
        int signs;
        int freed_flag;
        int *freed;
};

static int fake_info(struct token *t, struct token_desc *d) {
        memset(d, 0, sizeof *d);
        strcpy(d->label, "fake");
        strcpy(d->manufacturer, "test");
        strcpy(d->model, "fake");
        strcpy(d->serial, "0001");
        d->kind = "soft";
        d->flags = CKF_LOGIN_REQUIRED | CKF_USER_PIN_INITIALIZED | CKF_TOKEN_INITIALIZED;
        d->min_pin = 4;
        d->max_pin = 64;
        return 0;
}

static const struct driver_mech fake_mechs[] = {
        { CKM_ECDSA, 256, 384, CKF_SIGN },
};

static int fake_mechs_fn(struct token *t, const struct driver_mech **ret, size_t *n) {
        *ret = fake_mechs;
        *n = 1;
        return 0;
}

static int fake_load(struct token *t, struct dobj **ret, size_t *n) {
        t->loads++;
        struct dobj *v = calloc(2, sizeof *v);
        v[0].id = 1;
        nattrs_set_ulong(&v[0].attrs, CKA_CLASS, CKO_DATA);
        nattrs_set_bool(&v[0].attrs, CKA_PRIVATE, false);
        nattrs_set(&v[0].attrs, CKA_LABEL, "pub", 3);
        v[1].id = 2;
        nattrs_set_ulong(&v[1].attrs, CKA_CLASS, CKO_PRIVATE_KEY);
        nattrs_set_ulong(&v[1].attrs, CKA_KEY_TYPE, CKK_EC);
        nattrs_set_bool(&v[1].attrs, CKA_PRIVATE, true);
        nattrs_set_bool(&v[1].attrs, CKA_SIGN, true);
        nattrs_set(&v[1].attrs, CKA_LABEL, "key", 3);
        *ret = v;
        *n = 2;
        return 0;
}

static int fake_login(struct token *t, CK_USER_TYPE u, const char *pin, size_t len) {
        if (len != 6 || memcmp(pin, "123456", 6) != 0)
                return -EACCES;
        t->logged_in++;
        return 0;
}

static int fake_logout(struct token *t) {
        t->logouts++;
        t->logged_in = 0;
        return 0;
}

static int fake_sign(struct token *t, uint64_t key, const CK_MECHANISM *m, const uint8_t *in, size_t in_len,
                     uint8_t *out, size_t *outlen) {
        if (!out) {
                *outlen = 64;
                return 0;
        }
        if (*outlen < 64) {
                *outlen = 64;
                return -ENOBUFS;
        }
        t->signs++;
        memset(out, 0xab, 64);
        *outlen = 64;
        return 0;
}

static int fake_create(struct token *t, const CK_ATTRIBUTE *tmpl, CK_ULONG n, bool persistent, struct dobj *ret) {
        static uint64_t next = 100;
        ret->id = next++;
        return nattrs_from_template(&ret->attrs, tmpl, n);
}

static int fake_destroy(struct token *t, uint64_t id) {
        return 0;
}

static void fake_free(struct token *t) {
        if (t->freed)
                (*t->freed)++;
        free(t);
}

static const struct driver_ops fake_ops = {
        .name = "fake",
        .get_info = fake_info,
        .get_mechanisms = fake_mechs_fn,
        .load_objects = fake_load,
        .login = fake_login,
        .logout = fake_logout,
        .create_object = fake_create,
        .destroy_object = fake_destroy,
        .sign = fake_sign,
        .free = fake_free,
};

static int events[16];
static void on_event(void *ud, enum wire_event ev, CK_SLOT_ID slot) {
        if ((unsigned)ev < 16)
                events[ev]++;
}

static CK_ULONG count_objects(struct core_client *cl, CK_SESSION_HANDLE s) {
        CK_OBJECT_HANDLE h[8];
        CK_ULONG n = 0;
        CK_RV rv = core_find_objects_init(cl, s, NULL, 0);
        if (rv != CKR_OK)
                return (CK_ULONG)-1;
        core_find_objects(cl, s, h, 8, &n);
        core_find_objects_final(cl, s);
        return n;
}

static CK_OBJECT_HANDLE find_label(struct core_client *cl, CK_SESSION_HANDLE s, const char *label) {
        CK_ATTRIBUTE t = { CKA_LABEL, (void *)label, strlen(label) };
        CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
        CK_ULONG n = 0;
        core_find_objects_init(cl, s, &t, 1);
        core_find_objects(cl, s, &h, 1, &n);
        core_find_objects_final(cl, s);
        return n == 1 ? h : CK_INVALID_HANDLE;
}

int main(void) {
        struct core *c;
        assert(core_new(&c) == 0);
        core_set_event_sink(c, on_event, NULL);
        int freed = 0;
        struct token *t = calloc(1, sizeof *t);
        t->freed = &freed;
        CK_SLOT_ID slot;
        CHECK(core_add_token(c, &fake_ops, t, "fake:1", &slot) == 0);
        CHECK(events[WIRE_EV_SLOT_ADDED] == 1);

        struct core_client *a, *b;
        struct core_peer pa = { .pid = 100 }, pb = { .pid = 200 };
        assert(core_client_new(c, &pa, &a) == 0);
        assert(core_client_new(c, &pb, &b) == 0);

        /* Slot list and length queries. */
        CK_ULONG n = 0;
        CHECK_RV(core_get_slot_list(a, CK_TRUE, NULL, &n), CKR_OK);
        CHECK(n == 1);
        CK_SLOT_ID list[1];
        n = 0;
        CHECK_RV(core_get_slot_list(a, CK_TRUE, list, &n), CKR_BUFFER_TOO_SMALL);
        CHECK(n == 1);
        CHECK_RV(core_get_slot_list(a, CK_TRUE, list, &n), CKR_OK);
        CHECK(list[0] == slot);

        /* Mechanisms: the raw one plus the combined ones built on it and digests. */
        CK_MECHANISM_INFO mi;
        CHECK_RV(core_get_mechanism_info(a, slot, CKM_ECDSA_SHA256, &mi), CKR_OK);
        CHECK(mi.flags & CKF_SIGN);
        CHECK(mi.flags & CKF_VERIFY);
        CHECK_RV(core_get_mechanism_info(a, slot, CKM_SHA256, &mi), CKR_OK);
        CHECK_RV(core_get_mechanism_info(a, slot, CKM_RSA_PKCS, &mi), CKR_MECHANISM_INVALID);

        CK_SESSION_HANDLE sa, sb;
        CHECK_RV(core_open_session(a, slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, &sa), CKR_OK);
        CHECK_RV(core_open_session(b, slot, CKF_SERIAL_SESSION, &sb), CKR_OK);
        CHECK_RV(core_open_session(a, slot, 0, &sa), CKR_SESSION_PARALLEL_NOT_SUPPORTED);
        /* Another client's session handle is not ours. */
        CK_SESSION_INFO si;
        CHECK_RV(core_get_session_info(b, sa, &si), CKR_SESSION_HANDLE_INVALID);

        /* Private objects hidden before login. */
        CHECK(count_objects(a, sa) == 1);
        CHECK_RV(core_login(a, sa, CKU_USER, (CK_UTF8CHAR_PTR) "000000", 6), CKR_PIN_INCORRECT);
        CHECK_RV(core_login(a, sa, CKU_USER, (CK_UTF8CHAR_PTR) "123456", 6), CKR_OK);
        CHECK_RV(core_login(a, sa, CKU_USER, (CK_UTF8CHAR_PTR) "123456", 6), CKR_USER_ALREADY_LOGGED_IN);
        CHECK(count_objects(a, sa) == 2);
        CHECK_RV(core_get_session_info(a, sa, &si), CKR_OK);
        CHECK(si.state == CKS_RW_USER_FUNCTIONS);

        /* Per-client login: b sees no private object and cannot use the key. */
        CHECK(count_objects(b, sb) == 1);
        CHECK_RV(core_get_session_info(b, sb, &si), CKR_OK);
        CHECK(si.state == CKS_RO_PUBLIC_SESSION);
        CK_OBJECT_HANDLE key = find_label(a, sa, "key");
        CHECK(key != CK_INVALID_HANDLE);
        CK_MECHANISM mech = { CKM_ECDSA, NULL, 0 };
        CHECK_RV(core_sign_init(b, sb, &mech, key), CKR_KEY_HANDLE_INVALID);

        /* Output conventions: NULL is a length query, a small buffer keeps
         * the operation, then the real call ends it. */
        uint8_t sig[64];
        CK_ULONG siglen = 0;
        CHECK_RV(core_sign_init(a, sa, &mech, key), CKR_OK);
        CHECK_RV(core_sign_init(a, sa, &mech, key), CKR_OPERATION_ACTIVE);
        CHECK_RV(core_sign(a, sa, (CK_BYTE_PTR) "0123456789abcdef0123456789abcdef", 32, NULL, &siglen), CKR_OK);
        CHECK(siglen == 64);
        siglen = 10;
        CHECK_RV(core_sign(a, sa, (CK_BYTE_PTR) "0123456789abcdef0123456789abcdef", 32, sig, &siglen),
                 CKR_BUFFER_TOO_SMALL);
        CHECK(siglen == 64);
        CHECK(t->signs == 0);
        CHECK_RV(core_sign(a, sa, (CK_BYTE_PTR) "0123456789abcdef0123456789abcdef", 32, sig, &siglen), CKR_OK);
        CHECK(t->signs == 1);
        CHECK_RV(core_sign(a, sa, (CK_BYTE_PTR) "x", 1, sig, &siglen), CKR_OPERATION_NOT_INITIALIZED);

        /* Hash-then-sign through the raw mechanism, multi-part. */
        CK_MECHANISM m2 = { CKM_ECDSA_SHA256, NULL, 0 };
        CHECK_RV(core_sign_init(a, sa, &m2, key), CKR_OK);
        CHECK_RV(core_sign_update(a, sa, (CK_BYTE_PTR) "abc", 3), CKR_OK);
        siglen = sizeof sig;
        CHECK_RV(core_sign_final(a, sa, sig, &siglen), CKR_OK);
        CHECK(t->signs == 2);

        /* Attribute rules. */
        uint8_t buf[8];
        CK_ATTRIBUTE at[3] = {
                { CKA_LABEL, NULL, 0 },
                { CKA_PRIVATE_EXPONENT, buf, sizeof buf },
                { CKA_MODULUS, buf, sizeof buf },
        };
        CHECK_RV(core_get_attribute_value(a, sa, key, at, 3), CKR_ATTRIBUTE_SENSITIVE);
        CHECK(at[0].ulValueLen == 3);
        CHECK(at[1].ulValueLen == CK_UNAVAILABLE_INFORMATION);
        CHECK(at[2].ulValueLen == CK_UNAVAILABLE_INFORMATION);
        CK_ATTRIBUTE small = { CKA_LABEL, buf, 2 };
        CHECK_RV(core_get_attribute_value(a, sa, key, &small, 1), CKR_BUFFER_TOO_SMALL);
        CHECK(small.ulValueLen == CK_UNAVAILABLE_INFORMATION);

        /* Session objects: visible to their client only, gone with the session. */
        CK_OBJECT_CLASS cls = CKO_DATA;
        CK_BBOOL f = CK_FALSE;
        CK_ATTRIBUTE tmpl[] = { { CKA_CLASS, &cls, sizeof cls }, { CKA_TOKEN, &f, 1 }, { CKA_LABEL, "tmp", 3 } };
        CK_OBJECT_HANDLE tmp;
        CHECK_RV(core_create_object(b, sb, tmpl, 3, &tmp), CKR_OK);
        CHECK(find_label(b, sb, "tmp") == tmp);
        CHECK(find_label(a, sa, "tmp") == CK_INVALID_HANDLE);
        CHECK_RV(core_close_session(b, sb), CKR_OK);
        CHECK_RV(core_open_session(b, slot, CKF_SERIAL_SESSION, &sb), CKR_OK);
        CHECK(find_label(b, sb, "tmp") == CK_INVALID_HANDLE);
        /* Token objects need a read-write session. */
        CK_BBOOL tr = CK_TRUE;
        tmpl[1].pValue = &tr;
        CHECK_RV(core_create_object(b, sb, tmpl, 3, &tmp), CKR_SESSION_READ_ONLY);

        /* The token info counts the asking client's sessions ("this
         * application", PKCS#11 2.40): a has one read-write session, b one
         * read-only.  Objects loaded once. */
        CK_TOKEN_INFO ti;
        CHECK_RV(core_get_token_info(a, slot, &ti), CKR_OK);
        CHECK(ti.ulSessionCount == 1);
        CHECK(ti.ulRwSessionCount == 1);
        CHECK_RV(core_get_token_info(b, slot, &ti), CKR_OK);
        CHECK(ti.ulSessionCount == 1);
        CHECK(ti.ulRwSessionCount == 0);
        CHECK(t->loads == 1);

        /* Client a goes away: its login is dropped and the token logged out. */
        int logouts = t->logouts;
        core_client_free(a);
        CHECK(t->logouts == logouts + 1);
        CHECK_RV(core_get_token_info(b, slot, &ti), CKR_OK);
        CHECK(ti.ulSessionCount == 1);

        /* Removal: sessions invalid, slot stays, same id when it comes back. */
        CHECK(core_remove_token(c, slot) == 0);
        CHECK(events[WIRE_EV_SLOT_REMOVED] == 1);
        CHECK(freed == 1);
        CHECK_RV(core_get_session_info(b, sb, &si), CKR_SESSION_HANDLE_INVALID);
        CHECK_RV(core_get_token_info(b, slot, &ti), CKR_TOKEN_NOT_PRESENT);
        n = 0;
        CHECK_RV(core_get_slot_list(b, CK_TRUE, NULL, &n), CKR_OK);
        CHECK(n == 0);
        CHECK_RV(core_get_slot_list(b, CK_FALSE, NULL, &n), CKR_OK);
        CHECK(n == 1);
        t = calloc(1, sizeof *t);
        t->freed = &freed;
        CK_SLOT_ID again;
        CHECK(core_add_token(c, &fake_ops, t, "fake:1", &again) == 0);
        CHECK(again == slot);
        CK_SLOT_ID other;
        struct token *t2 = calloc(1, sizeof *t2);
        t2->freed = &freed;
        CHECK(core_add_token(c, &fake_ops, t2, "fake:2", &other) == 0);
        CHECK(other != slot);

        /* errno translation keeps "gone" apart from "failed". */
        CHECK(rv_from_errno(-ENODEV) == CKR_DEVICE_REMOVED);
        CHECK(rv_from_errno(-EIO) == CKR_DEVICE_ERROR);

        core_client_free(b);
        core_free(c);
        CHECK(freed == 3);
        if (failures)
                fprintf(stderr, "%d check(s) failed\n", failures);
        else
                printf("test-core: all checks passed\n");
        return failures ? 1 : 0;
}
