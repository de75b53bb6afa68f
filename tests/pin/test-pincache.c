/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The PIN cache's rules (daemon/pincache.c), on an injected clock: sliding
 * expiry, the absolute cap, both scopes, pid reuse, every flush, policy
 * changes, durations. */
#include <string.h>

#include "daemon/pincache.h"
#include "../unit/unit.h"

static uint64_t now = 1000;

static uint64_t fake_clock(void *ud) {
        (void)ud;
        return now;
}

static const struct pincache_owner proc_a = { .pid = 100, .start_time = 5000, .session = "3" };
static const struct pincache_owner proc_a_reused = { .pid = 100, .start_time = 9999, .session = "3" };
static const struct pincache_owner proc_b = { .pid = 200, .start_time = 6000, .session = "3" };
static const struct pincache_owner proc_c = { .pid = 300, .start_time = 7000, .session = "7" };
static const struct pincache_owner proc_nosession = { .pid = 400, .start_time = 8000, .session = "" };

/* Whether owner o is served on token t, and with which PIN. */
static bool served(struct pincache *c, const char *t, const struct pincache_owner *o, const char *want) {
        char pin[64];
        size_t n = 0;
        int r = pincache_get(c, t, o, pin, sizeof pin, &n);
        if (r < 0)
                return false;
        CHECK(want && n == strlen(want) && memcmp(pin, want, n) == 0);
        return true;
}

static void test_durations(void) {
        uint64_t v;
        CHECK_OK(pincache_parse_duration("30m", &v));
        CHECK(v == 1800);
        CHECK_OK(pincache_parse_duration("1h", &v));
        CHECK(v == 3600);
        CHECK_OK(pincache_parse_duration("1h30m", &v));
        CHECK(v == 5400);
        CHECK_OK(pincache_parse_duration("45s", &v));
        CHECK(v == 45);
        CHECK_RC(pincache_parse_duration("", &v), -EINVAL);
        CHECK_RC(pincache_parse_duration("30", &v), -EINVAL);
        CHECK_RC(pincache_parse_duration("m", &v), -EINVAL);
        CHECK_RC(pincache_parse_duration("-5m", &v), -EINVAL);
        CHECK_RC(pincache_parse_duration("5x", &v), -EINVAL);
        CHECK_RC(pincache_parse_duration("99999999999h", &v), -EINVAL);
}

static void test_sliding_and_cap(void) {
        struct pincache *c;
        CHECK_OK(pincache_new(fake_clock, NULL, &c));
        struct pincache_policy p;
        pincache_policy_default(&p);
        CHECK(p.enabled && p.ttl == 1800 && p.max == 8 * 3600 && p.scope == PINCACHE_SCOPE_PROCESS &&
              !p.always_authenticate);
        p.ttl = 600;
        p.max = 1500;
        pincache_set_policy(c, &p);
        now = 1000;
        pincache_put(c, "soft:a", &proc_a, "123456", 6);
        /* Within the ttl: served, and each use slides the expiry. */
        now += 599;
        CHECK(served(c, "soft:a", &proc_a, "123456"));
        now += 599;
        CHECK(served(c, "soft:a", &proc_a, "123456"));
        now += 299; /* 1497 s after entry: the cap (1500) still ahead */
        CHECK(served(c, "soft:a", &proc_a, "123456"));
        /* The slide stops at the cap: 1500 s after entry it is gone even
         * though the last use was 3 s ago. */
        now += 3;
        CHECK(!served(c, "soft:a", &proc_a, NULL));

        /* Unused for the ttl: gone. */
        now = 10000;
        pincache_put(c, "soft:a", &proc_a, "123456", 6);
        now += 600;
        CHECK(!served(c, "soft:a", &proc_a, NULL));
        pincache_free(c);
}

