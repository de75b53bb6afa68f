/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The "direct" layer: a CK_FUNCTION_LIST straight over the daemon core's
 * core_* functions, with one core client created by C_Initialize.  What the
 * core answers here is what every client of the daemon gets. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "coresetup.h"
#include "daemon/core.h"
#include "layer.h"
#include "testutil.h"

static struct core *core;
static struct core_client *cl;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

#define CL()                                                    \
        if (!cl)                                                \
                return CKR_CRYPTOKI_NOT_INITIALIZED

static CK_RV d_Initialize(CK_VOID_PTR p) {
        CK_C_INITIALIZE_ARGS_PTR a = p;
        if (a) {
                bool all = a->CreateMutex && a->DestroyMutex && a->LockMutex && a->UnlockMutex;
                bool none = !a->CreateMutex && !a->DestroyMutex && !a->LockMutex && !a->UnlockMutex;
                if (a->pReserved || (!all && !none))
                        return CKR_ARGUMENTS_BAD;
        }
        pthread_mutex_lock(&lock);
        if (cl) {
                pthread_mutex_unlock(&lock);
                return CKR_CRYPTOKI_ALREADY_INITIALIZED;
        }
        struct core_peer peer = { .pid = getpid(), .uid = getuid(), .gid = getgid() };
        int r = core_client_new(core, &peer, &cl);
        pthread_mutex_unlock(&lock);
        return r < 0 ? CKR_GENERAL_ERROR : CKR_OK;
}

static CK_RV d_Finalize(CK_VOID_PTR p) {
        if (p)
                return CKR_ARGUMENTS_BAD;
        pthread_mutex_lock(&lock);
        if (!cl) {
                pthread_mutex_unlock(&lock);
                return CKR_CRYPTOKI_NOT_INITIALIZED;
        }
        cl = core_client_free(cl);
        pthread_mutex_unlock(&lock);
        return CKR_OK;
}

static CK_RV d_GetInfo(CK_INFO_PTR i) {
        CL();
        if (!i)
                return CKR_ARGUMENTS_BAD;
        memset(i, 0, sizeof *i);
        i->cryptokiVersion.major = 2;
        i->cryptokiVersion.minor = 40;
        pad_field(i->manufacturerID, sizeof i->manufacturerID, "NETCA");
        pad_field(i->libraryDescription, sizeof i->libraryDescription, "netca core (direct)");
        return CKR_OK;
}

static CK_FUNCTION_LIST list;

static CK_RV d_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ret) {
        if (!ret)
                return CKR_ARGUMENTS_BAD;
        *ret = &list;
        return CKR_OK;
}

static CK_RV d_GetSlotList(CK_BBOOL p, CK_SLOT_ID_PTR l, CK_ULONG_PTR n) {
        CL();
        return core_get_slot_list(cl, p, l, n);
}

static CK_RV d_GetSlotInfo(CK_SLOT_ID s, CK_SLOT_INFO_PTR i) {
        CL();
        return core_get_slot_info(cl, s, i);
}

static CK_RV d_GetTokenInfo(CK_SLOT_ID s, CK_TOKEN_INFO_PTR i) {
        CL();
        return core_get_token_info(cl, s, i);
}

static CK_RV d_WaitForSlotEvent(CK_FLAGS fl, CK_SLOT_ID_PTR s, CK_VOID_PTR r) {
        CL();
        return (fl & CKF_DONT_BLOCK) ? CKR_NO_EVENT : CKR_FUNCTION_NOT_SUPPORTED;
}

static CK_RV d_GetMechanismList(CK_SLOT_ID s, CK_MECHANISM_TYPE_PTR l, CK_ULONG_PTR n) {
        CL();
        return core_get_mechanism_list(cl, s, l, n);
}

static CK_RV d_GetMechanismInfo(CK_SLOT_ID s, CK_MECHANISM_TYPE t, CK_MECHANISM_INFO_PTR i) {
        CL();
        return core_get_mechanism_info(cl, s, t, i);
}

static CK_RV d_InitToken(CK_SLOT_ID s, CK_UTF8CHAR_PTR p, CK_ULONG n, CK_UTF8CHAR_PTR l) {
        CL();
        return core_init_token(cl, s, p, n, l);
}

static CK_RV d_InitPIN(CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR p, CK_ULONG n) {
        CL();
        return core_init_pin(cl, h, p, n);
}

static CK_RV d_SetPIN(CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR o, CK_ULONG on, CK_UTF8CHAR_PTR nw, CK_ULONG nn) {
        CL();
        return core_set_pin(cl, h, o, on, nw, nn);
}

static CK_RV d_OpenSession(CK_SLOT_ID s, CK_FLAGS fl, CK_VOID_PTR app, CK_NOTIFY nfy, CK_SESSION_HANDLE_PTR h) {
        CL();
        return core_open_session(cl, s, fl, h);
}

