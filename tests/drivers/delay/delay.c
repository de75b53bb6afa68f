/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A test-only driver: the soft driver, with chosen tokens slowed down and
 * held at a gate, for the tests that need a busy token (tests/stress
 * isolation, bench/run.sh's "bench-slow").  It wraps the soft driver from
 * outside, through the driver contract alone: the soft driver knows
 * nothing of it, and the product netcad does not contain it.
 *
 *     NETCA_SOFT_DELAY="LABEL=MS[:GATE][,LABEL=MS[:GATE]...]"
 *
 * in netcad-test's environment: the soft token labelled LABEL (exactly;
 * labels holding ',' or '=' cannot be named) sleeps MS milliseconds
 * (0..600000) before every sign and decrypt and before each reading of its
 * objects (load_objects).  With GATE (a path), each such operation then
 * appends one byte to "GATE.entered" and waits for as long as the file
 * GATE exists, so that a test holds the token busy for exactly as long as
 * it wants and counts the operations in progress without timing anything.
 *
 * How: the soft driver gets a host of this file's (a proxy of the real
 * one).  A token it adds whose label is named gets ops of this file that
 * delay and then call the soft ops on the soft token; other tokens go to
 * the daemon as they are.  token_removed/changed are mapped back, and
 * create/delete/describe are forwarded with the soft token.  The driver is
 * named "soft", so slot keys and settings are the soft driver's. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "drivers/driver.h"
#include "drivers/soft/soft.h"

/* A slowed token: what the daemon holds. */
struct token {
        struct token *inner;      /* the soft token */
        unsigned ms;
        char *gate;               /* NULL: no gate */
        struct token *next;       /* delay_state.slowed */
};

struct delay_state {
        struct driver_host proxy; /* what the soft driver is given */
        struct driver_host *host; /* the daemon's */
        pthread_mutex_t lock;
        struct token *slowed;
};

static struct delay_state *state_of(struct driver_host *proxy) {
        return (struct delay_state *)((char *)proxy - offsetof(struct delay_state, proxy));
}

