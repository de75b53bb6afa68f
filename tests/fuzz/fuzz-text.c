/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzz target for names from outside (common/text.c): any bytes, as a label.
 * The terminal form of anything must be clean (text_is_clean) and the JSON
 * form valid UTF-8 (clean once its controls are left aside); a clean input
 * comes back unchanged from both.  Any disagreement aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/text.h"

/* Valid UTF-8, controls allowed: clean once the controls are replaced. */
static bool valid_utf8(const char *s) {
        char *c = strdup(s);
        if (!c)
                abort();
        for (char *p = c; *p; p++)
                if ((unsigned char)*p < 0x20 || *p == 0x7f)
                        *p = 'x';
        /* C1 controls are two bytes, 0xc2 0x80..0x9f: make them U+00A0. */
        for (char *p = c; *p; p++)
                if ((unsigned char)p[0] == 0xc2 && (unsigned char)p[1] >= 0x80 && (unsigned char)p[1] <= 0x9f)
                        p[1] = (char)0xa0;
        bool ok = text_is_clean(c, strlen(c));
        free(c);
        return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *s = (const char *)data;
        bool clean = text_is_clean(s, size);
        char *term = text_escape(s, size, TEXT_ESCAPE_TERMINAL);
        char *json = text_escape(s, size, TEXT_ESCAPE_JSON);
        if (!term || !json)
                abort();
        if (!text_is_clean(term, strlen(term)) || !valid_utf8(json))
                abort();
        if (clean && (strlen(term) != size || memcmp(term, s, size) != 0 || strcmp(term, json) != 0))
                abort();
        free(term);
        free(json);
        return 0;
}
