// Fuzzes the NBD server's protocol state machine (handshake options and
// transmission requests) over an in-memory device. The first byte picks how
// the input is cut into socket reads, so framing across every split is
// exercised. Checks, besides ASan/UBSan: the session never consumes more
// than it was given; what it leaves unconsumed while it still wants input
// is at most one incomplete message (an option or a write with its
// payload, never more: oversized ones are skipped, not buffered); the
// replies waiting stay under the high-water mark plus one read.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "block/nbd_proto.h"
#include "block/nbd_session.h"

#include "qcloud/block/nbd_server.h"

using namespace qcloud;
using namespace qcloud::block;

#define FUZZ_ASSERT(cond)      \
  do {                         \
    if (!(cond)) std::abort(); \
  } while (0)

namespace {

constexpr uint32_t kMaxOption = 512;
constexpr uint32_t kMaxRequest = 4096;
constexpr size_t kHighWater = 16 * 1024;

class MemExport final : public Export {
 public:
  explicit MemExport(ExportInfo info) : info_(std::move(info)), data_(info_.size) {}
  const ExportInfo& info() const noexcept override { return info_; }
  Status Read(uint64_t offset, MutableByteView dst) override {
    FUZZ_ASSERT(offset <= data_.size() && dst.size() <= data_.size() - offset);
    std::memcpy(dst.data(), data_.data() + offset, dst.size());
    return Status::Ok();
  }
  Status Write(uint64_t offset, ByteView src, bool) override {
    FUZZ_ASSERT(offset <= data_.size() && src.size() <= data_.size() - offset);
    FUZZ_ASSERT(!info_.read_only);
    std::memcpy(data_.data() + offset, src.data(), src.size());
    return Status::Ok();
  }
  Status Flush() override { return Status::Ok(); }
  Status Trim(uint64_t offset, uint64_t length, bool) override { return Zero(offset, length); }
  Status WriteZeroes(uint64_t offset, uint64_t length, bool, bool) override {
    return Zero(offset, length);
  }

 private:
  Status Zero(uint64_t offset, uint64_t length) {
    FUZZ_ASSERT(offset <= data_.size() && length <= data_.size() - offset);
    FUZZ_ASSERT(!info_.read_only);
    // Every other zeroing fails, so the error paths run too.
    if (++zeroes_ % 2 == 0) return Status(Errc::kResourceExhausted, "full");
    std::memset(data_.data() + offset, 0, length);
    return Status::Ok();
  }
  ExportInfo info_;
  std::vector<std::byte> data_;
  int zeroes_ = 0;
};

class Directory final : public ExportDirectory {
 public:
  Directory()
      : disk_(std::make_shared<MemExport>(
            ExportInfo{.name = "disk", .description = "fuzz", .size = 64 * 1024})),
        ro_(std::make_shared<MemExport>(
            ExportInfo{.name = "ro", .size = 4096, .read_only = true})) {}
  std::vector<ExportInfo> List() override { return {disk_->info(), ro_->info()}; }
  Result<std::shared_ptr<Export>> Open(std::string_view name) override {
    if (name.empty() || name == "disk") return std::shared_ptr<Export>(disk_);
    if (name == "ro") return std::shared_ptr<Export>(ro_);
    return NotFound("no such export");
  }

 private:
  std::shared_ptr<MemExport> disk_, ro_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t chunk = 1 + data[0] % 64;
  ByteView input(data + 1, size - 1);
  Directory dir;
  NbdCounters counters;
  NbdServerOptions options;
  options.max_option_bytes = kMaxOption;
  options.max_request_bytes = kMaxRequest;
  options.output_high_water = kHighWater;
  NbdSession session(dir, options, counters);
  Buffer out;
  session.Start(out);
  out.Clear();
  constexpr size_t kLongestKept =
      std::max(nbd::kOptionHeaderSize + kMaxOption, nbd::kRequestSize + kMaxRequest);
  std::string pending;
  size_t pos = 0;
  while (!session.closing()) {
    const size_t n = std::min(chunk, input.size() - pos);
    pending.append(input.chars() + pos, n);
    pos += n;
    const size_t used = session.Process(ByteView(pending), out);
    FUZZ_ASSERT(used <= pending.size());
    pending.erase(0, used);
    FUZZ_ASSERT(out.size() <= kHighWater + kMaxRequest + 1024);
    const bool wants_more = !session.closing() && !session.blocked(out);
    if (wants_more) FUZZ_ASSERT(pending.size() < kLongestKept);
    out.Clear();  // the client reads everything
    if (pos == input.size() && wants_more) break;
  }
  return 0;
}
