/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Asking the user for a PIN through a pinentry program (the Assuan protocol
 * of Debian's pinentry-curses, -gnome3, -qt ...), for tokens that collect
 * PINs themselves (CKF_PROTECTED_AUTHENTICATION_PATH) when C_Login comes
 * with a NULL PIN and no cached PIN serves it.
 *
 * The conversation: the program greets with "OK"; we send OPTION ttyname /
 * ttytype / display (the client's, where known), SETTITLE, SETDESC (token
 * label and tries left), SETPROMPT, SETTIMEOUT, then GETPIN; it answers
 * "D <pin, percent-escaped>" and "OK", or "ERR <code> <text>" (cancelled).
 * The PIN goes into secure memory only; the program's output buffer is
 * wiped. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct pinentry_request {
        const char *program;        /* path of the pinentry program */
        const char *title;
        const char *description;    /* "PIN for token \"x\" (5 tries left)" */
        const char *prompt;
        const char *display;        /* DISPLAY of the client, NULL unknown */
        const char *ttyname;        /* terminal of the client, NULL unknown */
        const char *ttytype;        /* TERM, NULL unknown */
        unsigned timeout_s;         /* the user's time to answer */
};

/* 0 and the PIN in pin (capacity cap, not NUL-terminated) and *ret_len;
 * -ECANCELED (the user cancelled), -ETIMEDOUT (no answer in time),
 * -ENOENT (no such program), -EPROTO (it spoke something else), -EIO. */
int pinentry_ask(const struct pinentry_request *req, char *pin, size_t cap, size_t *ret_len);

/* One line from the program, parsed (exposed for the fuzz target).
 * kind: 'O' OK, 'E' ERR, 'D' data, 'S' status, '#' comment, 'I' INQUIRE,
 * 0 unknown.  For 'D', the percent-decoded data is appended to out
 * (capacity cap, length *len); -ENOBUFS when it does not fit, -EPROTO for a
 * bad escape.  For 'E', *err is the error code. */
int assuan_parse_line(const char *line, size_t n, char *kind, char *out, size_t cap, size_t *len,
                      unsigned long *err);
