# What ships: `cmake --install <build> [--prefix P] [--strip]` puts every binary
# in P/bin (GNUInstallDirs): the plugin (kubectl-diag, kubectl_complete-diag)
# and the debug image's binaries (kdiag-manager, enter, ash), so a prefix of
# /usr/local gives the image's own layout. Component "plugin" is the first two.
# Target `release` builds <build>/release/kubectl-diag-<version>-linux-amd64.tar.gz,
# its .sha256 and the krew manifest diag.yaml rendered from .krew.yaml
# (scripts/release.sh).
include_guard(GLOBAL)
include(GNUInstallDirs)

install(TARGETS kubectl-diag RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT plugin)
install(PROGRAMS ${CMAKE_SOURCE_DIR}/cli/kubectl_complete-diag
        DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT plugin)
install(TARGETS kdiag-manager enter RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT image)
install(PROGRAMS ${KDIAG_ASH} DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT image)

set(KDIAG_RELEASE_DIR ${CMAKE_BINARY_DIR}/release CACHE INTERNAL "release artifacts")
set(KDIAG_RELEASE_TARBALL
    ${KDIAG_RELEASE_DIR}/kubectl-diag-${PROJECT_VERSION}-linux-amd64.tar.gz CACHE INTERNAL "release tarball")
add_custom_target(release
  COMMAND ${CMAKE_SOURCE_DIR}/scripts/release.sh --build-dir ${CMAKE_BINARY_DIR}
          --version ${PROJECT_VERSION} --out ${KDIAG_RELEASE_DIR}
  DEPENDS kubectl-diag
  COMMENT "release: ${KDIAG_RELEASE_TARBALL}, .sha256, diag.yaml"
  VERBATIM)
