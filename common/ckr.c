/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "ckr.h"

#include <stdio.h>

const char *ckr_describe(CK_RV rv) {
        switch (rv) {
        case CKR_OK: return "ok";
        case CKR_HOST_MEMORY: return "out of memory";
        case CKR_SLOT_ID_INVALID: return "no such slot";
        case CKR_GENERAL_ERROR: return "general error";
        case CKR_FUNCTION_FAILED: return "function failed";
        case CKR_ARGUMENTS_BAD: return "bad arguments";
        case CKR_ATTRIBUTE_READ_ONLY: return "attribute is read-only";
        case CKR_ATTRIBUTE_SENSITIVE: return "attribute is sensitive";
        case CKR_ATTRIBUTE_TYPE_INVALID: return "attribute type not supported";
        case CKR_ATTRIBUTE_VALUE_INVALID: return "invalid attribute value";
        case CKR_DATA_INVALID: return "invalid data";
        case CKR_DATA_LEN_RANGE: return "data length out of range";
        case CKR_DEVICE_ERROR: return "device error";
        case CKR_DEVICE_MEMORY: return "the token is full";
        case CKR_DEVICE_REMOVED: return "the token was removed";
        case CKR_FUNCTION_CANCELED: return "cancelled";
        case CKR_FUNCTION_NOT_SUPPORTED: return "not supported by this token";
        case CKR_KEY_HANDLE_INVALID: return "invalid key";
        case CKR_KEY_TYPE_INCONSISTENT: return "the key cannot do this";
        case CKR_KEY_FUNCTION_NOT_PERMITTED: return "the key does not permit this";
        case CKR_MECHANISM_INVALID: return "mechanism not supported by the token";
        case CKR_MECHANISM_PARAM_INVALID: return "invalid mechanism parameter";
        case CKR_OBJECT_HANDLE_INVALID: return "no such object";
        case CKR_OPERATION_ACTIVE: return "another operation is active";
        case CKR_PIN_INCORRECT: return "wrong PIN";
        case CKR_PIN_INVALID: return "the PIN has invalid characters";
        case CKR_PIN_LEN_RANGE: return "the PIN is too short or too long";
        case CKR_PIN_EXPIRED: return "the PIN has expired";
        case CKR_PIN_LOCKED: return "the PIN is locked";
        case CKR_SESSION_HANDLE_INVALID: return "invalid session";
        case CKR_TEMPLATE_INCOMPLETE: return "template incomplete";
        case CKR_TEMPLATE_INCONSISTENT: return "template inconsistent";
        case CKR_TOKEN_NOT_PRESENT: return "no token in the slot";
        case CKR_TOKEN_NOT_RECOGNIZED: return "token not recognized";
        case CKR_TOKEN_WRITE_PROTECTED: return "the token is write-protected";
        case CKR_USER_ALREADY_LOGGED_IN: return "already logged in";
        case CKR_USER_NOT_LOGGED_IN: return "not logged in";
        case CKR_USER_PIN_NOT_INITIALIZED: return "the user PIN is not initialized";
        case CKR_USER_TYPE_INVALID: return "invalid user type";
        case CKR_USER_ANOTHER_ALREADY_LOGGED_IN: return "another user is logged in";
        case CKR_BUFFER_TOO_SMALL: return "buffer too small";
        case CKR_CRYPTOKI_NOT_INITIALIZED: return "module not initialized";
        default: break;
        }
        static __thread char buf[32];
        snprintf(buf, sizeof buf, "CK_RV 0x%08lx", (unsigned long)rv);
        return buf;
}
