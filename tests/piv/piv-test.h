/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Shared by the PIV driver tests: an apdu_transport over the virtual card's
 * vpiv_transmit (in process), with counters of what went over it and a way
 * to make the device vanish, and the card made by make-card.sh. */
#pragma once

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/apdu.h"
#include "tests/emulators/vpiv.h"
#include "tests/unit/unit.h"

struct test_tr {
        struct apdu_transport base;
        struct vpiv *card;          /* not owned: the card outlives a token */
        size_t max_data;            /* 255: short APDUs only */
        unsigned n_tx, n_chained, n_get_response, n_ext, n_reset;
        long gone_after;            /* -1: never; else -ENODEV from this exchange on */
        unsigned *freed;            /* incremented by free, if set */
};

static int test_tr_transmit(struct apdu_transport *base, const uint8_t *c, size_t clen, uint8_t *r, size_t rcap,
                            size_t *rlen) {
        struct test_tr *t = (struct test_tr *) base;
        if (t->gone_after >= 0 && t->n_tx >= (unsigned long) t->gone_after)
                return -ENODEV;
        t->n_tx++;
        if (clen >= 4 && (c[0] & 0x10))
                t->n_chained++;
        if (clen >= 4 && c[1] == 0xC0)
                t->n_get_response++;
        /* Extended: Lc or Le announced by a zero byte after the header. */
        if (clen >= 7 && c[4] == 0)
                t->n_ext++;
        /* A short-only reader cannot carry more. */
        if (t->max_data <= 255 && clen > 4 + 1 + 255 + 1)
                return -EIO;
        return vpiv_transmit(t->card, c, clen, r, rcap, rlen) < 0 ? -EIO : 0;
}

static int test_tr_reset(struct apdu_transport *base, uint8_t *atr, size_t cap, size_t *atr_len) {
        struct test_tr *t = (struct test_tr *) base;
        if (t->gone_after >= 0 && t->n_tx >= (unsigned long) t->gone_after)
                return -ENODEV;
        t->n_reset++;
        vpiv_reset(t->card);
        *atr_len = vpiv_atr(t->card, atr, cap);
        return 0;
}

static size_t test_tr_max_data(struct apdu_transport *base) { return ((struct test_tr *) base)->max_data; }

static void test_tr_free(struct apdu_transport *base) {
        struct test_tr *t = (struct test_tr *) base;
        if (t->freed)
                (*t->freed)++;
        free(t);
}

static const struct apdu_transport_ops test_tr_ops = {
        .transmit = test_tr_transmit,
        .reset = test_tr_reset,
        .max_data = test_tr_max_data,
        .free = test_tr_free,
};

static inline struct test_tr *test_tr_new(struct vpiv *card, size_t max_data) {
        struct test_tr *t = calloc(1, sizeof *t);
        CHECK(t);
        t->base.ops = &test_tr_ops;
        t->card = card;
        t->max_data = max_data;
        t->gone_after = -1;
        return t;
}

/* Runs make-card.sh (path in $PIV_MAKE_CARD) into dir with extra options. */
static inline void test_make_card(const char *dir, const char *extra) {
        const char *script = getenv("PIV_MAKE_CARD");
        CHECK(script && *script);
        char cmd[2048];
        snprintf(cmd, sizeof cmd, "'%s' '%s' %s", script, dir, extra ? extra : "");
        CHECK(system(cmd) == 0);
}

static inline struct vpiv *test_open_card(const char *dir) {
        struct vpiv *c = NULL;
        char *err = NULL;
        int r = vpiv_new(dir, &c, &err);
        if (r < 0)
                fprintf(stderr, "vpiv_new(%s): %s\n", dir, err ? err : strerror(-r));
        free(err);
        CHECK(r == 0 && c);
        return c;
}
