/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Reading PINs and passwords: from an option, a file (first line), or the
 * terminal without echo.  Everything lands in secure memory.  Also `pin
 * unblock --puk`, the PIV form of unblocking. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"
#include "common/secmem.h"

#define PIN_BUF 256

static int read_line_fd(int fd, char *buf, size_t size, size_t *ret_len) {
        size_t n = 0;

        for (;;) {
                char c;
                ssize_t k = read(fd, &c, 1);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0 || c == '\n')
                        break;
                if (n + 1 >= size)
                        return -EMSGSIZE;
                buf[n++] = c;
        }
        if (n > 0 && buf[n - 1] == '\r')
                n--;
        buf[n] = '\0';
        *ret_len = n;
        return 0;
}

static int read_file_line(const char *file, char **ret) {
        _cleanup_close_ int fd = -1;
        char *buf;
        size_t n = 0;
        int r;

        fd = strcmp(file, "-") == 0 ? dup(STDIN_FILENO) : open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        buf = secure_alloc(PIN_BUF);
        if (!buf)
                return -ENOMEM;
        r = read_line_fd(fd, buf, PIN_BUF, &n);
        if (r < 0) {
                secure_free(buf);
                return r;
        }
        *ret = buf;
        return 0;
}

static int prompt_tty(const char *prompt, char **ret) {
        _cleanup_close_ int fd = -1;
        struct termios old, raw;
        char *buf;
        size_t n = 0;
        int r;

        fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -ENOTTY;
        if (tcgetattr(fd, &old) < 0)
                return -ENOTTY;
        buf = secure_alloc(PIN_BUF);
        if (!buf)
                return -ENOMEM;
        raw = old;
        raw.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
        raw.c_lflag |= ICANON;
        (void)!write(fd, prompt, strlen(prompt));
        (void)tcsetattr(fd, TCSAFLUSH, &raw);
        r = read_line_fd(fd, buf, PIN_BUF, &n);
        (void)tcsetattr(fd, TCSAFLUSH, &old);
        (void)!write(fd, "\n", 1);
        if (r < 0) {
                secure_free(buf);
                return r;
        }
        *ret = buf;
        return 0;
}

int pin_get(const char *value, const char *file, const char *prompt, bool confirm, char **ret) {
        char *a = NULL, *b = NULL;
        int r;

        if (value) {
                a = secure_strndup(value, strlen(value));
                if (!a)
                        return -ENOMEM;
                *ret = a;
                return 0;
        }
        if (file) {
                r = read_file_line(file, &a);
                if (r < 0)
                        return r;
                *ret = a;
                return 0;
        }
        r = prompt_tty(prompt, &a);
        if (r < 0)
                return r;
        if (confirm) {
                r = prompt_tty("Repeat: ", &b);
                if (r < 0) {
                        secure_free(a);
                        return r;
                }
                if (strcmp(a, b) != 0) {
                        secure_free(a);
                        secure_free(b);
                        return -EILSEQ;
                }
                secure_free(b);
        }
        *ret = a;
        return 0;
}

bool ask_yes_no(const char *question) {
        _cleanup_close_ int fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
        char buf[16];
        size_t n = 0;

        if (fd < 0)
                return false;
        (void)!write(fd, question, strlen(question));
        (void)!write(fd, " [y/N] ", 7);
        if (read_line_fd(fd, buf, sizeof buf, &n) < 0)
                return false;
        return buf[0] == 'y' || buf[0] == 'Y';
}

/* PIV keys (SP 800-73-4) have no SO PIN: their PUK resets the PIN with
 * RESET RETRY COUNTER, which drivers/piv runs as C_Login(CKU_SO, PUK) +
 * C_InitPIN.  The PUK's own counter never comes back: a locked PUK is
 * reported from the token's state and never sent to the card again. */
bool token_is_piv(const struct p11_token *t) {
        return strncmp(t->model, "PIV", 3) == 0 || strncmp(t->manufacturer, "PIV", 3) == 0;
}

static int puk_state(const struct p11_token *t, int *ret_left, bool *ret_locked) {
        CK_TOKEN_INFO info;
        int max = -1;

        *ret_left = -1;
        *ret_locked = false;
        if (mgmt_pin_tries(t, true, ret_left, &max, ret_locked) >= 0)
                return 0;
        if (p11->C_GetTokenInfo(t->slot, &info) != CKR_OK)
                return -EIO;
        *ret_locked = !!(info.flags & CKF_SO_PIN_LOCKED);
        if (info.flags & CKF_SO_PIN_FINAL_TRY)
                *ret_left = 1;
        return 0;
}

