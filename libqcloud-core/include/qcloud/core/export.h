#pragma once

// Symbol visibility. qcloud builds with -fvisibility=hidden; QCLOUD_EXPORT
// marks what a shared libqcloud-*.so exports. On ELF the same attribute is
// correct both when building and when consuming the library.
#if defined(__GNUC__) || defined(__clang__)
#define QCLOUD_EXPORT [[gnu::visibility("default")]]
#else
#define QCLOUD_EXPORT
#endif
