/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* netca-tool pin-cache set|status|clear: the daemon's PIN cache (密码缓存),
 * through the management ops.  No PIN ever comes back: status shows the
 * policy and, per cached entry, the token, the scope and the expiry. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

/* "1h 30m" from seconds. */
static void fmt_duration(double secs, char *buf, size_t cap) {
        unsigned long s = secs > 0 ? (unsigned long)secs : 0;
        if (s >= 3600 && s % 3600 == 0)
                snprintf(buf, cap, "%luh", s / 3600);
        else if (s >= 3600)
                snprintf(buf, cap, "%luh %lum", s / 3600, (s % 3600) / 60);
        else if (s >= 60 && s % 60 == 0)
                snprintf(buf, cap, "%lum", s / 60);
        else if (s >= 60)
                snprintf(buf, cap, "%lum %lus", s / 60, s % 60);
        else
                snprintf(buf, cap, "%lus", s);
}

static void print_policy(const cJSON *p) {
        char ttl[32], max[32];
        fmt_duration(jnum(p, "ttl", 0), ttl, sizeof ttl);
        fmt_duration(jnum(p, "max", 0), max, sizeof max);
        if (!jbool(p, "enabled")) {
                printf("PIN cache: off\n");
                return;
        }
        printf("PIN cache: on, %s after the last use (at most %s after entry), per %s%s\n", ttl, max,
               jstr(p, "scope"), jbool(p, "always_authenticate") ? ", also for keys that ask every time" : "");
}

static void print_set(const cJSON *reply) {
        print_policy(cJSON_GetObjectItemCaseSensitive(reply, "policy"));
        printf("Cached PINs were cleared (the policy changed).\n");
}

int cmd_pin_cache_set(void) {
        cJSON *req = cJSON_CreateObject();
        if (!req) {
                cli_error("out of memory");
                return CLI_EXIT_OTHER;
        }
        if (arg.cache_on >= 0)
                cJSON_AddBoolToObject(req, "enabled", arg.cache_on == 1);
        if (arg.ttl)
                cJSON_AddStringToObject(req, "ttl", arg.ttl);
        if (arg.max)
                cJSON_AddStringToObject(req, "max", arg.max);
        if (arg.scope)
                cJSON_AddStringToObject(req, "scope", arg.scope);
        if (arg.always_auth >= 0)
                cJSON_AddBoolToObject(req, "always_authenticate", arg.always_auth == 1);
        if (!req->child) {
                cJSON_Delete(req);
                cli_error("pin-cache set needs --on, --off, --ttl, --max, --scope or --always-authenticate");
                return CLI_EXIT_USAGE;
        }
        return mgmt_request_print(WIRE_OP_MGMT_PIN_CACHE_SET, req, print_set);
}

int cmd_pin_cache_status(void) {
        cJSON *reply = NULL, *list = NULL, *e;
        int r = mgmt_call_checked(WIRE_OP_MGMT_PIN_CACHE_STATUS, NULL, &reply);
        if (r != CLI_EXIT_OK)
                return r;
        if (arg.json) {
                print_json(reply);
                cJSON_Delete(reply);
                return CLI_EXIT_OK;
        }
        print_policy(cJSON_GetObjectItemCaseSensitive(reply, "policy"));
        /* Token labels, for the entries. */
        (void)mgmt_call_checked(WIRE_OP_MGMT_TOKEN_LIST, NULL, &list);
        const cJSON *entries = cJSON_GetObjectItemCaseSensitive(reply, "entries");
        if (cJSON_GetArraySize(entries) == 0)
                printf("No PIN is cached.\n");
        cJSON_ArrayForEach(e, entries) {
                const char *label = "?";
                const cJSON *t;
                cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(list, "tokens"))
                        if (jnum(t, "slot", -1) == jnum(e, "slot", -2))
                                label = jstr(t, "label");
                char exp[32], cap[32], who[96];
                fmt_duration(jnum(e, "expires_in", 0), exp, sizeof exp);
                fmt_duration(jnum(e, "cap_in", 0), cap, sizeof cap);
                if (strcmp(jstr(e, "scope"), "session") == 0)
                        snprintf(who, sizeof who, "login session %s", jstr(e, "session"));
                else
                        snprintf(who, sizeof who, "process %.0f", jnum(e, "pid", 0));
                printf("  token \"%s\" (slot %.0f): for %s, expires in %s (at the latest in %s)\n", shown(label),
                       jnum(e, "slot", -1), who, exp, cap);
        }
        cJSON_Delete(list);
        cJSON_Delete(reply);
        return CLI_EXIT_OK;
}

static void print_cleared(const cJSON *reply) {
        double n = jnum(reply, "cleared", 0);
        printf("%.0f cached PIN%s cleared.\n", n, n == 1 ? "" : "s");
}

int cmd_pin_cache_clear(void) {
        cJSON *req = cJSON_CreateObject(), *list = NULL;
        if (!req) {
                cli_error("out of memory");
                return CLI_EXIT_OTHER;
        }
        int r;
        if (arg.token) {
                const cJSON *t;
                r = mgmt_select_token(&list, &t);
                if (r != CLI_EXIT_OK) {
                        cJSON_Delete(list);
                        cJSON_Delete(req);
                        return r;
                }
                cJSON_AddNumberToObject(req, "slot", jnum(t, "slot", -1));
        }
        r = mgmt_request_print(WIRE_OP_MGMT_PIN_CACHE_CLEAR, req, print_cleared);
        cJSON_Delete(list);
        return r;
}

/* netca-tool pinentry status|set: how the daemon asks for PINs of tokens
 * that collect them themselves (CKF_PROTECTED_AUTHENTICATION_PATH). */
static void print_pinentry(const cJSON *reply) {
        const char *kinds = jstr(reply, "protected");
        printf("pinentry program: %s%s\n", jstr(reply, "program"),
               jbool(reply, "program_found") ? "" : " (not installed)");
        printf("time to answer:   %.0f s\n", jnum(reply, "timeout", 0));
        printf("tokens that ask for their PIN themselves: %s\n", *kinds ? kinds : "none");
}

int cmd_pinentry(bool set) {
        cJSON *req = cJSON_CreateObject();
        if (!req) {
                cli_error("out of memory");
                return CLI_EXIT_OTHER;
        }
        if (set) {
                if (arg.program)
                        cJSON_AddStringToObject(req, "program", arg.program);
                if (arg.timeout > 0)
                        cJSON_AddNumberToObject(req, "timeout", arg.timeout);
                if (arg.protected_kinds)
                        cJSON_AddStringToObject(req, "protected",
                                                strcmp(arg.protected_kinds, "none") == 0 ? "" : arg.protected_kinds);
                if (!req->child) {
                        cJSON_Delete(req);
                        cli_error("pinentry set needs --program, --timeout or --protected-path");
                        return CLI_EXIT_USAGE;
                }
        }
        return mgmt_request_print(WIRE_OP_MGMT_PINENTRY_SET, req, print_pinentry);
}
