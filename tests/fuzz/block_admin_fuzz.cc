// Fuzzes the block admin protocol: request lines through RunAdminCommand on
// a real Store (one per process, in a temp directory, made at the first
// input), and the raw input as a reply through ParseAdminReply. Checks,
// besides ASan/UBSan: every reply is data lines (each with a tab, no other
// control byte) then one final line, OK or ERR with a known code; it parses
// back with ParseAdminReply to the same data; a line that is not a request
// (too long, control bytes, empty) is ERR invalid_argument; a failed
// command prints no data.
//
// Sizes are bounded so the fuzzer cannot make the store big: a create or
// resize above kMaxFuzzSize is skipped (thin volumes cost no data, but each
// 1 MiB extent of one costs map entries), and the store is emptied when it
// holds more than kMaxVolumes volumes.
#include <stdlib.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "qcloud/block/admin.h"
#include "qcloud/block/store.h"
#include "qcloud/core/units.h"

using namespace qcloud;
using namespace qcloud::block;

#define FUZZ_ASSERT(cond)      \
  do {                         \
    if (!(cond)) std::abort(); \
  } while (0)

namespace {

constexpr uint64_t kMaxFuzzSize = uint64_t{64} << 20;
constexpr size_t kMaxVolumes = 32;

// The store and its directory, removed at exit (libFuzzer exits through
// exit(), so statics are destroyed).
struct FuzzStore {
  FuzzStore() {
    char tmpl[] = "/tmp/qcloud-block-admin-fuzz-XXXXXX";
    FUZZ_ASSERT(::mkdtemp(tmpl) != nullptr);
    dir = tmpl;
    auto s = Store::Open({.data_dir = dir});
    FUZZ_ASSERT(s.ok());
    store = std::move(s).value();
  }
  ~FuzzStore() {
    store.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  std::string dir;
  std::unique_ptr<Store> store;
};

Store& TheStore() {
  static FuzzStore s;
  return *s.store;
}

std::vector<std::string_view> Words(std::string_view line) {
  std::vector<std::string_view> words;
  size_t i = 0;
  while ((i = line.find_first_not_of(' ', i)) != std::string_view::npos) {
    const size_t end = std::min(line.find(' ', i), line.size());
    words.push_back(line.substr(i, end - i));
    i = end;
  }
  return words;
}

bool IsControl(char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }

void CheckReply(std::string_view line, const std::string& reply) {
  FUZZ_ASSERT(!reply.empty() && reply.back() == '\n');
  auto parsed = ParseAdminReply(reply);
  FUZZ_ASSERT(parsed.ok());
  FUZZ_ASSERT(reply.starts_with(parsed->data));
  for (char c : reply) FUZZ_ASSERT(c == '\t' || c == '\n' || !IsControl(c));
  const std::string_view final_line =
      std::string_view(reply).substr(parsed->data.size(), reply.size() - parsed->data.size() - 1);
  if (parsed->status.ok()) {
    FUZZ_ASSERT(final_line == "OK");
  } else {
    // Known codes only: an unknown one would parse as kIoError with the
    // name in the message.
    FUZZ_ASSERT(parsed->status.code().category() == CoreCategory() ||
                parsed->status.code().category() == std::system_category());
    FUZZ_ASSERT(parsed->data.empty());
  }
  bool malformed = line.size() > kMaxAdminLineBytes || Words(line).empty();
  for (char c : line) malformed |= IsControl(c);
  if (malformed) FUZZ_ASSERT(reply.starts_with("ERR invalid_argument "));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  // Any bytes as a reply: parsed or refused, never a crash.
  (void)ParseAdminReply(input);

  // Bound what the store may be asked to make.
  const std::vector<std::string_view> words = Words(input);
  if (words.size() == 3 && (words[0] == "create" || words[0] == "resize")) {
    auto size_arg = ParseByteSize(words[2]);
    if (size_arg.ok() && *size_arg > kMaxFuzzSize) return 0;
  }
  Store& store = TheStore();
  CheckReply(input, RunAdminCommand(store, input));
  if (store.ListVolumes().size() > kMaxVolumes) {
    for (const VolumeInfo& v : store.ListVolumes()) FUZZ_ASSERT(store.DeleteVolume(v.name).ok());
  }
  return 0;
}
