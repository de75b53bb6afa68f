/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "driver.h"

#include <stdlib.h>

void dobj_done(struct dobj *o) {
        if (!o)
                return;
        nattrs_done(&o->attrs);
        o->id = 0;
}

struct dobj *dobj_free_array(struct dobj *v, size_t n) {
        if (!v)
                return NULL;
        for (size_t i = 0; i < n; i++)
                dobj_done(&v[i]);
        free(v);
        return NULL;
}
