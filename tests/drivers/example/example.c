/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A test-only driver, written the way docs/drivers.md tells a newcomer:
 * this folder and one line in a driver table (../table.c).  One token,
 * labelled "example", holding one data object; its PIN is "1234", three
 * tries.  NETCA_EXAMPLE=0 turns it off.  It proves the registry contract
 * end to end (tests/drivers/example.sh drives it through pkcs11-tool). */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/driver.h"

struct token {
        pthread_mutex_t lock;
        int fails;
        struct token_desc desc;
};

static void publish(struct token *t) {
        t->desc.flags = CKF_LOGIN_REQUIRED | CKF_TOKEN_INITIALIZED | CKF_USER_PIN_INITIALIZED;
        if (t->fails >= 3)
                t->desc.flags |= CKF_USER_PIN_LOCKED;
        else if (t->fails > 0)
                t->desc.flags |= CKF_USER_PIN_COUNT_LOW;
        t->desc.user_tries_left = 3 - t->fails;
}

static int ex_get_info(struct token *t, struct token_desc *ret) {
        pthread_mutex_lock(&t->lock);
        *ret = t->desc;
        pthread_mutex_unlock(&t->lock);
        return 0;
}

static int ex_get_mechanisms(struct token *t, const struct driver_mech **ret, size_t *ret_n) {
        *ret = NULL;
        *ret_n = 0;
        return 0;
}

static int ex_load_objects(struct token *t, struct dobj **ret, size_t *ret_n) {
        struct dobj *o = calloc(1, sizeof *o);
        if (!o)
                return -ENOMEM;
        o->id = 1;
        nattrs_init(&o->attrs);
        static const char label[] = "example data", value[] = "hello from the example driver";
        if (nattrs_set_ulong(&o->attrs, CKA_CLASS, CKO_DATA) < 0 || nattrs_set_bool(&o->attrs, CKA_TOKEN, true) < 0 ||
            nattrs_set_bool(&o->attrs, CKA_PRIVATE, true) < 0 ||
            nattrs_set(&o->attrs, CKA_LABEL, label, sizeof label - 1) < 0 ||
            nattrs_set(&o->attrs, CKA_VALUE, value, sizeof value - 1) < 0) {
                dobj_free_array(o, 1);
                return -ENOMEM;
        }
        *ret = o;
        *ret_n = 1;
        return 0;
}

static int ex_login(struct token *t, CK_USER_TYPE user, const char *pin, size_t pin_len) {
        int r;
        if (user != CKU_USER)
                return -EACCES;
        pthread_mutex_lock(&t->lock);
        if (t->fails >= 3)
                r = -EKEYREVOKED;
        else if (pin_len == 4 && memcmp(pin, "1234", 4) == 0) {
                t->fails = 0;
                r = 0;
        } else {
                t->fails++;
                r = -EACCES;
        }
        publish(t);
        pthread_mutex_unlock(&t->lock);
        return r;
}

static int ex_logout(struct token *t) {
        return 0;
}

static void ex_free(struct token *t) {
        if (!t)
                return;
        pthread_mutex_destroy(&t->lock);
        free(t);
}

static const struct driver_ops example_ops = {
        .name = "example",
        .get_info = ex_get_info,
        .get_mechanisms = ex_get_mechanisms,
        .load_objects = ex_load_objects,
        .login = ex_login,
        .logout = ex_logout,
        .free = ex_free,
};

static int ex_start(struct driver_host *h) {
        const char *e = getenv("NETCA_EXAMPLE");
        if (e && strcmp(e, "0") == 0)
                return -ECANCELED;
        struct token *t = calloc(1, sizeof *t);
        if (!t)
                return -ENOMEM;
        pthread_mutex_init(&t->lock, NULL);
        snprintf(t->desc.label, sizeof t->desc.label, "example");
        snprintf(t->desc.manufacturer, sizeof t->desc.manufacturer, "NETCA tests");
        snprintf(t->desc.model, sizeof t->desc.model, "example driver");
        snprintf(t->desc.serial, sizeof t->desc.serial, "EX0001");
        t->desc.kind = "example";
        t->desc.min_pin = 4;
        t->desc.max_pin = 4;
        t->desc.user_tries_max = 3;
        t->desc.so_tries_left = t->desc.so_tries_max = -1;
        publish(t);
        return h->token_added(h, &example_ops, t, "example:0", NULL);
}

static void ex_describe(struct driver_host *h, struct token *t, driver_put_fn put, void *ctx) {
        put(ctx, "example", "described by the example driver");
}

const struct driver example_driver = {
        .name = "example",
        .start = ex_start,
        .describe = ex_describe,
};
