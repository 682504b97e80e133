#pragma once

// Scratch memory kept between requests. Reusing a batch's buffers saves an
// allocation per request, but a burst of large bodies would leave each
// thread holding its largest ever: a few MiB that an idle server pins (and
// that bench/monitor/compare.sh counted as ~570 bytes a series). Buffers
// above kScratchKeepBytes are freed after use; smaller ones (the tables of
// a body of several hundred series) are kept. 128 KiB is also the mmap
// threshold qcloud-monitord fixes: a larger buffer is its own mapping, so
// allocating it again leaves no hole in the heap.

#include <cstddef>
#include <string>
#include <vector>

namespace qcloud::monitor::detail {

inline constexpr size_t kScratchKeepBytes = size_t{128} << 10;

template <class T>
void ReleaseIfOver(std::vector<T>& v, size_t keep = kScratchKeepBytes) noexcept {
  if (v.capacity() * sizeof(T) > keep) std::vector<T>().swap(v);
}

inline void ReleaseIfOver(std::string& s, size_t keep = kScratchKeepBytes) noexcept {
  if (s.capacity() > keep) std::string().swap(s);
}

}  // namespace qcloud::monitor::detail
