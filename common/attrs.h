/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A PKCS#11 object as a list of attributes that owns its values.
 *
 * Used by the daemon's object cache, the drivers and the soft token's
 * storage.  Values are malloc'd copies; nattrs_done() wipes and frees them.
 * Functions that can fail return 0 or a negative errno and leave the list
 * unchanged on failure. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buffer.h"
#include "p11.h"

struct nattr {
        CK_ATTRIBUTE_TYPE type;
        CK_ULONG len;
        uint8_t *value;  /* NULL iff len == 0 */
};

struct nattrs {
        struct nattr *v;
        size_t n;
        size_t cap;  /* elements allocated at v */
};

void nattrs_init(struct nattrs *a);
void nattrs_done(struct nattrs *a);
/* Make room for at least n attributes in all (grows geometrically, so that
 * adding attributes one by one does not reallocate each time). */
int nattrs_reserve(struct nattrs *a, size_t n);
/* Add, or replace the value of an existing attribute of that type. */
int nattrs_set(struct nattrs *a, CK_ATTRIBUTE_TYPE type, const void *value, size_t len);
int nattrs_set_ulong(struct nattrs *a, CK_ATTRIBUTE_TYPE type, CK_ULONG v);
int nattrs_set_bool(struct nattrs *a, CK_ATTRIBUTE_TYPE type, bool v);
/* Set only if absent. */
int nattrs_default(struct nattrs *a, CK_ATTRIBUTE_TYPE type, const void *value, size_t len);
int nattrs_default_bool(struct nattrs *a, CK_ATTRIBUTE_TYPE type, bool v);
void nattrs_remove(struct nattrs *a, CK_ATTRIBUTE_TYPE type);
const struct nattr *nattrs_get(const struct nattrs *a, CK_ATTRIBUTE_TYPE type);
/* False when absent or of the wrong size. */
bool nattrs_get_ulong(const struct nattrs *a, CK_ATTRIBUTE_TYPE type, CK_ULONG *ret);
/* def when absent or malformed. */
bool nattrs_get_bool(const struct nattrs *a, CK_ATTRIBUTE_TYPE type, bool def);
/* True when every attribute of the template is present with an equal value
 * (an empty template matches everything). */
bool nattrs_match(const struct nattrs *a, const CK_ATTRIBUTE *t, CK_ULONG n);
/* Copy a caller's template (values copied). -EINVAL for a NULL value with a
 * non-zero length. */
int nattrs_from_template(struct nattrs *a, const CK_ATTRIBUTE *t, CK_ULONG n);
int nattrs_copy(struct nattrs *dst, const struct nattrs *src);
/* Whether an attribute of this object is sensitive: never given out (the
 * secret parts of private and secret keys).  Depends only on CKA_CLASS and
 * the type, so that the module can apply the same rule to its copies. */
bool nattrs_is_sensitive(const struct nattrs *a, CK_ATTRIBUTE_TYPE type);
/* C_GetAttributeValue on this object, with PKCS#11's per-attribute rules:
 * sensitive -> CK_UNAVAILABLE_INFORMATION and CKR_ATTRIBUTE_SENSITIVE (which
 * wins over the others); absent -> CK_UNAVAILABLE_INFORMATION and
 * CKR_ATTRIBUTE_TYPE_INVALID; NULL pValue -> the length; too small ->
 * CK_UNAVAILABLE_INFORMATION and CKR_BUFFER_TOO_SMALL.  Every attribute of
 * the template is answered whatever the others give.  One implementation for
 * the daemon and the module's copies, so that both answer alike. */
CK_RV nattrs_answer(const struct nattrs *a, CK_ATTRIBUTE *t, CK_ULONG n);
/* Storage form: u32 count, then (u64 type, blob value) per attribute. */
void nattrs_serialize(const struct nattrs *a, struct nbuf *out);
int nattrs_parse(struct nattrs *a, const uint8_t *p, size_t n);
