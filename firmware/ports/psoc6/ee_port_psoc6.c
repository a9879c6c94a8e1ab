/* PSoC 6 port of the eenn runtime (see ee_psoc6.h). */
#include "ee_psoc6.h"

#include "cy_ipc_drv.h"
#include "cy_sysint.h"
#include "cy_syslib.h"
#include "cy_syspm.h"
#include "cy_systick.h"

#include "ee_port.h"

#if CY_CPU_CORTEX_M0P
#define EE_RX_CHAN EE_PSOC6_IPC_CHAN_RESP
#define EE_RX_INTR EE_PSOC6_IPC_INTR_CM0P
#define EE_TX_CHAN EE_PSOC6_IPC_CHAN_REQ
#define EE_TX_INTR EE_PSOC6_IPC_INTR_CM4
#define EE_THIS_CORE 0u
#define EE_PEER_CORE 1u
#elif CY_CPU_CORTEX_M4
#define EE_RX_CHAN EE_PSOC6_IPC_CHAN_REQ
#define EE_RX_INTR EE_PSOC6_IPC_INTR_CM4
#define EE_TX_CHAN EE_PSOC6_IPC_CHAN_RESP
#define EE_TX_INTR EE_PSOC6_IPC_INTR_CM0P
#define EE_THIS_CORE 1u
#define EE_PEER_CORE 0u
#else
#error "ee_port_psoc6.c: build for the PSoC 6 Cortex-M0+ or Cortex-M4"
#endif

#if defined(CY_M4CPUSS_V2_IRQ_MUXING) || defined(CY_IP_M7CPUSS)
#error "ee_port_psoc6.c supports CAT1A devices with the classic CM0+ interrupt multiplexer"
#endif

#define SYSTICK_RELOAD 0xFFFFFFu /* 2^24 counts per wrap */

/* ---------------------------------------------------------------- state */
static volatile uint32_t g_event;            /* an interrupt happened since the last wait */
static volatile uint32_t g_rx_pending;       /* an IPC message is waiting */
static ee_mailbox_t *volatile g_rx_msg;
static volatile uint32_t g_systick_wraps;

static CySCB_Type *g_uart;
static GPIO_PRT_Type *g_ts_port;
static uint32_t g_ts_pin;
static volatile uint8_t g_ring[EE_PSOC6_RX_RING];
static volatile uint32_t g_ring_head; /* written by the ISR */
static volatile uint32_t g_ring_tail; /* written by the main loop */
static volatile uint32_t g_rx_dropped;

#if CY_CPU_CORTEX_M4
static uint32_t g_use_dwt;
static volatile uint32_t g_dwt_hi;
static volatile uint32_t g_dwt_last;
#endif

/* ---------------------------------------------------------------- ticks */
#if CY_CPU_CORTEX_M4
static uint64_t dwt_ticks(void)
{
    uint32_t state = Cy_SysLib_EnterCriticalSection();
    uint32_t now = DWT->CYCCNT;
    uint64_t t;
    if (now < g_dwt_last) {
        g_dwt_hi++;
    }
    g_dwt_last = now;
    t = ((uint64_t)g_dwt_hi << 32) | now;
    Cy_SysLib_ExitCriticalSection(state);
    return t;
}
#endif

static void systick_wrap(void)
{
    g_systick_wraps++;
#if CY_CPU_CORTEX_M4
    if (g_use_dwt) {
        (void)dwt_ticks(); /* sample CYCCNT often enough (every 2^24 cycles) to see each wrap */
    }
#endif
}

static uint64_t systick_ticks(void)
{
    uint32_t state = Cy_SysLib_EnterCriticalSection();
    uint32_t hi = g_systick_wraps;
    uint32_t val = SysTick->VAL;
    if ((SCB->ICSR & SCB_ICSR_PENDSTSET_Msk) != 0u) {
        /* wrapped, interrupt not yet served: read again after the wrap and count it */
        val = SysTick->VAL;
        hi++;
    }
    Cy_SysLib_ExitCriticalSection(state);
    return ((uint64_t)hi << 24) | (uint64_t)(SYSTICK_RELOAD - val);
}

uint64_t ee_port_ticks(void)
{
#if CY_CPU_CORTEX_M4
    if (g_use_dwt) {
        return dwt_ticks();
    }
#endif
    return systick_ticks();
}

