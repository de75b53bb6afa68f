/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* netca-tool's PKCS#11 side: loads netca-pkcs11.so (or any module named by
 * NETCA_PKCS11_MODULE), selects a token, opens sessions, logs in, reports
 * PIN failures the way a user needs them. */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "common/ckr.h"
#include "common/log.h"
#include "common/util.h"
#include "common/secmem.h"
#include "config.h"

CK_FUNCTION_LIST *p11;
static void *module_handle;

static char *module_path(void) {
        char exe[PATH_MAX], *slash, *p = NULL;
        const char *e;
        ssize_t n;

        if (arg.module)
                return strdup(arg.module);
        e = secure_getenv("NETCA_PKCS11_MODULE");
        if (e && *e)
                return strdup(e);
        n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n > 0) {
                exe[n] = '\0';
                slash = strrchr(exe, '/');
                if (slash) {
                        *slash = '\0';
                        if (asprintf(&p, "%s/../pkcs11/netca-pkcs11.so", exe) < 0)
                                p = NULL;
                        if (p && access(p, R_OK) == 0)
                                return p;
                        free(p);
                }
        }
        if (asprintf(&p, "%s/pkcs11/netca-pkcs11.so", NETCA_LIBDIR) < 0)
                return NULL;
        return p;
}

int p11_load(CK_FUNCTION_LIST **ret) {
        _cleanup_free_ char *path = NULL;
        CK_C_GetFunctionList getfl;
        CK_C_INITIALIZE_ARGS init = { .flags = CKF_OS_LOCKING_OK };
        CK_RV rv;

        if (p11) {
                if (ret)
                        *ret = p11;
                return CLI_EXIT_OK;
        }
        path = module_path();
        if (!path) {
                cli_error("out of memory");
                return CLI_EXIT_OTHER;
        }
        module_handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!module_handle) {
                cli_error("cannot load the PKCS#11 module %s: %s", path, dlerror());
                return CLI_EXIT_OTHER;
        }
        getfl = (CK_C_GetFunctionList)dlsym(module_handle, "C_GetFunctionList");
        if (!getfl || getfl(&p11) != CKR_OK || !p11) {
                cli_error("%s is not a PKCS#11 module", path);
                p11 = NULL;
                return CLI_EXIT_OTHER;
        }
        rv = p11->C_Initialize(&init);
        if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
                cli_error("cannot initialize the PKCS#11 module %s: %s", path, p11_rv_str(rv));
                p11 = NULL;
                return CLI_EXIT_OTHER;
        }
        log_debug(LOG_SUB_CLI, "loaded %s", path);
        if (ret)
                *ret = p11;
        return CLI_EXIT_OK;
}

void p11_unload(void) {
        if (p11)
                p11->C_Finalize(NULL);
        p11 = NULL;
        /* The module stays mapped: some modules keep threads until exit. */
}

const char *p11_rv_str(CK_RV rv) {
        return ckr_describe(rv);
}

int p11_exit_from_rv(CK_RV rv) {
        switch (rv) {
        case CKR_OK:
                return CLI_EXIT_OK;
        case CKR_PIN_INCORRECT:
        case CKR_PIN_LOCKED:
        case CKR_PIN_LEN_RANGE:
        case CKR_PIN_INVALID:
        case CKR_PIN_EXPIRED:
                return CLI_EXIT_PIN;
        case CKR_SLOT_ID_INVALID:
        case CKR_TOKEN_NOT_PRESENT:
        case CKR_OBJECT_HANDLE_INVALID:
        case CKR_KEY_HANDLE_INVALID:
        case CKR_DEVICE_REMOVED:
                return CLI_EXIT_NOT_FOUND;
        default:
                return CLI_EXIT_OTHER;
        }
}

static void token_from_info(CK_SLOT_ID slot, const CK_TOKEN_INFO *info, struct p11_token *t) {
        memset(t, 0, sizeof *t);
        t->slot = slot;
        t->info = *info;
        unpad_field(t->label, info->label, sizeof info->label);
        unpad_field(t->serial, info->serialNumber, sizeof info->serialNumber);
        unpad_field(t->manufacturer, info->manufacturerID, sizeof info->manufacturerID);
        unpad_field(t->model, info->model, sizeof info->model);
}

