/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Commands on tokens, PINs and the daemon: token create-soft, token delete,
 * daemon status, pin status, pin change, pin unblock. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "common/secmem.h"

/* Selects a present token from the daemon's list by --token (label, serial,
 * slot) or the only one.  *ret points into list. */
int mgmt_select(const cJSON *list, const cJSON **ret) {
        const cJSON *tokens = cJSON_GetObjectItemCaseSensitive(list, "tokens"), *t, *found = NULL;
        unsigned present = 0, matches = 0;

        cJSON_ArrayForEach(t, tokens) {
                if (!jbool(t, "present"))
                        continue;
                present++;
                if (!arg.token) {
                        found = t;
                        matches++;
                        continue;
                }
                char slot[32];
                snprintf(slot, sizeof slot, "%.0f", jnum(t, "slot", -1));
                if (strcmp(jstr(t, "label"), arg.token) == 0 || strcmp(jstr(t, "serial"), arg.token) == 0 ||
                    strcmp(slot, arg.token) == 0) {
                        found = t;
                        matches++;
                }
        }
        if (matches == 1) {
                *ret = found;
                return CLI_EXIT_OK;
        }
        if (present == 0) {
                cli_error("no token found (create one with: netca-tool token create-soft --label NAME)");
                return CLI_EXIT_NOT_FOUND;
        }
        if (matches == 0)
                cli_error("no token matches \"%s\"", arg.token);
        else if (!arg.token)
                cli_error("%u tokens are present; which one?", present);
        else
                cli_error("several tokens match \"%s\"", arg.token);
        fprintf(stderr, "Tokens:\n");
        cJSON_ArrayForEach(t, tokens)
                if (jbool(t, "present"))
                        fprintf(stderr, "  slot %.0f  label \"%s\"  serial %s\n", jnum(t, "slot", -1),
                                shown(jstr(t, "label")), shown(jstr(t, "serial")));
        fprintf(stderr, "Choose one with --token LABEL|SERIAL|SLOT.\n");
        return matches == 0 ? CLI_EXIT_NOT_FOUND : CLI_EXIT_USAGE;
}

int mgmt_select_token(cJSON **ret_list, const cJSON **ret) {
        int r = mgmt_call_checked(WIRE_OP_MGMT_TOKEN_LIST, NULL, ret_list);
        if (r != CLI_EXIT_OK)
                return r;
        return mgmt_select(*ret_list, ret);
}

int mgmt_slot_for(const struct p11_token *tok, uint64_t *ret_slot) {
        cJSON *list = NULL, *t;
        int status = 0, r;

        r = mgmt_call(WIRE_OP_MGMT_TOKEN_LIST, NULL, &status, &list);
        if (r < 0)
                return r;
        if (status != 0) {
                cJSON_Delete(list);
                return -status;
        }
        r = -ENOENT;
        cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(list, "tokens")) {
                if (!jbool(t, "present"))
                        continue;
                if (strcmp(jstr(t, "serial"), tok->serial) == 0 && strcmp(jstr(t, "label"), tok->label) == 0) {
                        *ret_slot = (uint64_t)jnum(t, "slot", 0);
                        r = 0;
                        break;
                }
        }
        cJSON_Delete(list);
        return r;
}

int mgmt_pin_tries(const struct p11_token *tok, bool so, int *ret_left, int *ret_max, bool *ret_locked) {
        cJSON *req, *reply = NULL;
        const cJSON *p, *l, *m;
        uint64_t slot;
        int status = 0, r;

        r = mgmt_slot_for(tok, &slot);
        if (r < 0)
                return r;
        req = cJSON_CreateObject();
        if (!req || !cJSON_AddNumberToObject(req, "slot", (double)slot)) {
                cJSON_Delete(req);
                return -ENOMEM;
        }
        r = mgmt_call(WIRE_OP_MGMT_PIN_STATUS, req, &status, &reply);
        cJSON_Delete(req);
        if (r < 0)
                return r;
        if (status != 0) {
                cJSON_Delete(reply);
                return -status;
        }
        p = cJSON_GetObjectItemCaseSensitive(reply, so ? "so" : "user");
        l = cJSON_GetObjectItemCaseSensitive(p, "tries_left");
        m = cJSON_GetObjectItemCaseSensitive(p, "tries_max");
        *ret_left = cJSON_IsNumber(l) ? l->valueint : -1;
        *ret_max = cJSON_IsNumber(m) ? m->valueint : -1;
        *ret_locked = jbool(p, "locked");
        cJSON_Delete(reply);
        return 0;
}

