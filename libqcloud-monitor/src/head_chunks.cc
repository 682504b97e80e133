#include "monitor/head_chunks.h"

#include <sys/mman.h>


#include <fmt/format.h>


namespace qcloud::monitor::detail {

Result<std::unique_ptr<HeadChunkFiles>> HeadChunkFiles::Open(Env& env, const std::string& dir) {
  QCLOUD_RETURN_IF_ERROR(env.CreateDirs(dir));
  QCLOUD_ASSIGN_OR_RETURN(std::vector<std::string> names, env.ListDir(dir));
  for (const std::string& name : names) QCLOUD_RETURN_IF_ERROR(env.RemoveFile(JoinPath(dir, name)));
  // Mappable only where files have descriptors: try one.
  const std::string probe = JoinPath(dir, "probe");
  QCLOUD_ASSIGN_OR_RETURN(auto f, env.OpenFile(probe, OpenMode::kTruncate));
  const bool mappable = f->native_handle() >= 0;
  f.reset();
  QCLOUD_RETURN_IF_ERROR(env.RemoveFile(probe));
  if (!mappable) return std::unique_ptr<HeadChunkFiles>();
  return std::unique_ptr<HeadChunkFiles>(new HeadChunkFiles(env, dir));
}

HeadChunkFiles::~HeadChunkFiles() {
  for (uint32_t i = 0; i < kSlots; ++i) {
    if (maps_[i].base == nullptr) continue;
    ::munmap(maps_[i].base, kFileBytes);
    const std::string path = maps_[i].file->path();
    maps_[i].file.reset();
    (void)env_.RemoveFile(path);
  }
}

std::string HeadChunkFiles::PathOf(uint32_t file) const { return JoinPath(dir_, fmt::format("{:08}", file)); }

bool HeadChunkFiles::StartFile() {
  const uint32_t next = current_ + 1;
  Mapped& m = maps_[next % kSlots];
  if (next == 0 || m.base != nullptr) return false;  // wrapped, or the slot's file still has chunks
  auto f = env_.OpenFile(PathOf(next), OpenMode::kTruncate);
  if (!f.ok()) return false;
  // Mapped past its end: the file grows as chunks are written, and only
  // written bytes are ever read (a page past the end would be SIGBUS).
  void* base = ::mmap(nullptr, kFileBytes, PROT_READ, MAP_SHARED, (*f)->native_handle(), 0);
  if (base == MAP_FAILED) {
    (void)env_.RemoveFile(PathOf(next));
    return false;
  }
  // The file being written counts one chunk more until the next one starts.
  const uint32_t old = current_;
  m = Mapped{.base = static_cast<char*>(base), .chunks = 1, .file = std::move(*f)};
  bases_[next % kSlots].store(m.base, std::memory_order_release);
  ++live_files_;
  current_ = next;
  cursor_ = 0;
  if (old != 0) Release(Ref{.file = old, .offset = 0});
  return true;
}

bool HeadChunkFiles::Write(std::span<const uint8_t> bytes, Ref& ref) {
  if (bytes.empty() || bytes.size() > kFileBytes) return false;
  if (current_ == 0 || cursor_ + bytes.size() > kFileBytes) {
    if (!StartFile()) return false;
  }
  Mapped& m = maps_[current_ % kSlots];
  // Written, not copied into the mapping: a full disk is an error here
  // (the chunk stays in memory), where a store into a mapped hole would be
  // SIGBUS; and the pages are in no one's RSS until a query reads them.
  if (!m.file->WriteAt(cursor_, ByteView(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size())).ok()) {
    return false;
  }
  ref = Ref{.file = current_, .offset = static_cast<uint32_t>(cursor_)};
  cursor_ += bytes.size();
  ++m.chunks;
  return true;
}

std::span<const uint8_t> HeadChunkFiles::Read(Ref ref, uint32_t len) const noexcept {
  const char* base = bases_[ref.file % kSlots].load(std::memory_order_acquire);
  return {reinterpret_cast<const uint8_t*>(base + ref.offset), len};
}

void HeadChunkFiles::Release(Ref ref) noexcept {
  if (ref.file == 0) return;
  Mapped& m = maps_[ref.file % kSlots];
  if (--m.chunks == 0) Drop(ref.file);
}

void HeadChunkFiles::Drop(uint32_t file) noexcept {
  Mapped& m = maps_[file % kSlots];
  bases_[file % kSlots].store(nullptr, std::memory_order_release);
  ::munmap(m.base, kFileBytes);
  m.base = nullptr;
  m.file.reset();
  (void)env_.RemoveFile(PathOf(file));
  --live_files_;
}

void HeadChunkFiles::UnmapPages() noexcept {
  for (uint32_t i = 0; i < kSlots; ++i) {
    if (maps_[i].base != nullptr) ::madvise(maps_[i].base, kFileBytes, MADV_DONTNEED);
  }
}

}  // namespace qcloud::monitor::detail
