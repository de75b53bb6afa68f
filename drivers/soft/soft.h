/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The file-backed soft token ("file-type device", 文件型设备).
 *
 * One SQLite file per token, "<data_dir>/tokens/<uuid>.token".  Private key
 * material is encrypted at rest (AES-256-GCM) under a random 256-bit token
 * key; the token key is stored wrapped twice, under a key derived from the
 * user PIN and under one derived from the SO PIN (PBKDF2-HMAC-SHA256,
 * SOFT_PBKDF2_ITERATIONS, random 16-byte salt each), so C_InitPIN sets a new
 * user PIN without losing a key.  No key or PIN is ever on disk in the clear.
 * The user PIN locks after the retry limit chosen at creation (default 6);
 * the SO PIN unblocks it (C_InitPIN).  Every write is one SQLite transaction
 * (WAL, synchronous=FULL), so a kill -9 mid-write leaves every committed
 * object readable. */
#pragma once

#include <stddef.h>

#include "drivers/driver.h"

#define SOFT_PBKDF2_ITERATIONS 120000
/* The most a token file may ask for (about 8x ours; OWASP recommends
 * 600,000): a login then derives its key for at most a second or so. */
#define SOFT_PBKDF2_ITERATIONS_MAX 1000000
#define SOFT_DEFAULT_MAX_TRIES 6
#define SOFT_TOKENS_SUBDIR "tokens"

extern const struct driver_ops soft_ops;
/* The driver (drivers/table.c): its tokens are <data_dir>/tokens/ files,
 * slot keys "soft:<file name>"; creates and deletes them. */
extern const struct driver soft_driver;

/* Creates a new token in <data_dir>/tokens/ (directory created 0700).
 * label: at most 32 bytes UTF-8.  PINs: 4..64 bytes.  max_tries 0 means the
 * default.  *ret_path (malloc'd) is the new file.  Errors: -EINVAL bad label,
 * -EMSGSIZE PIN length, -EIO storage. */
int soft_token_create(const char *data_dir, const char *label, const char *pin, size_t pin_len,
                      const char *so_pin, size_t so_pin_len, unsigned max_tries, char **ret_path);

/* Opens a token file; *ret is owned by the caller until handed to the core
 * (soft_ops.free).  -ENOENT, -EBADMSG (not a token file), -EIO. */
int soft_token_open(const char *path, struct token **ret);

/* Lists the token files of <data_dir>/tokens (sorted, malloc'd array of
 * malloc'd paths; free each and the array).  A missing directory is 0 tokens. */
int soft_token_scan(const char *data_dir, char ***ret_paths, size_t *ret_n);

/* Removes what a crash during soft_token_create leaves in <data_dir>/tokens:
 * ".<uuid>.tmp" files (not locked by a creation still running) and their
 * -wal, -shm and -journal files.  The number of files removed, or -errno. */
int soft_token_clean_stale(const char *data_dir);

/* Unlinks a token database and its SQLite side files (-wal, -shm, -journal),
 * the database first. */
void soft_unlink_db_files(const char *path);

/* The token's file path (owned by the token). */
const char *soft_token_path(struct token *t);

/* Tests that need a busy token slow soft tokens down from outside, with a
 * test-only driver that wraps this one (tests/drivers/delay/delay.c,
 * NETCA_SOFT_DELAY in netcad-test's environment). */

/* ECDSA (P-256/P-384) keeps a small pool of precomputed nonces, refilled by
 * a background thread per CPU (drivers/soft/soft-ecdsa.c).
 * NETCA_SOFT_ECDSA_POOL=0 in netcad's environment turns it off (every
 * signature then computes its nonce inline), for measurements. */
