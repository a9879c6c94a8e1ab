/* Stand-in for the PDL's cy_pdl.h (mtb-pdl-cat1, drivers/include/cy_sysclk.h, cy_syslib.h and
 * the device's system_psoc6.h): only what eenn's generated clock-plan code calls, with the real
 * PDL's signatures and enumerator values, so that tests compile that code without the PDL. */
#ifndef EE_TEST_STUB_CY_PDL_H
#define EE_TEST_STUB_CY_PDL_H

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    CY_SYSCLK_SUCCESS = 0x00UL,
    CY_SYSCLK_BAD_PARAM = 0x01UL,
    CY_SYSCLK_TIMEOUT = 0x02UL,
    CY_SYSCLK_INVALID_STATE = 0x03UL,
    CY_SYSCLK_UNSUPPORTED_STATE = 0x04UL,
} cy_en_sysclk_status_t;

typedef enum {
    CY_SYSCLK_CLKPATH_IN_IMO = 0U,
    CY_SYSCLK_CLKPATH_IN_EXT = 1U,
    CY_SYSCLK_CLKPATH_IN_ECO = 2U,
} cy_en_clkpath_in_sources_t;

typedef enum {
    CY_SYSCLK_FLLPLL_OUTPUT_AUTO = 0U,
    CY_SYSCLK_FLLPLL_OUTPUT_AUTO1 = 1U,
    CY_SYSCLK_FLLPLL_OUTPUT_INPUT = 2U,
    CY_SYSCLK_FLLPLL_OUTPUT_OUTPUT = 3U,
} cy_en_fll_pll_output_mode_t;

typedef enum {
    CY_SYSCLK_CLKHF_IN_CLKPATH0 = 0U,
    CY_SYSCLK_CLKHF_IN_CLKPATH1 = 1U,
    CY_SYSCLK_CLKHF_IN_CLKPATH2 = 2U,
    CY_SYSCLK_CLKHF_IN_CLKPATH3 = 3U,
} cy_en_clkhf_in_sources_t;

typedef enum {
    CY_SYSCLK_CLKHF_NO_DIVIDE = 0U,
    CY_SYSCLK_CLKHF_DIVIDE_BY_2 = 1U,
    CY_SYSCLK_CLKHF_DIVIDE_BY_4 = 2U,
    CY_SYSCLK_CLKHF_DIVIDE_BY_8 = 3U,
} cy_en_clkhf_dividers_t;

typedef struct {
    uint32_t inputFreq;
    uint32_t outputFreq;
    bool lfMode;
    cy_en_fll_pll_output_mode_t outputMode;
} cy_stc_pll_config_t;

cy_en_sysclk_status_t Cy_SysClk_ClkPathSetSource(uint32_t clkPath, cy_en_clkpath_in_sources_t source);
cy_en_sysclk_status_t Cy_SysClk_FllConfigure(uint32_t inputFreq, uint32_t outputFreq,
                                             cy_en_fll_pll_output_mode_t outputMode);
cy_en_sysclk_status_t Cy_SysClk_FllEnable(uint32_t timeoutus);
cy_en_sysclk_status_t Cy_SysClk_FllDisable(void);
bool Cy_SysClk_FllIsEnabled(void);
cy_en_sysclk_status_t Cy_SysClk_PllConfigure(uint32_t clkPath, const cy_stc_pll_config_t *config);
cy_en_sysclk_status_t Cy_SysClk_PllEnable(uint32_t clkPath, uint32_t timeoutus);
cy_en_sysclk_status_t Cy_SysClk_PllDisable(uint32_t clkPath);
bool Cy_SysClk_PllIsEnabled(uint32_t clkPath);
cy_en_sysclk_status_t Cy_SysClk_ClkHfSetSource(uint32_t clkHf, cy_en_clkhf_in_sources_t source);
cy_en_sysclk_status_t Cy_SysClk_ClkHfSetDivider(uint32_t clkHf, cy_en_clkhf_dividers_t divider);
void Cy_SysClk_ClkFastSetDivider(uint8_t divider);
void Cy_SysClk_ClkPeriSetDivider(uint8_t divider);
void Cy_SysClk_ClkSlowSetDivider(uint8_t divider);
void Cy_SysLib_SetWaitStates(bool ulpMode, uint32_t clkHfMHz);

extern uint32_t SystemCoreClock;
void SystemCoreClockUpdate(void);

#endif /* EE_TEST_STUB_CY_PDL_H */
