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

#include "common/p11.h"

#define MGMT_JSON_MAX (64u * 1024u)
#define MGMT_MAX_TRIES_LIMIT 100
#define MGMT_PIN_MAX 64
#define MGMT_LABEL_MAX 32

/* A request after parsing and validation (the fields an op uses). */
struct mgmt_request {
        uint16_t op;
        bool has_slot;
        CK_SLOT_ID slot;
        char label[MGMT_LABEL_MAX + 1];
        char *pin;          /* secure memory */
        size_t pin_len;
        char *so_pin;       /* secure memory */
        size_t so_pin_len;
        unsigned max_tries; /* 0: the default */
        /* MGMT_PIN_CACHE_SET: which fields were given, and their values. */
        bool has_enabled, enabled;
        bool has_ttl, has_max, has_scope, has_always_auth, always_auth;
        uint64_t ttl, max;  /* seconds */
        int scope;          /* enum pincache_scope */
        /* MGMT_LOG_SHOW */
        int64_t since_ms, until_ms;
        char token[MGMT_LABEL_MAX + 1];
        bool failed_only;
        unsigned limit;
        /* MGMT_LOG_SET */
        bool has_max_records, has_diagnostic, diagnostic;
        unsigned max_records;
        /* MGMT_PINENTRY_SET (empty: show) */
        char *program;      /* malloc'd */
        bool has_timeout;
        unsigned timeout_s;
        char *protected_kinds; /* malloc'd, validated */
};

/* Parses and validates the JSON text of a request for op; touches nothing
 * else (the fuzz target runs it on any bytes).  0, or -errno with
 * *ret_error a static message for the user.  Free with mgmt_request_done(). */
int mgmt_parse_request(uint16_t op, const char *json, struct mgmt_request *ret, const char **ret_error);
/* Wipes and frees the secrets of a parsed request. */
void mgmt_request_done(struct mgmt_request *req);

struct netcad;
struct core_client;

/* True for the ops handled here. */
bool mgmt_is_op(uint16_t op);

/* Reads the saved settings (PIN cache policy) from the state database into
 * the running daemon; at start.  0 or -errno (bad saved values are logged
 * and replaced by the defaults). */
int mgmt_apply_settings(struct netcad *d);

/* Runs one management op.  json is the request text (not trusted: any
 * bytes); *ret_json receives a malloc'd reply text (always set on return 0,
 * also for failures, which carry "error").  Returns the status to put in the
 * reply's 'u' field: 0 on success, else a positive errno.  Negative only when
 * no reply could be built at all (-ENOMEM). */
int mgmt_handle(struct netcad *d, struct core_client *cl, uint16_t op, const char *json, char **ret_json);

struct wire_msg;
/* The wire side of mgmt_handle: req is a management request read with
 * wire_msg_init_read(); on return 0 *reply is a finished reply frame ("uj"),
 * or an error reply (WIRE_F_ERROR, CKR_ARGUMENTS_BAD) when the request does
 * not decode.  The request's JSON is wiped (it may hold PINs).  -ENOMEM when
 * no reply could be built. */
int mgmt_dispatch(struct netcad *d, struct core_client *cl, struct wire_msg *req, struct wire_msg *reply);