static void ticks_init(void)
{
    Cy_SysTick_Init(CY_SYSTICK_CLOCK_SOURCE_CLK_CPU, SYSTICK_RELOAD);
    (void)Cy_SysTick_SetCallback(0u, systick_wrap);
#if CY_CPU_CORTEX_M4
    CoreDebug->DEMCR |= CoreDebug_DEMCR_TRCENA_Msk;
    if ((DWT->CTRL & DWT_CTRL_NOCYCCNT_Msk) == 0u) {
        DWT->CYCCNT = 0u;
        DWT->CTRL |= DWT_CTRL_CYCCNTENA_Msk;
        g_dwt_last = 0u;
        g_dwt_hi = 0u;
        g_use_dwt = 1u;
    }
#endif
}

/* ---------------------------------------------------------------- IPC */
static void ipc_isr(void)
{
    IPC_INTR_STRUCT_Type *intr = Cy_IPC_Drv_GetIntrBaseAddr(EE_RX_INTR);
    uint32_t notify = Cy_IPC_Drv_ExtractAcquireMask(Cy_IPC_Drv_GetInterruptStatusMasked(intr));
    Cy_IPC_Drv_ClearInterrupt(intr, CY_IPC_NO_NOTIFICATION, notify);
    if ((notify & (1uL << EE_RX_CHAN)) != 0u) {
        IPC_STRUCT_Type *chan = Cy_IPC_Drv_GetIpcBaseAddress(EE_RX_CHAN);
        void *msg = NULL;
        if (Cy_IPC_Drv_ReadMsgPtr(chan, &msg) == CY_IPC_DRV_SUCCESS) {
            g_rx_msg = (ee_mailbox_t *)msg;
            g_rx_pending = 1u;
        }
        (void)Cy_IPC_Drv_LockRelease(chan, CY_IPC_NO_NOTIFICATION); /* the channel is free again */
    }
    g_event = 1u;
    (void)Cy_IPC_Drv_GetInterruptStatusMasked(intr); /* make the clear take effect before return */
}

static ee_status_t ipc_init(void)
{
    cy_stc_sysint_t irq;
    IPC_INTR_STRUCT_Type *intr = Cy_IPC_Drv_GetIntrBaseAddr(EE_RX_INTR);
    Cy_IPC_Drv_SetInterruptMask(intr, CY_IPC_NO_NOTIFICATION, 1uL << EE_RX_CHAN);
#if CY_CPU_CORTEX_M0P
    irq.intrSrc = EE_PSOC6_CM0P_IPC_IRQN;
    irq.cm0pSrc = (cy_en_intr_t)((int32_t)cpuss_interrupts_ipc_0_IRQn + (int32_t)EE_RX_INTR);
#else
    irq.intrSrc = (IRQn_Type)((int32_t)cpuss_interrupts_ipc_0_IRQn + (int32_t)EE_RX_INTR);
#endif
    irq.intrPriority = EE_PSOC6_IRQ_PRIORITY;
    if (Cy_SysInt_Init(&irq, ipc_isr) != CY_SYSINT_SUCCESS) {
        return EE_ERR_IPC;
    }
    NVIC_ClearPendingIRQ(irq.intrSrc);
    NVIC_EnableIRQ(irq.intrSrc);
    return EE_OK;
}

ee_status_t ee_port_notify(uint32_t to_core, ee_mailbox_t *mb)
{
    if (mb == NULL || to_core != EE_PEER_CORE) {
        return EE_ERR_IPC; /* this port connects the two PSoC 6 cores only */
    }
    if (Cy_IPC_Drv_SendMsgPtr(Cy_IPC_Drv_GetIpcBaseAddress(EE_TX_CHAN), 1uL << EE_TX_INTR, mb) !=
        CY_IPC_DRV_SUCCESS) {
        return EE_ERR_BUSY; /* still locked: the peer has not read the previous message */
    }
    return EE_OK;
}

void ee_port_barrier(void)
{
    __DMB();
}

void ee_port_wait_event(void)
{
#if CY_CPU_CORTEX_M0P
    uint32_t state = Cy_SysLib_EnterCriticalSection();
    if (g_event == 0u) {
        /* WFI wakes on a pending interrupt even with interrupts masked; the ISR runs on exit */
        (void)Cy_SysPm_CpuEnterSleep(CY_SYSPM_WAIT_FOR_INTERRUPT);
    }
    g_event = 0u;
    Cy_SysLib_ExitCriticalSection(state);
#else
    /* core 1 waits only to retry a busy reply channel: spin, so that its ticks (and the
     * deadline measured in them) advance */
    Cy_SysLib_DelayUs((uint16_t)EE_PSOC6_SPIN_US);
#endif
}

