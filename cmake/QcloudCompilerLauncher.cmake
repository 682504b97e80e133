# Use ccache when present. The sloppiness settings let ccache cache translation
# units that use precompiled headers (and __DATE__-free code) across builds.
if(NOT CMAKE_CXX_COMPILER_LAUNCHER)
  find_program(QCLOUD_CCACHE ccache)
  if(QCLOUD_CCACHE)
    set(CMAKE_CXX_COMPILER_LAUNCHER
        "${CMAKE_COMMAND};-E;env;CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime;${QCLOUD_CCACHE}")
  endif()
endif()
