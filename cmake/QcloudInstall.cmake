# Install rules: headers, libraries, one export file per component (namespace
# qcloud::), qcloudConfig.cmake with COMPONENTS, and a qcloud-<c>.pc each.
include(CMakePackageConfigHelpers)
set(QCLOUD_CMAKE_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/qcloud")

get_property(components GLOBAL PROPERTY QCLOUD_COMPONENTS)
# The .pc files find the prefix relative to themselves, so an installed tree
# can be moved (cmake --install --prefix anywhere).
file(RELATIVE_PATH QCLOUD_PC_PREFIX_REL "/x/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/x")
set(QCLOUD_COMPONENT_BLOCKS "")
foreach(c IN LISTS components)
  get_property(dir GLOBAL PROPERTY QCLOUD_${c}_DIR)
  get_property(finds GLOBAL PROPERTY QCLOUD_${c}_FIND_DEPENDENCIES)
  get_property(cdeps GLOBAL PROPERTY QCLOUD_${c}_COMPONENT_DEPS)
  get_property(pc_requires GLOBAL PROPERTY QCLOUD_${c}_PC_REQUIRES)
  get_property(pc_requires_private GLOBAL PROPERTY QCLOUD_${c}_PC_REQUIRES_PRIVATE)
  get_property(pc_libs GLOBAL PROPERTY QCLOUD_${c}_PC_LIBS)

  install(DIRECTORY "${dir}/include/" DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}"
          FILES_MATCHING PATTERN "*.h")
  install(TARGETS qcloud_${c} EXPORT qcloud-${c}-targets
          LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}"
          ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}"
          RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}"
          INCLUDES DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
  install(EXPORT qcloud-${c}-targets NAMESPACE qcloud::
          DESTINATION "${QCLOUD_CMAKE_DIR}")

  # The block the package config runs for this component: first what the
  # component links against, then its imported targets.
  string(APPEND QCLOUD_COMPONENT_BLOCKS
    "set(_qcloud_deps_${c} \"${cdeps}\")\n"
    "macro(_qcloud_find_${c})\n")
  foreach(f IN LISTS finds)
    string(APPEND QCLOUD_COMPONENT_BLOCKS "  ${f}\n")
  endforeach()
  string(APPEND QCLOUD_COMPONENT_BLOCKS "endmacro()\n")

  # pkg-config: shared libs need only -lqcloud-<c>; static archives also need
  # their dependencies, which Requires.private/Libs.private carry.
  set(QCLOUD_PC_NAME ${c})
  # Requires: other components and what the headers expose; the rest only
  # for static linking.
  set(QCLOUD_PC_REQUIRES "")
  foreach(d IN LISTS cdeps pc_requires)
    string(APPEND QCLOUD_PC_REQUIRES " ")
    if(d IN_LIST components)
      string(APPEND QCLOUD_PC_REQUIRES "qcloud-")
    endif()
    string(APPEND QCLOUD_PC_REQUIRES "${d}")
  endforeach()
  string(REPLACE ";" " " QCLOUD_PC_REQUIRES_PRIVATE "${pc_requires_private}")
  string(REPLACE ";" " " QCLOUD_PC_LIBS_PRIVATE "${pc_libs}")
  configure_file("${CMAKE_CURRENT_LIST_DIR}/qcloud.pc.in"
                 "${CMAKE_CURRENT_BINARY_DIR}/pkgconfig/qcloud-${c}.pc" @ONLY)
  install(FILES "${CMAKE_CURRENT_BINARY_DIR}/pkgconfig/qcloud-${c}.pc"
          DESTINATION "${CMAKE_INSTALL_LIBDIR}/pkgconfig")
endforeach()

set(QCLOUD_ALL_COMPONENTS "${components}")
configure_package_config_file(
  "${CMAKE_CURRENT_LIST_DIR}/qcloudConfig.cmake.in"
  "${CMAKE_CURRENT_BINARY_DIR}/qcloudConfig.cmake"
  INSTALL_DESTINATION "${QCLOUD_CMAKE_DIR}")
write_basic_package_version_file(
  "${CMAKE_CURRENT_BINARY_DIR}/qcloudConfigVersion.cmake"
  COMPATIBILITY SameMinorVersion)
install(FILES "${CMAKE_CURRENT_BINARY_DIR}/qcloudConfig.cmake"
              "${CMAKE_CURRENT_BINARY_DIR}/qcloudConfigVersion.cmake"
        DESTINATION "${QCLOUD_CMAKE_DIR}")
