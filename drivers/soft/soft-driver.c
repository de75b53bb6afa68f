/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The soft token driver: its tokens are the files of <data_dir>/tokens, its
 * slot keys "soft:<file name>".  Creation, deletion (the file and SQLite's
 * -wal, -shm and -journal files) and the "path" of a listing live here, not
 * in the daemon. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "soft.h"

static char *slot_key(const char *path) {
        const char *base = strrchr(path, '/');
        char *k = NULL;
        if (asprintf(&k, "soft:%s", base ? base + 1 : path) < 0)
                return NULL;
        return k;
}

/* Opens the token file and hands it to the daemon. */
static int add_file(struct driver_host *h, const char *path, CK_SLOT_ID *ret_slot) {
        struct token *t = NULL;
        int r = soft_token_open(path, &t);
        if (r < 0)
                return r;
        _cleanup_free_ char *key = slot_key(path);
        if (!key) {
                soft_ops.free(t);
                return -ENOMEM;
        }
        return h->token_added(h, &soft_ops, t, key, ret_slot); /* owns t */
}

static int soft_start(struct driver_host *h) {
        char **paths = NULL;
        size_t n = 0;
        int r;

        if (!h->data_dir)
                return -ECANCELED;
        (void) soft_token_clean_stale(h->data_dir);
        r = soft_token_scan(h->data_dir, &paths, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                r = add_file(h, paths[i], NULL);
                if (r < 0)
                        log_error("soft token %s not served: %s", paths[i], strerror(-r));
                free(paths[i]);
        }
        free(paths);
        return 0;
}

static int soft_create(struct driver_host *h, const struct driver_create_args *a, CK_SLOT_ID *ret_slot,
                       char **ret_where) {
        _cleanup_free_ char *path = NULL;
        int r;

        if (!h->data_dir)
                return -EIO;
        r = soft_token_create(h->data_dir, a->label, a->pin, a->pin_len, a->so_pin, a->so_pin_len, a->max_tries,
                              &path);
        if (r < 0)
                return r;
        r = add_file(h, path, ret_slot);
        if (r < 0) {
                (void)unlink(path);
                return r;
        }
        *ret_where = TAKE_PTR(path);
        return 0;
}

static int soft_delete(struct driver_host *h, struct token *t, char **ret_where) {
        _cleanup_free_ char *path = strdup(soft_token_path(t));
        if (!path)
                return -ENOMEM;
        h->token_removed(h, t); /* t may be freed from here on */
        soft_unlink_db_files(path);
        *ret_where = TAKE_PTR(path);
        return 0;
}

static void soft_describe(struct driver_host *h, struct token *t, driver_put_fn put, void *ctx) {
        put(ctx, "path", soft_token_path(t));
}

const struct driver soft_driver = {
        .name = "soft",
        .start = soft_start,
        .create = soft_create,
        .delete = soft_delete,
        .describe = soft_describe,
};
