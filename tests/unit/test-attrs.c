/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* nattrs: set/replace/default/remove, typed getters, match, templates and
 * the storage form (round trip and malformed input). */
#include "unit.h"

#include "common/attrs.h"

int main(void) {
        struct nattrs a, b;
        CK_ULONG v;
        nattrs_init(&a);
        nattrs_init(&b);

        CHECK_OK(nattrs_set_ulong(&a, CKA_CLASS, CKO_DATA));
        CHECK_OK(nattrs_set(&a, CKA_LABEL, "one", 3));
        CHECK_OK(nattrs_set(&a, CKA_LABEL, "two!", 4)); /* replace */
        CHECK(a.n == 2);
        CHECK(nattrs_get(&a, CKA_LABEL)->len == 4 && memcmp(nattrs_get(&a, CKA_LABEL)->value, "two!", 4) == 0);
        CHECK_OK(nattrs_default(&a, CKA_LABEL, "x", 1)); /* present: unchanged */
        CHECK(nattrs_get(&a, CKA_LABEL)->len == 4);
        CHECK_OK(nattrs_default_bool(&a, CKA_TOKEN, true));
        CHECK(nattrs_get_bool(&a, CKA_TOKEN, false));
        CHECK(nattrs_get_bool(&a, CKA_PRIVATE, true));   /* absent: default */
        CHECK(nattrs_get_ulong(&a, CKA_CLASS, &v) && v == CKO_DATA);
        CHECK(!nattrs_get_ulong(&a, CKA_LABEL, &v));     /* wrong size */
        CHECK_OK(nattrs_set(&a, CKA_VALUE, NULL, 0));    /* empty value */
        CHECK(nattrs_get(&a, CKA_VALUE) && nattrs_get(&a, CKA_VALUE)->len == 0);
        CHECK_RC(nattrs_set(&a, CKA_ID, NULL, 3), -EINVAL);
        CHECK(!nattrs_get(&a, CKA_ID));

        CK_OBJECT_CLASS cls = CKO_DATA;
        CK_ATTRIBUTE m1[] = { { CKA_CLASS, &cls, sizeof cls }, { CKA_LABEL, "two!", 4 } };
        CK_ATTRIBUTE m2[] = { { CKA_LABEL, "two", 3 } };
        CK_ATTRIBUTE m3[] = { { CKA_ID, "", 0 } };
        CHECK(nattrs_match(&a, m1, 2));
        CHECK(nattrs_match(&a, NULL, 0));
        CHECK(!nattrs_match(&a, m2, 1));
        CHECK(!nattrs_match(&a, m3, 1));

        /* Storage round trip. */
        struct nbuf buf;
        nbuf_init(&buf, 1 << 20);
        nattrs_serialize(&a, &buf);
        CHECK(!nbuf_failed(&buf));
        CHECK_OK(nattrs_parse(&b, buf.data, buf.len));
        CHECK(b.n == a.n);
        for (size_t i = 0; i < a.n; i++) {
                const struct nattr *x = nattrs_get(&b, a.v[i].type);
                CHECK(x && x->len == a.v[i].len && (x->len == 0 || memcmp(x->value, a.v[i].value, x->len) == 0));
        }
        /* Truncated and trailing-garbage input fail, and leave b untouched. */
        size_t before = b.n;
        CHECK_RC(nattrs_parse(&b, buf.data, buf.len - 1), -EBADMSG);
        CHECK(b.n == before);
        uint8_t *longer = malloc(buf.len + 1);
        memcpy(longer, buf.data, buf.len);
        longer[buf.len] = 0;
        CHECK_RC(nattrs_parse(&b, longer, buf.len + 1), -EBADMSG);
        free(longer);
        const uint8_t huge[] = { 0xff, 0xff, 0xff, 0xff };
        CHECK_RC(nattrs_parse(&b, huge, sizeof huge), -EBADMSG);
        /* A count the remaining bytes cannot hold is refused before any
         * allocation (each attribute takes at least 12 bytes). */
        const uint8_t many[] = { 0x00, 0x00, 0x00, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
        CHECK_RC(nattrs_parse(&b, many, sizeof many), -EBADMSG);
        nbuf_done(&buf);

        nattrs_remove(&a, CKA_LABEL);
        CHECK(!nattrs_get(&a, CKA_LABEL));
        nattrs_remove(&a, CKA_LABEL); /* absent: no-op */

        CK_ATTRIBUTE bad[] = { { CKA_VALUE, NULL, 5 } };
        CHECK_RC(nattrs_from_template(&b, bad, 1), -EINVAL);
        CHECK_OK(nattrs_from_template(&b, m1, 2));
        CHECK(b.n == 2);
        CHECK_OK(nattrs_copy(&b, &a));
        CHECK(b.n == a.n);

        /* Growth is geometric: 100 attributes added one by one move the
         * array a handful of times, not 100 (issue 13 item 6: one realloc
         * per attribute churned the heap under a client with a
         * use-after-free). */
        struct nattrs g;
        nattrs_init(&g);
        size_t moves = 0, last_cap = 0;
        for (CK_ULONG t = 0; t < 100; t++) {
                CHECK_OK(nattrs_set_ulong(&g, CKA_VENDOR_DEFINED + t, t));
                if (g.cap != last_cap)
                        moves++;
                last_cap = g.cap;
                CHECK(g.cap >= g.n);
        }
        CHECK(g.n == 100 && moves <= 5);
        CHECK_OK(nattrs_reserve(&g, 10)); /* already there: no change */
        CHECK(g.cap == last_cap);
        nattrs_done(&g);
        CHECK(g.cap == 0);

        nattrs_done(&a);
        nattrs_done(&b);
        CHECK(a.n == 0 && a.v == NULL);
        return 0;
}
