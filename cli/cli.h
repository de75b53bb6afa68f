/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* netca-tool internals: options, exit codes, and the helpers the commands
 * share.  Functions return 0 or a negative errno like the rest of the
 * project, except cmd_* which return an exit code (CLI_EXIT_*). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "common/p11.h"
#include "common/util.h"
#include "common/wire.h"

/* Exit codes (documented in netca-tool(1)). */
enum {
        CLI_EXIT_OK = 0,
        CLI_EXIT_USAGE = 1,
        CLI_EXIT_DAEMON = 2,    /* netcad unreachable */
        CLI_EXIT_PIN = 3,       /* PIN wrong or locked */
        CLI_EXIT_NOT_FOUND = 4, /* token, certificate or key not found */
        CLI_EXIT_OTHER = 5,
};

struct cli_opts {
        const char *token;      /* --token LABEL|SERIAL|SLOT */
        bool json;
        const char *pin, *so_pin, *new_pin;
        const char *pin_file, *so_pin_file, *new_pin_file;
        const char *label;
        const char *id_hex;
        const char *type;
        long max_tries;         /* -1: not given */
        bool pem, der;
        const char *output;
        const char *password, *password_file;
        const char *key_file;
        const char *subject;
        bool so;
        bool yes;
        bool with_key;
        const char *module;
        const char *socket;
        const char *cert;       /* --cert: CN, label or id of a certificate */
        /* pin-cache set */
        const char *ttl, *max, *scope;
        int cache_on;           /* 1 --on, 0 --off, -1 not given */
        int always_auth;        /* 1 yes, 0 no, -1 not given */
        /* pinentry set */
        const char *program, *protected_kinds;
        long timeout;           /* 0: not given */
        /* log show/export */
        const char *since, *until;
        bool failed;
        long max_records;       /* log set --max-records; 0: not given */
};

extern struct cli_opts arg;

/* Messages (stderr). */
void cli_error(const char *fmt, ...) _printf_(1, 2);

/* ---- management client (mgmt-client.c) ---- */
/* The socket path: --socket, NETCA_SOCKET, $XDG_RUNTIME_DIR/netca/netcad.sock,
 * /run/user/<uid>/netca/netcad.sock.  malloc'd. */
char *cli_socket_path(void);
/* Sends one management op.  request may be NULL ({}).  On 0, *ret_status is
 * the daemon's status (0 ok, else an errno) and *ret_reply the parsed reply
 * object.  -ECONNREFUSED/-ENOENT/-ETIMEDOUT...: the daemon is unreachable;
 * -EPROTO/-EPROTONOSUPPORT: it talks another protocol.  Prints nothing. */
int mgmt_call(uint16_t op, cJSON *request, int *ret_status, cJSON **ret_reply);
/* As mgmt_call, but prints errors and returns an exit code; *ret_reply set
 * only for CLI_EXIT_OK. */
int mgmt_call_checked(uint16_t op, cJSON *request, cJSON **ret_reply);
/* Reading management replies: missing or mistyped members give "", dflt,
 * false. */
/* Prints o (its strings made valid UTF-8 first: text_json_sanitize). */
void print_json(cJSON *o);
/* s made safe for a terminal (common/text.h, TEXT_ESCAPE_TERMINAL): for a
 * name from a device or a file in text output.  Valid until 8 more calls. */
const char *shown(const char *s);
/* mgmt_call_checked, then request freed and, with --json, the reply
 * printed: the caller only prints the text form (when !arg.json). */
int mgmt_request(uint16_t op, cJSON *request, cJSON **ret_reply);
/* mgmt_request, then (when !arg.json) the reply's text form printed by
 * print_text and the reply freed: an exit code. */
int mgmt_request_print(uint16_t op, cJSON *request, void (*print_text)(const cJSON *reply));
const char *jstr(const cJSON *o, const char *name);
double jnum(const cJSON *o, const char *name, double dflt);
bool jbool(const cJSON *o, const char *name);
/* Selects a present token from a MGMT_TOKEN_LIST reply by --token (label,
 * serial, slot) or the only one (*ret points into list); CLI_EXIT_OK or an
 * exit code, the problem reported. */
int mgmt_select(const cJSON *list, const cJSON **ret);
/* Fetches the daemon's token list (*ret_list, to be freed even on failure)
 * and selects one from it (mgmt_select): an exit code. */
int mgmt_select_token(cJSON **ret_list, const cJSON **ret);
/* Deletes a request that may hold PINs: wipes its strings first. */
void cjson_delete_wiped(cJSON *o);
int exit_from_errno(int err);

/* ---- PINs (pin.c) ---- */
/* Reads a secret: the option value, else the first line of file, else a
 * prompt on the terminal without echo (twice when confirm).  *ret is secure
 * memory (secure_free). -ENOTTY when no source is available. */
int pin_get(const char *value, const char *file, const char *prompt, bool confirm, char **ret);
/* Reads one line from the terminal (echo on) for yes/no questions. */
bool ask_yes_no(const char *question);