int p11_tokens(struct p11_token **ret, size_t *ret_n) {
        _cleanup_free_ CK_SLOT_ID *slots = NULL;
        struct p11_token *v;
        CK_ULONG n = 0;
        size_t k = 0;
        CK_RV rv;

        rv = p11->C_GetSlotList(CK_TRUE, NULL, &n);
        if (rv != CKR_OK)
                return -EIO;
        slots = calloc(n ? n : 1, sizeof *slots);
        if (!slots)
                return -ENOMEM;
        rv = p11->C_GetSlotList(CK_TRUE, slots, &n);
        if (rv != CKR_OK)
                return -EIO;
        v = calloc(n ? n : 1, sizeof *v);
        if (!v)
                return -ENOMEM;
        for (CK_ULONG i = 0; i < n; i++) {
                CK_TOKEN_INFO info;
                if (p11->C_GetTokenInfo(slots[i], &info) != CKR_OK)
                        continue;
                token_from_info(slots[i], &info, &v[k++]);
        }
        *ret = v;
        *ret_n = k;
        return 0;
}

static bool daemon_reachable(void) {
        int status;
        cJSON *reply = NULL;
        if (mgmt_call(WIRE_OP_MGMT_STATUS, NULL, &status, &reply) < 0)
                return false;
        cJSON_Delete(reply);
        return true;
}

static void list_tokens_hint(const struct p11_token *v, size_t n) {
        fprintf(stderr, "Tokens:\n");
        for (size_t i = 0; i < n; i++)
                fprintf(stderr, "  slot %lu  label \"%s\"  serial %s\n", (unsigned long)v[i].slot, shown(v[i].label),
                        shown(v[i].serial));
        fprintf(stderr, "Choose one with --token LABEL|SERIAL|SLOT.\n");
}

int p11_select_token(struct p11_token *ret) {
        _cleanup_free_ struct p11_token *v = NULL;
        size_t n = 0, found = SIZE_MAX, matches = 0;
        int r;

        r = p11_load(NULL);
        if (r != CLI_EXIT_OK)
                return r;
        r = p11_tokens(&v, &n);
        if (r < 0) {
                cli_error("cannot list the tokens: %s", strerror(-r));
                return CLI_EXIT_OTHER;
        }
        /* Uninitialized tokens (an empty slot of another module) cannot be used. */
        for (size_t i = 0; i < n;) {
                if (!(v[i].info.flags & CKF_TOKEN_INITIALIZED)) {
                        memmove(&v[i], &v[i + 1], (n - i - 1) * sizeof *v);
                        n--;
                } else {
                        i++;
                }
        }
        if (n == 0) {
                if (!secure_getenv("NETCA_PKCS11_MODULE") && !arg.module && !daemon_reachable()) {
                        _cleanup_free_ char *path = cli_socket_path();
                        cli_error("cannot reach netcad at %s (is the daemon running?)", path ? path : "?");
                        return CLI_EXIT_DAEMON;
                }
                cli_error("no token found (create one with: netca-tool token create-soft --label NAME)");
                return CLI_EXIT_NOT_FOUND;
        }
        if (!arg.token) {
                if (n > 1) {
                        cli_error("%zu tokens are present; which one?", n);
                        list_tokens_hint(v, n);
                        return CLI_EXIT_USAGE;
                }
                *ret = v[0];
                return CLI_EXIT_OK;
        }
        /* Label first, then serial, then slot number. */
        for (int pass = 0; pass < 3 && matches == 0; pass++) {
                for (size_t i = 0; i < n; i++) {
                        bool m = false;
                        if (pass == 0)
                                m = strcmp(v[i].label, arg.token) == 0;
                        else if (pass == 1)
                                m = strcmp(v[i].serial, arg.token) == 0;
                        else {
                                char *end = NULL;
                                errno = 0;
                                unsigned long s = strtoul(arg.token, &end, 10);
                                m = errno == 0 && end && *end == '\0' && end != arg.token && s == v[i].slot;
                        }
                        if (m) {
                                found = i;
                                matches++;
                        }
                }
        }
        if (matches == 0) {
                cli_error("no token matches \"%s\"", arg.token);
                list_tokens_hint(v, n);
                return CLI_EXIT_NOT_FOUND;
        }
        if (matches > 1) {
                cli_error("several tokens match \"%s\"", arg.token);
                list_tokens_hint(v, n);
                return CLI_EXIT_USAGE;
        }
        *ret = v[found];
        return CLI_EXIT_OK;
}

static void refresh_info(struct p11_token *t) {
        CK_TOKEN_INFO info;
        if (p11->C_GetTokenInfo(t->slot, &info) == CKR_OK)
                t->info = info;
}

