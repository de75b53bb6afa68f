/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzz target: the object list the module keeps (pkcs11/cache.c,
 * mcache_parse_objects: the reply of WIRE_OP_GET_OBJECTS), and the answers
 * given from it.  A list that parses must serialize back to the same bytes,
 * and C_GetAttributeValue and template matching on its objects must keep
 * PKCS#11's rules (checked by assertions). */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/attrs.h"
#include "common/buffer.h"
#include "common/wire.h"
#include "pkcs11/cache.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct mcache_obj *v = NULL;
        size_t n = 0;
        if (mcache_parse_objects(data, size, &v, &n) < 0)
                return 0;
        struct nbuf again;
        nbuf_init(&again, WIRE_FRAME_MAX * 16);
        nbuf_put_u32(&again, (uint32_t)n);
        for (size_t i = 0; i < n; i++) {
                struct nbuf one;
                nbuf_init(&one, WIRE_FRAME_MAX * 16);
                nattrs_serialize(&v[i].attrs, &one);
                nbuf_put_u64(&again, v[i].handle);
                nbuf_put_blob(&again, one.data, one.len);
                nbuf_done(&one);

                /* Every attribute the object has, asked with a length query,
                 * then with exactly that room, then with one byte less. */
                for (size_t j = 0; j < v[i].attrs.n; j++) {
                        const struct nattr *a = &v[i].attrs.v[j];
                        CK_ATTRIBUTE q = { a->type, NULL, 0 };
                        CK_RV rv = nattrs_answer(&v[i].attrs, &q, 1);
                        if (nattrs_is_sensitive(&v[i].attrs, a->type)) {
                                assert(rv == CKR_ATTRIBUTE_SENSITIVE && q.ulValueLen == CK_UNAVAILABLE_INFORMATION);
                                continue;
                        }
                        /* Duplicate types are merged by the parser: the last one counts. */
                        const struct nattr *cur = nattrs_get(&v[i].attrs, a->type);
                        assert(rv == CKR_OK && q.ulValueLen == cur->len);
                        uint8_t *buf = malloc(cur->len + 1);
                        assert(buf);
                        q.pValue = buf;
                        q.ulValueLen = cur->len;
                        assert(nattrs_answer(&v[i].attrs, &q, 1) == CKR_OK && q.ulValueLen == cur->len);
                        assert(cur->len == 0 || memcmp(buf, cur->value, cur->len) == 0);
                        CK_ATTRIBUTE one_attr = { a->type, buf, cur->len };
                        assert(nattrs_match(&v[i].attrs, &one_attr, 1));
                        if (cur->len > 0) {
                                q.ulValueLen = cur->len - 1;
                                assert(nattrs_answer(&v[i].attrs, &q, 1) == CKR_BUFFER_TOO_SMALL &&
                                       q.ulValueLen == CK_UNAVAILABLE_INFORMATION);
                        }
                        free(buf);
                }
        }
        /* Byte-for-byte the same list, unless the input repeated an
         * attribute type within an object (merged) -- then it is shorter. */
        assert(!nbuf_failed(&again));
        assert(again.len <= size);
        nbuf_done(&again);
        mcache_free_objects(v, n);
        return 0;
}
