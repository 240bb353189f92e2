# Redirect: nftables rules over netlink + the tunnel that pairs redirected
# connections with the CLI's tunnel connections. See docs/redirect.md.
# Socket-to-socket splicing, shared by the manager's tunnel and the CLI's bridge.
add_library(kdiag_splice STATIC ${PROJECT_SOURCE_DIR}/api/splice_pump.c)
target_include_directories(kdiag_splice PUBLIC ${PROJECT_SOURCE_DIR}/api)

add_library(kdiag_redirect STATIC
  ${CMAKE_CURRENT_LIST_DIR}/nft.c
  ${CMAKE_CURRENT_LIST_DIR}/tunnel.c
  ${CMAKE_CURRENT_LIST_DIR}/redirect.c)
target_include_directories(kdiag_redirect PUBLIC ${CMAKE_CURRENT_LIST_DIR} ${PROJECT_SOURCE_DIR}/api)
find_package(Threads REQUIRED)
target_link_libraries(kdiag_redirect PUBLIC kdiag_proto PkgConfig::NFTNL PkgConfig::MNL PkgConfig::GRPC Threads::Threads kdiag_splice)
if(TARGET kdiag_rpc)
  target_link_libraries(kdiag_redirect PUBLIC kdiag_rpc)
endif()

# The client's half (api/redirect_client.c): the CLI runs Redirect streams and
# bridges tunnel connections with it.
if(TARGET kdiag_rpc)
  add_library(kdiag_redirect_client STATIC ${PROJECT_SOURCE_DIR}/api/redirect_client.c)
  target_include_directories(kdiag_redirect_client PUBLIC ${PROJECT_SOURCE_DIR}/api)
  target_link_libraries(kdiag_redirect_client PUBLIC kdiag_rpc kdiag_proto kdiag_splice)
endif()
