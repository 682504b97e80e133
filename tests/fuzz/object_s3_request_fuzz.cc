// Fuzzes the S3 service's request path: routing, query and header parsing,
// the XML bodies (CompleteMultipartUpload, Delete, CreateBucketConfiguration,
// RefererConfiguration), ranges, conditions and aws-chunked bodies. Input:
//   line 1: method; line 2: target; then "name: value" header lines; an
//   empty line; the body.
// A first byte 'S' makes the fuzzer sign the request (SigV4 header,
// UNSIGNED-PAYLOAD unless the input names x-amz-content-sha256) as user
// alice, so that inputs get past authentication. The store lives in memory
// and is renewed every 256 inputs to bound memory.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "qcloud/object/sigv4.h"
#include "qcloud/testing/mem_env.h"
#include "s3/service.h"

using namespace qcloud;
using namespace qcloud::object;

namespace {

struct World {
  World() {
    char tmpl[] = "/tmp/qcloud-s3fuzz-XXXXXX";
    dir = ::mkdtemp(tmpl);
    store = ObjectStore::Open({.disks = {"/d0"},
                               .index_dir = dir,
                               .env = &env,
                               .chunk_bytes = 4096,
                               .volume_bytes = 1 << 20,
                               .index_map_bytes = 64 << 20,
                               .clock = &clock})
                .value();
    (void)store->index().CreateBucket("alice", "photos");
    options.users = {{"alice", "AKIAALICE", "secret"}, {"bob", "AKIABOB", "secret2"}};
    options.clock = &clock;
    options.max_object_bytes = 1 << 20;
    service = std::make_unique<s3::Service>(*store, options, counters);
  }
  ~World() {
    service.reset();
    store.reset();
    std::filesystem::remove_all(dir);
  }
  testing::MemEnv env;
  ManualClock clock;
  std::string dir;
  std::unique_ptr<ObjectStore> store;
  S3ServerOptions options;
  s3::Counters counters;
  std::unique_ptr<s3::Service> service;
};

std::unique_ptr<World> world;
int runs = 0;

std::string_view Line(std::string_view& in) {
  const size_t nl = in.find('\n');
  std::string_view line = in.substr(0, nl);
  in = nl == std::string_view::npos ? std::string_view() : in.substr(nl + 1);
  return line;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 32768) return 0;
  if (!world || ++runs % 256 == 0) {
    world.reset();
    world = std::make_unique<World>();
  }
  std::string_view in(reinterpret_cast<const char*>(data), size);
  bool sign = false;
  if (!in.empty() && in[0] == 'S') {
    sign = true;
    in.remove_prefix(1);
  }
  s3::HttpRequest req;
  req.method = std::string(Line(in));
  req.target = std::string(Line(in));
  while (!in.empty() && req.headers.size() < 32) {
    const std::string_view line = Line(in);
    if (line.empty()) break;
    const size_t colon = line.find(':');
    std::string name(line.substr(0, colon));
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string_view raw = colon == std::string_view::npos ? std::string_view() : line.substr(colon + 1);
    while (!raw.empty() && raw.front() == ' ') raw.remove_prefix(1);
    std::string value(raw);
    req.headers.emplace_back(std::move(name), std::move(value));
  }
  const std::string_view body = in;
  if (sign) {
    const std::string amz = "20140101T000000Z";
    std::string payload = "UNSIGNED-PAYLOAD";
    if (const std::string* p = req.Header("x-amz-content-sha256")) payload = *p;
    else req.headers.emplace_back("x-amz-content-sha256", payload);
    req.headers.emplace_back("x-amz-date", amz);
    req.headers.emplace_back("host", "127.0.0.1");
    std::vector<std::string> names;
    for (auto& [n, v] : req.headers) names.push_back(n);
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());
    const size_t q = req.target.find('?');
    sigv4::Request sr{.method = req.method,
                      .path = std::string_view(req.target).substr(0, q),
                      .query = q == std::string::npos ? std::string_view() : std::string_view(req.target).substr(q + 1),
                      .headers = req.headers};
    const std::string scope = "20140101/us-east-1/s3/aws4_request";
    const std::string sig = sigv4::Signature(sigv4::SigningKey("secret", "20140101", "us-east-1", "s3"),
                                             sigv4::StringToSign(amz, scope, sigv4::CanonicalRequest(sr, names, payload, false)));
    std::string list;
    for (const auto& n : names) list += (list.empty() ? "" : ";") + n;
    req.headers.emplace_back("authorization", "AWS4-HMAC-SHA256 Credential=AKIAALICE/" + scope +
                                                  ",SignedHeaders=" + list + ",Signature=" + sig);
  }
  auto call = world->service->Begin(std::move(req));
  if (call->wants_body()) {
    // In two pieces, to cross the decoders' piece boundaries.
    const size_t half = body.size() / 2;
    if (call->Feed(ByteView(body.substr(0, half))).ok()) (void)call->Feed(ByteView(body.substr(half)));
  }
  s3::HttpResponse r = call->Finish();
  if (r.status < 100 || r.status > 599) std::abort();
  if (r.object) {
    if (r.offset + r.length > r.object->size) std::abort();
    (void)world->store->Read(*r.object, r.offset, r.length);
  }
  return 0;
}
