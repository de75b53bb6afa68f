/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Management ops (see mgmt.h): JSON in (cJSON), JSON out.
 *
 * Every request goes through mgmt_parse_request() first, a pure function that
 * checks the request's shape for its op and copies its fields out (PINs into
 * secure memory; the parsed cJSON strings holding them are wiped before the
 * tree is freed).  Only then does mgmt_handle() touch the core or the disk,
 * so the fuzz target (tests/fuzz/fuzz-mgmt.c) can feed any bytes to the
 * parser without a daemon.
 *
 * Requests:
 *   MGMT_STATUS              {}
 *   MGMT_TOKEN_LIST          {}
 *   MGMT_TOKEN_CREATE_SOFT   {"label": s, "pin": s, "so_pin": s, "max_tries": n?}
 *   MGMT_PIN_STATUS          {"slot": n}
 *   MGMT_TOKEN_DELETE        {"slot": n}          (soft tokens only)
 * Unknown members are ignored.  Errors: {"error": msg, "errno": n}. */
#include "mgmt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/log.h"
#include "common/secmem.h"
#include "common/text-json.h"
#include "common/text.h"
#include "common/util.h"
#include "common/wire.h"
#include "daemon/audit.h"
#include "daemon/core.h"
#include "daemon/dispatch.h"
#include "daemon/netcad.h"
#include "daemon/pincache.h"
#include "daemon/state.h"
#include "daemon/registry.h"

bool mgmt_is_op(uint16_t op) {
        const struct wire_op *o = wire_op_lookup(op);
        return o && o->kind == WIRE_KIND_MGMT;
}

void mgmt_request_done(struct mgmt_request *req) {
        if (!req)
                return;
        req->pin = secure_free(req->pin);
        req->so_pin = secure_free(req->so_pin);
        req->pin_len = req->so_pin_len = 0;
        free(req->program);
        free(req->protected_kinds);
        req->program = req->protected_kinds = NULL;
}

static void wipe_json_string(cJSON *item) {
        if (item && cJSON_IsString(item) && item->valuestring)
                secure_wipe(item->valuestring, strlen(item->valuestring));
}

/* Wipes every string in the tree (the request may hold PINs anywhere). */
static void wipe_json_tree(cJSON *item) {
        for (; item; item = item->next) {
                wipe_json_string(item);
                if (item->child)
                        wipe_json_tree(item->child);
        }
}

static int get_uint(const cJSON *obj, const char *name, bool required, uint64_t max, uint64_t *ret,
                    const char **ret_error, const char *msg) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
        double v;

        if (!it) {
                if (required) {
                        *ret_error = msg;
                        return -EINVAL;
                }
                return 0;
        }
        if (!cJSON_IsNumber(it)) {
                *ret_error = msg;
                return -EINVAL;
        }
        v = it->valuedouble;
        /* NaN fails every comparison; the cast check rejects fractions. */
        if (!(v >= 0 && v <= (double)max) || (double)(uint64_t)v != v) {
                *ret_error = msg;
                return -EINVAL;
        }
        *ret = (uint64_t)v;
        return 1;
}

/* A duration: a number of seconds or a string such as "30m", "1h30m".
 * 1 given, 0 absent, -EINVAL. */
static int get_duration(const cJSON *obj, const char *name, uint64_t *ret, const char **ret_error, const char *msg) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
        if (!it)
                return 0;
        uint64_t v = 0;
        if (cJSON_IsString(it) && it->valuestring) {
                if (pincache_parse_duration(it->valuestring, &v) < 0)
                        goto bad;
        } else if (cJSON_IsNumber(it)) {
                double d = it->valuedouble;
                if (!(d >= 0 && d <= (double)UINT32_MAX) || (double)(uint64_t)d != d)
                        goto bad;
                v = (uint64_t)d;
        } else
                goto bad;
        /* At least a minute, at most a day. */
        if (v < 60 || v > 86400)
                goto bad;
        *ret = v;
        return 1;
bad:
        *ret_error = msg;
        return -EINVAL;
}

static int get_bool(const cJSON *obj, const char *name, bool *ret, const char **ret_error, const char *msg) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
        if (!it)
                return 0;
        if (!cJSON_IsBool(it)) {
                *ret_error = msg;
                return -EINVAL;
        }
        *ret = cJSON_IsTrue(it);
        return 1;
}

static int get_pin(const cJSON *obj, const char *name, char **ret, size_t *ret_len, const char **ret_error,
                   const char *missing, const char *badlen) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
        size_t n;

        if (!it || !cJSON_IsString(it) || !it->valuestring) {
                *ret_error = missing;
                return -EINVAL;
        }
        n = strlen(it->valuestring);
        if (n < 4 || n > MGMT_PIN_MAX) {
                *ret_error = badlen;
                return -EMSGSIZE;
        }
        *ret = secure_strndup(it->valuestring, n);
        if (!*ret) {
                *ret_error = "out of memory";
                return -ENOMEM;
        }
        *ret_len = n;
        return 0;
}

/* Does a string of this JSON text hold the escape \u0000?  cJSON would cut
 * the string there (a PIN "1234\u0000abcd" would become "1234"). */
static bool has_nul_escape(const char *json, size_t len) {
        bool in_string = false;
        for (size_t i = 0; i < len; i++) {
                if (json[i] == '"')
                        in_string = !in_string;
                else if (in_string && json[i] == '\\' && i + 1 < len) {
                        if (json[i + 1] == 'u' && len - i >= 6 && strncmp(json + i + 2, "0000", 4) == 0)
                                return true;
                        i++; /* the escaped character */
                }
        }
        return false;
}

