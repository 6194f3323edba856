# Links librgrpc.so from the static library cargo built, with a version node
# and nothing but the header's functions exported (Linux, GNU ld or lld).
#
#   cmake -DRGRPC_HEADER=include/rgrpc.h -DRGRPC_STATIC_LIB=.../librgrpc.a
#         -DRGRPC_OUTPUT=.../librgrpc.so.0.1.0 -DRGRPC_SONAME=librgrpc.so.0.1
#         -DRGRPC_VERSION_NODE=RGRPC_0.1 [-DRGRPC_CC=cc] [-DRGRPC_STRIP=ON]
#         -P cmake/rgrpc_link_shared.cmake
#
# Why not cargo's own cdylib: rustc gives every cdylib its own anonymous
# version script (all #[no_mangle] functions global, everything else local),
# and the linker keeps the first version it assigns a symbol, so a second
# script cannot put the functions into a named version node. Relinking the
# staticlib (position-independent code, as every Rust object on Linux) with
# our own script is the usual workaround; it takes a second or two. cargo's
# target/<profile>/librgrpc.so stays usable (same functions, same soname, no
# version node).
#
# The version script is generated from the header: the header is the API,
# so a function is exported exactly when the header declares it, and a new
# function needs no second list to be kept in step. Used by CMakeLists.txt
# (the rgrpc_cargo target) and by bindings/python/setup.py (the wheel).
cmake_minimum_required(VERSION 3.16)

foreach(v RGRPC_HEADER RGRPC_STATIC_LIB RGRPC_OUTPUT RGRPC_SONAME RGRPC_VERSION_NODE)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "rgrpc_link_shared.cmake: -D${v}=... is required")
  endif()
endforeach()
if(NOT RGRPC_CC)
  if(DEFINED ENV{CC})
    set(RGRPC_CC "$ENV{CC}")
  else()
    set(RGRPC_CC cc)
  endif()
endif()
if(NOT RGRPC_MAP)
  set(RGRPC_MAP "${RGRPC_OUTPUT}.map")
endif()

# Function declarations start in column 0: `<type> [*]rgrpc_name(`. The same
# rule as cbindings-tests/check_symbols.py.
file(STRINGS "${RGRPC_HEADER}" _decls REGEX "^[A-Za-z_][A-Za-z0-9_ *]*[ *]rgrpc_[A-Za-z0-9_]+\\(")
set(_names)
foreach(line IN LISTS _decls)
  string(REGEX MATCH "[ *](rgrpc_[A-Za-z0-9_]+)\\(" _m "${line}")
  list(APPEND _names "${CMAKE_MATCH_1}")
endforeach()
list(REMOVE_DUPLICATES _names)
list(SORT _names)
list(LENGTH _names _count)
if(_count EQUAL 0)
  message(FATAL_ERROR "rgrpc_link_shared.cmake: no functions found in ${RGRPC_HEADER}")
endif()

set(_map "/* Generated from ${RGRPC_HEADER} by cmake/rgrpc_link_shared.cmake. */\n${RGRPC_VERSION_NODE} {\n  global:\n")
foreach(n IN LISTS _names)
  string(APPEND _map "    ${n};\n")
endforeach()
string(APPEND _map "  local:\n    *;\n};\n")
set(_old "")
if(EXISTS "${RGRPC_MAP}")
  file(READ "${RGRPC_MAP}" _old)
endif()
if(NOT _old STREQUAL _map)
  file(WRITE "${RGRPC_MAP}" "${_map}")
endif()

# Up to date: newer than both inputs.
if(EXISTS "${RGRPC_OUTPUT}"
   AND NOT "${RGRPC_STATIC_LIB}" IS_NEWER_THAN "${RGRPC_OUTPUT}"
   AND NOT "${RGRPC_MAP}" IS_NEWER_THAN "${RGRPC_OUTPUT}")
  return()
endif()

# The system libraries are those `cargo rustc -- --print native-static-libs`
# names; -z defs fails the link if anything else were needed.
set(_flags
  -shared -o "${RGRPC_OUTPUT}.tmp"
  "-Wl,-soname,${RGRPC_SONAME}"
  "-Wl,--version-script=${RGRPC_MAP}"
  -Wl,--gc-sections -Wl,--as-needed -Wl,-z,defs -Wl,-z,relro,-z,now)
if(RGRPC_STRIP)
  list(APPEND _flags -Wl,--strip-debug)
endif()
list(APPEND _flags
  -Wl,--whole-archive "${RGRPC_STATIC_LIB}" -Wl,--no-whole-archive
  -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc)
separate_arguments(_cc UNIX_COMMAND "${RGRPC_CC}")
execute_process(COMMAND ${_cc} ${_flags} RESULT_VARIABLE _rc)
if(NOT _rc EQUAL 0)
  file(REMOVE "${RGRPC_OUTPUT}.tmp")
  message(FATAL_ERROR "rgrpc_link_shared.cmake: linking ${RGRPC_OUTPUT} failed (${_rc})")
endif()
file(RENAME "${RGRPC_OUTPUT}.tmp" "${RGRPC_OUTPUT}")
message(STATUS "linked ${RGRPC_OUTPUT} (${_count} functions in ${RGRPC_VERSION_NODE})")
