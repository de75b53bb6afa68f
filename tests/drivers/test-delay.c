/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The test-only delay driver (delay/delay.c) against a host of this file's,
 * and the product's soft driver against the same environment:
 *   - a token named in NETCA_SOFT_DELAY reaches the host with the delay
 *     driver's ops, the others with the soft ops themselves; slot keys stay
 *     the soft driver's;
 *   - the named token's load_objects and sign pass the gate (one byte in
 *     GATE.entered each) and wait while GATE exists; size queries do not;
 *   - describe and delete reach the soft driver with the soft token, and
 *     token_removed reaches the host with the token it was given;
 *   - the product soft driver ignores NETCA_SOFT_DELAY: its tokens have the
 *     soft ops and never touch the gate. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "drivers/driver.h"
#include "drivers/soft/soft.h"

#define CHECK(x)                                                                              \
        do {                                                                                  \
                if (!(x)) {                                                                   \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #x); \
                        exit(1);                                                              \
                }                                                                             \
        } while (0)

extern const struct driver soft_delay_driver;

/* ---- the host: records what it is given */
struct added {
        const struct driver_ops *ops;
        struct token *t;
        char key[256];
        char label[33];
        bool removed;
};
static struct added added[8];
static size_t n_added;

static int h_added(struct driver_host *h, const struct driver_ops *ops, struct token *t, const char *key,
                   CK_SLOT_ID *ret_slot) {
        CHECK(n_added < 8);
        struct token_desc d;
        CHECK(ops->get_info(t, &d) == 0);
        struct added *a = &added[n_added];
        memset(a, 0, sizeof *a);
        a->ops = ops;
        a->t = t;
        snprintf(a->key, sizeof a->key, "%s", key);
        snprintf(a->label, sizeof a->label, "%s", d.label);
        if (ret_slot)
                *ret_slot = n_added;
        n_added++;
        return 0;
}

static void h_removed(struct driver_host *h, struct token *t) {
        for (size_t i = 0; i < n_added; i++)
                if (added[i].t == t)
                        added[i].removed = true;
}

static void h_changed(struct driver_host *h, struct token *t) {}

static struct added *labelled(const char *label) {
        for (size_t i = 0; i < n_added; i++)
                if (strcmp(added[i].label, label) == 0 && !added[i].removed)
                        return &added[i];
        return NULL;
}

static char gate[1100], entered[1200];

static off_t entered_count(void) {
        struct stat st;
        return stat(entered, &st) == 0 ? st.st_size : 0;
}

static void load(struct added *a) {
        struct dobj *v = NULL;
        size_t n = 0;
        CHECK(a->ops->load_objects(a->t, &v, &n) == 0);
        dobj_free_array(v, n);
}

static bool loader_done;
static void *loader(void *arg) {
        load(arg);
        __atomic_store_n(&loader_done, true, __ATOMIC_SEQ_CST);
        return NULL;
}

static void put(void *ctx, const char *key, const char *value) {
        if (strcmp(key, "path") == 0)
                snprintf(ctx, 1024, "%s", value);
}

static void free_all(void) {
        for (size_t i = 0; i < n_added; i++)
                if (!added[i].removed)
                        added[i].ops->free(added[i].t);
        n_added = 0;
}

int main(void) {
        char dir[] = "/tmp/netca-test-delay.XXXXXX";
        CHECK(mkdtemp(dir));
        char *p1 = NULL, *p2 = NULL;
        CHECK(soft_token_create(dir, "slow", "123456", 6, "87654321", 8, 0, &p1) == 0);
        CHECK(soft_token_create(dir, "plain", "123456", 6, "87654321", 8, 0, &p2) == 0);
        snprintf(gate, sizeof gate, "%s/gate", dir);
        snprintf(entered, sizeof entered, "%s.entered", gate);
        char spec[1200];
        snprintf(spec, sizeof spec, "nobody=5,slow=0:%s", gate);
        setenv("NETCA_SOFT_DELAY", spec, 1);

        struct driver_host host = {
                .driver = &soft_delay_driver,
                .data_dir = dir,
                .token_added = h_added,
                .token_removed = h_removed,
                .token_changed = h_changed,
        };
        CHECK(soft_delay_driver.start(&host) == 0);
        CHECK(n_added == 2);
        struct added *slow = labelled("slow"), *plain = labelled("plain");
        CHECK(slow && plain);
        CHECK(slow->ops != &soft_ops && plain->ops == &soft_ops);
        CHECK(strncmp(slow->key, "soft:", 5) == 0 && strncmp(plain->key, "soft:", 5) == 0);
        CHECK(slow->ops->parallel_crypto == soft_ops.parallel_crypto);

        /* The gate: absent, each operation of the named token marks it and
         * goes on; the other token never marks it. */
        load(slow);
        CHECK(entered_count() == 1);
        load(plain);
        CHECK(entered_count() == 1);
        CHECK(slow->ops->login(slow->t, CKU_USER, "123456", 6) == 0);
        size_t len = 0;
        (void)slow->ops->sign(slow->t, 1, &(CK_MECHANISM){ CKM_ECDSA, NULL, 0 }, (const uint8_t *)"x", 1, NULL, &len);
        CHECK(entered_count() == 1); /* a size query is not an operation */

        /* Present, the operation waits until it is removed. */
        int fd = open(gate, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        CHECK(fd >= 0);
        close(fd);
        pthread_t th;
        CHECK(pthread_create(&th, NULL, loader, slow) == 0);
        while (entered_count() < 2)
                usleep(1000);
        CHECK(!__atomic_load_n(&loader_done, __ATOMIC_SEQ_CST)); /* it is at the gate, not past it */
        load(plain); /* another token is not held */
        CHECK(unlink(gate) == 0);
        CHECK(pthread_join(th, NULL) == 0);
        CHECK(loader_done && entered_count() == 2);

        /* describe and delete reach the soft driver with the soft token; the
         * host's token_removed gets the token it was given. */
        char where[1024] = "";
        soft_delay_driver.describe(&host, slow->t, put, where);
        CHECK(strcmp(where, p1) == 0);
        char *gone = NULL;
        CHECK(soft_delay_driver.delete(&host, slow->t, &gone) == 0);
        CHECK(gone && strcmp(gone, p1) == 0 && access(p1, F_OK) < 0);
        CHECK(slow->removed);
        slow->ops->free(slow->t); /* the daemon frees what was removed */
        free(gone);
        soft_delay_driver.describe(&host, plain->t, put, where);
        CHECK(strcmp(where, p2) == 0);
        free_all();
        if (soft_delay_driver.free)
                soft_delay_driver.free(&host);

        /* The product's soft driver, same environment: nothing is slowed. */
        snprintf(spec, sizeof spec, "plain=0:%s", gate);
        setenv("NETCA_SOFT_DELAY", spec, 1);
        fd = open(gate, O_WRONLY | O_CREAT | O_CLOEXEC, 0600); /* would hold the token forever */
        CHECK(fd >= 0);
        close(fd);
        host.driver = &soft_driver;
        CHECK(soft_driver.start(&host) == 0);
        CHECK(n_added == 1 && labelled("plain") && labelled("plain")->ops == &soft_ops);
        load(labelled("plain"));
        CHECK(entered_count() == 2);
        free_all();

        char cmd[1200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        CHECK(system(cmd) == 0);
        free(p1);
        free(p2);
        printf("ok\n");
        return 0;
}
