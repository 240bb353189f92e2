# Ps: process listing from /proc joined with NETLINK_SOCK_DIAG, and its gRPC handler.
add_library(kdiag_ps STATIC
  ${CMAKE_CURRENT_LIST_DIR}/procfs.c
  ${CMAKE_CURRENT_LIST_DIR}/sockdiag.c
  ${CMAKE_CURRENT_LIST_DIR}/ps.c)
target_include_directories(kdiag_ps PUBLIC ${CMAKE_CURRENT_LIST_DIR} ${PROJECT_SOURCE_DIR}/api)
target_link_libraries(kdiag_ps PUBLIC kdiag_proto PkgConfig::MNL)
# The handler needs the rpc layer (api/rpc.c); without it kdiag_ps is the
# listing alone.
if(TARGET kdiag_rpc)
  target_sources(kdiag_ps PRIVATE ${CMAKE_CURRENT_LIST_DIR}/ps_rpc.c)
  target_link_libraries(kdiag_ps PUBLIC kdiag_rpc)
endif()

# bench/ps_bench: Ps vs ss + ps in a namespace with thousands of listeners.
# Built with everything so it cannot rot; run by hand (bench/README.md).
if(TARGET kdiag_rpc)
  add_executable(ps_bench ${PROJECT_SOURCE_DIR}/bench/ps_bench.c)
  target_link_libraries(ps_bench PRIVATE kdiag_ps kdiag_testsupport) # defined in test/support
endif()
