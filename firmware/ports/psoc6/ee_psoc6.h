/*
 * eenn firmware runtime, PSoC 6 port (CAT1A, e.g. CY8C624ABZI on CY8CKIT-062S2-43012).
 *
 * Core 0 = the Cortex-M0+ (always on: UART, the protocol, the stages placed on it, possibly none);
 * core 1 = the Cortex-M4F (the stages placed on it). Two cores: a request only ever goes CM0+ -> CM4
 * and the answer CM4 -> CM0+.
 * Built on the PDL only (no HAL): IPC driver for the handoff, SCB UART, GPIO, SysTick,
 * DWT, SysPm. Both cores compile the same file; CY_CPU_CORTEX_M0P / CY_CPU_CORTEX_M4 pick
 * the half that applies.
 *
 *  - Handoff: core 0 sends the mailbox address over IPC channel EE_PSOC6_IPC_CHAN_REQ with a
 *    notify event on IPC interrupt structure EE_PSOC6_IPC_INTR_CM4; core 1 answers over
 *    EE_PSOC6_IPC_CHAN_RESP / EE_PSOC6_IPC_INTR_CM0P. Each receiving ISR reads the message and
 *    releases the channel at once (Cy_IPC_Drv_SendMsgPtr / ReadMsgPtr / LockRelease).
 *  - Sleep: core 1 waits for requests in CPU Deep Sleep (Cy_SysPm_CpuEnterDeepSleep; IPC
 *    interrupts wake it). Core 0 waits for UART bytes and for core 1's answer in CPU Sleep
 *    (Cy_SysPm_CpuEnterSleep), so that its SysTick keeps counting: the handoff timeout and the
 *    m-lap-us timestamps stay right. (The device enters system Deep Sleep only when both cores
 *    do; core 0 never does while it serves the UART.)
 *  - Ticks: SysTick on the CPU clock (24-bit, reload 2^24) extended to 64 bits by its wrap
 *    interrupt; on the CM4 the DWT cycle counter when present (CYCCNT extended to 64 bits,
 *    sampled at least every SysTick wrap). SysTick and DWT stop in Deep Sleep: core 1's ticks
 *    are its active cycles. The port owns SysTick on both cores.
 *  - Timestamp pin: open drain, drives low; a timestamp is EE_PSOC6_TS_PULSE_US low, then high.
 */
#ifndef EE_PSOC6_H
#define EE_PSOC6_H

#include <stdint.h>

#include "cy_device_headers.h"
#include "cy_gpio.h"
#include "cy_scb_uart.h"
#include "cy_sysclk.h"

#include "ee_runtime.h"
#include "ee_status.h"

/* IPC channels (CAT1A: 0..7 are reserved by the system, CY_IPC_CHAN_USER = 8) and IPC
 * interrupt structures (8..15 are free for applications). Override with -D if taken. */
#ifndef EE_PSOC6_IPC_CHAN_REQ
#define EE_PSOC6_IPC_CHAN_REQ 8u /* core 0 -> core 1 */
#endif
#ifndef EE_PSOC6_IPC_CHAN_RESP
#define EE_PSOC6_IPC_CHAN_RESP 9u /* core 1 -> core 0 */
#endif
#ifndef EE_PSOC6_IPC_INTR_CM4
#define EE_PSOC6_IPC_INTR_CM4 8u /* raised for core 1 */
#endif
#ifndef EE_PSOC6_IPC_INTR_CM0P
#define EE_PSOC6_IPC_INTR_CM0P 9u /* raised for core 0 */
#endif
/* CM0+ NVIC lines (system interrupts reach the CM0+ through its 8 multiplexed lines). */
#ifndef EE_PSOC6_CM0P_IPC_IRQN
#define EE_PSOC6_CM0P_IPC_IRQN NvicMux5_IRQn
#endif
#ifndef EE_PSOC6_CM0P_UART_IRQN
#define EE_PSOC6_CM0P_UART_IRQN NvicMux6_IRQn
#endif
#ifndef EE_PSOC6_IRQ_PRIORITY
#define EE_PSOC6_IRQ_PRIORITY 2u
#endif
#ifndef EE_PSOC6_TS_PULSE_US
#define EE_PSOC6_TS_PULSE_US 100u
#endif
#ifndef EE_PSOC6_RX_RING
#define EE_PSOC6_RX_RING 512u /* power of two */
#endif
#ifndef EE_PSOC6_SPIN_US
#define EE_PSOC6_SPIN_US 20u /* core 1 retrying a busy reply channel spins this long per try */
#endif

/* The HIL UART (core 0). The port configures pins, clock divider and SCB itself. */
typedef struct {
    CySCB_Type *base;          /* e.g. SCB5 */
    uint32_t irq_source;       /* the SCB's system interrupt, e.g. scb_5_interrupt_IRQn */
    GPIO_PRT_Type *rx_port;    /* e.g. GPIO_PRT5 */
    uint32_t rx_pin;           /* e.g. 0 */
    en_hsiom_sel_t rx_hsiom;   /* e.g. P5_0_SCB5_UART_RX */
    GPIO_PRT_Type *tx_port;
    uint32_t tx_pin;
    en_hsiom_sel_t tx_hsiom;   /* e.g. P5_1_SCB5_UART_TX */
    en_clk_dst_t clock;        /* e.g. PCLK_SCB5_CLOCK */
    uint32_t divider;          /* a free 16-bit peripheral clock divider */
    uint32_t baud;             /* e.g. 115200 */
} ee_psoc6_uart_t;

typedef struct {
    ee_psoc6_uart_t uart;
    GPIO_PRT_Type *ts_port;    /* timestamp pin (open drain, active low); NULL: none */
    uint32_t ts_pin;
} ee_psoc6_board_t;

/* CY8CKIT-062S2-43012: KitProg3 USB-UART on P5_0/P5_1 (SCB5), timestamp on Arduino D7 (P5_7),
 * 16-bit divider 0 (the BSP's design.modus uses 8-bit dividers 0 and 7 and 16-bit divider 15). */
#define EE_PSOC6_BOARD_CY8CKIT_062S2_43012                                                        \
    {                                                                                             \
        {SCB5, (uint32_t)scb_5_interrupt_IRQn, GPIO_PRT5, 0u, P5_0_SCB5_UART_RX, GPIO_PRT5, 1u,   \
         P5_1_SCB5_UART_TX, PCLK_SCB5_CLOCK, 0u, 115200u},                                        \
            GPIO_PRT5, 7u                                                                         \
    }

/* ee_port_init (ee_port.h) on this port:
 *  - core 0 (CM0+), after the BSP/system init and before enabling the CM4: SysTick, the UART of
 *    the board given to ee_psoc6_use_board with its RX interrupt, the timestamp pin, and with two
 *    cores the IPC answer channel; EE_ERR_ARG without a board;
 *  - core 1 (CM4): SysTick (+ DWT), the IPC request channel; then call ee_core_main(cfg, 1u).
 * EE_ERR_CONFIG when SystemCoreClock is not the core's ee_core_tick_hz. */
#if defined(CY_CPU_CORTEX_M0P) && CY_CPU_CORTEX_M0P
/* Core 0: the UART and timestamp pin ee_port_init sets up (kept by pointer: pass a static). */
void ee_psoc6_use_board(const ee_psoc6_board_t *board);
#endif

/* Bytes dropped because the UART ring buffer was full (diagnostics). */
uint32_t ee_psoc6_rx_dropped(void);

#endif /* EE_PSOC6_H */