int mgmt_parse_request(uint16_t op, const char *json, struct mgmt_request *ret, const char **ret_error) {
        struct mgmt_request req = { .op = op };
        const char *err = NULL;
        cJSON *root = NULL;
        uint64_t v = 0;
        size_t len;
        int r = 0;

        if (!ret || !ret_error)
                return -EINVAL;
        if (!mgmt_is_op(op)) {
                *ret_error = "unknown management operation";
                return -EOPNOTSUPP;
        }
        len = json ? strnlen(json, MGMT_JSON_MAX + 1) : 0;
        if (len > MGMT_JSON_MAX) {
                *ret_error = "request too large";
                return -E2BIG;
        }
        /* An empty request is an empty object. */
        if (len == 0 || strspn(json, " \t\r\n") == len)
                root = cJSON_CreateObject();
        else
                root = cJSON_ParseWithLength(json, len);
        if (!root) {
                *ret_error = "request is not valid JSON";
                return -EINVAL;
        }
        if (has_nul_escape(json, len)) {
                err = "a string in the request holds a NUL character (\\u0000)";
                r = -EINVAL;
                goto out;
        }
        if (!cJSON_IsObject(root)) {
                err = "request is not a JSON object";
                r = -EINVAL;
                goto out;
        }

        switch (op) {
        case WIRE_OP_MGMT_STATUS:
        case WIRE_OP_MGMT_TOKEN_LIST:
        case WIRE_OP_MGMT_PIN_CACHE_STATUS:
        case WIRE_OP_MGMT_LOG_CLEAR:
                break;

        case WIRE_OP_MGMT_LOG_SHOW: {
                const char *bad_time = "\"since\" and \"until\" are milliseconds since 1970";
                if ((r = get_uint(root, "since", false, (uint64_t)1 << 52, &v, &err, bad_time)) < 0)
                        goto out;
                req.since_ms = r > 0 ? (int64_t)v : 0;
                if ((r = get_uint(root, "until", false, (uint64_t)1 << 52, &v, &err, bad_time)) < 0)
                        goto out;
                req.until_ms = r > 0 ? (int64_t)v : 0;
                if ((r = get_uint(root, "limit", false, 1000000, &v, &err,
                                  "\"limit\" must be a number up to 1000000")) < 0)
                        goto out;
                req.limit = r > 0 ? (unsigned)v : 0;
                if ((r = get_bool(root, "failed", &req.failed_only, &err, "\"failed\" must be true or false")) < 0)
                        goto out;
                const cJSON *tok = cJSON_GetObjectItemCaseSensitive(root, "token");
                if (tok) {
                        if (!cJSON_IsString(tok) || !tok->valuestring || !tok->valuestring[0] ||
                            strlen(tok->valuestring) > MGMT_LABEL_MAX) {
                                err = "\"token\" must be a label or serial of 1 to 32 bytes";
                                r = -EINVAL;
                                goto out;
                        }
                        memcpy(req.token, tok->valuestring, strlen(tok->valuestring) + 1);
                }
                r = 0;
                break;
        }

        case WIRE_OP_MGMT_PINENTRY_SET: {
                const cJSON *prog = cJSON_GetObjectItemCaseSensitive(root, "program");
                if (prog) {
                        if (!cJSON_IsString(prog) || !prog->valuestring || prog->valuestring[0] != '/' ||
                            strlen(prog->valuestring) >= 256) {
                                err = "\"program\" must be an absolute path (under 256 bytes)";
                                r = -EINVAL;
                                goto out;
                        }
                        req.program = strdup(prog->valuestring);
                }
                if ((r = get_uint(root, "timeout", false, 3600, &v, &err,
                                  "\"timeout\" must be a number of seconds from 1 to 3600")) < 0)
                        goto out;
                if (r > 0 && v == 0) {
                        err = "\"timeout\" must be a number of seconds from 1 to 3600";
                        r = -EINVAL;
                        goto out;
                }
                req.has_timeout = r > 0;
                req.timeout_s = (unsigned)v;
                const cJSON *kinds = cJSON_GetObjectItemCaseSensitive(root, "protected");
                if (kinds) {
                        /* A comma-separated list of known kinds ("" none). */
                        const char *known[] = { "soft", "usb", "ble", "phone" };
                        bool ok = cJSON_IsString(kinds) && kinds->valuestring && strlen(kinds->valuestring) < 64;
                        for (const char *p = ok ? kinds->valuestring : ""; ok && *p;) {
                                size_t len = strcspn(p, ",");
                                bool k = false;
                                for (size_t i = 0; i < ELEMENTSOF(known); i++)
                                        k |= strlen(known[i]) == len && strncmp(p, known[i], len) == 0;
                                ok = k;
                                p += len;
                                if (*p == ',')
                                        p++;
                        }
                        if (!ok) {
                                err = "\"protected\" must list token kinds among soft, usb, ble, phone";
                                r = -EINVAL;
                                goto out;
                        }
                        req.protected_kinds = strdup(kinds->valuestring);
                }
                if ((prog && !req.program) || (kinds && !req.protected_kinds)) {
                        err = "out of memory";
                        r = -ENOMEM;
                        goto out;
                }
                r = 0;
                break;
        }

        case WIRE_OP_MGMT_LOG_SET:
                if ((r = get_uint(root, "max_records", false, 10000000, &v, &err,
                                  "\"max_records\" must be a number from 100 to 10000000")) < 0)
                        goto out;
                if (r > 0 && v < 100) {
                        err = "\"max_records\" must be a number from 100 to 10000000";
                        r = -EINVAL;
                        goto out;
                }
                req.has_max_records = r > 0;
                req.max_records = (unsigned)v;
                if ((r = get_bool(root, "diagnostic", &req.diagnostic, &err,
                                  "\"diagnostic\" must be true or false")) < 0)
                        goto out;
                req.has_diagnostic = r > 0;
                r = 0;
                break;

        case WIRE_OP_MGMT_PIN_CACHE_CLEAR:
                r = get_uint(root, "slot", false, UINT32_MAX, &v, &err, "\"slot\" must be a slot number");
                if (r < 0)
                        goto out;
                req.has_slot = r > 0;
                req.slot = (CK_SLOT_ID)v;
                r = 0;
                break;

        case WIRE_OP_MGMT_PIN_CACHE_SET: {
                const char *bad_dur = "durations are seconds or text such as \"30m\" or \"1h\", from 1 minute to 24 hours";
                if ((r = get_bool(root, "enabled", &req.enabled, &err, "\"enabled\" must be true or false")) < 0)
                        goto out;
                req.has_enabled = r > 0;
                if ((r = get_duration(root, "ttl", &req.ttl, &err, bad_dur)) < 0)
                        goto out;
                req.has_ttl = r > 0;
                if ((r = get_duration(root, "max", &req.max, &err, bad_dur)) < 0)
                        goto out;
                req.has_max = r > 0;
                if ((r = get_bool(root, "always_authenticate", &req.always_auth, &err,
                                  "\"always_authenticate\" must be true or false")) < 0)
                        goto out;
                req.has_always_auth = r > 0;
                const cJSON *sc = cJSON_GetObjectItemCaseSensitive(root, "scope");
                if (sc) {
                        if (cJSON_IsString(sc) && sc->valuestring && strcmp(sc->valuestring, "process") == 0)
                                req.scope = PINCACHE_SCOPE_PROCESS;
                        else if (cJSON_IsString(sc) && sc->valuestring && strcmp(sc->valuestring, "session") == 0)
                                req.scope = PINCACHE_SCOPE_SESSION;
                        else {
                                err = "\"scope\" must be \"process\" or \"session\"";
                                r = -EINVAL;
                                goto out;
                        }
                        req.has_scope = true;
                }
                if (req.has_ttl && req.has_max && req.max < req.ttl) {
                        err = "the cap (max) cannot be shorter than the time to live (ttl)";
                        r = -EINVAL;
                        goto out;
                }
                r = 0;
                break;
        }

        case WIRE_OP_MGMT_PIN_STATUS:
        case WIRE_OP_MGMT_TOKEN_DELETE:
                r = get_uint(root, "slot", true, UINT32_MAX, &v, &err, "\"slot\" must be a slot number");
                if (r < 0)
                        goto out;
                req.has_slot = true;
                req.slot = (CK_SLOT_ID)v;
                r = 0;
                break;

        case WIRE_OP_MGMT_TOKEN_CREATE_SOFT: {
                const cJSON *label = cJSON_GetObjectItemCaseSensitive(root, "label");
                size_t n;

                if (!label || !cJSON_IsString(label) || !label->valuestring) {
                        err = "a label is required";
                        r = -EINVAL;
                        goto out;
                }
                n = strlen(label->valuestring);
                if (n == 0 || n > MGMT_LABEL_MAX) {
                        err = "the label must be 1 to 32 bytes";
                        r = -EINVAL;
                        goto out;
                }
                if (!text_is_clean(label->valuestring, n)) {
                        err = "the label must be valid UTF-8 without control characters";
                        r = -EINVAL;
                        goto out;
                }
                memcpy(req.label, label->valuestring, n + 1);
                r = get_pin(root, "pin", &req.pin, &req.pin_len, &err, "a user PIN is required",
                            "the user PIN must be 4 to 64 characters");
                if (r < 0)
                        goto out;
                r = get_pin(root, "so_pin", &req.so_pin, &req.so_pin_len, &err, "an SO PIN is required",
                            "the SO PIN must be 4 to 64 characters");
                if (r < 0)
                        goto out;
                r = get_uint(root, "max_tries", false, MGMT_MAX_TRIES_LIMIT, &v, &err,
                             "\"max_tries\" must be a number from 1 to 100");
                if (r < 0)
                        goto out;
                if (r > 0) {
                        if (v == 0) {
                                err = "\"max_tries\" must be a number from 1 to 100";
                                r = -EINVAL;
                                goto out;
                        }
                        req.max_tries = (unsigned)v;
                }
                r = 0;
                break;
        }
        }

out:
        wipe_json_tree(root);
        cJSON_Delete(root);
        if (r < 0) {
                mgmt_request_done(&req);
                *ret_error = err ? err : "invalid request";
                return r;
        }
        *ret = req;
        return 0;
}

