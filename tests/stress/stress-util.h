/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Helpers for the stress suite: the daemon's resources as /proc shows them,
 * a raw wire client, pipes with deadlines, the scale factor. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/p11.h"
#include "common/wire.h"

/* Were we (and so, with the same build options, the daemon) built with
 * AddressSanitizer?  Its quarantine keeps freed memory resident, so RSS
 * bounds are reported but not asserted then. */
#if defined(__SANITIZE_ADDRESS__)
#define STRESS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STRESS_ASAN 1
#endif
#endif
#ifndef STRESS_ASAN
#define STRESS_ASAN 0
#endif

/* NETCA_STRESS_SCALE (default 1.0, clamped to 0.01..10): multiplies loop
 * counts.  Returns max(lo, round(n * scale)). */
unsigned stress_scaled(unsigned n, unsigned lo);
/* NETCA_STRESS_SEED or the time; printed so a run can be replayed. */
uint64_t stress_seed(void);
uint64_t stress_rand(uint64_t *state);

void stress_sleep_ms(unsigned ms);
uint64_t stress_now_ms(void);

/* /proc/PID/fd entries, or -1.  VmRSS in kB, or -1. */
long proc_fd_count(pid_t pid);
long proc_rss_kb(pid_t pid);

/* Raw wire client (connect, frames and HELLO are common/wire-client.h's).
 * All reads have a timeout. */
int raw_connect(const char *path);
int raw_send_all(int fd, const void *p, size_t n);
int raw_send_msg(int fd, struct wire_msg *m);
/* One frame (malloc'd, header included): 0, -ECONNRESET (EOF or reset),
 * -ETIMEDOUT (no byte for timeout_ms), -EPROTO (bad header): wire_read_frame. */
int raw_read_frame(int fd, unsigned timeout_ms, uint8_t **ret, size_t *ret_len);
/* 0 when the peer closed the connection within timeout_ms (reading and
 * discarding whatever came first), -ETIMEDOUT otherwise. */
int raw_wait_closed(int fd, unsigned timeout_ms);
/* Sends m (done with it either way) and reads the next frame, the reply
 * when nothing else is pushed: as raw_read_frame (20 s). */
int raw_call(int fd, struct wire_msg *m, uint8_t **ret, size_t *ret_len);
/* Bytes sent on fd that the peer has not read yet (SIOCOUTQ): 0 or -errno. */
int raw_unread(int fd, int *ret);
/* HELLO with our version: 0 accepted. */
int raw_hello(int fd);
/* PING round trip: 0 ok. */
int raw_ping(int fd, uint32_t id);
/* MGMT_STATUS "clients" (includes the asking connection), or -errno. */
int raw_status_clients(const char *sock);
/* The JSON reply of management op (asked with "{}") on a new connection,
 * parsed (cJSON_Delete() it), or NULL. */
struct cJSON;
struct cJSON *raw_mgmt_json(const char *sock, uint16_t op);
/* A number in MGMT_STATUS (e.g. "p11_requests"), or -1. */
double raw_status_number(const char *sock, const char *key);

/* Reads one reply into *m (frame in *frame, free() it; 20 s): true when it
 * is a reply to op without the error flag. */
bool raw_reply_read(int fd, uint16_t op, struct wire_msg *m, uint8_t **frame);
/* The CK_RV of the next reply, which must be to op (CKR_GENERAL_ERROR if
 * not); *ret_u, when not NULL, gets the reply's second field (a u64). */
CK_RV raw_reply_rv(int fd, uint16_t op, uint64_t *ret_u);
/* Opens a R/W session on slot: CKR_OK and *ret, or the rv. */
CK_RV raw_open_session(int fd, CK_SLOT_ID slot, CK_SESSION_HANDLE *ret);
/* Creates a session RSA-4096 public key with exponent 2^64-1 (the costliest
 * netcad takes): CKR_OK and *ret. */
CK_RV raw_create_costly_key(int fd, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE *ret);
/* Appends C_VerifyInit(CKM_RSA_X_509, key) + C_Verify of a wrong
 * signature on session h to *all. */
struct nbuf;
void raw_put_verify(struct nbuf *all, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key);
/* A DIGEST_UPDATE frame of about n bytes (n <= WIRE_FRAME_MAX; never sent
 * whole): wire_msg_finish's result. */
int raw_big_frame(size_t n, struct wire_msg *m);

/* Pipes: one line ("X...\n") with a deadline.  0, -ETIMEDOUT, -EPIPE (EOF). */
int pipe_read_line(int fd, unsigned timeout_ms, char *buf, size_t size);
int pipe_write_line(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ECDSA P-256 key pair on the token (CKA_TOKEN, label, id 0x42). */
CK_RV stress_gen_p256(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE h, const char *label,
                      CK_OBJECT_HANDLE *ret_pub, CK_OBJECT_HANDLE *ret_priv);
/* The one object of class cls with this label: CKR_OK, or
 * CKR_GENERAL_ERROR when there is not exactly one. */
CK_RV stress_find_one(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE h, CK_OBJECT_CLASS cls, const char *label,
                      CK_OBJECT_HANDLE *ret);
