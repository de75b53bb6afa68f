/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Writes seeds for fuzz-piv: the virtual card's answers to the fuzz session
 * (fuzz-session.h), recorded over both transports, for cards made by
 * make-card.sh.  Run by hand:
 *   gen-piv-corpus CARD-DIR OUT-DIR */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/apdu.h"
#include "fuzz-session.h"
#include "tests/emulators/vpiv.h"

struct rec_tr {
        struct apdu_transport base;
        struct vpiv *card;
        size_t max_data;
        FILE *out;
};

static int rec_transmit(struct apdu_transport *base, const uint8_t *c, size_t clen, uint8_t *r, size_t rcap,
                        size_t *rlen) {
        struct rec_tr *t = (struct rec_tr *) base;
        if (vpiv_transmit(t->card, c, clen, r, rcap, rlen) < 0)
                return -EIO;
        uint8_t hdr[2] = { (uint8_t) (*rlen >> 8), (uint8_t) *rlen };
        fwrite(hdr, 1, 2, t->out);
        fwrite(r, 1, *rlen, t->out);
        return 0;
}

static int rec_reset(struct apdu_transport *base, uint8_t *atr, size_t cap, size_t *atr_len) {
        struct rec_tr *t = (struct rec_tr *) base;
        vpiv_reset(t->card);
        *atr_len = vpiv_atr(t->card, atr, cap);
        return 0;
}

static size_t rec_max_data(struct apdu_transport *base) { return ((struct rec_tr *) base)->max_data; }
static void rec_free(struct apdu_transport *base) { free(base); }

static const struct apdu_transport_ops rec_ops = {
        .transmit = rec_transmit, .reset = rec_reset, .max_data = rec_max_data, .free = rec_free,
};

int main(int argc, char **argv) {
        if (argc != 3) {
                fprintf(stderr, "usage: %s CARD-DIR OUT-DIR\n", argv[0]);
                return 2;
        }
        for (int shortapdu = 0; shortapdu < 2; shortapdu++) {
                struct vpiv *card = NULL;
                char *err = NULL;
                if (vpiv_new(argv[1], &card, &err) < 0) {
                        fprintf(stderr, "%s\n", err ? err : "vpiv_new failed");
                        return 1;
                }
                char path[4096];
                snprintf(path, sizeof path, "%s/session-%s", argv[2], shortapdu ? "short" : "extended");
                FILE *f = fopen(path, "wbe");
                if (!f) {
                        perror(path);
                        return 1;
                }
                fputc(shortapdu, f);
                struct rec_tr *t = calloc(1, sizeof *t);
                t->base.ops = &rec_ops;
                t->card = card;
                t->max_data = shortapdu ? 255 : 65535;
                t->out = f;
                fuzz_piv_session(&t->base);
                fclose(f);
                vpiv_free(card);
        }
        return 0;
}