/* Reply helpers. */

static int reply_error(int err, const char *msg, char **ret_json) {
        cJSON *o = cJSON_CreateObject();
        char *s = NULL;

        if (err < 0)
                err = -err;
        if (err == 0)
                err = EIO;
        if (o && cJSON_AddStringToObject(o, "error", msg ? msg : strerror(err)) &&
            cJSON_AddNumberToObject(o, "errno", err))
                s = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (!s)
                return -ENOMEM;
        *ret_json = s;
        return err;
}

/* Names from devices and files (labels, program names) may be anything:
 * the reply stays valid JSON (text_json_sanitize). */
static int reply_ok(cJSON *o, char **ret_json) {
        char *s = text_json_sanitize(o) ? cJSON_PrintUnformatted(o) : NULL;
        cJSON_Delete(o);
        if (!s)
                return reply_error(ENOMEM, "out of memory", ret_json);
        *ret_json = s;
        return 0;
}

struct flag_name {
        CK_FLAGS flag;
        const char *name;
};

static const struct flag_name token_flags[] = {
        { CKF_RNG, "rng" },
        { CKF_WRITE_PROTECTED, "write_protected" },
        { CKF_LOGIN_REQUIRED, "login_required" },
        { CKF_USER_PIN_INITIALIZED, "pin_initialized" },
        { CKF_RESTORE_KEY_NOT_NEEDED, "restore_key_not_needed" },
        { CKF_CLOCK_ON_TOKEN, "clock_on_token" },
        { CKF_PROTECTED_AUTHENTICATION_PATH, "protected_auth" },
        { CKF_DUAL_CRYPTO_OPERATIONS, "dual_crypto_operations" },
        { CKF_TOKEN_INITIALIZED, "token_initialized" },
        { CKF_SECONDARY_AUTHENTICATION, "secondary_authentication" },
        { CKF_USER_PIN_COUNT_LOW, "user_pin_count_low" },
        { CKF_USER_PIN_FINAL_TRY, "user_pin_final_try" },
        { CKF_USER_PIN_LOCKED, "user_pin_locked" },
        { CKF_USER_PIN_TO_BE_CHANGED, "user_pin_to_be_changed" },
        { CKF_SO_PIN_COUNT_LOW, "so_pin_count_low" },
        { CKF_SO_PIN_FINAL_TRY, "so_pin_final_try" },
        { CKF_SO_PIN_LOCKED, "so_pin_locked" },
        { CKF_SO_PIN_TO_BE_CHANGED, "so_pin_to_be_changed" },
};

