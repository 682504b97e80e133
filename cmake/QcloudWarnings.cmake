# Warnings live on a private interface target: qcloud's own code gets them,
# consumers never inherit them. Link it as $<BUILD_INTERFACE:qcloud::warnings>.
add_library(qcloud_warnings INTERFACE)
add_library(qcloud::warnings ALIAS qcloud_warnings)
target_compile_options(qcloud_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wcast-align
  -Woverloaded-virtual -Wimplicit-fallthrough
  # Options are filled with designated initializers that leave fields at
  # their defaults on purpose; GCC 12 warns about each omitted field.
  -Wno-missing-field-initializers
  $<$<CXX_COMPILER_ID:GNU>:-Wno-maybe-uninitialized>
  $<$<BOOL:${QCLOUD_WERROR}>:-Werror>)
