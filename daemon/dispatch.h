/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Server side of the PKCS#11 ops on the wire: decode a request frame, call
 * the core for the client, encode the reply frame.  The mirror of the
 * module's RPC client (pkcs11/rpc-client.c); both follow common/wire.h.
 *
 * Output buffers: the client's 'q' capacity is honoured exactly (a NULL
 * buffer is a length query, a capacity below what is needed yields
 * CKR_BUFFER_TOO_SMALL with the length), and capacities are capped (at
 * WIRE_FRAME_MAX) before allocating. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "common/wire.h"

struct core_client;

/* True for ops this file handles (PKCS#11 ops 16..255). */
bool dispatch_is_p11_op(uint16_t op);

/* req: a request read with wire_msg_init_read() (op known).  On return 0,
 * *reply holds a finished reply frame (wire_msg_finish done) that the caller
 * sends and then releases with wire_msg_done().  A request that does not
 * match its signature gets an error reply (WIRE_F_ERROR, CKR_ARGUMENTS_BAD),
 * also with return 0.  Negative errno only when no reply could be built
 * (-ENOMEM). */
int dispatch_p11(struct core_client *cl, struct wire_msg *req, struct wire_msg *reply);
/* PKCS#11 requests dispatched since the start (for `daemon status`: shows
 * how many calls the modules answered without asking). */
uint64_t dispatch_p11_count(void);