static cJSON *flags_to_json(CK_FLAGS flags) {
        cJSON *a = cJSON_CreateArray();
        if (!a)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(token_flags); i++)
                if (flags & token_flags[i].flag)
                        cJSON_AddItemToArray(a, cJSON_CreateString(token_flags[i].name));
        return a;
}

static void add_tries(cJSON *o, const char *name, int v) {
        if (v < 0)
                cJSON_AddNullToObject(o, name);
        else
                cJSON_AddNumberToObject(o, name, v);
}

static cJSON *pin_to_json(const struct token_desc *d, bool so) {
        cJSON *o = cJSON_CreateObject();
        CK_FLAGS f = d->flags;
        if (!o)
                return NULL;
        if (so) {
                add_tries(o, "tries_left", d->so_tries_left);
                add_tries(o, "tries_max", d->so_tries_max);
                cJSON_AddBoolToObject(o, "locked", !!(f & CKF_SO_PIN_LOCKED));
                cJSON_AddBoolToObject(o, "count_low", !!(f & CKF_SO_PIN_COUNT_LOW));
                cJSON_AddBoolToObject(o, "final_try", !!(f & CKF_SO_PIN_FINAL_TRY));
                cJSON_AddBoolToObject(o, "to_be_changed", !!(f & CKF_SO_PIN_TO_BE_CHANGED));
        } else {
                add_tries(o, "tries_left", d->user_tries_left);
                add_tries(o, "tries_max", d->user_tries_max);
                cJSON_AddBoolToObject(o, "locked", !!(f & CKF_USER_PIN_LOCKED));
                cJSON_AddBoolToObject(o, "count_low", !!(f & CKF_USER_PIN_COUNT_LOW));
                cJSON_AddBoolToObject(o, "final_try", !!(f & CKF_USER_PIN_FINAL_TRY));
                cJSON_AddBoolToObject(o, "to_be_changed", !!(f & CKF_USER_PIN_TO_BE_CHANGED));
                cJSON_AddBoolToObject(o, "initialized", !!(f & CKF_USER_PIN_INITIALIZED));
        }
        return o;
}

/* The driver's extra members of a token listing (registry_describe). */
static void put_string(void *ctx, const char *key, const char *value) {
        cJSON_AddStringToObject(ctx, key, value);
}

static cJSON *token_to_json(const struct netcad *nd, const struct core_token_summary *t) {
        const struct token_desc *d = &t->desc;
        cJSON *o = cJSON_CreateObject();

        if (!o)
                return NULL;
        cJSON_AddNumberToObject(o, "slot", (double)t->slot);
        cJSON_AddBoolToObject(o, "present", t->present);
        if (t->present) {
                cJSON_AddStringToObject(o, "kind", d->kind ? d->kind : "unknown");
                cJSON_AddStringToObject(o, "label", d->label);
                cJSON_AddStringToObject(o, "serial", d->serial);
                cJSON_AddStringToObject(o, "manufacturer", d->manufacturer);
                cJSON_AddStringToObject(o, "model", d->model);
                cJSON_AddItemToObject(o, "flags", flags_to_json(d->flags));
                cJSON_AddBoolToObject(o, "login_required", !!(d->flags & CKF_LOGIN_REQUIRED));
                cJSON_AddBoolToObject(o, "pin_initialized", !!(d->flags & CKF_USER_PIN_INITIALIZED));
                cJSON_AddBoolToObject(o, "protected_auth", !!(d->flags & CKF_PROTECTED_AUTHENTICATION_PATH));
                cJSON_AddBoolToObject(o, "write_protected", !!(d->flags & CKF_WRITE_PROTECTED));
                add_tries(o, "user_tries_left", d->user_tries_left);
                add_tries(o, "user_tries_max", d->user_tries_max);
                cJSON_AddBoolToObject(o, "locked", !!(d->flags & CKF_USER_PIN_LOCKED));
                cJSON_AddNumberToObject(o, "min_pin", (double)d->min_pin);
                cJSON_AddNumberToObject(o, "max_pin", (double)d->max_pin);
                if (nd->registry)
                        registry_describe(nd->registry, t->slot, put_string, o);
        }
        cJSON_AddNumberToObject(o, "sessions", t->sessions);
        cJSON_AddNumberToObject(o, "logged_in", t->logged_in);
        cJSON_AddNumberToObject(o, "object_loads", t->object_loads);
        return o;
}

static int find_token(struct core *c, CK_SLOT_ID slot, struct core_token_summary *ret) {
        _cleanup_free_ struct core_token_summary *v = NULL;
        size_t n = 0;
        int r;

        r = core_list_tokens(c, &v, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++)
                if (v[i].slot == slot) {
                        if (!v[i].present)
                                return -ENODEV;
                        *ret = v[i];
                        return 0;
                }
        return -ENOENT;
}