static CK_RV d_CloseSession(CK_SESSION_HANDLE h) {
        CL();
        return core_close_session(cl, h);
}

static CK_RV d_CloseAllSessions(CK_SLOT_ID s) {
        CL();
        return core_close_all_sessions(cl, s);
}

static CK_RV d_GetSessionInfo(CK_SESSION_HANDLE h, CK_SESSION_INFO_PTR i) {
        CL();
        return core_get_session_info(cl, h, i);
}

static CK_RV d_Login(CK_SESSION_HANDLE h, CK_USER_TYPE u, CK_UTF8CHAR_PTR p, CK_ULONG n) {
        CL();
        return core_login(cl, h, u, p, n);
}

static CK_RV d_Logout(CK_SESSION_HANDLE h) {
        CL();
        return core_logout(cl, h);
}

static CK_RV d_CreateObject(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR o) {
        CL();
        return core_create_object(cl, h, t, n, o);
}

static CK_RV d_CopyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                          CK_OBJECT_HANDLE_PTR ret) {
        CL();
        return core_copy_object(cl, h, o, t, n, ret);
}

static CK_RV d_DestroyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o) {
        CL();
        return core_destroy_object(cl, h, o);
}

static CK_RV d_GetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n) {
        CL();
        return core_get_attribute_value(cl, h, o, t, n);
}

static CK_RV d_SetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n) {
        CL();
        return core_set_attribute_value(cl, h, o, t, n);
}

static CK_RV d_FindObjectsInit(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n) {
        CL();
        return core_find_objects_init(cl, h, t, n);
}

static CK_RV d_FindObjects(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR o, CK_ULONG m, CK_ULONG_PTR n) {
        CL();
        return core_find_objects(cl, h, o, m, n);
}

static CK_RV d_FindObjectsFinal(CK_SESSION_HANDLE h) {
        CL();
        return core_find_objects_final(cl, h);
}

#define INIT_FN(name, fn)                                                                  \
        static CK_RV name(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k) { \
                CL();                                                                      \
                return fn(cl, h, m, k);                                                    \
        }
#define OUT_FN(name, fn)                                                                              \
        static CK_RV name(CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR o, CK_ULONG_PTR on) { \
                CL();                                                                                 \
                return fn(cl, h, d, n, o, on);                                                        \
        }
#define FINAL_FN(name, fn)                                                        \
        static CK_RV name(CK_SESSION_HANDLE h, CK_BYTE_PTR o, CK_ULONG_PTR on) { \
                CL();                                                             \
                return fn(cl, h, o, on);                                          \
        }
#define IN_FN(name, fn)                                                       \
        static CK_RV name(CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG n) {  \
                CL();                                                         \
                return fn(cl, h, d, n);                                       \
        }

INIT_FN(d_EncryptInit, core_encrypt_init)
OUT_FN(d_Encrypt, core_encrypt)
OUT_FN(d_EncryptUpdate, core_encrypt_update)
FINAL_FN(d_EncryptFinal, core_encrypt_final)
INIT_FN(d_DecryptInit, core_decrypt_init)
OUT_FN(d_Decrypt, core_decrypt)
OUT_FN(d_DecryptUpdate, core_decrypt_update)
FINAL_FN(d_DecryptFinal, core_decrypt_final)
OUT_FN(d_Digest, core_digest)
IN_FN(d_DigestUpdate, core_digest_update)
FINAL_FN(d_DigestFinal, core_digest_final)
INIT_FN(d_SignInit, core_sign_init)
OUT_FN(d_Sign, core_sign)
IN_FN(d_SignUpdate, core_sign_update)
FINAL_FN(d_SignFinal, core_sign_final)
INIT_FN(d_SignRecoverInit, core_sign_recover_init)
OUT_FN(d_SignRecover, core_sign_recover)
INIT_FN(d_VerifyRecoverInit, core_verify_recover_init)
OUT_FN(d_VerifyRecover, core_verify_recover)
INIT_FN(d_VerifyInit, core_verify_init)
IN_FN(d_VerifyUpdate, core_verify_update)
IN_FN(d_VerifyFinal, core_verify_final)
IN_FN(d_SeedRandom, core_seed_random)
IN_FN(d_GenerateRandom, core_generate_random)

static CK_RV d_DigestInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m) {
        CL();
        return core_digest_init(cl, h, m);
}

static CK_RV d_Verify(CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR s, CK_ULONG sn) {
        CL();
        return core_verify(cl, h, d, n, s, sn);
}

static CK_RV d_GenerateKeyPair(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR pt, CK_ULONG pn,
                               CK_ATTRIBUTE_PTR kt, CK_ULONG kn, CK_OBJECT_HANDLE_PTR po, CK_OBJECT_HANDLE_PTR ko) {
        CL();
        return core_generate_key_pair(cl, h, m, pt, pn, kt, kn, po, ko);
}

