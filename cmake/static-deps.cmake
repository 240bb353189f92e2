# Links the shipped binaries' heavy dependencies statically: gRPC without TLS
# (grpc_unsecure: every channel is plaintext over loopback, a port-forward or
# the pod network, so no libssl/libcrypto), its absl/upb/re2/c-ares/zlib,
# protobuf-c, libnftnl, jansson, nettle, libpcap, zstd and libstdc++/libgcc. What stays
# dynamic is glibc and libmnl (Debian ships no libmnl.a). The debug image then
# holds ~11 MB instead of ~23 MB, and kubectl-diag runs on any glibc >= 2.36.
# Included after pkg_check_modules() has made the PkgConfig:: targets; it
# repoints those targets at the archives, so no target needs to know.
include_guard(GLOBAL)

# _kdiag_archives(OUT name...): absolute paths of libNAME.a, or a fatal error.
function(_kdiag_archives out)
  set(paths "")
  foreach(n ${ARGN})
    find_library(KDIAG_A_${n} NAMES lib${n}.a)
    if(NOT KDIAG_A_${n})
      message(FATAL_ERROR "lib${n}.a not found (KDIAG_STATIC_DEPS=ON): install its -dev package "
                          "(scripts/deps.sh) or configure with -DKDIAG_STATIC_DEPS=OFF")
    endif()
    list(APPEND paths ${KDIAG_A_${n}})
  endforeach()
  set(${out} ${paths} PARENT_SCOPE)
endfunction()

pkg_check_modules(GRPC_UNSECURE REQUIRED grpc_unsecure)
# Debian's grpc_unsecure.pc lists gpr and absl (--static) but not upb, re2,
# c-ares, address_sorting and zlib, which libgrpc_unsecure.a calls too.
set(_grpc_names grpc_unsecure upb re2 cares address_sorting)
foreach(l ${GRPC_UNSECURE_STATIC_LIBRARIES})
  if(NOT l STREQUAL "grpc_unsecure" AND NOT l STREQUAL "atomic" AND NOT l STREQUAL "rt")
    list(APPEND _grpc_names ${l})
  endif()
endforeach()
list(REMOVE_DUPLICATES _grpc_names)
_kdiag_archives(_grpc_a ${_grpc_names} z)
execute_process(COMMAND ${CMAKE_C_COMPILER} -print-file-name=libstdc++.a
                OUTPUT_VARIABLE _stdcxx_a OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT IS_ABSOLUTE "${_stdcxx_a}")
  message(FATAL_ERROR "libstdc++.a not found (g++ / build-essential; or -DKDIAG_STATIC_DEPS=OFF)")
endif()
# One group: the archives call each other in both directions.
set_target_properties(PkgConfig::GRPC PROPERTIES
  INTERFACE_LINK_LIBRARIES "-Wl,--start-group;${_grpc_a};${_stdcxx_a};-Wl,--end-group;atomic;m"
  INTERFACE_LINK_OPTIONS "-static-libgcc")

_kdiag_archives(_pbc_a protobuf-c)
set_target_properties(PkgConfig::PROTOBUFC PROPERTIES INTERFACE_LINK_LIBRARIES "${_pbc_a}")

_kdiag_archives(_nftnl_a nftnl)
set_target_properties(PkgConfig::NFTNL PROPERTIES INTERFACE_LINK_LIBRARIES "${_nftnl_a};PkgConfig::MNL")

_kdiag_archives(_jansson_a jansson)
set_target_properties(PkgConfig::JANSSON PROPERTIES INTERFACE_LINK_LIBRARIES "${_jansson_a}")

# nettle: HMAC-SHA256 of the manager's start-up lines (api/contract.c).
_kdiag_archives(_crypto_a nettle)
set_target_properties(PkgConfig::CRYPTO PROPERTIES INTERFACE_LINK_LIBRARIES "${_crypto_a}")

# zstd: cp's compression (api/copyz.c).
_kdiag_archives(_zstd_a zstd)
set_target_properties(PkgConfig::ZSTD PROPERTIES INTERFACE_LINK_LIBRARIES "${_zstd_a}")

# libpcap: only its filter compiler is used. Its D-Bus capture source would
# pull libdbus (and libsystemd, which has no .a): manager/capture.c defines
# the two entry points pcap.o calls when KDIAG_PCAP_STATIC is set, so
# pcap-dbus.o is never linked (~300 KB in all).
_kdiag_archives(_pcap_a pcap)
set_target_properties(PkgConfig::PCAP PROPERTIES INTERFACE_LINK_LIBRARIES "${_pcap_a}"
                      INTERFACE_COMPILE_DEFINITIONS KDIAG_PCAP_STATIC)
