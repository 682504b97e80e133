# QCLOUD_SANITIZE=ON builds the whole tree with ASan+UBSan (the asan preset).
# UBSan findings abort so that a test run fails on them instead of printing.
if(QCLOUD_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer
                      -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()

# Fuzzer builds: instrument everything for coverage; only the fuzz targets
# themselves link the libFuzzer main (see tests/fuzz).
if(QCLOUD_BUILD_FUZZERS)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "QCLOUD_BUILD_FUZZERS needs clang (libFuzzer)")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()