/* ---- PKCS#11 side (p11.c) ---- */
struct p11_token {
        CK_SLOT_ID slot;
        CK_TOKEN_INFO info;
        char label[33], serial[17], manufacturer[33], model[17];
};

/* Loads the module and calls C_Initialize once.  Returns an exit code. */
int p11_load(CK_FUNCTION_LIST **ret);
void p11_unload(void);
/* Lists the slots with a token.  *ret malloc'd. */
int p11_tokens(struct p11_token **ret, size_t *ret_n);
/* Selects a token by --token (or the only one): prints errors and returns
 * an exit code. */
int p11_select_token(struct p11_token *ret);
/* Opens an R/W session; logs in as user when login is true (PIN from
 * --pin/--pin-file/prompt).  Returns an exit code; prints the errors,
 * including tries left after a wrong PIN. */
int p11_open(const struct p11_token *t, bool login, CK_SESSION_HANDLE *ret);
/* p11_select_token, then p11_open on the token selected: an exit code. */
int p11_open_selected(struct p11_token *ret_token, bool login, CK_SESSION_HANDLE *ret);
/* Ends a session of p11_open: logs out (when logged in) and closes it. */
void p11_close(CK_SESSION_HANDLE s);
int p11_login(const struct p11_token *t, CK_SESSION_HANDLE s, CK_USER_TYPE user, const char *pin);
/* Message for a CK_RV and the exit code it maps to. */
const char *p11_rv_str(CK_RV rv);
int p11_exit_from_rv(CK_RV rv);
/* Prints a PIN failure (wrong: tries left; locked: how to unblock). */
int p11_report_pin_error(const struct p11_token *t, CK_RV rv, CK_USER_TYPE user);

/* Attribute helpers.  *ret malloc'd (NUL-terminated past len for
 * convenience). */
int p11_get_attr(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type, uint8_t **ret, size_t *ret_len);
int p11_get_ulong(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type, CK_ULONG *ret);
/* Finds objects matching a template.  *ret malloc'd. */
int p11_find(CK_SESSION_HANDLE s, CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_OBJECT_HANDLE **ret, size_t *ret_n);

extern CK_FUNCTION_LIST *p11;

/* ---- hex helpers ---- */
char *hex_encode(const uint8_t *p, size_t n, const char *sep);
int hex_decode(const char *s, uint8_t **ret, size_t *ret_len);

/* ---- commands ---- */
int cmd_token_create_soft(void);
int cmd_token_delete(void);
int cmd_daemon_status(void);
int cmd_pin_status(void);
int cmd_pin_change(void);
int cmd_pin_unblock(void);
int cmd_pin_unblock_puk(void); /* pin.c: PIV keys, --puk */
/* pin unblock: the SO PIN (or PUK) and the new user PIN, from the options or
 * asked for; CLI_EXIT_OK or CLI_EXIT_USAGE (reported). */
int unblock_secrets(const struct p11_token *t, bool puk, char **ret_secret, char **ret_new);
/* pin unblock's last step, the SO PIN (puk: the PUK) logged in: sets the new
 * PIN (C_InitPIN) and reports the outcome; an exit code. */
int unblock_set_pin(const struct p11_token *t, CK_SESSION_HANDLE s, const char *new_pin, bool puk);
/* The end of pin change and pin unblock: wipes both secrets, logs out when
 * logged in, closes the session. */
void pin_session_done(CK_SESSION_HANDLE s, bool logged_in, char *secret, char *new_pin);
/* A PIV key (its PUK unblocks the PIN: pin unblock --puk). */
bool token_is_piv(const struct p11_token *t);
int cmd_list(void);
int cmd_cert_show(void);
int cmd_cert_export(void);
int cmd_cert_delete(void);
int cmd_import(const char *file);
int cmd_key_gen(void);
int cmd_csr(void);
/* pincache.c: pin-cache set|status|clear */
int cmd_pin_cache_set(void);
int cmd_pin_cache_status(void);
int cmd_pin_cache_clear(void);
int cmd_pinentry(bool set);
/* log.c: log show|export|clear|enable|disable */
int cmd_log_show(void);
int cmd_log_export(const char *file);
int cmd_log_clear(void);
/* log enable (1) | disable (0) | set (-1: --max-records only) */
int cmd_log_settings(int diagnostic);

/* Looks up a token in the daemon's list matching a PKCS#11 token (serial and
 * label); *ret_slot is the daemon's slot id.  -ENOENT, or the mgmt error. */
int mgmt_slot_for(const struct p11_token *t, uint64_t *ret_slot);
/* Fills the PIN status (from MGMT_PIN_STATUS) for a token; tries -1 unknown. */
int mgmt_pin_tries(const struct p11_token *t, bool so, int *ret_left, int *ret_max, bool *ret_locked);

/* browser.c: browser status (what 0) | register (1) | unregister (2); both
 * browsers when neither flag is given. */
int cmd_browser(int what, bool firefox, bool chromium);

/* usb-dump.c: netca-tool usb dump */
int cmd_usb_dump(void);