static int op_status(struct netcad *d, _unused_ const struct mgmt_request *req, char **ret_json) {
        _cleanup_free_ struct core_token_summary *v = NULL;
        unsigned clients = 0, sessions = 0, ntok = 0;
        size_t n = 0;
        time_t now = time(NULL);
        cJSON *o;

        unsigned loads = 0;
        if (core_list_tokens(d->core, &v, &n) >= 0)
                for (size_t i = 0; i < n; i++) {
                        ntok += v[i].present;
                        loads += v[i].object_loads;
                }
        core_stats(d->core, &clients, &sessions);

        o = cJSON_CreateObject();
        if (!o)
                return reply_error(ENOMEM, "out of memory", ret_json);
        cJSON_AddStringToObject(o, "version", NETCA_VERSION);
        cJSON_AddNumberToObject(o, "wire_version", WIRE_VERSION);
        cJSON_AddNumberToObject(o, "pid", d->pid ? d->pid : getpid());
        cJSON_AddNumberToObject(o, "uptime", d->started && now >= d->started ? (double)(now - d->started) : 0);
        cJSON_AddStringToObject(o, "data_dir", d->data_dir ? d->data_dir : "");
        cJSON_AddStringToObject(o, "socket", d->socket_path ? d->socket_path : "");
        cJSON_AddNumberToObject(o, "clients", clients);
        cJSON_AddNumberToObject(o, "sessions", sessions);
        cJSON_AddNumberToObject(o, "tokens", ntok);
        cJSON_AddNumberToObject(o, "p11_requests", (double)dispatch_p11_count());
        /* How often token object lists were read from the drivers (once per
         * token and insertion, plus re-reads after writes on card tokens). */
        cJSON_AddNumberToObject(o, "object_loads", loads);
        /* Sweeps that gave freed memory back to the system (after clients
         * went away): a test reads the daemon's RSS once one has run. */
        cJSON_AddNumberToObject(o, "memory_trims", (double)__atomic_load_n(&d->memory_trims, __ATOMIC_RELAXED));
        return reply_ok(o, ret_json);
}

/* ---- PIN cache ---- */

#define PIN_CACHE_KEY "pin_cache"
#define PINENTRY_KEY "pinentry"
#define LOG_SETTINGS_KEY "log"

static int apply_saved(struct netcad *d, const char *key, uint16_t op);

static cJSON *policy_to_json(const struct pincache_policy *p) {
        cJSON *o = cJSON_CreateObject();
        if (!o)
                return NULL;
        cJSON_AddBoolToObject(o, "enabled", p->enabled);
        cJSON_AddNumberToObject(o, "ttl", (double)p->ttl);
        cJSON_AddNumberToObject(o, "max", (double)p->max);
        cJSON_AddStringToObject(o, "scope", p->scope == PINCACHE_SCOPE_SESSION ? "session" : "process");
        cJSON_AddBoolToObject(o, "always_authenticate", p->always_authenticate);
        return o;
}

int mgmt_apply_settings(struct netcad *d) {
        int r = apply_saved(d, PIN_CACHE_KEY, WIRE_OP_MGMT_PIN_CACHE_SET);
        int r2 = apply_saved(d, LOG_SETTINGS_KEY, WIRE_OP_MGMT_LOG_SET);
        int r3 = apply_saved(d, PINENTRY_KEY, WIRE_OP_MGMT_PINENTRY_SET);
        return r < 0 ? r : r2 < 0 ? r2 : r3;
}

static int op_pin_cache_set(struct netcad *d, const struct mgmt_request *req, char **ret_json) {
        struct pincache *pc = core_pin_cache(d->core);
        struct pincache_policy p;
        pincache_get_policy(pc, &p);
        if (req->has_enabled)
                p.enabled = req->enabled;
        if (req->has_ttl) {
                p.ttl = req->ttl;
                p.enabled = req->has_enabled ? req->enabled : true;
        }
        if (req->has_max)
                p.max = req->max;
        if (req->has_scope)
                p.scope = (enum pincache_scope)req->scope;
        if (req->has_always_auth)
                p.always_authenticate = req->always_auth;
        if (p.max < p.ttl)
                return reply_error(EINVAL, "the cap (max) cannot be shorter than the time to live (ttl)", ret_json);
        cJSON *o = policy_to_json(&p);
        _cleanup_free_ char *text = o ? cJSON_PrintUnformatted(o) : NULL;
        if (!text) {
                cJSON_Delete(o);
                return reply_error(ENOMEM, "out of memory", ret_json);
        }
        /* Saved first: a setting that is not kept is not applied either. */
        int r = d->state ? state_set(d->state, PIN_CACHE_KEY, text) : 0;
        if (r < 0) {
                cJSON_Delete(o);
                return reply_error(r, "cannot save the setting", ret_json);
        }
        /* A policy change flushes the cache. */
        pincache_set_policy(pc, &p);
        log_notice("PIN cache policy: %s", text);
        cJSON *reply = cJSON_CreateObject();
        if (!reply) {
                cJSON_Delete(o);
                return reply_error(ENOMEM, "out of memory", ret_json);
        }
        cJSON_AddItemToObject(reply, "policy", o);
        return reply_ok(reply, ret_json);
}

struct status_ctx {
        struct netcad *d;
        cJSON *entries;
};

static void status_entry(const struct pincache_entry_info *e, void *ud) {
        struct status_ctx *k = ud;
        cJSON *o = cJSON_CreateObject();
        if (!o)
                return;
        CK_SLOT_ID slot;
        cJSON_AddStringToObject(o, "token", e->token);
        if (core_find_slot(k->d->core, e->token, &slot) >= 0)
                cJSON_AddNumberToObject(o, "slot", (double)slot);
        cJSON_AddStringToObject(o, "scope", e->scope == PINCACHE_SCOPE_SESSION ? "session" : "process");
        if (e->scope == PINCACHE_SCOPE_SESSION)
                cJSON_AddStringToObject(o, "session", e->session);
        else
                cJSON_AddNumberToObject(o, "pid", (double)e->pid);
        cJSON_AddNumberToObject(o, "expires_in", (double)e->expires_in);
        cJSON_AddNumberToObject(o, "cap_in", (double)e->cap_in);
        cJSON_AddItemToArray(k->entries, o);
}

