/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tiny helpers for the unit tests: checks that abort with a location, and a
 * temporary directory removed at exit. */
#pragma once

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK(cond)                                                                     \
        do {                                                                            \
                if (!(cond)) {                                                          \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
                        exit(EXIT_FAILURE);                                             \
                }                                                                       \
        } while (0)

#define CHECK_RC(expr, want)                                                            \
        do {                                                                            \
                long _r = (long) (expr);                                                \
                long _w = (long) (want);                                                \
                if (_r != _w) {                                                         \
                        fprintf(stderr, "%s:%d: %s = %ld (%s), want %ld (%s)\n", __FILE__, __LINE__, \
                                #expr, _r, _r < 0 ? strerror((int) -_r) : "", _w,       \
                                _w < 0 ? strerror((int) -_w) : "");                     \
                        exit(EXIT_FAILURE);                                             \
                }                                                                       \
        } while (0)

#define CHECK_OK(expr) CHECK_RC(expr, 0)

static char unit_tmpdir[1024];
static pid_t unit_tmpdir_owner;

static int unit_rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) st;
        (void) flag;
        (void) ftw;
        remove(path);
        return 0;
}

static void unit_tmpdir_cleanup(void) {
        /* Only the creating process removes it, never a forked child. */
        if (unit_tmpdir[0] && getpid() == unit_tmpdir_owner)
                nftw(unit_tmpdir, unit_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* Creates $TMPDIR/netca-unit-XXXXXX (removed at exit) and returns it. */
static inline const char *unit_tmpdir_new(void) {
        const char *base = getenv("TMPDIR");
        if (!base || !*base)
                base = "/tmp";
        snprintf(unit_tmpdir, sizeof unit_tmpdir, "%s/netca-unit-XXXXXX", base);
        if (!mkdtemp(unit_tmpdir)) {
                perror("mkdtemp");
                abort();
        }
        unit_tmpdir_owner = getpid();
        atexit(unit_tmpdir_cleanup);
        return unit_tmpdir;
}

/* True when needle occurs in the file. */
static inline int unit_file_contains(const char *path, const void *needle, size_t n) {
        FILE *f = fopen(path, "rbe");
        if (!f)
                return 0;
        size_t cap = 1 << 16, len = 0;
        unsigned char *buf = malloc(cap);
        size_t got;
        while (buf && (got = fread(buf + len, 1, cap - len, f)) > 0) {
                len += got;
                if (len == cap) {
                        unsigned char *nb = realloc(buf, cap * 2);
                        if (!nb)
                                break;
                        buf = nb;
                        cap *= 2;
                }
        }
        fclose(f);
        int found = buf && n && memmem(buf, len, needle, n) != NULL;
        free(buf);
        return found;
}
