/*
 * eenn firmware runtime: what a port provides (ports/psoc6, ports/host).
 * The portable sources call only these; each port implements all of them.
 */
#ifndef EE_PORT_H
#define EE_PORT_H

#include <stddef.h>
#include <stdint.h>

#include "ee_runtime.h"
#include "ee_status.h"

/* Start this core's port: once, before any other ee_port_* call and before ee_runtime_init or
 * ee_core_main. It starts this core's tick counter, what the core serves (core 0: the HIL UART
 * and the timestamp pin) and, with more than one core, the inter-core notification.
 * EE_OK; EE_ERR_ARG when cfg is NULL or fails ee_config_check (or the port lacks its board
 * description); EE_ERR_CONFIG when this core does not run at its tick_hz (every tick would be
 * counted in the wrong unit); EE_ERR_IPC when the notification cannot be set up. Board data a
 * port needs (pins, peripherals) is handed over before, through the port's own header. */
ee_status_t ee_port_init(const ee_config_t *cfg);

/* This core's free-running 64-bit tick counter (ee_config_t stages[core].tick_hz per second). */
uint64_t ee_port_ticks(void);

/* Write bytes to the HIL UART (core 0). Blocking; never fails. */
void ee_port_uart_write(const char *data, size_t len);

/* Non-blocking read of up to `cap` received UART bytes (core 0); returns how many. */
size_t ee_port_uart_read(uint8_t *dst, size_t cap);

/* Energy mode: one falling edge on the open-drain timestamp pin (low, then released high). */
void ee_port_timestamp_pulse(void);

/* Notify core `to_core` that `mb` holds a request (to_core >= 1) or an answer (to_core = 0).
 * EE_OK, EE_ERR_BUSY when the channel still holds the previous message, EE_ERR_IPC otherwise. */
ee_status_t ee_port_notify(uint32_t to_core, ee_mailbox_t *mb);

/* Sleep until an interrupt may have changed something (IPC, UART, tick). May return at once. */
void ee_port_wait_event(void);

/* Cores >= 1: deep sleep until a request arrives; returns its mailbox (NULL: spurious wake-up). */
ee_mailbox_t *ee_port_wait_request(void);

/* Make this core's writes to shared memory visible to the other cores (DMB). */
void ee_port_barrier(void);

#endif /* EE_PORT_H */
