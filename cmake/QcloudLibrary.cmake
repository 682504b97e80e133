# qcloud_add_library(<name> SOURCES ... [PUBLIC <dep>...] [PRIVATE <dep>...] [DIR <dir>])
#
# Creates qcloud_<name> (alias qcloud::<name>, file libqcloud-<name>), with the
# public headers in <dir>/include and the private ones in <dir>/src (<dir>
# defaults to the calling directory). Each <dep> is another qcloud component
# (core, runtime, ...) or a name from the dependency table
# (cmake/QcloudDependencies.cmake); the table expands it into the link line,
# the installed package config's find lines, the .pc file's Requires and the
# component list checked against conanfile.py. PUBLIC: the component's
# headers expose it (consumers get it too); PRIVATE: implementation only.
#
# Also creates qcloud_<name>_objects, an object library with the same sources
# that tests link, so internals are testable in shared builds too (hidden
# symbols are not exported from the .so).
set_property(GLOBAL PROPERTY QCLOUD_COMPONENTS "")
set_property(GLOBAL PROPERTY QCLOUD_PUBLIC_HEADERS "")

# Appends to <out> the items of the dependency table's <field> for <dep>.
function(_qcloud_dep_field out dep field)
  get_property(v GLOBAL PROPERTY QCLOUD_DEP_${dep}_${field})
  set(${out} ${${out}} ${v} PARENT_SCOPE)
endfunction()

function(qcloud_add_library name)
  cmake_parse_arguments(A "" "DIR" "SOURCES;PUBLIC;PRIVATE" ${ARGN})
  if(NOT A_DIR)
    set(A_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
  endif()
  set(tgt qcloud_${name})
  get_property(components GLOBAL PROPERTY QCLOUD_COMPONENTS)
  get_property(table GLOBAL PROPERTY QCLOUD_DEPENDENCIES)

  # Expand the names. obj_* link the *_objects of other components, so a
  # test that links several object libraries gets each object file once.
  foreach(v lib_public lib_private obj_public obj_private finds cdeps pc_public pc_private
          pc_libs conan)
    set(${v} "")
  endforeach()
  foreach(scope PUBLIC PRIVATE)
    foreach(d IN LISTS A_${scope})
      string(TOLOWER ${scope} lscope)
      if(d IN_LIST components)
        list(APPEND lib_${lscope} qcloud::${d})
        list(APPEND obj_${lscope} qcloud_${d}_objects)
        list(APPEND cdeps ${d})
        list(APPEND conan ${d})
      elseif(d IN_LIST table)
        set(t "")
        _qcloud_dep_field(t ${d} TARGET)
        list(APPEND lib_${lscope} ${t})
        list(APPEND obj_${lscope} ${t})
        _qcloud_dep_field(finds ${d} FIND)
        if(scope STREQUAL PUBLIC)
          _qcloud_dep_field(pc_public ${d} PKG)
        else()
          _qcloud_dep_field(pc_private ${d} PKG)
        endif()
        _qcloud_dep_field(pc_libs ${d} LIBS)
        _qcloud_dep_field(conan ${d} CONAN)
      else()
        message(FATAL_ERROR "qcloud_add_library(${name}): '${d}' is neither a qcloud component "
                            "(${components}) nor in cmake/QcloudDependencies.cmake (${table})")
      endif()
    endforeach()
  endforeach()
  list(REMOVE_DUPLICATES finds)

  add_library(${tgt}_objects OBJECT ${A_SOURCES})
  target_include_directories(${tgt}_objects
    PUBLIC "${A_DIR}/include"
    PRIVATE "${A_DIR}/src")
  target_link_libraries(${tgt}_objects
    PUBLIC ${obj_public}
    PRIVATE ${obj_private} $<BUILD_INTERFACE:qcloud::warnings>)
  target_compile_features(${tgt}_objects PUBLIC cxx_std_20)
  # A library's own calls to its exported functions may be inlined and
  # bound locally in a shared build too (nobody interposes them): without
  # this, -fPIC sends each through the PLT (the overlay's per-frame parsers).
  target_compile_options(${tgt}_objects PRIVATE
    $<$<CXX_COMPILER_ID:GNU,Clang>:-fno-semantic-interposition>)

  add_library(${tgt} $<TARGET_OBJECTS:${tgt}_objects>)
  add_library(qcloud::${name} ALIAS ${tgt})
  target_include_directories(${tgt} PUBLIC
    "$<BUILD_INTERFACE:${A_DIR}/include>"
    "$<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>")
  target_link_libraries(${tgt} PUBLIC ${lib_public} PRIVATE ${lib_private})
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
  set_property(GLOBAL PROPERTY QCLOUD_${name}_FIND_DEPENDENCIES "${finds}")
  set_property(GLOBAL PROPERTY QCLOUD_${name}_COMPONENT_DEPS "${cdeps}")
  set_property(GLOBAL PROPERTY QCLOUD_${name}_PC_REQUIRES "${pc_public}")
  set_property(GLOBAL PROPERTY QCLOUD_${name}_PC_REQUIRES_PRIVATE "${pc_private}")
  list(REMOVE_DUPLICATES pc_libs)
  set_property(GLOBAL PROPERTY QCLOUD_${name}_PC_LIBS "${pc_libs}")
  list(REMOVE_DUPLICATES conan)
  set_property(GLOBAL PROPERTY QCLOUD_${name}_CONAN "${conan}")
endfunction()

# Writes <file>: one line per component, "<name> <library file> <conan
# requirement>...", what conanfile.py's _components must say
# (tests/package/conan_components.py compares the two).
function(qcloud_write_component_manifest file)
  get_property(components GLOBAL PROPERTY QCLOUD_COMPONENTS)
  set(text "")
  foreach(c IN LISTS components)
    get_property(conan GLOBAL PROPERTY QCLOUD_${c}_CONAN)
    list(SORT conan)
    string(REPLACE ";" " " conan "${conan}")
    string(APPEND text "${c} qcloud-${c} ${conan}\n")
  endforeach()
  file(WRITE "${file}" "${text}")
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
