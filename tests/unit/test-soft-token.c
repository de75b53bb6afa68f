/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Soft token lifecycle: create/open/scan, token info, mechanisms, the user
 * PIN retry counter (decrement, flags, lock, persisted across reopen), SO
 * unblock with init_pin keeping existing keys usable, set_pin for user and
 * SO, init_token (wipe, label, user PIN uninitialized), login rules. */
#include "soft-helpers.h"

#include <fcntl.h>
#include <sqlite3.h>

/* The stored user PIN wrap (malloc'd), read straight from the file. */
static uint8_t *read_wrap(const char *path, size_t *ret_n) {
        sqlite3 *db;
        sqlite3_stmt *st;
        CHECK(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
        CHECK(sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'user_wrap'", -1, &st, NULL) == SQLITE_OK);
        CHECK(sqlite3_step(st) == SQLITE_ROW);
        size_t n = (size_t) sqlite3_column_bytes(st, 0);
        CHECK(n >= 60);
        uint8_t *v = malloc(n);
        memcpy(v, sqlite3_column_blob(st, 0), n);
        sqlite3_finalize(st);
        sqlite3_close(db);
        *ret_n = n;
        return v;
}

static bool files_contain(const char *path, const uint8_t *v, size_t n) {
        char side[1200];
        snprintf(side, sizeof side, "%s-wal", path);
        return unit_file_contains(path, v, n) || unit_file_contains(side, v, n);
}

static void test_create_scan(const char *dir) {
        char **paths = NULL, *p1 = NULL, *p2 = NULL;
        size_t n = 99;
        struct token *t;

        CHECK_OK(soft_token_scan(dir, &paths, &n));
        CHECK(n == 0);
        free(paths);

        CHECK_RC(soft_token_create(dir, "0123456789012345678901234567890123", USER_PIN, 6, SO_PIN, 8, 0, &p1),
                 -EINVAL);
        CHECK_RC(soft_token_create(dir, "x", "123", 3, SO_PIN, 8, 0, &p1), -EMSGSIZE);
        CHECK_RC(soft_token_create(dir, "x", USER_PIN, 6, "1", 1, 0, &p1), -EMSGSIZE);

        CHECK_OK(soft_token_create(dir, "first", USER_PIN, 6, SO_PIN, 8, 0, &p1));
        CHECK_OK(soft_token_create(dir, "second", USER_PIN, 6, SO_PIN, 8, 3, &p2));
        CHECK_OK(soft_token_scan(dir, &paths, &n));
        CHECK(n == 2);
        CHECK(strcmp(paths[0], paths[1]) < 0);
        CHECK((strcmp(paths[0], p1) == 0 && strcmp(paths[1], p2) == 0) ||
              (strcmp(paths[0], p2) == 0 && strcmp(paths[1], p1) == 0));
        for (size_t i = 0; i < n; i++) {
                size_t l = strlen(paths[i]);
                CHECK(l > 6 && strcmp(paths[i] + l - 6, ".token") == 0);
                CHECK(strstr(paths[i], "/tokens/"));
                free(paths[i]);
        }
        free(paths);

        CHECK_OK(soft_token_open(p2, &t));
        CHECK(strcmp(soft_token_path(t), p2) == 0);
        struct token_desc d = soft_info(t);
        CHECK(strcmp(d.label, "second") == 0);
        CHECK(strcmp(d.kind, "soft") == 0);
        CHECK(strlen(d.serial) == 16);
        CHECK(d.user_tries_max == 3 && d.user_tries_left == 3);
        CHECK(d.so_tries_max == 10 && d.so_tries_left == 10);
        CHECK(d.flags & CKF_RNG);
        CHECK(d.flags & CKF_LOGIN_REQUIRED);
        CHECK(d.flags & CKF_USER_PIN_INITIALIZED);
        CHECK(d.flags & CKF_TOKEN_INITIALIZED);
        CHECK(!(d.flags & (CKF_USER_PIN_LOCKED | CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY)));
        CHECK(d.min_pin == 4 && d.max_pin == 64);
        struct token_desc d1;
        struct token *t1;
        CHECK_OK(soft_token_open(p1, &t1));
        d1 = soft_info(t1);
        CHECK(d1.user_tries_max == SOFT_DEFAULT_MAX_TRIES);
        CHECK(strcmp(d1.serial, d.serial) != 0);
        soft_ops.free(t1);

        const struct driver_mech *mv;
        size_t mn;
        CHECK_OK(soft_ops.get_mechanisms(t, &mv, &mn));
        CK_MECHANISM_TYPE want[] = { CKM_RSA_PKCS_KEY_PAIR_GEN, CKM_EC_KEY_PAIR_GEN, CKM_RSA_PKCS, CKM_RSA_X_509,
                                     CKM_RSA_PKCS_PSS, CKM_RSA_PKCS_OAEP, CKM_ECDSA };
        for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
                bool found = false;
                for (size_t j = 0; j < mn; j++)
                        if (mv[j].type == want[i]) {
                                found = true;
                                CHECK(mv[j].max_key >= mv[j].min_key && mv[j].flags != 0);
                        }
                CHECK(found);
        }
        soft_ops.free(t);

        /* Errors on open. */
        char bogus[4096];
        CHECK_RC(soft_token_open("/nonexistent/x.token", &t), -ENOENT);
        snprintf(bogus, sizeof bogus, "%s/bogus.token", dir);
        int fd = open(bogus, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        CHECK(fd >= 0);
        CHECK(write(fd, "this is not a database, not at all, not even close", 50) == 50);
        close(fd);
        CHECK_RC(soft_token_open(bogus, &t), -EBADMSG);
        unlink(bogus);

        unlink(p1);
        unlink(p2);
        free(p1);
        free(p2);
}

static void test_pin_counter(const char *dir) {
        char *path;
        struct token *t = soft_new(dir, "pins", 0, &path);
        struct dobj pub, priv;
        struct token_desc d;

        /* A key made before the lock must survive the unblock. */
        CHECK_RC(soft_ops.logout(t), 0);
        CHECK_OK(soft_login(t, CKU_USER, USER_PIN));
        soft_keygen(t, "p256", true, "k1", &pub, &priv);
        CHECK_OK(soft_ops.logout(t));
        CHECK_RC(soft_ops.sign(t, priv.id, &(CK_MECHANISM){ CKM_ECDSA, NULL, 0 }, (const uint8_t *) "0123456789abcdef0123456789abcdef", 32, NULL, &(size_t){ 0 }), -EPERM);

        /* 6 tries: each wrong PIN decrements; flags follow. */
        for (int i = 1; i <= 6; i++) {
                CHECK_RC(soft_login(t, CKU_USER, "000000"), -EACCES);
                d = soft_info(t);
                CHECK(d.user_tries_left == 6 - i);
                if (6 - i == 0)
                        CHECK(d.flags & CKF_USER_PIN_LOCKED);
                else if (6 - i == 1)
                        CHECK((d.flags & CKF_USER_PIN_FINAL_TRY) && !(d.flags & CKF_USER_PIN_LOCKED));
                else
                        CHECK((d.flags & CKF_USER_PIN_COUNT_LOW) &&
                              !(d.flags & (CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_LOCKED)));
                if (i == 2) {
                        /* The counter is on disk: a reopened token sees it. */
                        soft_ops.free(t);
                        CHECK_OK(soft_token_open(path, &t));
                        CHECK(soft_info(t).user_tries_left == 4);
                }
        }
        /* Locked: even the right PIN is refused. */
        CHECK_RC(soft_login(t, CKU_USER, USER_PIN), -EKEYREVOKED);
        CHECK_RC(soft_login(t, CKU_USER, "000000"), -EKEYREVOKED);
        CHECK(soft_info(t).user_tries_left == 0);
        CHECK_RC(soft_ops.set_pin(t, CKU_USER, USER_PIN, 6, "654321", 6), -EKEYREVOKED);

        /* init_pin needs the SO. */
        CHECK_RC(soft_ops.init_pin(t, "999999", 6), -EPERM);
        CHECK_RC(soft_login(t, CKU_SO, "87654321"), -EACCES);
        d = soft_info(t);
        CHECK(d.so_tries_left == 9 && (d.flags & CKF_SO_PIN_COUNT_LOW));
        CHECK_OK(soft_login(t, CKU_SO, SO_PIN));
        d = soft_info(t);
        CHECK(d.so_tries_left == 10 && !(d.flags & CKF_SO_PIN_COUNT_LOW));
        CHECK_RC(soft_ops.init_pin(t, "12", 2), -EMSGSIZE);
        CHECK_OK(soft_ops.init_pin(t, "999999", 6));
        d = soft_info(t);
        CHECK(d.user_tries_left == 6 && !(d.flags & (CKF_USER_PIN_LOCKED | CKF_USER_PIN_COUNT_LOW)));
        CHECK_OK(soft_ops.logout(t));

        CHECK_RC(soft_login(t, CKU_USER, USER_PIN), -EACCES);
        CHECK(soft_info(t).user_tries_left == 5);
        CHECK_OK(soft_login(t, CKU_USER, "999999"));
        CHECK(soft_info(t).user_tries_left == 6);  /* success resets */
        sign_and_verify(t, &pub, priv.id, CKM_ECDSA);
        /* Context-specific login verifies the user PIN too. */
        CHECK_RC(soft_login(t, CKU_CONTEXT_SPECIFIC, "000000"), -EACCES);
        CHECK_OK(soft_login(t, CKU_CONTEXT_SPECIFIC, "999999"));
        CHECK_OK(soft_ops.logout(t));

        /* set_pin: wrong old PIN counts; the new one works after, the old not. */
        CHECK_RC(soft_ops.set_pin(t, CKU_USER, "000000", 6, "111111", 6), -EACCES);
        CHECK(soft_info(t).user_tries_left == 5);
        CHECK_RC(soft_ops.set_pin(t, CKU_USER, "999999", 6, "11", 2), -EMSGSIZE);
        size_t wn;
        uint8_t *old_wrap = read_wrap(path, &wn);
        CHECK(files_contain(path, old_wrap, wn));
        CHECK_OK(soft_ops.set_pin(t, CKU_USER, "999999", 6, "111111", 6));
        /* The token key wrapped under the old PIN is gone from the files. */
        CHECK(!files_contain(path, old_wrap, wn));
        free(old_wrap);
        CHECK(soft_info(t).user_tries_left == 6);
        CHECK_RC(soft_login(t, CKU_USER, "999999"), -EACCES);
        CHECK_OK(soft_login(t, CKU_USER, "111111"));
        sign_and_verify(t, &pub, priv.id, CKM_ECDSA);
        CHECK_OK(soft_ops.logout(t));

        /* SO PIN change. */
        CHECK_OK(soft_ops.set_pin(t, CKU_SO, SO_PIN, 8, "abcdefgh", 8));
        CHECK_RC(soft_login(t, CKU_SO, SO_PIN), -EACCES);
        CHECK_OK(soft_login(t, CKU_SO, "abcdefgh"));
        CHECK_OK(soft_ops.logout(t));

        /* Everything persists across reopen. */
        soft_ops.free(t);
        CHECK_OK(soft_token_open(path, &t));
        CHECK_OK(soft_login(t, CKU_USER, "111111"));
        sign_and_verify(t, &pub, priv.id, CKM_ECDSA);
        CHECK_OK(soft_ops.logout(t));

        /* init_token: a wrong SO PIN on a token with objects is refused. */
        CHECK_RC(soft_ops.init_token(t, "wrongwrong", 10, "fresh"), -EACCES);
        CHECK_OK(soft_ops.init_token(t, "abcdefgh", 8, "fresh"));
        d = soft_info(t);
        CHECK(strcmp(d.label, "fresh") == 0);
        CHECK(!(d.flags & CKF_USER_PIN_INITIALIZED));
        struct dobj *objs;
        size_t n;
        CHECK_OK(soft_ops.load_objects(t, &objs, &n));
        CHECK(n == 0);
        dobj_free_array(objs, n);
        CHECK_RC(soft_login(t, CKU_USER, "111111"), -EACCES);
        CHECK_OK(soft_login(t, CKU_SO, "abcdefgh"));
        CHECK_OK(soft_ops.init_pin(t, "222222", 6));
        CHECK_OK(soft_ops.logout(t));
        CHECK(soft_info(t).flags & CKF_USER_PIN_INITIALIZED);
        CHECK_OK(soft_login(t, CKU_USER, "222222"));
        struct dobj pub2, priv2;
        soft_keygen(t, "p384", true, "k2", &pub2, &priv2);
        sign_and_verify(t, &pub2, priv2.id, CKM_ECDSA);
        CHECK_OK(soft_ops.logout(t));

        /* An empty token can be taken over with a new SO PIN. */
        CHECK_OK(soft_login(t, CKU_USER, "222222"));
        CHECK_OK(soft_ops.destroy_object(t, priv2.id));
        CHECK_OK(soft_ops.destroy_object(t, pub2.id));
        CHECK_OK(soft_ops.logout(t));
        CHECK_OK(soft_ops.init_token(t, "newsopin", 8, "taken"));
        CHECK_OK(soft_login(t, CKU_SO, "newsopin"));
        CHECK_OK(soft_ops.logout(t));

        dobj_done(&pub);
        dobj_done(&priv);
        dobj_done(&pub2);
        dobj_done(&priv2);
        soft_ops.free(t);
        free(path);
}

static void test_lock_small_limit(const char *dir) {
        struct token *t = soft_new(dir, "three", 3, NULL);
        CHECK_RC(soft_login(t, CKU_USER, "000000"), -EACCES);
        CHECK_RC(soft_login(t, CKU_USER, "000000"), -EACCES);
        CHECK(soft_info(t).flags & CKF_USER_PIN_FINAL_TRY);
        CHECK_OK(soft_login(t, CKU_USER, USER_PIN));
        CHECK(soft_info(t).user_tries_left == 3);
        CHECK_OK(soft_ops.logout(t));
        for (int i = 0; i < 3; i++)
                CHECK_RC(soft_login(t, CKU_USER, "000000"), -EACCES);
        CHECK_RC(soft_login(t, CKU_USER, USER_PIN), -EKEYREVOKED);
        CHECK(soft_info(t).flags & CKF_USER_PIN_LOCKED);
        /* PIN length outside 4..64. */
        CHECK_RC(soft_login(t, CKU_SO, "1"), -EMSGSIZE);
        soft_ops.free(t);
}

int main(void) {
        const char *dir = unit_tmpdir_new();
        test_create_scan(dir);
        test_pin_counter(dir);
        test_lock_small_limit(dir);
        return 0;
}
