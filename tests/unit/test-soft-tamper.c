/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A soft token file changed behind the driver's back: a key's ciphertext
 * moved to another object (the object id is bound as AAD), a flipped byte
 * in a key's ciphertext, an unreadable attribute blob, the SO wrap copied
 * over the user wrap, an SQLite file that is not a token.  Each is refused
 * cleanly, never a crash and never a wrong key. */
#include "soft-helpers.h"

#include <sqlite3.h>

static void sql(const char *path, const char *stmt) {
        sqlite3 *db;
        char *err = NULL;
        CHECK(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) == SQLITE_OK);
        sqlite3_busy_timeout(db, 5000);
        if (sqlite3_exec(db, stmt, NULL, NULL, &err) != SQLITE_OK) {
                fprintf(stderr, "%s: %s\n", stmt, err);
                CHECK(0);
        }
        sqlite3_close(db);
}

int main(void) {
        const char *dir = unit_tmpdir_new();
        char *path, stmt[512];
        struct token *t = soft_new(dir, "tamper", 0, &path);
        struct dobj a_pub, a_priv, b_pub, b_priv, data;
        CK_OBJECT_CLASS cls = CKO_DATA;
        CK_BBOOL tru = CK_TRUE;
        uint8_t hash[32] = { 0 }, sig[128];
        size_t sl;
        CK_MECHANISM ecdsa = { CKM_ECDSA, NULL, 0 };

        CHECK_OK(soft_login(t, CKU_USER, USER_PIN));
        soft_keygen(t, "p256", true, "a", &a_pub, &a_priv);
        soft_keygen(t, "p256", true, "b", &b_pub, &b_priv);
        CK_ATTRIBUTE dt[] = { { CKA_CLASS, &cls, sizeof cls }, { CKA_TOKEN, &tru, 1 }, { CKA_VALUE, "v", 1 } };
        CHECK_OK(soft_ops.create_object(t, dt, 3, true, &data));
        sign_and_verify(t, &a_pub, a_priv.id, CKM_ECDSA);
        soft_ops.free(t);

        /* B's sealed key copied onto A: the AAD (object id) no longer matches. */
        snprintf(stmt, sizeof stmt,
                 "UPDATE objects SET secret = (SELECT secret FROM objects WHERE id = %llu) WHERE id = %llu",
                 (unsigned long long) b_priv.id, (unsigned long long) a_priv.id);
        sql(path, stmt);
        CHECK_OK(soft_token_open(path, &t));
        CHECK_OK(soft_login(t, CKU_USER, USER_PIN));
        sl = sizeof sig;
        CHECK_RC(soft_ops.sign(t, a_priv.id, &ecdsa, hash, 32, sig, &sl), -EIO);
        sign_and_verify(t, &b_pub, b_priv.id, CKM_ECDSA);
        soft_ops.free(t);

        /* A flipped byte in B's ciphertext. */
        {
                sqlite3 *db;
                sqlite3_stmt *st;
                CHECK(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK);
                CHECK(sqlite3_prepare_v2(db, "SELECT secret FROM objects WHERE id = ?", -1, &st, NULL) == SQLITE_OK);
                sqlite3_bind_int64(st, 1, (sqlite3_int64) b_priv.id);
                CHECK(sqlite3_step(st) == SQLITE_ROW);
                size_t n = (size_t) sqlite3_column_bytes(st, 0);
                uint8_t *v = malloc(n);
                memcpy(v, sqlite3_column_blob(st, 0), n);
                sqlite3_finalize(st);
                v[n / 2] ^= 0x01;
                CHECK(sqlite3_prepare_v2(db, "UPDATE objects SET secret = ? WHERE id = ?", -1, &st, NULL) == SQLITE_OK);
                sqlite3_bind_blob(st, 1, v, (int) n, SQLITE_STATIC);
                sqlite3_bind_int64(st, 2, (sqlite3_int64) b_priv.id);
                CHECK(sqlite3_step(st) == SQLITE_DONE);
                sqlite3_finalize(st);
                sqlite3_close(db);
                free(v);
        }
        /* An attribute blob that does not parse. */
        snprintf(stmt, sizeof stmt, "UPDATE objects SET attrs = x'00ff' WHERE id = %llu",
                 (unsigned long long) data.id);
        sql(path, stmt);
        CHECK_OK(soft_token_open(path, &t));
        CHECK_OK(soft_login(t, CKU_USER, USER_PIN));
        sl = sizeof sig;
        CHECK_RC(soft_ops.sign(t, b_priv.id, &ecdsa, hash, 32, sig, &sl), -EIO);
        struct dobj *objs;
        size_t on;
        CHECK_OK(soft_ops.load_objects(t, &objs, &on));
        CHECK(on == 4);
        CHECK(!find_obj(objs, on, data.id) && find_obj(objs, on, a_pub.id));
        dobj_free_array(objs, on);
        CHECK_OK(soft_ops.logout(t));
        soft_ops.free(t);

        /* The SO wrap copied over the user wrap: the user cannot log in with
         * the SO PIN (the AAD says which PIN a wrap belongs to). */
        sql(path, "UPDATE meta SET value = (SELECT value FROM meta WHERE key = 'so_wrap') WHERE key = 'user_wrap';"
                  "UPDATE meta SET value = (SELECT value FROM meta WHERE key = 'so_salt') WHERE key = 'user_salt'");
        CHECK_OK(soft_token_open(path, &t));
        CHECK_RC(soft_login(t, CKU_USER, SO_PIN), -EACCES);
        CHECK_RC(soft_login(t, CKU_USER, USER_PIN), -EACCES);
        CHECK_OK(soft_login(t, CKU_SO, SO_PIN));
        soft_ops.free(t);

        /* A valid SQLite database that is not a token. */
        char other[1200];
        snprintf(other, sizeof other, "%s/other.token", dir);
        sql(other, "CREATE TABLE x(y)");
        CHECK_RC(soft_token_open(other, &t), -EBADMSG);
        sql(other, "CREATE TABLE meta(key TEXT PRIMARY KEY, value); INSERT INTO meta VALUES('magic', 'nope')");
        CHECK_RC(soft_token_open(other, &t), -EBADMSG);

        dobj_done(&a_pub); dobj_done(&a_priv); dobj_done(&b_pub); dobj_done(&b_priv); dobj_done(&data);
        free(path);
        return 0;
}