int p11_report_pin_error(const struct p11_token *tok, CK_RV rv, CK_USER_TYPE user) {
        struct p11_token t = *tok;
        bool so = user == CKU_SO;
        const char *who = so ? "SO PIN" : "PIN";
        int left = -1, max = -1;
        bool locked = false;

        refresh_info(&t);
        if (mgmt_pin_tries(&t, so, &left, &max, &locked) < 0) {
                CK_FLAGS f = t.info.flags;
                locked = so ? !!(f & CKF_SO_PIN_LOCKED) : !!(f & CKF_USER_PIN_LOCKED);
                if (so ? (f & CKF_SO_PIN_FINAL_TRY) : (f & CKF_USER_PIN_FINAL_TRY))
                        left = 1;
        }
        if (rv == CKR_PIN_LOCKED || locked) {
                if (so)
                        cli_error("the SO PIN of token \"%s\" is locked; the token can no longer be unblocked",
                                  shown(t.label));
                else if (token_is_piv(&t))
                        cli_error("the PIN of token \"%s\" is locked; unblock it with the PUK: "
                                  "netca-tool pin unblock --puk PUK --token \"%s\"",
                                  shown(t.label), shown(t.label));
                else
                        cli_error("the PIN of token \"%s\" is locked; unblock it with the SO PIN: "
                                  "netca-tool pin unblock --token \"%s\"",
                                  shown(t.label), shown(t.label));
                return CLI_EXIT_PIN;
        }
        if (rv == CKR_PIN_INCORRECT) {
                if (left >= 0)
                        cli_error("wrong %s for token \"%s\": %d %s left before it locks", who, shown(t.label), left,
                                  left == 1 ? "try" : "tries");
                else
                        cli_error("wrong %s for token \"%s\"", who, shown(t.label));
                return CLI_EXIT_PIN;
        }
        cli_error("%s rejected for token \"%s\": %s", who, shown(t.label), p11_rv_str(rv));
        return p11_exit_from_rv(rv);
}

int p11_login(const struct p11_token *t, CK_SESSION_HANDLE s, CK_USER_TYPE user, const char *pin) {
        CK_RV rv;

        rv = p11->C_Login(s, user, (CK_UTF8CHAR_PTR)pin, pin ? strlen(pin) : 0);
        if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN)
                return CLI_EXIT_OK;
        return p11_report_pin_error(t, rv, user);
}

