/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* One buffer type for every encoder and decoder (after OpenSSH sshbuf and
 * p11-kit's buffer).
 *
 * - Writes append; reads consume from a read cursor.
 * - Failure is sticky: once a put exceeds max or allocation fails, or a get
 *   runs past the end, nbuf_failed() is true and every later get returns
 *   false / put does nothing.  Check it once, before sending or after parsing.
 * - All integers are big-endian.
 * - A "blob" is a u32 length followed by that many bytes; the length
 *   0xffffffff (NBUF_NULL) marks a NULL pointer, distinct from empty.
 * - A buffer marked secure wipes its memory on every reallocation and on
 *   nbuf_done().
 *
 * Ownership: nbuf_init() buffers own their memory, nbuf_done() frees it.
 * nbuf_init_const() wraps caller memory read-only; the caller keeps it alive. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NBUF_NULL 0xffffffffu

struct nbuf {
        uint8_t *data;
        size_t len;   /* bytes written */
        size_t size;  /* bytes allocated */
        size_t max;   /* hard cap on len */
        size_t rpos;  /* read cursor */
        bool failed;
        bool secure;
        bool readonly;
};

void nbuf_init(struct nbuf *b, size_t max);
void nbuf_init_const(struct nbuf *b, const void *data, size_t len);
void nbuf_done(struct nbuf *b);
void nbuf_reset(struct nbuf *b);        /* empty it, keep memory; clears failure */
static inline bool nbuf_failed(const struct nbuf *b) { return b->failed; }
static inline void nbuf_fail(struct nbuf *b) { b->failed = true; }
static inline size_t nbuf_remaining(const struct nbuf *b) { return b->len - b->rpos; }
static inline const uint8_t *nbuf_read_ptr(const struct nbuf *b) { return b->data + b->rpos; }

/* Reserve n bytes at the end and return a pointer to them (NULL on failure). */
uint8_t *nbuf_append_space(struct nbuf *b, size_t n);
void nbuf_put_u8(struct nbuf *b, uint8_t v);
void nbuf_put_u16(struct nbuf *b, uint16_t v);
void nbuf_put_u32(struct nbuf *b, uint32_t v);
void nbuf_put_u64(struct nbuf *b, uint64_t v);
void nbuf_put_raw(struct nbuf *b, const void *p, size_t n);
void nbuf_put_blob(struct nbuf *b, const void *p, size_t n); /* p == NULL: NULL marker */
void nbuf_put_str(struct nbuf *b, const char *s);              /* blob of strlen, NULL ok */
/* Overwrite 4 bytes at offset (for patching lengths). */
void nbuf_set_u32_at(struct nbuf *b, size_t off, uint32_t v);

bool nbuf_get_u8(struct nbuf *b, uint8_t *v);
bool nbuf_get_u16(struct nbuf *b, uint16_t *v);
bool nbuf_get_u32(struct nbuf *b, uint32_t *v);
bool nbuf_get_u64(struct nbuf *b, uint64_t *v);
bool nbuf_get_raw(struct nbuf *b, size_t n, const uint8_t **p);
/* *p points into the buffer (valid until it is changed) or is NULL for the
 * NULL marker, in which case *n is 0. */
bool nbuf_get_blob(struct nbuf *b, const uint8_t **p, size_t *n);
