# Use ccache when present. The sloppiness settings let ccache cache translation
# units that use precompiled headers (and __DATE__-free code) across builds;
# BASEDIR and NOHASHDIR make hits independent of where the tree is checked
# out, so a fresh clone (as in CI) reuses an earlier clone's objects.
if(NOT CMAKE_CXX_COMPILER_LAUNCHER)
  find_program(QCLOUD_CCACHE ccache)
  if(QCLOUD_CCACHE)
    set(CMAKE_CXX_COMPILER_LAUNCHER
        "${CMAKE_COMMAND};-E;env;CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime;CCACHE_BASEDIR=${CMAKE_SOURCE_DIR};CCACHE_NOHASHDIR=1;${QCLOUD_CCACHE}")
  endif()
endif()
