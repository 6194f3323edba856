/* Compiles the public header as strict C99 with all warnings as errors, and
 * checks the version macros at compile time. */
#include <rgrpc.h>

#if !RGRPC_AT_LEAST_VERSION(0, 1, 0)
#error "RGRPC_AT_LEAST_VERSION(0,1,0) must hold"
#endif
#if RGRPC_AT_LEAST_VERSION(0, 1, 1) || RGRPC_AT_LEAST_VERSION(0, 2, 0) || RGRPC_AT_LEAST_VERSION(1, 0, 0)
#error "RGRPC_AT_LEAST_VERSION must not claim a newer version"
#endif
#if RGRPC_VERSION_NUMBER != ((RGRPC_VERSION_MAJOR << 16) | (RGRPC_VERSION_MINOR << 8) | RGRPC_VERSION_PATCH)
#error "RGRPC_VERSION_NUMBER is inconsistent"
#endif

int rgrpc_header_c99_check(void);
int rgrpc_header_c99_check(void) {
  rgrpc_result r = RGRPC_RESULT_OK;
  rgrpc_status_code c = RGRPC_STATUS_CODE_UNAUTHENTICATED;
  return (int)r + (int)c;
}
