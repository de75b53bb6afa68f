/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzz target for the wire decoder (common/wire.c, common/buffer.c).
 *
 * The input is taken as one whole frame:
 *  1. wire_hdr_parse() on its first WIRE_HDR_SIZE bytes;
 *  2. wire_msg_init_read(), then every field is decoded generically, following
 *     the op's signature (request, reply, event or error, per the flags), with
 *     the matching wire_get_*() function; everything they return is freed;
 *  3. a frame that decoded completely is encoded again with the wire_put_*()
 *     functions, and that frame is decoded and encoded once more: the second
 *     and third encodings must be byte-identical (the decoder and the encoder
 *     agree on the grammar), and a decoded frame must always re-encode.
 * Any disagreement aborts, so that libFuzzer and the replay main report it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/wire.h"

#define MAX_FIELDS 16

struct field {
        char type;
        uint64_t u;
        uint8_t y;
        const uint8_t *p; /* z, Z */
        size_t n;
        char *str;      /* s, j */
        bool is_null;   /* q */
        uint64_t cap;   /* q; Z length; L count */
        CK_ULONG *list; /* U, L */
        size_t nlist;
        CK_ATTRIBUTE *attrs; /* A, G, R */
        CK_ULONG nattrs;
        CK_MECHANISM mech;
        CK_SLOT_INFO slot;
        CK_TOKEN_INFO token;
        CK_SESSION_INFO session;
        CK_MECHANISM_INFO mech_info;
};

struct decoded {
        uint16_t op;
        uint16_t flags;
        uint32_t id;
        size_t n;
        struct field f[MAX_FIELDS];
};

static void decoded_done(struct decoded *d) {
        for (size_t i = 0; i < d->n; i++) {
                free(d->f[i].str);
                free(d->f[i].list);
                free(d->f[i].attrs);
        }
        d->n = 0;
}

/* Decode one field of type c; false when the message failed. */
static bool get_field(struct wire_msg *m, char c, size_t pos, struct field *f) {
        memset(f, 0, sizeof *f);
        f->type = c;
        switch (c) {
        case 'u':
                /* Both getters of 'u', alternately. */
                if (pos % 2)
                        return wire_get_u64(m, &f->u);
                else {
                        CK_ULONG v;
                        if (!wire_get_ulong(m, &v))
                                return false;
                        f->u = v;
                        return true;
                }
        case 'y': return wire_get_u8(m, &f->y);
        case 'z': return wire_get_blob(m, &f->p, &f->n);
        case 's': return wire_get_string(m, &f->str);
        case 'j': return wire_get_json(m, &f->str);
        case 'q': return wire_get_outreq(m, &f->is_null, &f->cap);
        case 'Z': return wire_get_outbytes(m, &f->cap, &f->p, &f->n);
        case 'U': return wire_get_u64_array(m, &f->list, &f->nlist);
        case 'L': return wire_get_outlist(m, &f->cap, &f->list, &f->nlist);
        case 'A': return wire_get_attrs(m, &f->attrs, &f->nattrs);
        case 'G': return wire_get_attr_query(m, &f->attrs, &f->nattrs);
        case 'R': return wire_get_attr_result(m, &f->attrs, &f->nattrs);
        case 'M': return wire_get_mechanism(m, &f->mech);
        case 'I': return wire_get_slot_info(m, &f->slot);
        case 'T': return wire_get_token_info(m, &f->token);
        case 'S': return wire_get_session_info(m, &f->session);
        case 'N': return wire_get_mech_info(m, &f->mech_info);
        default: fprintf(stderr, "fuzz-wire: unknown signature character '%c'\n", c); abort();
        }
}

static void put_field(struct wire_msg *m, const struct field *f) {
        switch (f->type) {
        case 'u': wire_put_u64(m, f->u); break;
        case 'y': wire_put_u8(m, f->y); break;
        case 'z': wire_put_blob(m, f->p, f->n); break;
        case 's': wire_put_string(m, f->str); break;
        case 'j': wire_put_json(m, f->str); break;
        case 'q': wire_put_outreq(m, f->is_null, f->cap); break;
        case 'Z': wire_put_outbytes(m, f->cap, f->p); break;
        case 'U': wire_put_u64_array(m, f->list, f->nlist); break;
        case 'L': wire_put_outlist(m, f->cap, f->list, f->nlist); break;
        case 'A': wire_put_attrs(m, f->attrs, f->nattrs); break;
        case 'G': wire_put_attr_query(m, f->attrs, f->nattrs); break;
        case 'R': wire_put_attr_result(m, f->attrs, f->nattrs); break;
        case 'M': wire_put_mechanism(m, &f->mech); break;
        case 'I': wire_put_slot_info(m, &f->slot); break;
        case 'T': wire_put_token_info(m, &f->token); break;
        case 'S': wire_put_session_info(m, &f->session); break;
        case 'N': wire_put_mech_info(m, &f->mech_info); break;
        default: abort();
        }
}

