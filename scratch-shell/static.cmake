# kdiag_static_executable(TARGET): link TARGET fully static (it runs in images
# without a libc). ASan cannot be linked statically, so under KDIAG_SANITIZE
# such targets drop the global sanitizer flags and get UBSan in trap mode,
# which needs no runtime library.
# kdiag_static_code(TARGET) does the same for a library such a target links.
include_guard(GLOBAL)
function(kdiag_static_executable tgt)
  target_link_options(${tgt} PRIVATE -static)
  kdiag_static_code(${tgt})
endfunction()

function(kdiag_static_code tgt)
  if(KDIAG_SANITIZE)
    foreach(_prop COMPILE_OPTIONS LINK_OPTIONS)
      get_target_property(_opts ${tgt} ${_prop})
      if(_opts)
        list(FILTER _opts EXCLUDE REGEX "sanitize|omit-frame-pointer")
        set_target_properties(${tgt} PROPERTIES ${_prop} "${_opts}")
      endif()
    endforeach()
    target_compile_options(${tgt} PRIVATE -fsanitize=undefined -fsanitize-undefined-trap-on-error)
  endif()
endfunction()
