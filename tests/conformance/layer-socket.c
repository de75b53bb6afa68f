/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The "socket" layer: build/pkcs11/netca-pkcs11.so, dlopen()ed like any
 * application does, talking to a real netcad started here with
 * `netcad --foreground --socket S --data-dir D` (D/tokens holding the soft
 * token).  NETCA_PKCS11_MODULE and NETCA_NETCAD come from meson. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer.h"
#include "testutil.h"

static char *dir;
static char *data_dir;
static char *sock;
static pid_t daemon_pid = -1;
static void *module;
static CK_FUNCTION_LIST_PTR f;

CK_FUNCTION_LIST_PTR layer_setup(struct layer_info *ret_info) {
        const char *so = tu_env_path("NETCA_PKCS11_MODULE");
        const char *netcad = tu_env_path("NETCA_NETCAD");
        ret_info->name = "socket";
        ret_info->is_module = true;

        dir = tu_mkdtemp("conf-sock");
        if (asprintf(&data_dir, "%s/data", dir) < 0 || asprintf(&sock, "%s/netcad.sock", dir) < 0)
                return NULL;
        if (tu_create_token(data_dir, CONF_TOKEN_LABEL) < 0)
                return NULL;
        daemon_pid = tu_start_daemon(netcad, sock, data_dir);
        if (daemon_pid < 0)
                return NULL;
        setenv("NETCA_SOCKET", sock, 1);
        setenv("NETCA_AUTOSTART", "0", 1);
        f = tu_load_module(so, &module);
        return f;
}

void layer_teardown(void) {
        if (f)
                (void)f->C_Finalize(NULL);
        if (module)
                dlclose(module);
        tu_stop_daemon(daemon_pid);
        tu_rmrf(dir);
        free(dir);
        free(data_dir);
        free(sock);
}
