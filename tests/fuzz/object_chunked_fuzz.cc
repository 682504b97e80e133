// Fuzzes the aws-chunked decoder (sigv4::ChunkedPayloadDecoder): the input
// is a body fed in two ways, whole and in pieces whose sizes come from its
// first byte; both must reach the same verdict and the same decoded bytes,
// in the unsigned-trailer mode and in the signed mode (AWS's example key).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "qcloud/object/sigv4.h"

using namespace qcloud;
using namespace qcloud::object;

namespace {

struct Outcome {
  bool ok = false;
  std::string data;
};

Outcome Run(const sigv4::Verified& v, std::string_view mode, std::string_view body, size_t piece) {
  Outcome out;
  sigv4::ChunkedPayloadDecoder d(v, mode, [&](ByteView b) {
    out.data.append(b.chars(), b.size());
    return Status::Ok();
  });
  Status s;
  for (size_t at = 0; at < body.size() && s.ok(); at += piece) s = d.Feed(ByteView(body.substr(at, piece)));
  if (s.ok()) s = d.Finish();
  out.ok = s.ok();
  if (out.ok && out.data.size() != d.decoded_bytes()) std::abort();
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > 65536) return 0;
  const size_t piece = 1 + data[0] % 64;
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  sigv4::Verified v;
  v.amz_date = "20130524T000000Z";
  v.scope = "20130524/us-east-1/s3/aws4_request";
  v.signature = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
  v.signing_key = sigv4::SigningKey("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "20130524", "us-east-1", "s3");
  for (std::string_view mode : {sigv4::kStreamingUnsignedTrailer, sigv4::kStreamingSigned}) {
    const Outcome whole = Run(v, mode, body, body.size() + 1);
    const Outcome split = Run(v, mode, body, piece);
    if (whole.ok != split.ok || (whole.ok && whole.data != split.data)) std::abort();
  }
  return 0;
}