static void print_daemon_status(const cJSON *reply) {
        double up = jnum(reply, "uptime", 0);
        printf("netcad %s (pid %.0f) is running\n", jstr(reply, "version"), jnum(reply, "pid", 0));
        printf("  uptime:    %.0fd %02.0f:%02.0f:%02.0f\n", (double)((long)up / 86400),
               (double)(((long)up % 86400) / 3600), (double)(((long)up % 3600) / 60), (double)((long)up % 60));
        printf("  socket:    %s\n", jstr(reply, "socket"));
        printf("  data dir:  %s\n", jstr(reply, "data_dir"));
        printf("  tokens:    %.0f\n", jnum(reply, "tokens", 0));
        printf("  clients:   %.0f\n", jnum(reply, "clients", 0));
        printf("  sessions:  %.0f\n", jnum(reply, "sessions", 0));
}

int cmd_daemon_status(void) {
        return mgmt_request_print(WIRE_OP_MGMT_STATUS, NULL, print_daemon_status);
}

int cmd_token_create_soft(void) {
        char *pin = NULL, *so_pin = NULL;
        cJSON *req = NULL, *reply = NULL;
        int r;

        if (!arg.label || !*arg.label) {
                cli_error("token create-soft needs --label NAME");
                return CLI_EXIT_USAGE;
        }
        if (strlen(arg.label) > 32) {
                cli_error("the label must be at most 32 bytes");
                return CLI_EXIT_USAGE;
        }
        if (arg.max_tries != -1 && (arg.max_tries < 1 || arg.max_tries > 100)) {
                cli_error("--max-tries must be from 1 to 100");
                return CLI_EXIT_USAGE;
        }
        r = pin_get(arg.pin, arg.pin_file, "New user PIN: ", true, &pin);
        if (r < 0)
                goto out_pin_error;
        r = pin_get(arg.so_pin, arg.so_pin_file, "New SO PIN (to unblock the user PIN): ", true, &so_pin);
        if (r < 0)
                goto out_pin_error;

        req = cJSON_CreateObject();
        if (!req || !cJSON_AddStringToObject(req, "label", arg.label) || !cJSON_AddStringToObject(req, "pin", pin) ||
            !cJSON_AddStringToObject(req, "so_pin", so_pin) ||
            (arg.max_tries != -1 && !cJSON_AddNumberToObject(req, "max_tries", (double)arg.max_tries))) {
                cjson_delete_wiped(req);
                secure_free(pin);
                secure_free(so_pin);
                cli_error("out of memory");
                return CLI_EXIT_OTHER;
        }
        secure_free(pin);
        secure_free(so_pin);
        r = mgmt_call_checked(WIRE_OP_MGMT_TOKEN_CREATE_SOFT, req, &reply);
        cjson_delete_wiped(req);
        if (r != CLI_EXIT_OK)
                return r;
        if (arg.json)
                print_json(reply);
        else
                printf("Created soft token \"%s\" in slot %.0f (%s)\n", shown(jstr(reply, "label")), jnum(reply, "slot", -1),
                       jstr(reply, "path"));
        cJSON_Delete(reply);
        return CLI_EXIT_OK;

out_pin_error:
        secure_free(pin);
        if (r == -EILSEQ)
                cli_error("the PINs do not match");
        else
                cli_error("no PIN: give --pin/--so-pin (or --pin-file/--so-pin-file) or run on a terminal");
        return CLI_EXIT_USAGE;
}

/* Sends op with the slot of t (a token from the daemon's list) as its
 * request, the reply printed (mgmt_request_print): an exit code. */
static int request_for_token(uint16_t op, const cJSON *t, void (*print_text)(const cJSON *reply)) {
        cJSON *req = cJSON_CreateObject();

        if (!req || !cJSON_AddNumberToObject(req, "slot", jnum(t, "slot", -1))) {
                cJSON_Delete(req);
                return CLI_EXIT_OTHER;
        }
        return mgmt_request_print(op, req, print_text);
}

static void print_deleted(const cJSON *reply) {
        printf("Deleted soft token \"%s\" (slot %.0f)\n", shown(jstr(reply, "label")), jnum(reply, "slot", -1));
}

int cmd_token_delete(void) {
        cJSON *list = NULL;
        const cJSON *t = NULL;
        char question[128];
        int r;

        r = mgmt_select_token(&list, &t);
        if (r != CLI_EXIT_OK)
                goto out;
        if (strcmp(jstr(t, "kind"), "soft") != 0) {
                cli_error("token \"%s\" is not a soft token; only soft tokens can be deleted", jstr(t, "label"));
                r = CLI_EXIT_USAGE;
                goto out;
        }
        if (!arg.yes) {
                if (!isatty(STDIN_FILENO)) {
                        cli_error("refusing to delete token \"%s\" without --yes", jstr(t, "label"));
                        r = CLI_EXIT_USAGE;
                        goto out;
                }
                snprintf(question, sizeof question, "Delete token \"%s\" and every key on it?", jstr(t, "label"));
                if (!ask_yes_no(question)) {
                        cli_error("not deleted");
                        r = CLI_EXIT_OTHER;
                        goto out;
                }
        }
        r = request_for_token(WIRE_OP_MGMT_TOKEN_DELETE, t, print_deleted);
out:
        cJSON_Delete(list);
        return r;
}