ee_mailbox_t *ee_port_wait_request(void)
{
    ee_mailbox_t *mb = NULL;
    uint32_t state = Cy_SysLib_EnterCriticalSection();
    if (g_rx_pending == 0u) {
        (void)Cy_SysPm_CpuEnterDeepSleep(CY_SYSPM_WAIT_FOR_INTERRUPT);
    }
    if (g_rx_pending != 0u) {
        mb = g_rx_msg;
        g_rx_pending = 0u;
    }
    Cy_SysLib_ExitCriticalSection(state); /* a request that woke us is taken on the next call */
    return mb;
}

/* ---------------------------------------------------------------- UART (core 0) */
#if CY_CPU_CORTEX_M0P
static void uart_isr(void)
{
    if (g_uart != NULL) {
        while (Cy_SCB_UART_GetNumInRxFifo(g_uart) > 0u) {
            uint32_t c = Cy_SCB_UART_Get(g_uart);
            uint32_t head = g_ring_head;
            if (head - g_ring_tail < EE_PSOC6_RX_RING) {
                g_ring[head & (EE_PSOC6_RX_RING - 1u)] = (uint8_t)c;
                g_ring_head = head + 1u;
            } else {
                g_rx_dropped++;
            }
        }
        Cy_SCB_ClearRxInterrupt(g_uart, CY_SCB_UART_RX_NOT_EMPTY | CY_SCB_UART_RX_OVERFLOW);
    }
    g_event = 1u;
}
#endif

size_t ee_port_uart_read(uint8_t *dst, size_t cap)
{
    size_t n = 0;
    uint32_t tail = g_ring_tail;
    while (n < cap && tail != g_ring_head) {
        dst[n++] = g_ring[tail & (EE_PSOC6_RX_RING - 1u)];
        tail++;
    }
    g_ring_tail = tail;
    return n;
}

void ee_port_uart_write(const char *data, size_t len)
{
    size_t i;
    if (g_uart == NULL || data == NULL) {
        return;
    }
    for (i = 0; i < len; ++i) {
        while (Cy_SCB_UART_Put(g_uart, (uint32_t)(uint8_t)data[i]) == 0u) {
            /* TX FIFO full: wait */
        }
    }
}

void ee_port_timestamp_pulse(void)
{
    if (g_ts_port == NULL) {
        return;
    }
    if (g_uart != NULL) {
        while (!Cy_SCB_UART_IsTxComplete(g_uart)) {
            /* the lines before the edge are on the wire first */
        }
    }
    Cy_GPIO_Clr(g_ts_port, g_ts_pin);
    Cy_SysLib_DelayUs((uint16_t)EE_PSOC6_TS_PULSE_US);
    Cy_GPIO_Set(g_ts_port, g_ts_pin);
}

uint32_t ee_psoc6_rx_dropped(void)
{
    return g_rx_dropped;
}