static void test_scopes(void) {
        struct pincache *c;
        CHECK_OK(pincache_new(fake_clock, NULL, &c));
        now = 1000;
        /* Process scope: only the process (pid and start time) that entered it. */
        pincache_put(c, "soft:a", &proc_a, "111111", 6);
        CHECK(served(c, "soft:a", &proc_a, "111111"));
        CHECK(!served(c, "soft:a", &proc_b, NULL));
        CHECK(!served(c, "soft:a", &proc_a_reused, NULL));
        CHECK(!served(c, "soft:b", &proc_a, NULL));

        /* Session scope: every process of the session, not another session. */
        struct pincache_policy p;
        pincache_get_policy(c, &p);
        p.scope = PINCACHE_SCOPE_SESSION;
        pincache_set_policy(c, &p);
        CHECK(!served(c, "soft:a", &proc_a, NULL)); /* the policy change flushed it */
        pincache_put(c, "soft:a", &proc_a, "222222", 6);
        CHECK(served(c, "soft:a", &proc_b, "222222"));
        CHECK(served(c, "soft:a", &proc_a_reused, "222222"));
        CHECK(!served(c, "soft:a", &proc_c, NULL));
        CHECK(!served(c, "soft:a", &proc_nosession, NULL));
        /* A client in no session gets a process-scope entry. */
        pincache_put(c, "soft:a", &proc_nosession, "333333", 6);
        CHECK(served(c, "soft:a", &proc_nosession, "333333"));
        CHECK(served(c, "soft:a", &proc_a, "222222"));
        /* The screen lock of session 3 flushes its entries only. */
        CHECK(pincache_flush_session(c, "3") == 1);
        CHECK(!served(c, "soft:a", &proc_b, NULL));
        CHECK(served(c, "soft:a", &proc_nosession, "333333"));
        pincache_free(c);
}

static void test_flushes(void) {
        struct pincache *c;
        CHECK_OK(pincache_new(fake_clock, NULL, &c));
        now = 1000;
        pincache_put(c, "soft:a", &proc_a, "111111", 6);
        pincache_put(c, "soft:b", &proc_a, "222222", 6);
        pincache_put(c, "soft:a", &proc_b, "333333", 6);
        /* A newer PIN replaces the owner's entry. */
        pincache_put(c, "soft:a", &proc_b, "444444", 6);
        CHECK(served(c, "soft:a", &proc_b, "444444"));
        /* Token removal / PIN change: that token's entries. */
        CHECK(pincache_flush_token(c, "soft:a") == 2);
        CHECK(!served(c, "soft:a", &proc_a, NULL));
        CHECK(served(c, "soft:b", &proc_a, "222222"));
        /* The cached PIN was refused: that entry. */
        pincache_put(c, "soft:a", &proc_b, "555555", 6);
        CHECK(pincache_flush_entry(c, "soft:b", &proc_a) == 1);
        CHECK(served(c, "soft:a", &proc_b, "555555"));
        /* The process went away. */
        CHECK(pincache_flush_process(c, proc_b.pid, proc_b.start_time + 1) == 0);
        CHECK(pincache_flush_process(c, proc_b.pid, proc_b.start_time) == 1);
        /* Clear. */
        pincache_put(c, "soft:a", &proc_a, "111111", 6);
        pincache_put(c, "soft:b", &proc_c, "222222", 6);
        CHECK(pincache_flush_all(c) == 2);
        CHECK(!served(c, "soft:b", &proc_c, NULL));
        /* Caching off: nothing is kept. */
        struct pincache_policy p;
        pincache_get_policy(c, &p);
        p.enabled = false;
        pincache_set_policy(c, &p);
        pincache_put(c, "soft:a", &proc_a, "111111", 6);
        CHECK(!served(c, "soft:a", &proc_a, NULL));
        pincache_free(c);
}

struct count {
        unsigned n;
        uint64_t expires_in, cap_in;
};

static void count_cb(const struct pincache_entry_info *e, void *ud) {
        struct count *k = ud;
        k->n++;
        k->expires_in = e->expires_in;
        k->cap_in = e->cap_in;
}

static void test_status(void) {
        struct pincache *c;
        CHECK_OK(pincache_new(fake_clock, NULL, &c));
        now = 50;
        pincache_put(c, "soft:a", &proc_a, "111111", 6);
        now = 150;
        struct count k = { 0 };
        pincache_foreach(c, count_cb, &k);
        CHECK(k.n == 1 && k.expires_in == 1800 - 100 && k.cap_in == 8 * 3600 - 100);
        /* A small buffer is refused, not overrun. */
        char small[3];
        size_t len;
        CHECK_RC(pincache_get(c, "soft:a", &proc_a, small, sizeof small, &len), -ENOBUFS);
        now = 150 + 1800;
        k.n = 0;
        pincache_foreach(c, count_cb, &k);
        CHECK(k.n == 0);
        pincache_free(c);
}

int main(void) {
        test_durations();
        test_sliding_and_cap();
        test_scopes();
        test_flushes();
        test_status();
        return 0;
}
