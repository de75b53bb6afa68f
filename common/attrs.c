/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "attrs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void nattrs_init(struct nattrs *a) {
        a->v = NULL;
        a->n = 0;
        a->cap = 0;
}

void nattrs_done(struct nattrs *a) {
        for (size_t i = 0; i < a->n; i++) {
                if (a->v[i].value)
                        explicit_bzero(a->v[i].value, a->v[i].len);
                free(a->v[i].value);
        }
        free(a->v);
        nattrs_init(a);
}

int nattrs_reserve(struct nattrs *a, size_t n) {
        if (n <= a->cap)
                return 0;
        size_t cap = a->cap ? a->cap : 8;
        while (cap < n)
                cap *= 2;
        if (cap > SIZE_MAX / sizeof *a->v)
                return -ENOMEM;
        struct nattr *nv = realloc(a->v, cap * sizeof *nv);
        if (!nv)
                return -ENOMEM;
        a->v = nv;
        a->cap = cap;
        return 0;
}

static struct nattr *find(const struct nattrs *a, CK_ATTRIBUTE_TYPE type) {
        for (size_t i = 0; i < a->n; i++)
                if (a->v[i].type == type)
                        return &a->v[i];
        return NULL;
}

int nattrs_set(struct nattrs *a, CK_ATTRIBUTE_TYPE type, const void *value, size_t len) {
        uint8_t *copy = NULL;
        if (len) {
                if (!value)
                        return -EINVAL;
                copy = malloc(len);
                if (!copy)
                        return -ENOMEM;
                memcpy(copy, value, len);
        }
        struct nattr *e = find(a, type);
        if (e) {
                if (e->value)
                        explicit_bzero(e->value, e->len);
                free(e->value);
                e->value = copy;
                e->len = len;
                return 0;
        }
        if (nattrs_reserve(a, a->n + 1) < 0) {
                free(copy);
                return -ENOMEM;
        }
        a->v[a->n++] = (struct nattr){ .type = type, .len = len, .value = copy };
        return 0;
}

int nattrs_set_ulong(struct nattrs *a, CK_ATTRIBUTE_TYPE type, CK_ULONG v) {
        return nattrs_set(a, type, &v, sizeof v);
}

int nattrs_set_bool(struct nattrs *a, CK_ATTRIBUTE_TYPE type, bool v) {
        CK_BBOOL b = v ? CK_TRUE : CK_FALSE;
        return nattrs_set(a, type, &b, sizeof b);
}

int nattrs_default(struct nattrs *a, CK_ATTRIBUTE_TYPE type, const void *value, size_t len) {
        if (find(a, type))
                return 0;
        return nattrs_set(a, type, value, len);
}

int nattrs_default_bool(struct nattrs *a, CK_ATTRIBUTE_TYPE type, bool v) {
        CK_BBOOL b = v ? CK_TRUE : CK_FALSE;
        return nattrs_default(a, type, &b, sizeof b);
}

void nattrs_remove(struct nattrs *a, CK_ATTRIBUTE_TYPE type) {
        struct nattr *e = find(a, type);
        if (!e)
                return;
        if (e->value)
                explicit_bzero(e->value, e->len);
        free(e->value);
        size_t i = (size_t)(e - a->v);
        memmove(&a->v[i], &a->v[i + 1], (a->n - i - 1) * sizeof *e);
        a->n--;
}

const struct nattr *nattrs_get(const struct nattrs *a, CK_ATTRIBUTE_TYPE type) {
        return find(a, type);
}

bool nattrs_get_ulong(const struct nattrs *a, CK_ATTRIBUTE_TYPE type, CK_ULONG *ret) {
        const struct nattr *e = find(a, type);
        if (!e || e->len != sizeof(CK_ULONG))
                return false;
        memcpy(ret, e->value, sizeof(CK_ULONG));
        return true;
}

bool nattrs_get_bool(const struct nattrs *a, CK_ATTRIBUTE_TYPE type, bool def) {
        const struct nattr *e = find(a, type);
        if (!e || e->len != sizeof(CK_BBOOL))
                return def;
        return e->value[0] != 0;
}

bool nattrs_match(const struct nattrs *a, const CK_ATTRIBUTE *t, CK_ULONG n) {
        for (CK_ULONG i = 0; i < n; i++) {
                const struct nattr *e = find(a, t[i].type);
                if (!e || e->len != t[i].ulValueLen)
                        return false;
                if (e->len && (!t[i].pValue || memcmp(e->value, t[i].pValue, e->len) != 0))
                        return false;
        }
        return true;
}

