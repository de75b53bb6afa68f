/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "secmem.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>

/* Each block is its own anonymous mapping: header page-aligned so that
 * madvise/mlock apply to it alone. */
struct secure_hdr {
        size_t maplen;
        size_t userlen;
};

#define HDR_SIZE 32

void secure_wipe(void *p, size_t n) {
        if (p && n)
                explicit_bzero(p, n);
}

void *secure_alloc(size_t n) {
        size_t maplen = n + HDR_SIZE;
        long pg = 4096;
        maplen = (maplen + (size_t)pg - 1) & ~((size_t)pg - 1);
        void *m = mmap(NULL, maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
                return NULL;
        (void)madvise(m, maplen, MADV_DONTDUMP);
        (void)mlock(m, maplen);
        struct secure_hdr *h = m;
        h->maplen = maplen;
        h->userlen = n;
        return (uint8_t *)m + HDR_SIZE;
}

void *secure_free(void *p) {
        if (!p)
                return NULL;
        struct secure_hdr *h = (struct secure_hdr *)((uint8_t *)p - HDR_SIZE);
        size_t maplen = h->maplen;
        explicit_bzero(h, maplen);
        (void)munlock(h, maplen);
        munmap(h, maplen);
        return NULL;
}

char *secure_strndup(const char *s, size_t n) {
        char *r = secure_alloc(n + 1);
        if (!r)
                return NULL;
        if (n)
                memcpy(r, s, n);
        r[n] = '\0';
        return r;
}

int secure_harden_process(void) {
        struct rlimit rl = { 0, 0 };
        if (setrlimit(RLIMIT_CORE, &rl) < 0)
                return -errno;
        if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
                return -errno;
        return 0;
}
