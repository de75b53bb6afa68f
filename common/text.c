/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Clean names and their escaping (see text.h). */
#include "text.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Decodes one UTF-8 sequence at s (n > 0 bytes left): its length, with the
 * code point in *cp, or 0 when the sequence is invalid. */
static size_t utf8_decode(const uint8_t *s, size_t n, uint32_t *cp) {
        static const uint32_t min[] = { 0, 0, 0x80, 0x800, 0x10000 };
        size_t len;
        uint32_t c = s[0];

        if (c < 0x80)
                len = 1;
        else if ((c & 0xe0) == 0xc0)
                len = 2, c &= 0x1f;
        else if ((c & 0xf0) == 0xe0)
                len = 3, c &= 0x0f;
        else if ((c & 0xf8) == 0xf0)
                len = 4, c &= 0x07;
        else
                return 0;
        if (len > n)
                return 0;
        for (size_t i = 1; i < len; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                c = (c << 6) | (s[i] & 0x3f);
        }
        if (c < min[len] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
                return 0;
        *cp = c;
        return len;
}

static bool is_control(uint32_t cp) { return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f); }

bool text_is_clean(const char *s, size_t n) {
        const uint8_t *p = (const uint8_t *)s;
        uint32_t cp;

        if (!s)
                return false;
        for (size_t i = 0; i < n;) {
                size_t l = utf8_decode(p + i, n - i, &cp);
                if (l == 0 || is_control(cp))
                        return false;
                i += l;
        }
        return true;
}

char *text_escape(const char *s, size_t n, enum text_escape_mode mode) {
        const uint8_t *p = (const uint8_t *)s;
        uint32_t cp;

        if (!s)
                s = "", p = (const uint8_t *)s, n = 0;
        if (n == (size_t)-1)
                n = strlen(s);
        /* At most 4 output bytes per input byte ("\xHH", or U+FFFD's 3). */
        if (n > (SIZE_MAX - 1) / 4)
                return NULL;
        char *out = malloc(4 * n + 1), *o = out;
        if (!out)
                return NULL;
        for (size_t i = 0; i < n;) {
                size_t l = utf8_decode(p + i, n - i, &cp);
                bool bad = l == 0 || (mode == TEXT_ESCAPE_TERMINAL && is_control(cp));
                if (!bad) {
                        memcpy(o, p + i, l);
                        o += l;
                        i += l;
                        continue;
                }
                size_t k = l ? l : 1;
                for (size_t j = 0; j < k; j++) {
                        if (mode == TEXT_ESCAPE_JSON) {
                                memcpy(o, "\xef\xbf\xbd", 3);
                                o += 3;
                        } else {
                                o += sprintf(o, "\\x%02x", p[i + j]);
                        }
                }
                i += k;
        }
        *o = 0;
        return out;
}
