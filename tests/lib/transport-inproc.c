/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "transport-inproc.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/core.h"
#include "daemon/dispatch.h"

struct inproc_transport {
        struct rpc_transport base;
        struct core *core;
        pthread_mutex_t lock;
        struct core_client *cl;
};

static int ip_connect(struct rpc_transport *base) {
        struct inproc_transport *t = (struct inproc_transport *)base;
        struct core_peer peer = { .pid = getpid(), .uid = getuid(), .gid = getgid() };
        struct core_client *cl;
        int r = core_client_new(t->core, &peer, &cl);
        if (r < 0)
                return r;
        pthread_mutex_lock(&t->lock);
        t->cl = cl;
        pthread_mutex_unlock(&t->lock);
        return 0;
}

static int ip_call(struct rpc_transport *base, struct nbuf *frame, uint8_t **ret, size_t *ret_len) {
        struct inproc_transport *t = (struct inproc_transport *)base;
        struct wire_msg req, rep;
        /* The rpc client's lock keeps the client alive during calls. */
        struct core_client *cl = t->cl;
        if (!cl)
                return -ENOTCONN;
        nbuf_set_u32_at(frame, 4, 1);
        if (wire_msg_init_read(&req, frame->data, frame->len) < 0)
                return -EBADMSG;
        int r = dispatch_p11(cl, &req, &rep);
        if (r < 0)
                return r;
        uint8_t *f = malloc(rep.buf.len);
        if (!f) {
                wire_msg_done(&rep);
                return -ENOMEM;
        }
        memcpy(f, rep.buf.data, rep.buf.len);
        *ret = f;
        *ret_len = rep.buf.len;
        wire_msg_done(&rep);
        return 0;
}

static void ip_close(struct rpc_transport *base) {
        struct inproc_transport *t = (struct inproc_transport *)base;
        pthread_mutex_lock(&t->lock);
        struct core_client *cl = t->cl;
        t->cl = NULL;
        pthread_mutex_unlock(&t->lock);
        core_client_free(cl);
}

static void ip_forget(struct rpc_transport *base) {
        struct inproc_transport *t = (struct inproc_transport *)base;
        t->cl = NULL;
}

static void ip_free(struct rpc_transport *base) {
        struct inproc_transport *t = (struct inproc_transport *)base;
        ip_close(base);
        pthread_mutex_destroy(&t->lock);
        free(t);
}

static const struct rpc_transport_ops inproc_ops = {
        .connect = ip_connect,
        .call = ip_call,
        .close = ip_close,
        .forget = ip_forget,
        .free = ip_free,
};

int rpc_transport_inproc_new(struct core *core, struct rpc_transport **ret) {
        struct inproc_transport *t = calloc(1, sizeof *t);
        if (!t)
                return -ENOMEM;
        t->base.ops = &inproc_ops;
        t->core = core;
        pthread_mutex_init(&t->lock, NULL);
        *ret = &t->base;
        return 0;
}