static int op_pin_cache_status(struct netcad *d, _unused_ const struct mgmt_request *req, char **ret_json) {
        struct pincache *pc = core_pin_cache(d->core);
        core_sweep(d->core);
        struct pincache_policy p;
        pincache_get_policy(pc, &p);
        cJSON *o = cJSON_CreateObject();
        cJSON *pol = policy_to_json(&p);
        struct status_ctx k = { d, cJSON_CreateArray() };
        if (!o || !pol || !k.entries) {
                cJSON_Delete(o);
                cJSON_Delete(pol);
                cJSON_Delete(k.entries);
                return reply_error(ENOMEM, "out of memory", ret_json);
        }
        pincache_foreach(pc, status_entry, &k);
        cJSON_AddItemToObject(o, "policy", pol);
        cJSON_AddItemToObject(o, "entries", k.entries);
        return reply_ok(o, ret_json);
}

static int op_pin_cache_clear(struct netcad *d, const struct mgmt_request *req, char **ret_json) {
        struct pincache *pc = core_pin_cache(d->core);
        unsigned n;
        if (req->has_slot) {
                struct core_token_summary t;
                int r = find_token(d->core, req->slot, &t);
                if (r < 0)
                        return reply_error(ENOENT, "no token in this slot", ret_json);
                n = pincache_flush_token(pc, t.slot_key);
        } else
                n = pincache_flush_all(pc);
        log_notice("PIN cache cleared%s: %u entr%s", req->has_slot ? " for one token" : "", n, n == 1 ? "y" : "ies");
        cJSON *o = cJSON_CreateObject();
        if (!o)
                return reply_error(ENOMEM, "out of memory", ret_json);
        cJSON_AddNumberToObject(o, "cleared", n);
        return reply_ok(o, ret_json);
}

/* ---- usage records and the diagnostic log ---- */

#define DIAG_LOG_NAME "diagnostic.log"

static int diag_apply(struct netcad *d, bool on) {
        if (!on) {
                log_set_diagnostic_fd(-1);
                return 0;
        }
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "%s/%s", d->data_dir, DIAG_LOG_NAME) < 0)
                return -ENOMEM;
        int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        log_set_diagnostic_fd(fd);
        return 0;
}

static void log_settings_apply(struct netcad *d, const struct mgmt_request *req) {
        if (req->has_max_records && d->audit)
                audit_set_max(d->audit, req->max_records);
        if (req->has_diagnostic) {
                int r = diag_apply(d, req->diagnostic);
                if (r < 0)
                        log_warning("cannot open the diagnostic log: %s", strerror(-r));
        }
}

static void pinentry_settings_apply(struct netcad *d, const struct mgmt_request *req) {
        struct core_pin_entry pe;
        core_get_pin_entry(d->core, &pe);
        if (req->program)
                snprintf(pe.program, sizeof pe.program, "%s", req->program);
        if (req->has_timeout)
                pe.timeout_s = req->timeout_s;
        if (req->protected_kinds)
                snprintf(pe.protected_kinds, sizeof pe.protected_kinds, "%s", req->protected_kinds);
        core_set_pin_entry(d->core, &pe);
}

static int op_pinentry_set(struct netcad *d, const struct mgmt_request *req, char **ret_json) {
        struct core_pin_entry pe;
        if (req->program || req->has_timeout || req->protected_kinds) {
                /* Saved: the whole new setting. */
                pinentry_settings_apply(d, req);
                core_get_pin_entry(d->core, &pe);
                cJSON *o = cJSON_CreateObject();
                if (!o)
                        return reply_error(ENOMEM, "out of memory", ret_json);
                cJSON_AddStringToObject(o, "program", pe.program);
                cJSON_AddNumberToObject(o, "timeout", pe.timeout_s);
                cJSON_AddStringToObject(o, "protected", pe.protected_kinds);
                _cleanup_free_ char *text = cJSON_PrintUnformatted(o);
                cJSON_Delete(o);
                int r = text && d->state ? state_set(d->state, PINENTRY_KEY, text) : 0;
                if (!text || r < 0)
                        return reply_error(r < 0 ? r : ENOMEM, "cannot save the setting", ret_json);
                log_notice("pinentry settings: %s", text);
        }
        core_get_pin_entry(d->core, &pe);
        cJSON *o = cJSON_CreateObject();
        if (!o)
                return reply_error(ENOMEM, "out of memory", ret_json);
        cJSON_AddStringToObject(o, "program", pe.program);
        cJSON_AddBoolToObject(o, "program_found", access(pe.program, X_OK) == 0);
        cJSON_AddNumberToObject(o, "timeout", pe.timeout_s);
        cJSON_AddStringToObject(o, "protected", pe.protected_kinds);
        return reply_ok(o, ret_json);
}

static int apply_saved(struct netcad *d, const char *key, uint16_t op) {
        _cleanup_free_ char *saved = NULL;
        if (!d->state || state_get(d->state, key, &saved) < 0)
                return 0;
        struct mgmt_request req;
        const char *err;
        int r = mgmt_parse_request(op, saved, &req, &err);
        if (r < 0) {
                log_warning("saved setting \"%s\" is invalid (%s): using the defaults", key, err);
                return r;
        }
        if (op == WIRE_OP_MGMT_LOG_SET)
                log_settings_apply(d, &req);
        else if (op == WIRE_OP_MGMT_PINENTRY_SET)
                pinentry_settings_apply(d, &req);
        else {
                struct pincache_policy p;
                pincache_policy_default(&p);
                if (req.has_enabled)
                        p.enabled = req.enabled;
                if (req.has_ttl)
                        p.ttl = req.ttl;
                if (req.has_max)
                        p.max = req.max;
                if (req.has_scope)
                        p.scope = (enum pincache_scope)req.scope;
                if (req.has_always_auth)
                        p.always_authenticate = req.always_auth;
                pincache_set_policy(core_pin_cache(d->core), &p);
        }
        mgmt_request_done(&req);
        return 0;
}

