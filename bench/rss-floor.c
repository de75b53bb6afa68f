/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The RSS floor of netcad's libraries: a process linked with exactly the
 * libraries netcad links, that does the least netcad does with each at
 * start (an SQLite database opened, an event loop, the DRBG seeded, a JSON
 * document parsed, libusb initialised, the system bus tried, sd_notify),
 * then waits for a line on stdin.  bench/run.sh reads its RSS next to
 * netcad's idle RSS: what the libraries cost before the daemon holds
 * anything of its own.  Not a test. */
#include <cjson/cJSON.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <libusb.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/x509_crt.h>
#include <sqlite3.h>
#include <stdio.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-daemon.h>

int main(int argc, char **argv) {
        const char *db_path = argc > 1 ? argv[1] : ":memory:";
        sqlite3 *db = NULL;
        if (sqlite3_open(db_path, &db) != SQLITE_OK ||
            sqlite3_exec(db, "CREATE TABLE IF NOT EXISTS t(x); SELECT count(*) FROM t;", NULL, NULL, NULL) != SQLITE_OK)
                fprintf(stderr, "rss-floor: sqlite: %s\n", sqlite3_errmsg(db));

        evthread_use_pthreads();
        struct event_base *base = event_base_new();

        mbedtls_entropy_context ent;
        mbedtls_ctr_drbg_context drbg;
        mbedtls_entropy_init(&ent);
        mbedtls_ctr_drbg_init(&drbg);
        (void) mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &ent, NULL, 0);
        mbedtls_x509_crt crt;
        mbedtls_x509_crt_init(&crt);

        cJSON *j = cJSON_Parse("{\"a\":1}");

        libusb_context *usb = NULL;
        (void) libusb_init(&usb);

        sd_bus *bus = NULL;
        (void) sd_bus_open_system(&bus);
        (void) sd_notify(0, "READY=1");

        printf("ready\n");
        fflush(stdout);
        char line[16];
        (void) fgets(line, sizeof line, stdin);

        sd_bus_unref(bus);
        if (usb)
                libusb_exit(usb);
        cJSON_Delete(j);
        mbedtls_x509_crt_free(&crt);
        mbedtls_ctr_drbg_free(&drbg);
        mbedtls_entropy_free(&ent);
        if (base)
                event_base_free(base);
        sqlite3_close(db);
        return 0;
}
