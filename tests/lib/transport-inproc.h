/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The in-process transport (tests only): each connection is a core client of
 * the given core, and each call runs dispatch_p11() on it directly, frames
 * encoded and decoded exactly as over the socket.  Not part of the .so. */
#pragma once

#include "pkcs11/rpc-client.h"

struct core;

/* The core must outlive the transport. */
int rpc_transport_inproc_new(struct core *core, struct rpc_transport **ret);
