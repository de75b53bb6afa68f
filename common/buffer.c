/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "buffer.h"

#include <stdlib.h>
#include <string.h>

void nbuf_init(struct nbuf *b, size_t max) {
        memset(b, 0, sizeof *b);
        b->max = max;
}

void nbuf_init_const(struct nbuf *b, const void *data, size_t len) {
        memset(b, 0, sizeof *b);
        b->data = (uint8_t *)data;
        b->len = b->size = b->max = len;
        b->readonly = true;
}

void nbuf_done(struct nbuf *b) {
        if (!b->readonly) {
                if (b->secure && b->data)
                        explicit_bzero(b->data, b->size);
                free(b->data);
        }
        memset(b, 0, sizeof *b);
}

void nbuf_reset(struct nbuf *b) {
        if (b->readonly) {
                b->rpos = 0;
                b->failed = false;
                return;
        }
        if (b->secure && b->data)
                explicit_bzero(b->data, b->size);
        b->len = b->rpos = 0;
        b->failed = false;
}

uint8_t *nbuf_append_space(struct nbuf *b, size_t n) {
        if (b->failed || b->readonly)
                goto fail;
        if (n > b->max || b->len > b->max - n)
                goto fail;
        if (b->len + n > b->size) {
                size_t ns = b->size ? b->size : 64;
                while (ns < b->len + n)
                        ns = ns > SIZE_MAX / 2 ? b->len + n : ns * 2;
                if (ns > b->max)
                        ns = b->max;
                uint8_t *nd;
                if (b->secure) {
                        nd = malloc(ns);
                        if (nd && b->data) {
                                memcpy(nd, b->data, b->len);
                                explicit_bzero(b->data, b->size);
                                free(b->data);
                        }
                } else
                        nd = realloc(b->data, ns);
                if (!nd)
                        goto fail;
                b->data = nd;
                b->size = ns;
        }
        uint8_t *p = b->data + b->len;
        b->len += n;
        return p;
fail:
        b->failed = true;
        return NULL;
}

void nbuf_put_raw(struct nbuf *b, const void *p, size_t n) {
        uint8_t *d = nbuf_append_space(b, n);
        if (d && n)
                memcpy(d, p, n);
}

void nbuf_put_u8(struct nbuf *b, uint8_t v) {
        nbuf_put_raw(b, &v, 1);
}

void nbuf_put_u16(struct nbuf *b, uint16_t v) {
        uint8_t d[2] = { (uint8_t)(v >> 8), (uint8_t)v };
        nbuf_put_raw(b, d, 2);
}

void nbuf_put_u32(struct nbuf *b, uint32_t v) {
        uint8_t d[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };
        nbuf_put_raw(b, d, 4);
}

void nbuf_put_u64(struct nbuf *b, uint64_t v) {
        nbuf_put_u32(b, (uint32_t)(v >> 32));
        nbuf_put_u32(b, (uint32_t)v);
}

void nbuf_put_blob(struct nbuf *b, const void *p, size_t n) {
        if (!p) {
                nbuf_put_u32(b, NBUF_NULL);
                return;
        }
        if (n >= NBUF_NULL) {
                b->failed = true;
                return;
        }
        nbuf_put_u32(b, (uint32_t)n);
        nbuf_put_raw(b, p, n);
}

void nbuf_put_str(struct nbuf *b, const char *s) {
        nbuf_put_blob(b, s, s ? strlen(s) : 0);
}

void nbuf_set_u32_at(struct nbuf *b, size_t off, uint32_t v) {
        if (b->failed || b->readonly || off > b->len || b->len - off < 4) {
                b->failed = true;
                return;
        }
        b->data[off] = (uint8_t)(v >> 24);
        b->data[off + 1] = (uint8_t)(v >> 16);
        b->data[off + 2] = (uint8_t)(v >> 8);
        b->data[off + 3] = (uint8_t)v;
}

bool nbuf_get_raw(struct nbuf *b, size_t n, const uint8_t **p) {
        if (b->failed || b->len - b->rpos < n) {
                b->failed = true;
                return false;
        }
        *p = b->data + b->rpos;
        b->rpos += n;
        return true;
}

bool nbuf_get_u8(struct nbuf *b, uint8_t *v) {
        const uint8_t *p;
        if (!nbuf_get_raw(b, 1, &p))
                return false;
        *v = p[0];
        return true;
}

bool nbuf_get_u16(struct nbuf *b, uint16_t *v) {
        const uint8_t *p;
        if (!nbuf_get_raw(b, 2, &p))
                return false;
        *v = (uint16_t)((p[0] << 8) | p[1]);
        return true;
}

bool nbuf_get_u32(struct nbuf *b, uint32_t *v) {
        const uint8_t *p;
        if (!nbuf_get_raw(b, 4, &p))
                return false;
        *v = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
        return true;
}

bool nbuf_get_u64(struct nbuf *b, uint64_t *v) {
        uint32_t hi, lo;
        if (!nbuf_get_u32(b, &hi) || !nbuf_get_u32(b, &lo))
                return false;
        *v = ((uint64_t)hi << 32) | lo;
        return true;
}

bool nbuf_get_blob(struct nbuf *b, const uint8_t **p, size_t *n) {
        uint32_t len;
        if (!nbuf_get_u32(b, &len))
                return false;
        if (len == NBUF_NULL) {
                *p = NULL;
                *n = 0;
                return true;
        }
        if (!nbuf_get_raw(b, len, p))
                return false;
        *n = len;
        return true;
}