static void sleep_ms(unsigned ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static void delay(struct token *t) {
        if (t->ms)
                sleep_ms(t->ms);
        if (!t->gate)
                return;
        char *mark = NULL;
        if (asprintf(&mark, "%s.entered", t->gate) >= 0) {
                int fd = open(mark, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
                if (fd >= 0) {
                        (void)!write(fd, "+", 1);
                        close(fd);
                }
                free(mark);
        }
        while (access(t->gate, F_OK) == 0)
                sleep_ms(2);
}

/* ---- the ops of a slowed token: delay where named, then the soft op ---- */

static int d_get_info(struct token *t, struct token_desc *ret) {
        return soft_ops.get_info(t->inner, ret);
}
static int d_get_mechanisms(struct token *t, const struct driver_mech **ret, size_t *ret_n) {
        return soft_ops.get_mechanisms(t->inner, ret, ret_n);
}
static int d_load_objects(struct token *t, struct dobj **ret, size_t *ret_n) {
        delay(t);
        return soft_ops.load_objects(t->inner, ret, ret_n);
}
static int d_login(struct token *t, CK_USER_TYPE user, const char *pin, size_t pin_len) {
        return soft_ops.login(t->inner, user, pin, pin_len);
}
static int d_logout(struct token *t) {
        return soft_ops.logout(t->inner);
}
static int d_init_token(struct token *t, const char *so_pin, size_t so_pin_len, const char *label) {
        return soft_ops.init_token(t->inner, so_pin, so_pin_len, label);
}
static int d_init_pin(struct token *t, const char *pin, size_t pin_len) {
        return soft_ops.init_pin(t->inner, pin, pin_len);
}
static int d_set_pin(struct token *t, CK_USER_TYPE user, const char *old_pin, size_t old_len, const char *new_pin,
                     size_t new_len) {
        return soft_ops.set_pin(t->inner, user, old_pin, old_len, new_pin, new_len);
}
static int d_create_object(struct token *t, const CK_ATTRIBUTE *tmpl, CK_ULONG n, bool persistent,
                           struct dobj *ret) {
        return soft_ops.create_object(t->inner, tmpl, n, persistent, ret);
}
static int d_destroy_object(struct token *t, uint64_t id) {
        return soft_ops.destroy_object(t->inner, id);
}
static int d_set_attributes(struct token *t, uint64_t id, const CK_ATTRIBUTE *tmpl, CK_ULONG n,
                            struct nattrs *ret_attrs) {
        return soft_ops.set_attributes(t->inner, id, tmpl, n, ret_attrs);
}
static int d_generate_key_pair(struct token *t, const CK_MECHANISM *mech, const CK_ATTRIBUTE *pub_tmpl,
                               CK_ULONG pub_n, const CK_ATTRIBUTE *priv_tmpl, CK_ULONG priv_n,
                               struct dobj *ret_pub, struct dobj *ret_priv) {
        return soft_ops.generate_key_pair(t->inner, mech, pub_tmpl, pub_n, priv_tmpl, priv_n, ret_pub, ret_priv);
}
static int d_sign(struct token *t, uint64_t key, const CK_MECHANISM *mech, const uint8_t *in, size_t in_len,
                  uint8_t *out, size_t *outlen) {
        if (out) /* a size query computes nothing: not delayed */
                delay(t);
        return soft_ops.sign(t->inner, key, mech, in, in_len, out, outlen);
}
static int d_decrypt(struct token *t, uint64_t key, const CK_MECHANISM *mech, const uint8_t *in, size_t in_len,
                     uint8_t *out, size_t *outlen) {
        if (out)
                delay(t);
        return soft_ops.decrypt(t->inner, key, mech, in, in_len, out, outlen);
}
static int d_random(struct token *t, uint8_t *out, size_t n) {
        return soft_ops.random(t->inner, out, n);
}
static void d_free(struct token *t) {
        if (!t)
                return;
        soft_ops.free(t->inner);
        free(t->gate);
        free(t);
}

static struct driver_ops delay_ops;
static pthread_once_t delay_ops_once = PTHREAD_ONCE_INIT;

/* The soft ops with the slowed ones in their place; an op the soft driver
 * leaves out stays out. */
static void delay_ops_init(void) {
        delay_ops = soft_ops;
#define WRAP(op) delay_ops.op = soft_ops.op ? d_##op : NULL
        WRAP(get_info);
        WRAP(get_mechanisms);
        WRAP(load_objects);
        WRAP(login);
        WRAP(logout);
        WRAP(init_token);
        WRAP(init_pin);
        WRAP(set_pin);
        WRAP(create_object);
        WRAP(destroy_object);
        WRAP(set_attributes);
        WRAP(generate_key_pair);
        WRAP(sign);
        WRAP(decrypt);
        WRAP(random);
        WRAP(free);
#undef WRAP
}

/* The entry of NETCA_SOFT_DELAY for label: 1 found (*ms, *gate malloc'd or
 * NULL), 0 not named, -EINVAL malformed. */
static int spec_for(const char *label, unsigned *ms, char **gate) {
        const char *e = getenv("NETCA_SOFT_DELAY");
        size_t ll = strlen(label);
        for (const char *p = e ? e : ""; *p;) {
                const char *end = strchrnul(p, ',');
                const char *eq = memchr(p, '=', (size_t)(end - p));
                if (eq && (size_t)(eq - p) == ll && memcmp(p, label, ll) == 0) {
                        char *stop;
                        unsigned long v = strtoul(eq + 1, &stop, 10);
                        if (stop == eq + 1 || v > 600000 || (stop != end && *stop != ':'))
                                return -EINVAL;
                        *ms = (unsigned)v;
                        *gate = *stop == ':' && stop + 1 < end ? strndup(stop + 1, (size_t)(end - stop - 1)) : NULL;
                        return 1;
                }
                p = *end ? end + 1 : end;
        }
        return 0;
}

/* The token a soft token is to the daemon: its wrapper, or itself. */
static struct token *outer_of(struct delay_state *st, struct token *inner) {
        struct token *o = inner;
        pthread_mutex_lock(&st->lock);
        for (struct token *w = st->slowed; w; w = w->next)
                if (w->inner == inner) {
                        o = w;
                        break;
                }
        pthread_mutex_unlock(&st->lock);
        return o;
}

/* The soft token behind what the daemon holds. */
static struct token *inner_of(struct delay_state *st, struct token *outer) {
        struct token *i = outer;
        pthread_mutex_lock(&st->lock);
        for (struct token *w = st->slowed; w; w = w->next)
                if (w == outer) {
                        i = w->inner;
                        break;
                }
        pthread_mutex_unlock(&st->lock);
        return i;
}

static int proxy_added(struct driver_host *proxy, const struct driver_ops *ops, struct token *t,
                       const char *slot_key, CK_SLOT_ID *ret_slot) {
        struct delay_state *st = state_of(proxy);
        struct token_desc d;
        unsigned ms = 0;
        char *gate = NULL;
        int r = ops->get_info(t, &d) == 0 ? spec_for(d.label, &ms, &gate) : 0;
        if (r < 0)
                log_warning("NETCA_SOFT_DELAY: bad entry for token '%s': ignored", d.label);
        if (r <= 0)
                return st->host->token_added(st->host, ops, t, slot_key, ret_slot);
        struct token *w = calloc(1, sizeof *w);
        if (!w) {
                free(gate);
                ops->free(t);
                return -ENOMEM;
        }
        w->inner = t;
        w->ms = ms;
        w->gate = gate;
        pthread_once(&delay_ops_once, delay_ops_init);
        log_warning("test driver: token '%s' signs, decrypts and reads its objects after %u ms%s", d.label, ms,
                    gate ? " and a gate" : "");
        pthread_mutex_lock(&st->lock);
        w->next = st->slowed;
        st->slowed = w;
        pthread_mutex_unlock(&st->lock);
        return st->host->token_added(st->host, &delay_ops, w, slot_key, ret_slot);
}

static void proxy_removed(struct driver_host *proxy, struct token *t) {
        struct delay_state *st = state_of(proxy);
        struct token *o = outer_of(st, t);
        if (o != t) {
                pthread_mutex_lock(&st->lock);
                for (struct token **pp = &st->slowed; *pp; pp = &(*pp)->next)
                        if (*pp == o) {
                                *pp = o->next;
                                break;
                        }
                pthread_mutex_unlock(&st->lock);
        }
        st->host->token_removed(st->host, o);
}

static void proxy_changed(struct driver_host *proxy, struct token *t) {
        struct delay_state *st = state_of(proxy);
        st->host->token_changed(st->host, outer_of(st, t));
}

static int proxy_setting_get(struct driver_host *proxy, const char *key, char **ret) {
        struct delay_state *st = state_of(proxy);
        return st->host->setting_get(st->host, key, ret);
}

static int proxy_setting_set(struct driver_host *proxy, const char *key, const char *value) {
        struct delay_state *st = state_of(proxy);
        return st->host->setting_set(st->host, key, value);
}

static int delay_start(struct driver_host *h) {
        struct delay_state *st = calloc(1, sizeof *st);
        if (!st)
                return -ENOMEM;
        st->host = h;
        pthread_mutex_init(&st->lock, NULL);
        st->proxy = *h;
        st->proxy.driver = &soft_driver;
        st->proxy.driver_data = NULL;
        st->proxy.token_added = proxy_added;
        st->proxy.token_removed = proxy_removed;
        st->proxy.token_changed = proxy_changed;
        st->proxy.setting_get = proxy_setting_get;
        st->proxy.setting_set = proxy_setting_set;
        h->driver_data = st;
        int r = soft_driver.start(&st->proxy);
        if (r < 0) {
                h->driver_data = NULL;
                pthread_mutex_destroy(&st->lock);
                free(st);
        }
        return r;
}

static void delay_stop(struct driver_host *h) {
        struct delay_state *st = h->driver_data;
        if (st && soft_driver.stop)
                soft_driver.stop(&st->proxy);
}

static void delay_free(struct driver_host *h) {
        struct delay_state *st = h->driver_data;
        if (!st)
                return;
        if (soft_driver.free)
                soft_driver.free(&st->proxy);
        pthread_mutex_destroy(&st->lock);
        free(st);
        h->driver_data = NULL;
}

static int delay_create(struct driver_host *h, const struct driver_create_args *a, CK_SLOT_ID *ret_slot,
                        char **ret_where) {
        struct delay_state *st = h->driver_data;
        return soft_driver.create(&st->proxy, a, ret_slot, ret_where);
}

static int delay_delete(struct driver_host *h, struct token *t, char **ret_where) {
        struct delay_state *st = h->driver_data;
        return soft_driver.delete(&st->proxy, inner_of(st, t), ret_where);
}

static void delay_describe(struct driver_host *h, struct token *t, driver_put_fn put, void *ctx) {
        struct delay_state *st = h->driver_data;
        soft_driver.describe(&st->proxy, inner_of(st, t), put, ctx);
}

const struct driver soft_delay_driver = {
        .name = "soft",
        .start = delay_start,
        .stop = delay_stop,
        .free = delay_free,
        .create = delay_create,
        .delete = delay_delete,
        .describe = delay_describe,
};
