// Compiles the public header as C++11 with all warnings as errors.
#include <rgrpc.h>

int rgrpc_header_cxx_check();
int rgrpc_header_cxx_check() {
  rgrpc_result r = RGRPC_RESULT_OK;
  rgrpc_status_code c = RGRPC_STATUS_CODE_OK;
  rgrpc_channel *ch = nullptr;
  return static_cast<int>(r) + static_cast<int>(c) + (ch == nullptr ? 0 : 1);
}
