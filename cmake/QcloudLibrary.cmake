# qcloud_add_library(<name> SOURCES ... [PUBLIC_DEPS ...] [PRIVATE_DEPS ...]
#                    [FIND_DEPENDENCIES "<find_dependency args>" ...]
#                    [PC_REQUIRES ...] [PC_LIBS ...])
#
# Creates qcloud_<name> (alias qcloud::<name>, file libqcloud-<name>), with the
# public headers in libqcloud-<name>/include and the private ones in src/.
# Also creates qcloud_<name>_objects, an object library with the same sources
# that tests link, so internals are testable in shared builds too (hidden
# symbols are not exported from the .so).
# FIND_DEPENDENCIES are CMake lines the installed package config runs before
# the component's targets load (find_dependency(...), pkg_check_modules(...));
# COMPONENT_DEPS names other qcloud components it needs; PC_* feed
# qcloud-<name>.pc.
set_property(GLOBAL PROPERTY QCLOUD_COMPONENTS "")
set_property(GLOBAL PROPERTY QCLOUD_PUBLIC_HEADERS "")

function(qcloud_add_library name)
  cmake_parse_arguments(A "" "DIR"
    "SOURCES;PUBLIC_DEPS;PRIVATE_DEPS;FIND_DEPENDENCIES;COMPONENT_DEPS;PC_REQUIRES;PC_LIBS"
    ${ARGN})
  if(NOT A_DIR)
    set(A_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
  endif()
  set(tgt qcloud_${name})

  # Objects shared by the library and the tests. Against other qcloud
  # components the objects take their *_objects usage requirements, so a
  # test that links several object libraries gets each object file once.
  set(obj_public_deps "")
  foreach(d IN LISTS A_PUBLIC_DEPS)
    if(d MATCHES "^qcloud::(.*)$")
      list(APPEND obj_public_deps qcloud_${CMAKE_MATCH_1}_objects)
    else()
      list(APPEND obj_public_deps ${d})
    endif()
  endforeach()
  add_library(${tgt}_objects OBJECT ${A_SOURCES})
  target_include_directories(${tgt}_objects
    PUBLIC "${A_DIR}/include"
    PRIVATE "${A_DIR}/src")
  target_link_libraries(${tgt}_objects
    PUBLIC ${obj_public_deps}
    PRIVATE ${A_PRIVATE_DEPS} $<BUILD_INTERFACE:qcloud::warnings>)
  target_compile_features(${tgt}_objects PUBLIC cxx_std_20)

  add_library(${tgt} $<TARGET_OBJECTS:${tgt}_objects>)
  add_library(qcloud::${name} ALIAS ${tgt})
  target_include_directories(${tgt} PUBLIC
    "$<BUILD_INTERFACE:${A_DIR}/include>"
    "$<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>")
  target_link_libraries(${tgt} PUBLIC ${A_PUBLIC_DEPS} PRIVATE ${A_PRIVATE_DEPS})
  target_compile_features(${tgt} PUBLIC cxx_std_20)
  set_target_properties(${tgt} PROPERTIES
    OUTPUT_NAME qcloud-${name}
    EXPORT_NAME ${name}
    VERSION ${PROJECT_VERSION}
    SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR})

  file(GLOB_RECURSE headers CONFIGURE_DEPENDS "${A_DIR}/include/qcloud/*.h")
  set_property(GLOBAL APPEND PROPERTY QCLOUD_PUBLIC_HEADERS ${headers})
  set_property(GLOBAL APPEND PROPERTY QCLOUD_COMPONENTS ${name})
  set_property(GLOBAL PROPERTY QCLOUD_${name}_DIR "${A_DIR}")
  set_property(GLOBAL PROPERTY QCLOUD_${name}_FIND_DEPENDENCIES "${A_FIND_DEPENDENCIES}")
  set_property(GLOBAL PROPERTY QCLOUD_${name}_COMPONENT_DEPS "${A_COMPONENT_DEPS}")
  set_property(GLOBAL PROPERTY QCLOUD_${name}_PC_REQUIRES "${A_PC_REQUIRES}")
  set_property(GLOBAL PROPERTY QCLOUD_${name}_PC_LIBS "${A_PC_LIBS}")
endfunction()

# One translation unit per public header, each including only that header:
# a header that forgets an include breaks this target.
function(qcloud_check_headers)
  get_property(headers GLOBAL PROPERTY QCLOUD_PUBLIC_HEADERS)
  get_property(components GLOBAL PROPERTY QCLOUD_COMPONENTS)
  set(srcs "")
  foreach(h IN LISTS headers)
    string(REGEX REPLACE ".*/include/" "" rel "${h}")
    string(MAKE_C_IDENTIFIER "${rel}" id)
    set(src "${CMAKE_BINARY_DIR}/check_headers/${id}.cc")
    file(CONFIGURE OUTPUT "${src}" CONTENT "#include <${rel}>\n")
    list(APPEND srcs "${src}")
  endforeach()
  add_library(qcloud_check_headers OBJECT EXCLUDE_FROM_ALL ${srcs})
  foreach(c IN LISTS components)
    target_link_libraries(qcloud_check_headers PRIVATE qcloud::${c} $<BUILD_INTERFACE:qcloud::warnings>)
  endforeach()
endfunction()
