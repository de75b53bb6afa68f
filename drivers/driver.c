/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "driver.h"

#include <stdlib.h>

void dobj_done(struct dobj *o) {
        if (!o)
                return;
        nattrs_done(&o->attrs);
        o->id = 0;
}

void token_desc_copy(pthread_mutex_t *lock, struct token_desc *dst, const struct token_desc *src) {
        pthread_mutex_lock(lock);
        *dst = *src;
        pthread_mutex_unlock(lock);
}

struct dobj *dobj_free_array(struct dobj *v, size_t n) {
        if (!v)
                return NULL;
        for (size_t i = 0; i < n; i++)
                dobj_done(&v[i]);
        free(v);
        return NULL;
}
