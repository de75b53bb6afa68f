/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* daemon/audit.c: records survive a close and reopen, queries see what was
 * logged just before (the queue is written first), filters, rotation past
 * max_records (the oldest go), clear. */
#include <stdio.h>
#include <string.h>

#include "daemon/audit.h"
#include "../unit/unit.h"

static void event(struct audit *a, int64_t t, const char *label, const char *op, bool ok, int n) {
        struct audit_event e = { .time_ms = t, .uid = 1000, .pid = 4242, .op = op, .ok = ok };
        snprintf(e.exe, sizeof e.exe, "/usr/bin/test");
        snprintf(e.label, sizeof e.label, "%s", label);
        snprintf(e.serial, sizeof e.serial, "SER-%s", label);
        snprintf(e.object, sizeof e.object, "obj-%d", n);
        if (!ok)
                snprintf(e.reason, sizeof e.reason, "wrong PIN, %d tries left", n);
        audit_log(a, &e);
}

static int count(struct audit *a, const struct audit_filter *f) {
        cJSON *arr = NULL;
        CHECK_OK(audit_query(a, f, &arr));
        int n = cJSON_GetArraySize(arr);
        cJSON_Delete(arr);
        return n;
}

int main(void) {
        const char *dir = unit_tmpdir_new();
        struct audit *a;
        CHECK_OK(audit_open(dir, &a));
        CHECK(audit_get_max(a) == AUDIT_DEFAULT_MAX);
        /* Queued, and queried at once: nothing missing. */
        for (int i = 0; i < 10; i++)
                event(a, 1000 + i, i % 2 ? "one" : "two", i % 3 ? "sign" : "login", i % 4 != 0, i);
        CHECK(count(a, NULL) == 10);
        struct audit_filter f = { .failed_only = true };
        CHECK(count(a, &f) == 3); /* i = 0, 4, 8 */
        f = (struct audit_filter){ .token = "one" };
        CHECK(count(a, &f) == 5);
        f = (struct audit_filter){ .token = "SER-two" };
        CHECK(count(a, &f) == 5);
        f = (struct audit_filter){ .since_ms = 1005, .until_ms = 1007 };
        CHECK(count(a, &f) == 3);
        f = (struct audit_filter){ .limit = 4 };
        cJSON *arr;
        CHECK_OK(audit_query(a, &f, &arr));
        /* The newest four, oldest first. */
        CHECK(cJSON_GetArraySize(arr) == 4);
        CHECK(cJSON_GetObjectItem(cJSON_GetArrayItem(arr, 0), "time")->valuedouble == 1006);
        CHECK(cJSON_GetObjectItem(cJSON_GetArrayItem(arr, 3), "time")->valuedouble == 1009);
        cJSON *first = cJSON_GetArrayItem(arr, 2);
        CHECK(strcmp(cJSON_GetObjectItem(first, "result")->valuestring, "failed") == 0);
        CHECK(strcmp(cJSON_GetObjectItem(first, "reason")->valuestring, "wrong PIN, 8 tries left") == 0);
        CHECK(strcmp(cJSON_GetObjectItem(first, "exe")->valuestring, "/usr/bin/test") == 0);
        cJSON_Delete(arr);

        /* Kept across close and reopen. */
        a = audit_close(a);
        CHECK_OK(audit_open(dir, &a));
        CHECK(count(a, NULL) == 10);

        /* Rotation: past max_records the oldest go. */
        audit_set_max(a, 100);
        for (int i = 0; i < 250; i++)
                event(a, 5000 + i, "rot", "sign", true, i);
        CHECK_OK(audit_flush(a));
        CHECK(count(a, NULL) == 100);
        f = (struct audit_filter){ .limit = 1 };
        CHECK_OK(audit_query(a, &f, &arr));
        CHECK(cJSON_GetObjectItem(cJSON_GetArrayItem(arr, 0), "time")->valuedouble == 5249);
        cJSON_Delete(arr);
        f = (struct audit_filter){ .since_ms = 5150 };
        CHECK(count(a, &f) == 100);

        unsigned n = 0;
        CHECK_OK(audit_clear(a, &n));
        CHECK(n == 100);
        CHECK(count(a, NULL) == 0);
        audit_close(a);
        return 0;
}
