/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Memory for secrets (PINs, keys).
 *
 * secure_alloc() returns zeroed memory that is locked (mlock, best effort)
 * and excluded from core dumps (MADV_DONTDUMP).  secure_free() wipes and
 * releases it; it accepts NULL and returns NULL.  secure_wipe() is
 * explicit_bzero().  Process-wide hardening (PR_SET_DUMPABLE 0, RLIMIT_CORE 0)
 * is secure_harden_process(), called by executables, never by the .so. */
#pragma once

#include <stddef.h>

void *secure_alloc(size_t n);
void *secure_free(void *p);
/* For _cleanup_: a secure buffer freed (and wiped) on every way out of its
 * scope, as systemd's _cleanup_free_ does for malloc'd ones. */
static inline void secure_freep(void *p) { secure_free(*(void **)p); }
#define _cleanup_secure_free_ __attribute__((cleanup(secure_freep)))
char *secure_strndup(const char *s, size_t n);
void secure_wipe(void *p, size_t n);
/* Returns 0 or a negative errno. */
int secure_harden_process(void);