bool nattrs_is_sensitive(const struct nattrs *a, CK_ATTRIBUTE_TYPE type) {
        static const CK_ATTRIBUTE_TYPE secret_parts[] = {
                CKA_VALUE,      CKA_PRIVATE_EXPONENT, CKA_PRIME_1,     CKA_PRIME_2,
                CKA_EXPONENT_1, CKA_EXPONENT_2,       CKA_COEFFICIENT,
        };
        CK_ULONG cls;
        if (!nattrs_get_ulong(a, CKA_CLASS, &cls) || (cls != CKO_PRIVATE_KEY && cls != CKO_SECRET_KEY))
                return false;
        for (size_t i = 0; i < sizeof secret_parts / sizeof secret_parts[0]; i++)
                if (secret_parts[i] == type)
                        return true;
        return false;
}

CK_RV nattrs_answer(const struct nattrs *a, CK_ATTRIBUTE *t, CK_ULONG n) {
        CK_RV rv = CKR_OK;
        for (CK_ULONG i = 0; i < n; i++) {
                const struct nattr *e = NULL;
                bool sensitive = nattrs_is_sensitive(a, t[i].type);
                if (sensitive || !(e = find(a, t[i].type))) {
                        t[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
                        if (sensitive)
                                rv = CKR_ATTRIBUTE_SENSITIVE;
                        else if (rv == CKR_OK)
                                rv = CKR_ATTRIBUTE_TYPE_INVALID;
                        continue;
                }
                if (!t[i].pValue)
                        t[i].ulValueLen = e->len;
                else if (t[i].ulValueLen >= e->len) {
                        if (e->len)
                                memcpy(t[i].pValue, e->value, e->len);
                        t[i].ulValueLen = e->len;
                } else {
                        t[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
                        if (rv == CKR_OK)
                                rv = CKR_BUFFER_TOO_SMALL;
                }
        }
        return rv;
}

int nattrs_from_template(struct nattrs *a, const CK_ATTRIBUTE *t, CK_ULONG n) {
        struct nattrs tmp;
        nattrs_init(&tmp);
        if (nattrs_reserve(&tmp, n) < 0)
                return -ENOMEM;
        for (CK_ULONG i = 0; i < n; i++) {
                if (!t[i].pValue && t[i].ulValueLen) {
                        nattrs_done(&tmp);
                        return -EINVAL;
                }
                int r = nattrs_set(&tmp, t[i].type, t[i].pValue, t[i].ulValueLen);
                if (r < 0) {
                        nattrs_done(&tmp);
                        return r;
                }
        }
        nattrs_done(a);
        *a = tmp;
        return 0;
}

int nattrs_copy(struct nattrs *dst, const struct nattrs *src) {
        struct nattrs tmp;
        nattrs_init(&tmp);
        if (nattrs_reserve(&tmp, src->n) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < src->n; i++) {
                int r = nattrs_set(&tmp, src->v[i].type, src->v[i].value, src->v[i].len);
                if (r < 0) {
                        nattrs_done(&tmp);
                        return r;
                }
        }
        nattrs_done(dst);
        *dst = tmp;
        return 0;
}

void nattrs_serialize(const struct nattrs *a, struct nbuf *out) {
        nbuf_put_u32(out, (uint32_t)a->n);
        for (size_t i = 0; i < a->n; i++) {
                nbuf_put_u64(out, a->v[i].type);
                nbuf_put_blob(out, a->v[i].value ? a->v[i].value : (const uint8_t *)"", a->v[i].len);
        }
}

int nattrs_parse(struct nattrs *a, const uint8_t *p, size_t n) {
        struct nbuf b;
        struct nattrs tmp;
        uint32_t cnt;
        nbuf_init_const(&b, p, n);
        nattrs_init(&tmp);
        if (!nbuf_get_u32(&b, &cnt) || cnt > 4096 || cnt > nbuf_remaining(&b) / 12)
                return -EBADMSG;
        if (nattrs_reserve(&tmp, cnt) < 0)
                return -ENOMEM;
        for (uint32_t i = 0; i < cnt; i++) {
                uint64_t type;
                const uint8_t *v;
                size_t len;
                if (!nbuf_get_u64(&b, &type) || !nbuf_get_blob(&b, &v, &len) || !v) {
                        nattrs_done(&tmp);
                        return -EBADMSG;
                }
                int r = nattrs_set(&tmp, (CK_ATTRIBUTE_TYPE)type, v, len);
                if (r < 0) {
                        nattrs_done(&tmp);
                        return r;
                }
        }
        if (nbuf_remaining(&b) != 0) {
                nattrs_done(&tmp);
                return -EBADMSG;
        }
        nattrs_done(a);
        *a = tmp;
        return 0;
}
