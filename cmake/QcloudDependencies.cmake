# The one table of qcloud's third-party dependencies. For each: the CMake
# target the build links, the lines the installed qcloudConfig.cmake runs to
# find it again, its pkg-config module (for the .pc files' Requires), extra
# link flags, and its Conan reference (checked against conanfile.py by the
# test package/conan_components_match_cmake). qcloud_add_library() takes
# names from this table and expands them into all four places.
#
# All come from Debian 12 packages (scripts/install-deps.sh); under Conan,
# liburing and xxHash are CMake config packages, on Debian pkg-config modules:
# the target chosen here decides which find lines the installed config runs.

find_package(Boost 1.81...<1.82 CONFIG REQUIRED COMPONENTS json url program_options)
find_package(fmt CONFIG REQUIRED)
find_package(OpenSSL REQUIRED)
find_package(zstd CONFIG REQUIRED)
find_package(Threads REQUIRED)
find_package(pugixml CONFIG REQUIRED)
find_package(PkgConfig REQUIRED)

set_property(GLOBAL PROPERTY QCLOUD_DEPENDENCIES "")

# qcloud_dependency(<name> TARGET <t> [FIND <line>...] [PKG <module>]
#                   [LIBS <flags>...] [CONAN <ref>])
function(qcloud_dependency name)
  cmake_parse_arguments(A "" "TARGET;PKG;CONAN" "FIND;LIBS" ${ARGN})
  foreach(field TARGET PKG CONAN FIND LIBS)
    set_property(GLOBAL PROPERTY QCLOUD_DEP_${name}_${field} "${A_${field}}")
  endforeach()
  set_property(GLOBAL APPEND PROPERTY QCLOUD_DEPENDENCIES ${name})
endfunction()

# Debian ships zstd's shared target only; Conan names it by its linkage.
if(TARGET zstd::libzstd_shared)
  set(_zstd zstd::libzstd_shared)
else()
  set(_zstd zstd::libzstd_static)
endif()

# A library that is a CMake config package under Conan and a pkg-config
# module on Debian: sets <prefix>_target and <prefix>_find (the installed
# config's lines) to whichever was found, so the export and the find agree.
#   _qcloud_config_or_pkg(<prefix> <package> <config target> <pc module> <pc version>)
macro(_qcloud_config_or_pkg prefix package config_target module version)
  find_package(${package} CONFIG QUIET)
  if(TARGET ${config_target})
    set(${prefix}_target ${config_target})
    set(${prefix}_find "find_dependency(${package} CONFIG)")
  else()
    pkg_check_modules(${module} REQUIRED IMPORTED_TARGET ${module}${version})
    set(${prefix}_target PkgConfig::${module})
    set(${prefix}_find "find_dependency(PkgConfig)"
                       "pkg_check_modules(${module} REQUIRED IMPORTED_TARGET ${module})")
  endif()
endmacro()
_qcloud_config_or_pkg(_uring liburing liburing::liburing liburing ">=2.0")
_qcloud_config_or_pkg(_xxhash xxHash xxHash::xxhash libxxhash ">=0.8")
_qcloud_config_or_pkg(_lmdb lmdb lmdb::lmdb lmdb "")

qcloud_dependency(threads TARGET Threads::Threads FIND "find_dependency(Threads)"
                  LIBS -lpthread CONAN "")
qcloud_dependency(boost TARGET Boost::headers FIND "find_dependency(Boost 1.81 CONFIG)"
                  CONAN boost::headers)
qcloud_dependency(fmt TARGET fmt::fmt FIND "find_dependency(fmt CONFIG)" PKG fmt CONAN fmt::fmt)
qcloud_dependency(openssl TARGET OpenSSL::Crypto FIND "find_dependency(OpenSSL)" PKG libcrypto
                  CONAN openssl::crypto)
qcloud_dependency(zstd TARGET ${_zstd} FIND "find_dependency(zstd CONFIG)" PKG libzstd
                  CONAN zstd::zstdlib)
qcloud_dependency(liburing TARGET ${_uring_target} FIND ${_uring_find} PKG liburing
                  CONAN liburing::liburing)
qcloud_dependency(xxhash TARGET ${_xxhash_target} FIND ${_xxhash_find} PKG libxxhash
                  CONAN xxhash::xxhash)
qcloud_dependency(lmdb TARGET ${_lmdb_target} FIND ${_lmdb_find} PKG lmdb CONAN lmdb::lmdb)
qcloud_dependency(pugixml TARGET pugixml::pugixml FIND "find_dependency(pugixml CONFIG)" PKG pugixml
                  CONAN pugixml::pugixml)
# libnbd (Debian libnbd-dev): the block store's NBD replicas. Optional: a
# build without it refuses nbd:// replicas (there is no Conan package).
pkg_check_modules(libnbd QUIET IMPORTED_TARGET libnbd)
if(TARGET PkgConfig::libnbd)
  qcloud_dependency(libnbd TARGET PkgConfig::libnbd
                    FIND "find_dependency(PkgConfig)" "pkg_check_modules(libnbd REQUIRED IMPORTED_TARGET libnbd)"
                    PKG libnbd CONAN "")
endif()
# RE2 (Debian libre2-dev): the monitor's regex label matchers, as in PromQL.
pkg_check_modules(re2 REQUIRED IMPORTED_TARGET re2)
qcloud_dependency(re2 TARGET PkgConfig::re2
                  FIND "find_dependency(PkgConfig)" "pkg_check_modules(re2 REQUIRED IMPORTED_TARGET re2)"
                  PKG re2 CONAN re2::re2)
# Protocol Buffers (lite runtime; Debian libprotobuf-dev, protobuf-compiler)
# and snappy (libsnappy-dev): Prometheus remote-write bodies in the monitor.
find_package(Protobuf REQUIRED)
qcloud_dependency(protobuf TARGET protobuf::libprotobuf-lite FIND "find_dependency(Protobuf)"
                  PKG protobuf-lite CONAN protobuf::libprotobuf-lite)
find_package(Snappy CONFIG REQUIRED)
qcloud_dependency(snappy TARGET Snappy::snappy FIND "find_dependency(Snappy CONFIG)" CONAN snappy::snappy)
# Boost.JSON (compiled; Debian libboost-json1.81-dev): the monitor's JSON pushes.
qcloud_dependency(boost_json TARGET Boost::json FIND "find_dependency(Boost 1.81 CONFIG COMPONENTS json)"
                  CONAN boost::json)
# yaml-cpp (Debian libyaml-cpp-dev): the monitor's configuration, in
# Prometheus's rule-file and Alertmanager's YAML.
find_package(yaml-cpp CONFIG REQUIRED)
qcloud_dependency(yaml_cpp TARGET yaml-cpp FIND "find_dependency(yaml-cpp CONFIG)" PKG yaml-cpp
                  CONAN yaml-cpp::yaml-cpp)
qcloud_dependency(doctest TARGET doctest::doctest FIND "find_dependency(doctest CONFIG)"
                  CONAN doctest::doctest)

# Targets for code outside the libraries (tests, examples, benchmarks).
set(QCLOUD_ZSTD ${_zstd})
set(QCLOUD_LIBURING ${_uring_target})
set(QCLOUD_XXHASH ${_xxhash_target})
set(QCLOUD_LMDB ${_lmdb_target})
