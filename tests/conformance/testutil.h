/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Helpers shared by the conformance and robustness tests: temp dirs, soft
 * tokens, starting and stopping a real netcad, loading the module, and
 * checks that report every failure and keep going. */
#pragma once

#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

#include "common/p11.h"

#define TU_USER_PIN "123456"
#define TU_SO_PIN "12345678"

extern unsigned tu_failures;

const char *tu_rv_name(CK_RV rv);

#define CHECK(cond)                                                                           \
        do {                                                                                  \
                if (!(cond)) {                                                                \
                        tu_failures++;                                                        \
                        fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);       \
                }                                                                             \
        } while (0)

#define CHECK_RV(expr, want)                                                                  \
        do {                                                                                  \
                CK_RV got_ = (expr);                                                          \
                CK_RV want_ = (want);                                                         \
                if (got_ != want_) {                                                          \
                        tu_failures++;                                                        \
                        fprintf(stderr, "FAIL %s:%d: %s = %s (0x%lx), want %s\n", __FILE__,   \
                                __LINE__, #expr, tu_rv_name(got_), (unsigned long)got_,       \
                                tu_rv_name(want_));                                           \
                }                                                                             \
        } while (0)

/* A check whose failure makes the rest pointless. */
#define REQUIRE(cond)                                                                         \
        do {                                                                                  \
                if (!(cond)) {                                                                \
                        fprintf(stderr, "FATAL %s:%d: %s\n", __FILE__, __LINE__, #cond);      \
                        tu_failures++;                                                        \
                        return;                                                               \
                }                                                                             \
        } while (0)

#define REQUIRE_RV(expr, want)                                                                \
        do {                                                                                  \
                CK_RV got_ = (expr);                                                          \
                if (got_ != (want)) {                                                         \
                        fprintf(stderr, "FATAL %s:%d: %s = %s (0x%lx), want %s\n", __FILE__,  \
                                __LINE__, #expr, tu_rv_name(got_), (unsigned long)got_,       \
                                tu_rv_name(want));                                            \
                        tu_failures++;                                                        \
                        return;                                                               \
                }                                                                             \
        } while (0)

/* "/tmp/netca-<tag>-XXXXXX", created 0700; exits the test on failure. */
char *tu_mkdtemp(const char *tag);
void tu_rmrf(const char *dir);
/* A soft token in <data_dir>/tokens with TU_USER_PIN and TU_SO_PIN. */
int tu_create_token(const char *data_dir, const char *label);

/* Starts `netcad --foreground --socket sock --data-dir data_dir` and waits
 * until the socket accepts (or the daemon dies).  Returns the pid, or -1
 * having counted a failure (tu_failures): a test that cannot start its
 * daemon fails, it never passes by doing nothing. */
pid_t tu_start_daemon(const char *netcad, const char *sock, const char *data_dir);
/* SIGTERM and reaps it: a failure is counted unless netcad exits with
 * status 0 (what its clean shutdown returns; a sanitizer report, e.g.
 * LeakSanitizer's status 23, or a crash is a failure), and when it has to
 * be SIGKILLed because it does not go.  pid <= 0: nothing (true). */
bool tu_stop_daemon(pid_t pid);
/* SIGKILL on purpose (a crash the test causes) and reaps it: a failure is
 * counted unless it died of that SIGKILL (not of something before). */
bool tu_kill_daemon(pid_t pid);
/* True when a connect() to the socket succeeds. */
bool tu_socket_alive(const char *sock);

/* dlopen()s the module and returns its function list (NULL on failure,
 * counted in tu_failures). */
CK_FUNCTION_LIST_PTR tu_load_module(const char *path, void **ret_handle);

/* The slot holding the token labelled label, via f (already initialized). */
bool tu_find_slot(CK_FUNCTION_LIST_PTR f, const char *label, CK_SLOT_ID *ret);

/* Path from the environment variable name, or exit(77) (skip) when unset. */
const char *tu_env_path(const char *name);
