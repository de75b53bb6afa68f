/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Names from outside (token labels, object labels, certificate names):
 * checked where they are made, made safe where they are shown.
 *
 * A clean name is valid UTF-8 (shortest forms, no surrogates, at most
 * U+10FFFF) without a control character: C0 (U+0000-U+001F), DEL (U+007F)
 * and C1 (U+0080-U+009F), which a terminal may take for a command. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Is s[0..n) clean (see above)? */
bool text_is_clean(const char *s, size_t n);

enum text_escape_mode {
        /* For JSON: every byte that is not part of valid UTF-8 becomes
         * U+FFFD (controls are left to the JSON printer, which escapes them). */
        TEXT_ESCAPE_JSON,
        /* For a terminal: every byte of an invalid sequence or a control
         * character becomes "\xHH". */
        TEXT_ESCAPE_TERMINAL,
};

/* s[0..n) (n may be (size_t) -1: up to the NUL) made safe for mode, as a
 * malloc'd NUL-terminated string; NULL on allocation failure. */
char *text_escape(const char *s, size_t n, enum text_escape_mode mode);