static int op_log_show(struct netcad *d, const struct mgmt_request *req, char **ret_json) {
        if (!d->audit)
                return reply_error(EIO, "usage records are not available (see the daemon's log)", ret_json);
        struct audit_filter f = {
                .since_ms = req->since_ms,
                .until_ms = req->until_ms,
                .token = req->token[0] ? req->token : NULL,
                .failed_only = req->failed_only,
                .limit = req->limit,
        };
        cJSON *records = NULL;
        int r = audit_query(d->audit, &f, &records);
        if (r < 0)
                return reply_error(r, "cannot read the usage records", ret_json);
        cJSON *o = cJSON_CreateObject();
        if (!o) {
                cJSON_Delete(records);
                return reply_error(ENOMEM, "out of memory", ret_json);
        }
        cJSON_AddItemToObject(o, "records", records);
        cJSON_AddNumberToObject(o, "max_records", audit_get_max(d->audit));
        _cleanup_free_ char *diag = NULL;
        if (asprintf(&diag, "%s/%s", d->data_dir, DIAG_LOG_NAME) >= 0)
                cJSON_AddStringToObject(o, "diagnostic_log", diag);
        cJSON_AddBoolToObject(o, "diagnostic", log_get_diagnostic_fd() >= 0);
        return reply_ok(o, ret_json);
}

static int op_log_clear(struct netcad *d, _unused_ const struct mgmt_request *req, char **ret_json) {
        unsigned n = 0;
        if (!d->audit)
                return reply_error(EIO, "usage records are not available (see the daemon's log)", ret_json);
        int r = audit_clear(d->audit, &n);
        if (r < 0)
                return reply_error(r, "cannot clear the usage records", ret_json);
        log_notice("usage records cleared: %u", n);
        cJSON *o = cJSON_CreateObject();
        if (!o)
                return reply_error(ENOMEM, "out of memory", ret_json);
        cJSON_AddNumberToObject(o, "cleared", n);
        return reply_ok(o, ret_json);
}

static int op_log_set(struct netcad *d, const struct mgmt_request *req, char **ret_json) {
        /* The saved settings, with this request's changes. */
        cJSON *o = NULL;
        _cleanup_free_ char *saved = NULL;
        if (d->state && state_get(d->state, LOG_SETTINGS_KEY, &saved) >= 0)
                o = cJSON_Parse(saved);
        if (!o)
                o = cJSON_CreateObject();
        if (!o)
                return reply_error(ENOMEM, "out of memory", ret_json);
        if (req->has_max_records) {
                cJSON_DeleteItemFromObjectCaseSensitive(o, "max_records");
                cJSON_AddNumberToObject(o, "max_records", req->max_records);
        }
        if (req->has_diagnostic) {
                cJSON_DeleteItemFromObjectCaseSensitive(o, "diagnostic");
                cJSON_AddBoolToObject(o, "diagnostic", req->diagnostic);
        }
        _cleanup_free_ char *text = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        int r = text && d->state ? state_set(d->state, LOG_SETTINGS_KEY, text) : 0;
        if (!text || r < 0)
                return reply_error(r < 0 ? r : ENOMEM, "cannot save the setting", ret_json);
        log_settings_apply(d, req);
        cJSON *rep = cJSON_CreateObject();
        if (!rep)
                return reply_error(ENOMEM, "out of memory", ret_json);
        cJSON_AddNumberToObject(rep, "max_records", d->audit ? audit_get_max(d->audit) : 0);
        cJSON_AddBoolToObject(rep, "diagnostic", log_get_diagnostic_fd() >= 0);
        return reply_ok(rep, ret_json);
}

static int op_token_list(struct netcad *d, _unused_ const struct mgmt_request *req, char **ret_json) {
        _cleanup_free_ struct core_token_summary *v = NULL;
        size_t n = 0;
        cJSON *o, *a;
        int r;

        r = core_list_tokens(d->core, &v, &n);
        if (r < 0)
                return reply_error(r, "cannot list tokens", ret_json);
        o = cJSON_CreateObject();
        a = cJSON_AddArrayToObject(o, "tokens");
        if (!o || !a) {
                cJSON_Delete(o);
                return reply_error(ENOMEM, "out of memory", ret_json);
        }
        for (size_t i = 0; i < n; i++)
                cJSON_AddItemToArray(a, token_to_json(d, &v[i]));
        return reply_ok(o, ret_json);
}

static int op_pin_status(struct netcad *d, const struct mgmt_request *req, char **ret_json) {
        struct core_token_summary t;
        cJSON *o;
        int r;

        r = find_token(d->core, req->slot, &t);
        if (r == -ENOENT)
                return reply_error(ENOENT, "no such slot", ret_json);
        if (r == -ENODEV)
                return reply_error(ENODEV, "no token in this slot", ret_json);
        if (r < 0)
                return reply_error(r, "cannot read the token state", ret_json);
        o = cJSON_CreateObject();
        if (!o)
                return reply_error(ENOMEM, "out of memory", ret_json);
        cJSON_AddNumberToObject(o, "slot", (double)t.slot);
        cJSON_AddStringToObject(o, "label", t.desc.label);
        cJSON_AddItemToObject(o, "user", pin_to_json(&t.desc, false));
        cJSON_AddItemToObject(o, "so", pin_to_json(&t.desc, true));
        cJSON_AddItemToObject(o, "flags", flags_to_json(t.desc.flags));
        return reply_ok(o, ret_json);
}

