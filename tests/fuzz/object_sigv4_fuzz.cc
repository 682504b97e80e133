// Fuzzes SigV4 verification with attacker-controlled pieces: the input's
// lines become the path, the query, the Authorization header, x-amz-date
// and x-amz-content-sha256. Verify must answer (an error or not), never
// crash; UriDecode/UriEncode must round-trip what decodes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "qcloud/object/sigv4.h"

using namespace qcloud;
using namespace qcloud::object;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 16384) return 0;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> lines;
  while (lines.size() < 5) {
    const size_t nl = in.find('\n');
    lines.emplace_back(in.substr(0, nl));
    if (nl == std::string_view::npos) break;
    in.remove_prefix(nl + 1);
  }
  lines.resize(5);
  sigv4::Request r;
  r.method = "GET";
  r.path = lines[0];
  r.query = lines[1];
  r.headers = {{"Host", "127.0.0.1:9000"}, {"Authorization", lines[2]}, {"x-amz-date", lines[3]},
               {"x-amz-content-sha256", lines[4]}};
  if (lines[2].empty()) r.headers.erase(r.headers.begin() + 1);
  auto lookup = [](std::string_view key) -> std::optional<std::string> {
    if (key == "AKIAIOSFODNN7EXAMPLE") return std::string("secret");
    return std::nullopt;
  };
  (void)sigv4::Verify(r, lookup, WallTime(std::chrono::seconds(1369353600)));
  if (auto decoded = sigv4::UriDecode(lines[0])) {
    auto again = sigv4::UriDecode(sigv4::UriEncode(*decoded, false));
    if (!again || *again != *decoded) std::abort();
  }
  return 0;
}
