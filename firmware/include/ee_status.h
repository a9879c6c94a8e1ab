/*
 * eenn firmware runtime: status codes shared by every module.
 */
#ifndef EE_STATUS_H
#define EE_STATUS_H

/* Every fallible function returns one of these; EE_OK is zero, errors are negative. */
typedef enum {
    EE_OK = 0,
    EE_ERR_ARG = -1,       /* a NULL pointer, or a value outside its documented range */
    EE_ERR_SIZE = -2,      /* a length does not match the configuration or does not fit a buffer */
    EE_ERR_CONFIG = -3,    /* ee_config_t / ee_buffers_t failed ee_config_check() */
    EE_ERR_STAGE = -4,     /* the application hook ee_app_run_stage() reported a failure */
    EE_ERR_TIMEOUT = -5,   /* the next core did not answer before the handoff deadline */
    EE_ERR_BUSY = -6,      /* the IPC channel is locked by its previous message */
    EE_ERR_IPC = -7,       /* the port could not deliver the notification */
    EE_ERR_STATE = -8,     /* an event that the handoff state machine does not allow in its state */
    EE_ERR_PROTOCOL = -9,  /* a malformed handoff request (bad magic, stage or length) */
    EE_ERR_PENDING = -10   /* mailbox status while a request is outstanding */
} ee_status_t;

/* A short constant description ("handoff timeout", ...); never NULL. */
const char *ee_status_str(ee_status_t status);

#endif /* EE_STATUS_H */