static int report_puk_error(const struct p11_token *t, CK_RV rv) {
        int left;
        bool locked;

        (void)puk_state(t, &left, &locked);
        if (rv == CKR_PIN_LOCKED || locked || left == 0) {
                cli_error("the PUK of token \"%s\" is locked: the PIN can no longer be unblocked "
                          "(only a reset of the key, which erases its keys, helps)",
                          t->label);
                return CLI_EXIT_PIN;
        }
        if (rv == CKR_PIN_INCORRECT) {
                if (left > 0)
                        cli_error("wrong PUK for token \"%s\": %d %s left before it locks", t->label, left,
                                  left == 1 ? "try" : "tries");
                else
                        cli_error("wrong PUK for token \"%s\"", t->label);
                return CLI_EXIT_PIN;
        }
        cli_error("PUK rejected for token \"%s\": %s", t->label, p11_rv_str(rv));
        return p11_exit_from_rv(rv);
}

int unblock_secrets(const struct p11_token *t, bool puk, char **ret_secret, char **ret_new) {
        char prompt[96];
        snprintf(prompt, sizeof prompt, "%s for \"%s\": ", puk ? "PUK" : "SO PIN", t->label);
        if (pin_get(arg.so_pin, arg.so_pin_file, prompt, false, ret_secret) < 0) {
                cli_error(puk ? "no PUK: give --puk, --puk-file or run on a terminal"
                              : "no SO PIN: give --so-pin, --so-pin-file or run on a terminal");
                return CLI_EXIT_USAGE;
        }
        bool given = arg.new_pin || arg.new_pin_file; /* else --pin/--pin-file name the new PIN */
        int r = pin_get(given ? arg.new_pin : arg.pin, given ? arg.new_pin_file : arg.pin_file,
                        puk ? "New PIN: " : "New user PIN: ", true, ret_new);
        if (r < 0) {
                cli_error(r == -EILSEQ ? "the PINs do not match" : "no new PIN: give --new-pin or run on a terminal");
                return CLI_EXIT_USAGE;
        }
        return CLI_EXIT_OK;
}

int unblock_set_pin(const struct p11_token *t, CK_SESSION_HANDLE s, const char *new_pin, bool puk) {
        CK_RV rv = p11->C_InitPIN(s, (CK_UTF8CHAR_PTR)new_pin, strlen(new_pin));

        if (puk) {
                /* Cards without VERIFY for the PUK check it here, in RESET RETRY COUNTER. */
                if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LOCKED)
                        return report_puk_error(t, rv);
                if (rv == CKR_PIN_LEN_RANGE) {
                        cli_error("the new PIN must be %lu to %lu characters", (unsigned long)t->info.ulMinPinLen,
                                  (unsigned long)t->info.ulMaxPinLen);
                        return CLI_EXIT_PIN;
                }
        }
        if (rv != CKR_OK) {
                cli_error("cannot set the new PIN: %s", p11_rv_str(rv));
                return p11_exit_from_rv(rv);
        }
        printf("PIN of token \"%s\" unblocked%s and set\n", shown(t->label), puk ? " with the PUK" : "");
        return CLI_EXIT_OK;
}

void pin_session_done(CK_SESSION_HANDLE s, bool logged_in, char *secret, char *new_pin) {
        secure_free(secret);
        secure_free(new_pin);
        if (logged_in)
                (void)p11->C_Logout(s);
        p11->C_CloseSession(s);
}

int cmd_pin_unblock_puk(void) {
        struct p11_token t;
        CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
        char *puk = NULL, *new = NULL;
        bool logged_in = false, locked;
        int left, r;
        CK_RV rv;

        r = p11_select_token(&t);
        if (r != CLI_EXIT_OK)
                return r;
        if (!token_is_piv(&t)) {
                cli_error("token \"%s\" is not a PIV key: unblock it with --so-pin", t.label);
                return CLI_EXIT_USAGE;
        }
        /* Before asking for anything: a locked PUK is final. */
        if (puk_state(&t, &left, &locked) >= 0 && (locked || left == 0))
                return report_puk_error(&t, CKR_PIN_LOCKED);
        r = p11_open(&t, false, &s);
        if (r != CLI_EXIT_OK)
                return r;
        if ((r = unblock_secrets(&t, true, &puk, &new)) != CLI_EXIT_OK)
                goto out;
        rv = p11->C_Login(s, CKU_SO, (CK_UTF8CHAR_PTR)puk, strlen(puk));
        if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
                r = report_puk_error(&t, rv);
                goto out;
        }
        logged_in = true;
        r = unblock_set_pin(&t, s, new, true);
out:
        pin_session_done(s, logged_in, puk, new);
        return r;
}
