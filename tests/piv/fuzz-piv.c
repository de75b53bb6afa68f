/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzz target for everything the PIV driver parses from a card: the input is
 * a scripted card (see fuzz-session.h for the format) that answers the
 * driver's commands through an apdu_transport, so apdu_transceive()'s
 * 61xx / 6Cxx handling, the BER-TLV parser, certificate, public-key and
 * signature decoding and the status-word handling all see hostile data.
 * The input is also walked directly as BER-TLV, descending into constructed
 * values.  A crash or sanitizer report is the failure. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "drivers/apdu.h"
#include "fuzz-session.h"

struct script_tr {
        struct apdu_transport base;
        const uint8_t *p, *end;
        size_t max_data;
};

static int script_transmit(struct apdu_transport *base, const uint8_t *c, size_t clen, uint8_t *r, size_t rcap,
                           size_t *rlen) {
        struct script_tr *t = (struct script_tr *) base;
        if (t->end - t->p < 2)
                return -ENODEV;
        size_t n = (size_t) t->p[0] << 8 | t->p[1];
        t->p += 2;
        if (n > (size_t) (t->end - t->p))
                n = (size_t) (t->end - t->p);
        const uint8_t *v = t->p;
        t->p += n;
        if (n > rcap)
                return -EIO;
        memcpy(r, v, n);
        *rlen = n;
        return 0;
}

static int script_reset(struct apdu_transport *base, uint8_t *atr, size_t cap, size_t *atr_len) {
        *atr_len = 0;
        return 0;
}

static size_t script_max_data(struct apdu_transport *base) { return ((struct script_tr *) base)->max_data; }

static void script_free(struct apdu_transport *base) { free(base); }

static const struct apdu_transport_ops script_ops = {
        .transmit = script_transmit,
        .reset = script_reset,
        .max_data = script_max_data,
        .free = script_free,
};

static void walk(const uint8_t *p, const uint8_t *end, unsigned depth) {
        struct apdu_tlv x;
        while (apdu_tlv_next(&p, end, &x) == 0) {
                if (x.value < p && x.value + x.len != p)
                        abort(); /* the parser must advance exactly past the value */
                if (x.constructed && depth < 8)
                        walk(x.value, x.value + x.len, depth + 1);
        }
}

/* The driver's notices about a hostile card (one or more per input) are not
 * written: at ~10,000 inputs a second they cost more than the parsing. */
int LLVMFuzzerInitialize(int *argc, char ***argv) {
        (void) argc;
        (void) argv;
        log_set_quiet(true);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        walk(data, data + size, 0);
        struct apdu_tlv x;
        (void) apdu_tlv_find(data, size, 0x7C, &x);
        if (size < 1)
                return 0;
        struct script_tr *t = calloc(1, sizeof *t);
        if (!t)
                return 0;
        t->base.ops = &script_ops;
        t->max_data = (data[0] & 1) ? 255 : 65535;
        t->p = data + 1;
        t->end = data + size;
        fuzz_piv_session(&t->base);
        return 0;
}
