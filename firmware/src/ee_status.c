#include "ee_status.h"

const char *ee_status_str(ee_status_t status)
{
    switch (status) {
    case EE_OK: return "ok";
    case EE_ERR_ARG: return "bad argument";
    case EE_ERR_SIZE: return "size mismatch";
    case EE_ERR_CONFIG: return "bad configuration";
    case EE_ERR_STAGE: return "stage failed";
    case EE_ERR_TIMEOUT: return "handoff timeout";
    case EE_ERR_BUSY: return "IPC channel busy";
    case EE_ERR_IPC: return "IPC failure";
    case EE_ERR_STATE: return "handoff state error";
    case EE_ERR_PROTOCOL: return "bad handoff request";
    case EE_ERR_PENDING: return "answer pending";
    default: return "unknown error";
    }
}
