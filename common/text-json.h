/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* JSON output that stays valid JSON whatever the names in it hold: a device
 * or a file may give a label that is not UTF-8 (common/text.h).  For the
 * programs that link cJSON (netcad's management replies, netca-tool). */
#pragma once

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/text.h"

/* Replaces, in every string of the tree at item, each byte that is not part
 * of valid UTF-8 by U+FFFD.  Returns false on allocation failure. */
static inline bool text_json_sanitize(cJSON *item) {
        bool ok = true;
        if (!item)
                return true;
        if (cJSON_IsString(item) && item->valuestring &&
            !text_is_clean(item->valuestring, strlen(item->valuestring))) {
                char *s = text_escape(item->valuestring, (size_t)-1, TEXT_ESCAPE_JSON);
                ok = s && cJSON_SetValuestring(item, s);
                free(s);
        }
        for (cJSON *c = item->child; c; c = c->next)
                ok = text_json_sanitize(c) && ok;
        return ok;
}
