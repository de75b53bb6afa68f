/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Small helpers shared by every component: cleanup attributes, array size,
 * bounded string copies.  Header-only. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))

/* Take ownership of a pointer out of a _cleanup_ variable. */
#define TAKE_PTR(p)                             \
        ({                                      \
                __typeof__(p) _ptr_ = (p);      \
                (p) = NULL;                     \
                _ptr_;                          \
        })

#define TAKE_FD(fd)                             \
        ({                                      \
                int _fd_ = (fd);                \
                (fd) = -1;                      \
                _fd_;                           \
        })

static inline void freep(void *p) { free(*(void **)p); }
static inline void closep(int *fd) { if (*fd >= 0) { int e = errno; close(*fd); errno = e; } }

#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)

/* Copy a C string into a fixed, blank-padded PKCS#11 field (no NUL). */
static inline void pad_field(unsigned char *dst, size_t dstlen, const char *src) {
        size_t n = src ? strlen(src) : 0;
        if (n > dstlen)
                n = dstlen;
        memset(dst, ' ', dstlen);
        if (n)
                memcpy(dst, src, n);
}

/* Strip trailing blanks from a PKCS#11 field into a NUL-terminated string;
 * out must hold srclen + 1 bytes. */
static inline void unpad_field(char *out, const unsigned char *src, size_t srclen) {
        size_t n = srclen;
        while (n > 0 && (src[n - 1] == ' ' || src[n - 1] == '\0'))
                n--;
        memcpy(out, src, n);
        out[n] = '\0';
}

/* The value of a hexadecimal digit (either case), -1 for anything else. */
static inline int hex_digit_value(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}
