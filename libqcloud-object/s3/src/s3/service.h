#pragma once

// The S3 service without sockets: a request's head goes in, a Call comes
// out that either has its response already or wants the body first. The
// HTTP layer (http.cc, the one Beast translation unit) frames bytes; this
// decides everything else, so the fuzzer and the unit tests drive it
// directly.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "qcloud/core/bytes.h"
#include "qcloud/core/hash.h"
#include "qcloud/core/metrics.h"
#include "qcloud/object/object_store.h"
#include "qcloud/object/s3_server.h"
#include "qcloud/object/sigv4.h"

namespace qcloud::object::s3 {

struct HttpRequest {
  std::string method;  // "GET", as received
  std::string target;  // the request-target, as received
  std::vector<std::pair<std::string, std::string>> headers;  // names lower case
  // The first value of a header (name in lower case), or null.
  const std::string* Header(std::string_view name) const;
};

struct HttpResponse {
  int status = 200;
  // Header lines, "Name: value\r\n" each, in order: one string, so that a
  // response costs one allocation for its headers, not two per header.
  std::string headers;
  // A CR or LF in a value (a response-content-type=%0D%0A... query, say)
  // becomes a space: a value never starts a header of its own.
  void AddHeader(std::string_view name, std::string_view value) {
    const size_t at = headers.size() + name.size() + 2;
    headers.append(name).append(": ").append(value).append("\r\n");
    for (size_t i = headers.find_first_of("\r\n", at); i + 2 < headers.size();
         i = headers.find_first_of("\r\n", i + 1)) {
      headers[i] = ' ';
    }
  }
  // Replaces the first header called `name` (any case), or adds it.
  void SetHeader(std::string_view name, std::string_view value);
  // The first value of header `name` (any case); "" when absent.
  std::string_view HeaderValue(std::string_view name) const;
  std::string body;
  // GET of an object: the bytes [offset, offset + length) of `object`
  // follow instead of `body` (read by the HTTP layer piece by piece).
  std::optional<ObjectMeta> object;
  uint64_t offset = 0;
  uint64_t length = 0;
  bool head = false;   // HEAD: Content-Length says `length`, no bytes follow
  bool close = false;  // close the connection once sent
  uint64_t content_length() const { return object ? length : body.size(); }
};

// Counters shared by every connection.
struct Counters {
  std::atomic<uint64_t> requests{0}, errors{0}, bytes_in{0}, bytes_out{0}, instant_uploads{0};
  std::atomic<int64_t> connections{0};
  CounterFamily* by_op = nullptr;          // qcloud_object_requests_total{op,code}
  HistogramFamily* latency = nullptr;      // qcloud_object_request_seconds{op}
  const MetricsRegistry* registry = nullptr;  // served at GET /metrics to unsigned requests
};

class Service;

// One request in flight. Dropping a Call that wanted a body without
// Finish() means the body never fully arrived: nothing it began becomes
// visible.
class Call {
 public:
  ~Call();
  Call(const Call&) = delete;
  Call& operator=(const Call&) = delete;

  bool wants_body() const noexcept { return wants_body_; }
  // Bytes of the body as they arrive (HTTP framing removed). An error means
  // the request has failed; Finish() answers it and closes the connection.
  Status Feed(ByteView data);
  // The response; after the whole body when wants_body().
  HttpResponse Finish();
  const std::string& operation() const noexcept { return op_; }
  uint64_t received() const noexcept { return received_; }  // body bytes fed so far

 private:
  friend class Service;
  Call() = default;
  HttpResponse Decide();

  enum class Payload { kNone, kSha256, kUnsigned, kChunked };
  Service* service_ = nullptr;
  std::string op_ = "Unknown";
  bool wants_body_ = false;
  std::optional<HttpResponse> ready_;  // decided without (or despite) the body
  std::function<Status(ByteView)> consume_;
  std::function<HttpResponse()> finish_;
  Payload payload_ = Payload::kNone;
  Sha256Hasher sha256_;
  std::string expected_sha256_;
  std::unique_ptr<sigv4::ChunkedPayloadDecoder> chunked_;
  std::optional<uint64_t> decoded_length_;  // x-amz-decoded-content-length
  uint64_t received_ = 0;                   // decoded body bytes
  uint64_t limit_ = 0;                      // most decoded body bytes accepted
  std::string request_id_;
  std::string resource_;  // "/bucket/key", for error bodies
  std::function<HttpResponse(std::string_view code, std::string message)> error_;
};

class Service {
 public:
  Service(ObjectStore& store, const S3ServerOptions& options, Counters& counters);
  ~Service();
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  std::unique_ptr<Call> Begin(HttpRequest request);
  ObjectStore& store() noexcept { return store_; }
  Counters& counters() noexcept { return counters_; }
  // The S3 error response for `code` (its status and standard message).
  HttpResponse Error(std::string_view code, std::string message, std::string_view resource,
                     std::string_view request_id, bool head) const;
  std::string NextRequestId();

  struct Request;  // one request's parsed head (service.cc)

 private:
  HttpResponse Dispatch(Request& r, Call& call);

  ObjectStore& store_;
  S3ServerOptions options_;
  Clock* clock_;
  Counters& counters_;
  sigv4::SigningKeyCache signing_keys_;
  std::atomic<uint64_t> next_id_{1};
  uint64_t id_base_ = 0;
};

}  // namespace qcloud::object::s3