static CK_RV d_GetOperationState(CK_SESSION_HANDLE h, CK_BYTE_PTR s, CK_ULONG_PTR n) {
        CL();
        return CKR_FUNCTION_NOT_SUPPORTED;
}

static CK_RV d_DigestKey(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE k) {
        CL();
        return core_digest_key(cl, h, k);
}

static CK_RV d_WrapKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE w, CK_OBJECT_HANDLE k,
                       CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
        CL();
        return core_wrap_key(cl, h, m, w, k, out, out_len);
}

static CK_RV d_UnwrapKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE u, CK_BYTE_PTR in, CK_ULONG in_len,
                         CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR k) {
        CL();
        return core_unwrap_key(cl, h, m, u, in, in_len, t, n, k);
}

static CK_RV d_GenerateKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                           CK_OBJECT_HANDLE_PTR k) {
        CL();
        return core_generate_key(cl, h, m, t, n, k);
}

static CK_RV d_GetFunctionStatus(CK_SESSION_HANDLE h) {
        CL();
        return CKR_FUNCTION_NOT_PARALLEL;
}

/* The checks only call the functions filled in here. */
static CK_FUNCTION_LIST list = {
        .version = { 2, 40 },
        .C_Initialize = d_Initialize,
        .C_Finalize = d_Finalize,
        .C_GetInfo = d_GetInfo,
        .C_GetFunctionList = d_GetFunctionList,
        .C_GetSlotList = d_GetSlotList,
        .C_GetSlotInfo = d_GetSlotInfo,
        .C_GetTokenInfo = d_GetTokenInfo,
        .C_GetMechanismList = d_GetMechanismList,
        .C_GetMechanismInfo = d_GetMechanismInfo,
        .C_InitToken = d_InitToken,
        .C_InitPIN = d_InitPIN,
        .C_SetPIN = d_SetPIN,
        .C_OpenSession = d_OpenSession,
        .C_CloseSession = d_CloseSession,
        .C_CloseAllSessions = d_CloseAllSessions,
        .C_GetSessionInfo = d_GetSessionInfo,
        .C_GetOperationState = d_GetOperationState,
        .C_Login = d_Login,
        .C_Logout = d_Logout,
        .C_CreateObject = d_CreateObject,
        .C_CopyObject = d_CopyObject,
        .C_DestroyObject = d_DestroyObject,
        .C_GetAttributeValue = d_GetAttributeValue,
        .C_SetAttributeValue = d_SetAttributeValue,
        .C_FindObjectsInit = d_FindObjectsInit,
        .C_FindObjects = d_FindObjects,
        .C_FindObjectsFinal = d_FindObjectsFinal,
        .C_EncryptInit = d_EncryptInit,
        .C_Encrypt = d_Encrypt,
        .C_EncryptUpdate = d_EncryptUpdate,
        .C_EncryptFinal = d_EncryptFinal,
        .C_DecryptInit = d_DecryptInit,
        .C_Decrypt = d_Decrypt,
        .C_DecryptUpdate = d_DecryptUpdate,
        .C_DecryptFinal = d_DecryptFinal,
        .C_DigestInit = d_DigestInit,
        .C_Digest = d_Digest,
        .C_DigestUpdate = d_DigestUpdate,
        .C_DigestKey = d_DigestKey,
        .C_DigestFinal = d_DigestFinal,
        .C_SignInit = d_SignInit,
        .C_Sign = d_Sign,
        .C_SignUpdate = d_SignUpdate,
        .C_SignFinal = d_SignFinal,
        .C_SignRecoverInit = d_SignRecoverInit,
        .C_SignRecover = d_SignRecover,
        .C_VerifyRecoverInit = d_VerifyRecoverInit,
        .C_VerifyRecover = d_VerifyRecover,
        .C_VerifyInit = d_VerifyInit,
        .C_Verify = d_Verify,
        .C_VerifyUpdate = d_VerifyUpdate,
        .C_VerifyFinal = d_VerifyFinal,
        .C_GenerateKey = d_GenerateKey,
        .C_WrapKey = d_WrapKey,
        .C_UnwrapKey = d_UnwrapKey,
        .C_GenerateKeyPair = d_GenerateKeyPair,
        .C_SeedRandom = d_SeedRandom,
        .C_GenerateRandom = d_GenerateRandom,
        .C_GetFunctionStatus = d_GetFunctionStatus,
        .C_CancelFunction = d_GetFunctionStatus,
        .C_WaitForSlotEvent = d_WaitForSlotEvent,
};

CK_FUNCTION_LIST_PTR layer_setup(struct layer_info *ret_info) {
        ret_info->name = "direct";
        ret_info->is_module = false;
        core = coresetup_new(CONF_TOKEN_LABEL);
        return core ? &list : NULL;
}

void layer_teardown(void) {
        if (cl)
                cl = core_client_free(cl);
        coresetup_free();
        core = NULL;
}