#if CY_CPU_CORTEX_M0P
static ee_status_t uart_init(const ee_psoc6_uart_t *u)
{
    cy_stc_scb_uart_config_t cfg = {
        .uartMode = CY_SCB_UART_STANDARD,
        .enableMutliProcessorMode = false,
        .smartCardRetryOnNack = false,
        .irdaInvertRx = false,
        .irdaEnableLowPowerReceiver = false,
        .oversample = 8u,
        .enableMsbFirst = false,
        .dataWidth = 8u,
        .parity = CY_SCB_UART_PARITY_NONE,
        .stopBits = CY_SCB_UART_STOP_BITS_1,
        .enableInputFilter = false,
        .breakWidth = 11u,
        .dropOnFrameError = false,
        .dropOnParityError = false,
        .receiverAddress = 0u,
        .receiverAddressMask = 0u,
        .acceptAddrInFifo = false,
        .enableCts = false,
        .ctsPolarity = CY_SCB_UART_ACTIVE_LOW,
        .rtsRxFifoLevel = 0u,
        .rtsPolarity = CY_SCB_UART_ACTIVE_LOW,
        .rxFifoTriggerLevel = 0u,
        .rxFifoIntEnableMask = 0u,
        .txFifoTriggerLevel = 0u,
        .txFifoIntEnableMask = 0u,
    };
    cy_stc_sysint_t irq;
    uint32_t peri_hz = Cy_SysClk_ClkPeriGetFrequency();
    uint32_t div;
    if (u->base == NULL || u->baud == 0u) {
        return EE_ERR_ARG;
    }
    div = (peri_hz + (u->baud * cfg.oversample) / 2u) / (u->baud * cfg.oversample); /* rounded */
    if (div == 0u || div > 65536u) {
        return EE_ERR_CONFIG;
    }
    Cy_GPIO_Pin_FastInit(u->rx_port, u->rx_pin, CY_GPIO_DM_HIGHZ, 1u, u->rx_hsiom);
    Cy_GPIO_Pin_FastInit(u->tx_port, u->tx_pin, CY_GPIO_DM_STRONG_IN_OFF, 1u, u->tx_hsiom);
    if (Cy_SysClk_PeriphAssignDivider(u->clock, CY_SYSCLK_DIV_16_BIT, u->divider) != CY_SYSCLK_SUCCESS ||
        Cy_SysClk_PeriphSetDivider(CY_SYSCLK_DIV_16_BIT, u->divider, div - 1u) != CY_SYSCLK_SUCCESS ||
        Cy_SysClk_PeriphEnableDivider(CY_SYSCLK_DIV_16_BIT, u->divider) != CY_SYSCLK_SUCCESS) {
        return EE_ERR_CONFIG;
    }
    if (Cy_SCB_UART_Init(u->base, &cfg, NULL) != CY_SCB_UART_SUCCESS) {
        return EE_ERR_CONFIG;
    }
    g_uart = u->base;
    Cy_SCB_SetRxInterruptMask(u->base, CY_SCB_UART_RX_NOT_EMPTY);
    irq.intrSrc = EE_PSOC6_CM0P_UART_IRQN;
    irq.cm0pSrc = (cy_en_intr_t)u->irq_source;
    irq.intrPriority = EE_PSOC6_IRQ_PRIORITY;
    if (Cy_SysInt_Init(&irq, uart_isr) != CY_SYSINT_SUCCESS) {
        return EE_ERR_CONFIG;
    }
    NVIC_ClearPendingIRQ(irq.intrSrc);
    NVIC_EnableIRQ(irq.intrSrc);
    Cy_SCB_UART_Enable(u->base);
    return EE_OK;
}

static const ee_psoc6_board_t *g_board;

void ee_psoc6_use_board(const ee_psoc6_board_t *board)
{
    g_board = board;
}

ee_status_t ee_port_init(const ee_config_t *cfg)
{
    const ee_psoc6_board_t *board = g_board;
    ee_status_t rc;
    if (board == NULL || cfg == NULL || ee_config_check(cfg, NULL) != NULL) {
        return EE_ERR_ARG;
    }
    ticks_init();
    rc = uart_init(&board->uart);
    if (rc != EE_OK) {
        return rc;
    }
    g_ts_port = board->ts_port;
    g_ts_pin = board->ts_pin;
    if (g_ts_port != NULL) {
        /* open drain, drives low only; released (high through the pull-up) at rest */
        Cy_GPIO_Pin_FastInit(g_ts_port, g_ts_pin, CY_GPIO_DM_OD_DRIVESLOW_IN_OFF, 1u, HSIOM_SEL_GPIO);
    }
    if (ee_n_cores(cfg) > 1u) {
        rc = ipc_init();
        if (rc != EE_OK) {
            return rc;
        }
    }
    return SystemCoreClock == ee_core_tick_hz(cfg, 0u) ? EE_OK : EE_ERR_CONFIG;
}
#endif /* CY_CPU_CORTEX_M0P */

#if CY_CPU_CORTEX_M4
ee_status_t ee_port_init(const ee_config_t *cfg)
{
    ee_status_t rc;
    if (cfg == NULL || ee_n_cores(cfg) < 2u || ee_config_check(cfg, NULL) != NULL) {
        return EE_ERR_ARG;
    }
    ticks_init();
    rc = ipc_init();
    if (rc != EE_OK) {
        return rc;
    }
    return SystemCoreClock == ee_core_tick_hz(cfg, EE_THIS_CORE) ? EE_OK : EE_ERR_CONFIG;
}
#endif /* CY_CPU_CORTEX_M4 */
