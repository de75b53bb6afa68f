/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Management ops (netca-tool): JSON in, JSON out, over the same wire as
 * PKCS#11 (ops WIRE_OP_MGMT_*, signature "j" -> "uj").
 *
 * Each op's request is a JSON object; the reply is a JSON object, and on
 * failure {"error": "<message for the user>", "errno": <positive errno>}
 * with a non-zero status.  Messages never contain a PIN or key. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct netcad;
struct core_client;

/* True for the ops handled here. */
bool mgmt_is_op(uint16_t op);

/* Runs one management op.  json is the request text (not trusted: any
 * bytes); *ret_json receives a malloc'd reply text (always set on return 0,
 * also for failures, which carry "error").  Returns the status to put in the
 * reply's 'u' field: 0 on success, else a positive errno.  Negative only when
 * no reply could be built at all (-ENOMEM). */
int mgmt_handle(struct netcad *d, struct core_client *cl, uint16_t op, const char *json, char **ret_json);