static void print_pin_line(const char *who, const cJSON *p) {
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(p, "tries_left");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(p, "tries_max");

        printf("  %-9s ", who);
        if (jbool(p, "locked"))
                printf("LOCKED");
        else if (cJSON_IsNumber(l) && cJSON_IsNumber(m))
                printf("%d of %d tries left", l->valueint, m->valueint);
        else if (cJSON_IsNumber(l))
                printf("%d tries left", l->valueint);
        else
                printf("ok (tries left unknown)");
        if (jbool(p, "final_try") && !jbool(p, "locked"))
                printf(" (final try)");
        printf("\n");
}

static void print_pin_status(const cJSON *reply) {
        const cJSON *user = cJSON_GetObjectItemCaseSensitive(reply, "user");

        printf("Token \"%s\" (slot %.0f)\n", shown(jstr(reply, "label")), jnum(reply, "slot", -1));
        print_pin_line("user PIN:", user);
        print_pin_line("SO PIN:", cJSON_GetObjectItemCaseSensitive(reply, "so"));
        if (jbool(user, "locked"))
                printf("The user PIN is locked: unblock it with netca-tool pin unblock --token \"%s\"\n",
                       jstr(reply, "label"));
}

int cmd_pin_status(void) {
        cJSON *list = NULL;
        const cJSON *t = NULL;
        int r;

        r = mgmt_select_token(&list, &t);
        if (r == CLI_EXIT_OK)
                r = request_for_token(WIRE_OP_MGMT_PIN_STATUS, t, print_pin_status);
        cJSON_Delete(list);
        return r;
}

int cmd_pin_change(void) {
        struct p11_token t;
        CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
        char *old = NULL, *new = NULL, prompt[96];
        CK_USER_TYPE user = arg.so ? CKU_SO : CKU_USER;
        CK_RV rv;
        int r;

        r = p11_open_selected(&t, false, &s);
        if (r != CLI_EXIT_OK)
                return r;
        snprintf(prompt, sizeof prompt, "Current %s for \"%s\": ", arg.so ? "SO PIN" : "PIN", shown(t.label));
        if (pin_get(arg.so ? arg.so_pin : arg.pin, arg.so ? arg.so_pin_file : arg.pin_file, prompt, false, &old) <
            0) {
                cli_error("no PIN: give --%s or run on a terminal", arg.so ? "so-pin" : "pin");
                r = CLI_EXIT_USAGE;
                goto out;
        }
        snprintf(prompt, sizeof prompt, "New %s: ", arg.so ? "SO PIN" : "PIN");
        r = pin_get(arg.new_pin, arg.new_pin_file, prompt, true, &new);
        if (r < 0) {
                cli_error(r == -EILSEQ ? "the PINs do not match" : "no new PIN: give --new-pin or run on a terminal");
                r = CLI_EXIT_USAGE;
                goto out;
        }
        if (arg.so) {
                r = p11_login(&t, s, CKU_SO, old);
                if (r != CLI_EXIT_OK)
                        goto out;
        }
        rv = p11->C_SetPIN(s, (CK_UTF8CHAR_PTR)old, strlen(old), (CK_UTF8CHAR_PTR)new, strlen(new));
        if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LOCKED) {
                r = p11_report_pin_error(&t, rv, user);
                goto out;
        }
        if (rv == CKR_PIN_LEN_RANGE) {
                cli_error("the new PIN must be %lu to %lu characters", (unsigned long)t.info.ulMinPinLen,
                          (unsigned long)t.info.ulMaxPinLen);
                r = CLI_EXIT_PIN;
                goto out;
        }
        if (rv != CKR_OK) {
                cli_error("cannot change the PIN: %s", p11_rv_str(rv));
                r = p11_exit_from_rv(rv);
                goto out;
        }
        printf("%s changed for token \"%s\"\n", arg.so ? "SO PIN" : "PIN", shown(t.label));
        r = CLI_EXIT_OK;
out:
        pin_session_done(s, arg.so, old, new);
        return r;
}

int cmd_pin_unblock(void) {
        struct p11_token t;
        CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
        char *so = NULL, *new = NULL;
        bool logged_in = false;
        int r;

        r = p11_open_selected(&t, false, &s);
        if (r != CLI_EXIT_OK)
                return r;
        if ((r = unblock_secrets(&t, false, &so, &new)) != CLI_EXIT_OK)
                goto out;
        r = p11_login(&t, s, CKU_SO, so);
        if (r != CLI_EXIT_OK)
                goto out;
        logged_in = true;
        r = unblock_set_pin(&t, s, new, false);
out:
        pin_session_done(s, logged_in, so, new);
        return r;
}