/* Decodes a whole frame into d.  Returns true when every field decoded and
 * nothing was left over.  d holds what was decoded either way (free it). */
static bool decode(const uint8_t *frame, size_t len, struct decoded *d) {
        struct wire_msg m;
        bool ok = false;

        memset(d, 0, sizeof *d);
        if (wire_msg_init_read(&m, frame, len) < 0) {
                /* A failed message must refuse every get. */
                uint8_t y;
                if (wire_get_u8(&m, &y))
                        abort();
                goto out;
        }
        d->op = m.opnum;
        d->flags = m.flags;
        d->id = m.id;
        if (!m.sigp)
                abort();

        size_t siglen = strlen(m.sigp);
        if (siglen > MAX_FIELDS)
                abort();
        const char *sig = m.sigp;
        for (size_t i = 0; i < siglen; i++) {
                struct field *f = &d->f[d->n];
                if (!get_field(&m, sig[i], i, f)) {
                        if (!wire_msg_failed(&m))
                                abort(); /* a failed get must fail the message */
                        /* Whatever a failed get left must not need freeing. */
                        if (f->str || f->list || f->attrs)
                                abort();
                        goto out;
                }
                d->n++;
        }
        ok = wire_msg_read_done(&m) == 0;

        /* The signature is used up: any further get must fail. */
        uint64_t extra;
        if (wire_get_u64(&m, &extra) || !wire_msg_failed(&m))
                abort();
out:
        wire_msg_done(&m);
        return ok;
}

/* Encodes d; returns the frame (malloc'd) or NULL if the encoder refused. */
static uint8_t *encode(const struct decoded *d, size_t *ret_len) {
        struct wire_msg m;
        uint8_t *out = NULL;

        wire_msg_init_write(&m, d->op, d->id, d->flags);
        for (size_t i = 0; i < d->n; i++)
                put_field(&m, &d->f[i]);
        if (wire_msg_finish(&m) == 0) {
                out = malloc(m.buf.len ? m.buf.len : 1);
                if (!out)
                        abort();
                memcpy(out, m.buf.data, m.buf.len);
                *ret_len = m.buf.len;
        }
        wire_msg_done(&m);
        return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct decoded d1, d2;
        uint8_t *e1 = NULL, *e2 = NULL;
        size_t l1 = 0, l2 = 0;

        if (size >= WIRE_HDR_SIZE) {
                struct wire_hdr h;
                memset(&h, 0xaa, sizeof h);
                int r = wire_hdr_parse(data, &h);
                if (r == 0 && (h.len < 8 || h.len > WIRE_FRAME_MAX - 4))
                        abort();
        }
        (void)wire_op_name(size >= 12 ? (uint16_t)((data[8] << 8) | data[9]) : 0);

        /* Exact-size copy so that sanitizers see any read past the end. */
        uint8_t *frame = malloc(size ? size : 1);
        if (!frame)
                return 0;
        memcpy(frame, data, size);

        if (!decode(frame, size, &d1))
                goto out;

        e1 = encode(&d1, &l1);
        if (!e1) {
                fprintf(stderr, "fuzz-wire: a frame that decoded does not re-encode\n");
                abort();
        }
        if (l1 > size) {
                fprintf(stderr, "fuzz-wire: re-encoding grew the frame (%zu > %zu)\n", l1, size);
                abort();
        }
        if (!decode(e1, l1, &d2)) {
                fprintf(stderr, "fuzz-wire: the encoder wrote a frame the decoder refuses\n");
                abort();
        }
        e2 = encode(&d2, &l2);
        if (!e2 || l1 != l2 || memcmp(e1, e2, l1) != 0) {
                fprintf(stderr, "fuzz-wire: decode/encode is not stable\n");
                abort();
        }
        decoded_done(&d2);
out:
        decoded_done(&d1);
        free(e1);
        free(e2);
        free(frame);
        return 0;
}