int p11_open(const struct p11_token *t, bool login, CK_SESSION_HANDLE *ret) {
        CK_SESSION_HANDLE s;
        char *pin = NULL;
        CK_RV rv;
        int r;

        rv = p11->C_OpenSession(t->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
        if (rv != CKR_OK) {
                cli_error("cannot open a session on token \"%s\": %s", shown(t->label), p11_rv_str(rv));
                return p11_exit_from_rv(rv);
        }
        if (login) {
                CK_RV cached = CKR_ARGUMENTS_BAD;
                /* No PIN given: one the daemon has cached for this login
                 * session (pin-cache --scope session) serves without a
                 * prompt; netcad answers a NULL PIN it cannot serve with
                 * CKR_ARGUMENTS_BAD, and then we ask.  (Only with netca's
                 * module: another might count a NULL PIN as a wrong one.) */
                if (!arg.module && !arg.pin && !arg.pin_file && !(t->info.flags & CKF_PROTECTED_AUTHENTICATION_PATH))
                        cached = p11->C_Login(s, CKU_USER, NULL, 0);
                if (cached == CKR_OK || cached == CKR_USER_ALREADY_LOGGED_IN) {
                        log_debug(LOG_SUB_CLI, "logged in with the cached PIN");
                        r = CLI_EXIT_OK;
                } else if (!arg.pin && !arg.pin_file && (t->info.flags & CKF_PROTECTED_AUTHENTICATION_PATH)) {
                        r = p11_login(t, s, CKU_USER, NULL);
                } else {
                        char prompt[96];
                        snprintf(prompt, sizeof prompt, "PIN for \"%s\": ", shown(t->label));
                        r = pin_get(arg.pin, arg.pin_file, prompt, false, &pin);
                        if (r < 0) {
                                cli_error("no PIN: give --pin, --pin-file or run on a terminal (%s)",
                                          strerror(-r));
                                p11->C_CloseSession(s);
                                return CLI_EXIT_USAGE;
                        }
                        r = p11_login(t, s, CKU_USER, pin);
                        secure_free(pin);
                }
                if (r != CLI_EXIT_OK) {
                        p11->C_CloseSession(s);
                        return r;
                }
        }
        *ret = s;
        return CLI_EXIT_OK;
}

int p11_open_selected(struct p11_token *ret_token, bool login, CK_SESSION_HANDLE *ret) {
        int r = p11_select_token(ret_token);
        if (r != CLI_EXIT_OK)
                return r;
        return p11_open(ret_token, login, ret);
}

void p11_close(CK_SESSION_HANDLE s) {
        (void)p11->C_Logout(s);
        p11->C_CloseSession(s);
}

int p11_get_attr(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type, uint8_t **ret, size_t *ret_len) {
        CK_ATTRIBUTE a = { .type = type };
        uint8_t *p;
        CK_RV rv;

        rv = p11->C_GetAttributeValue(s, o, &a, 1);
        if (rv != CKR_OK || a.ulValueLen == CK_UNAVAILABLE_INFORMATION)
                return -ENOENT;
        if (a.ulValueLen > (16u << 20))
                return -E2BIG;
        p = malloc(a.ulValueLen + 1);
        if (!p)
                return -ENOMEM;
        a.pValue = p;
        rv = p11->C_GetAttributeValue(s, o, &a, 1);
        if (rv != CKR_OK) {
                free(p);
                return -EIO;
        }
        p[a.ulValueLen] = 0;
        *ret = p;
        *ret_len = a.ulValueLen;
        return 0;
}

int p11_get_ulong(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type, CK_ULONG *ret) {
        CK_ULONG v = 0;
        CK_ATTRIBUTE a = { .type = type, .pValue = &v, .ulValueLen = sizeof v };

        if (p11->C_GetAttributeValue(s, o, &a, 1) != CKR_OK || a.ulValueLen != sizeof v)
                return -ENOENT;
        *ret = v;
        return 0;
}

int p11_find(CK_SESSION_HANDLE s, CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_OBJECT_HANDLE **ret, size_t *ret_n) {
        CK_OBJECT_HANDLE *v = NULL;
        size_t count = 0, cap = 0;
        CK_RV rv;

        rv = p11->C_FindObjectsInit(s, tmpl, n);
        if (rv != CKR_OK)
                return -EIO;
        for (;;) {
                CK_ULONG got = 0;
                if (count + 32 > cap) {
                        CK_OBJECT_HANDLE *nv;
                        cap = cap ? cap * 2 : 64;
                        nv = realloc(v, cap * sizeof *v);
                        if (!nv) {
                                free(v);
                                p11->C_FindObjectsFinal(s);
                                return -ENOMEM;
                        }
                        v = nv;
                }
                rv = p11->C_FindObjects(s, v + count, 32, &got);
                if (rv != CKR_OK) {
                        free(v);
                        p11->C_FindObjectsFinal(s);
                        return -EIO;
                }
                if (got == 0)
                        break;
                count += got;
                if (count > 100000)
                        break;
        }
        p11->C_FindObjectsFinal(s);
        *ret = v;
        *ret_n = count;
        return 0;
}

char *hex_encode(const uint8_t *p, size_t n, const char *sep) {
        size_t sl = sep ? strlen(sep) : 0;
        char *s = malloc(n * (2 + sl) + 1), *q = s;

        if (!s)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                if (i && sl) {
                        memcpy(q, sep, sl);
                        q += sl;
                }
                q += sprintf(q, "%02x", p[i]);
        }
        *q = '\0';
        return s;
}


int hex_decode(const char *s, uint8_t **ret, size_t *ret_len) {
        size_t n = 0, len = strlen(s);
        uint8_t *p = malloc(len / 2 + 1);

        if (!p)
                return -ENOMEM;
        for (size_t i = 0; i < len;) {
                int hi, lo;
                if (s[i] == ':' || s[i] == ' ') {
                        i++;
                        continue;
                }
                if (i + 1 >= len || (hi = hex_digit_value(s[i])) < 0 || (lo = hex_digit_value(s[i + 1])) < 0) {
                        free(p);
                        return -EINVAL;
                }
                p[n++] = (uint8_t)(hi << 4 | lo);
                i += 2;
        }
        if (n == 0) {
                free(p);
                return -EINVAL;
        }
        *ret = p;
        *ret_len = n;
        return 0;
}
