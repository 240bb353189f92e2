# kdiag-manager: main, Pprof, server reflection over the rpc layer; Ps and
# Redirect join when their libraries (ps.cmake, redirect.cmake) are there.
add_executable(kdiag-manager ${CMAKE_CURRENT_LIST_DIR}/main.c)
target_link_libraries(kdiag-manager PRIVATE kdiag_rpc)
if(TARGET kdiag_ps)
  target_compile_definitions(kdiag-manager PRIVATE KDIAG_HAVE_PS)
  target_link_libraries(kdiag-manager PRIVATE kdiag_ps)
endif()
if(TARGET kdiag_redirect)
  target_compile_definitions(kdiag-manager PRIVATE KDIAG_HAVE_REDIRECT)
  target_link_libraries(kdiag-manager PRIVATE kdiag_redirect)
endif()
install(TARGETS kdiag-manager RUNTIME DESTINATION bin)

if(KDIAG_FUZZ)
  add_subdirectory(${CMAKE_CURRENT_LIST_DIR}/fuzz ${CMAKE_CURRENT_BINARY_DIR}/fuzz)
endif()