static int op_create_soft(struct netcad *d, const struct mgmt_request *req, char **ret_json) {
        _cleanup_free_ char *where = NULL;
        CK_SLOT_ID slot = 0;
        cJSON *o;
        int r;

        const struct driver_create_args a = {
                .label = req->label,
                .pin = req->pin,
                .pin_len = req->pin_len,
                .so_pin = req->so_pin,
                .so_pin_len = req->so_pin_len,
                .max_tries = req->max_tries,
        };
        r = d->registry ? registry_create(d->registry, "soft", &a, &slot, &where) : -ENOENT;
        if (r == -ENOENT)
                return reply_error(EIO, "soft tokens are not served (no data directory)", ret_json);
        if (r == -EINVAL)
                return reply_error(r, "invalid label", ret_json);
        if (r == -EMSGSIZE)
                return reply_error(r, "PINs must be 4 to 64 characters", ret_json);
        if (r < 0)
                return reply_error(r, "cannot create the token", ret_json);
        log_notice("created soft token \"%s\" in slot %lu (%s)", req->label, (unsigned long)slot, where ? where : "");

        o = cJSON_CreateObject();
        if (!o)
                return reply_error(ENOMEM, "out of memory", ret_json);
        cJSON_AddNumberToObject(o, "slot", (double)slot);
        cJSON_AddStringToObject(o, "label", req->label);
        if (where)
                cJSON_AddStringToObject(o, "path", where);
        return reply_ok(o, ret_json);
}

static int op_token_delete(struct netcad *d, const struct mgmt_request *req, char **ret_json) {
        _cleanup_free_ char *where = NULL;
        struct core_token_summary t;
        const char *kind = NULL;
        cJSON *o;
        int r;

        r = find_token(d->core, req->slot, &t);
        if (r == -ENOENT || r == -ENODEV)
                return reply_error(ENOENT, "no token in this slot", ret_json);
        if (r < 0)
                return reply_error(r, "cannot read the token state", ret_json);
        r = d->registry ? registry_delete(d->registry, req->slot, &kind, &where) : -ENOENT;
        if (r == -ENOENT)
                return reply_error(ENOENT, "no token in this slot", ret_json);
        if (r == -EPERM)
                return reply_error(EPERM, "tokens of this kind cannot be deleted", ret_json);
        if (r < 0)
                return reply_error(r, "cannot delete the token", ret_json);
        log_notice("deleted %s token \"%s\" in slot %lu (%s)", kind, t.desc.label, (unsigned long)req->slot,
                   where ? where : "");

        o = cJSON_CreateObject();
        if (!o)
                return reply_error(ENOMEM, "out of memory", ret_json);
        cJSON_AddNumberToObject(o, "slot", (double)req->slot);
        cJSON_AddStringToObject(o, "label", t.desc.label);
        if (where)
                cJSON_AddStringToObject(o, "path", where);
        return reply_ok(o, ret_json);
}

typedef int (*mgmt_handler_fn)(struct netcad *d, const struct mgmt_request *req, char **ret_json);

/* The handler of each MGMT row of the op table (common/wire.h). */
static const struct {
        uint16_t op;
        mgmt_handler_fn fn;
} mgmt_handlers[] = {
#define ROW(name, num, req, rep, kind, route, reply, handler) ROW_##kind(num, handler)
#define ROW_MGMT(num, handler) { num, handler },
#define ROW_LOOP(num, handler)
#define ROW_PUSH(num, handler)
#define ROW_P11(num, handler)
        WIRE_OPS(ROW)
#undef ROW
#undef ROW_MGMT
#undef ROW_LOOP
#undef ROW_PUSH
#undef ROW_P11
};

int mgmt_handle(struct netcad *d, struct core_client *cl, uint16_t op, const char *json, char **ret_json) {
        struct mgmt_request req = {};
        const char *err = NULL;
        int r;

        if (!ret_json)
                return -EINVAL;
        if (!d || !d->core)
                return reply_error(EIO, "the daemon is not ready", ret_json);

        r = mgmt_parse_request(op, json, &req, &err);
        if (r < 0) {
                log_debug(LOG_SUB_MGMT, "mgmt %s: rejected: %s", wire_op_name(op) ? wire_op_name(op) : "?", err);
                return reply_error(r, err, ret_json);
        }
        log_debug(LOG_SUB_MGMT, "mgmt %s", wire_op_name(op));

        mgmt_handler_fn fn = NULL;
        for (size_t i = 0; i < ELEMENTSOF(mgmt_handlers) && !fn; i++)
                if (mgmt_handlers[i].op == op)
                        fn = mgmt_handlers[i].fn;
        r = fn ? fn(d, &req, ret_json) : reply_error(EOPNOTSUPP, "unknown management operation", ret_json);
        mgmt_request_done(&req);
        return r;
}

int mgmt_dispatch(struct netcad *d, struct core_client *cl, struct wire_msg *req, struct wire_msg *reply) {
        char *json = NULL, *out = NULL;
        int r;
        if (!mgmt_is_op(req->opnum) || (req->flags & (WIRE_F_REPLY | WIRE_F_EVENT)) || !wire_get_json(req, &json) ||
            wire_msg_read_done(req) < 0 || !json) {
                r = wire_error_reply(reply, req->opnum, req->id, CKR_ARGUMENTS_BAD);
                goto out;
        }
        int st = mgmt_handle(d, cl, req->opnum, json, &out);
        wire_msg_init_write(reply, req->opnum, req->id, WIRE_F_REPLY);
        wire_put_u64(reply, st < 0 ? (uint64_t)-st : (uint64_t)st);
        wire_put_json(reply, out ? out : "{\"error\":\"out of memory\",\"errno\":12}");
        r = wire_msg_finish(reply);
        if (r < 0) {
                wire_msg_done(reply);
                r = wire_error_reply(reply, req->opnum, req->id, CKR_GENERAL_ERROR);
        }
out:
        if (json) {
                explicit_bzero(json, strlen(json)); /* may hold PINs */
                free(json);
        }
        free(out);
        return r;
}
