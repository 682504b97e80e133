#pragma once

// AWS Signature Version 4 for S3, the server's side: rebuild the canonical
// request from what arrived, sign it with the caller's secret key and
// compare, for the Authorization header and for presigned URLs.
//
//   sigv4::Request req{.method = "GET", .path = "/photos/a.jpg", .query = "", .headers = ...};
//   auto who = sigv4::Verify(req, [&](std::string_view key) { return users.SecretOf(key); },
//                            clock.WallNow());
//   if (!who.ok()) ...  // object::Errc::kSignatureDoesNotMatch, kRequestTimeTooSkewed, ...
//
// Canonicalisation follows S3 (not the other services): the path is
// percent-decoded once and re-encoded with every byte but A-Z a-z 0-9 - _ .
// ~ and '/' escaped, never normalised ("a/../b" stays); query parameters are
// decoded, re-encoded the same way ('/' escaped too) and sorted; header
// values are trimmed with inner runs of spaces folded to one.
//
// Bounds: headers and query are what the HTTP layer already bounded; a
// signed-header list over 64 names or an Authorization over 4 KiB is
// refused as malformed.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "qcloud/core/bytes.h"
#include "qcloud/core/clock.h"
#include "qcloud/core/export.h"
#include "qcloud/core/hash.h"
#include "qcloud/core/result.h"
#include "qcloud/core/status.h"
#include "qcloud/object/errc.h"

namespace qcloud::object::sigv4 {

struct Request {
  std::string_view method;  // "GET", "PUT", ...
  std::string_view path;    // as received: percent-encoded, without the query
  std::string_view query;   // as received, without '?'
  std::vector<std::pair<std::string, std::string>> headers;  // any case, values as received
};

// The parsed "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...".
struct Authorization {
  std::string access_key;
  std::string date;     // YYYYMMDD of the credential scope
  std::string region;
  std::string service;  // "s3"
  std::vector<std::string> signed_headers;  // lower case, sorted
  std::string signature;                    // 64 hex digits
};

// Errors: object::Errc::kAuthorizationMalformed.
QCLOUD_EXPORT Result<Authorization> ParseAuthorization(std::string_view header);

// The pieces, exposed for tests, clients and the fuzzer.
QCLOUD_EXPORT std::string UriEncode(std::string_view decoded, bool encode_slash);
// Percent-decoding; nullopt for a malformed escape.
QCLOUD_EXPORT std::optional<std::string> UriDecode(std::string_view encoded);
QCLOUD_EXPORT std::string CanonicalQuery(std::string_view query, bool drop_signature);
QCLOUD_EXPORT std::string CanonicalRequest(const Request& request,
                                           const std::vector<std::string>& signed_headers,
                                           std::string_view payload_hash, bool presigned);
QCLOUD_EXPORT std::string StringToSign(std::string_view amz_date, std::string_view scope,
                                       std::string_view canonical_request);
QCLOUD_EXPORT Sha256Digest SigningKey(std::string_view secret, std::string_view date,
                                      std::string_view region, std::string_view service);
// Hex HMAC-SHA256 of the string to sign.
QCLOUD_EXPORT std::string Signature(const Sha256Digest& key, std::string_view string_to_sign);

// Looks up a secret key; nullopt = no such access key.
using SecretLookup = std::function<std::optional<std::string>(std::string_view access_key)>;

struct Verified {
  std::string access_key;
  std::string payload_hash;  // x-amz-content-sha256 (hex, UNSIGNED-PAYLOAD, STREAMING-...)
  std::string region;
  bool presigned = false;
  // What a STREAMING-AWS4-HMAC-SHA256-PAYLOAD body's chunks are signed with
  // (filled only when payload_hash names a STREAMING- mode).
  std::string amz_date;   // x-amz-date
  std::string scope;      // date/region/service/aws4_request
  std::string signature;  // the request's: the first chunk's "previous signature"
  Sha256Digest signing_key{};
};

// Signing keys by (access key, date, region, service): a key is four
// HMACs to derive and changes once a day, so a server keeps them. Bounded
// (forgets everything past 4096 keys); thread-safe.
class QCLOUD_EXPORT SigningKeyCache {
 public:
  SigningKeyCache();
  ~SigningKeyCache();
  SigningKeyCache(const SigningKeyCache&) = delete;
  SigningKeyCache& operator=(const SigningKeyCache&) = delete;
  Sha256Digest Get(std::string_view access_key, std::string_view secret, std::string_view date,
                   std::string_view region, std::string_view service);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Checks a request signed in its Authorization header or by a presigned
// URL. `now` is the server's wall clock. Errors (object::Errc):
// kAuthorizationMalformed, kInvalidAccessKeyId, kSignatureDoesNotMatch,
// kRequestTimeTooSkewed (header more than 15 minutes off), kRequestExpired
// (presigned URL past X-Amz-Expires), kAccessDenied (no signature at all).
// `cache` (optional) keeps derived signing keys between calls.
QCLOUD_EXPORT Result<Verified> Verify(const Request& request, const SecretLookup& secrets,
                                      WallTime now, SigningKeyCache* cache = nullptr);

// Adds the query parameters of a presigned GET (host signed) valid for
// `expires`; returns the query string to append after '?'. For tests and
// tools; S3 clients do this themselves.
QCLOUD_EXPORT std::string Presign(const Request& request, std::string_view access_key,
                                  std::string_view secret, std::string_view region,
                                  WallTime now, std::chrono::seconds expires);

// The payload modes of x-amz-content-sha256 a body may arrive in.
inline constexpr std::string_view kStreamingSigned = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
inline constexpr std::string_view kStreamingUnsignedTrailer = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";
inline constexpr std::string_view kStreamingSignedTrailer = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";

// Decodes an aws-chunked body ("<hex size>;chunk-signature=<sig>\r\n<data>\r\n"
// ... a zero-size chunk, then optional trailer lines and "\r\n"), checking
// each chunk's signature against the chain that starts at the request's
// signature (signed modes) and handing the data on as it arrives. Feed it
// the body in pieces of any size; Finish() says whether it ended properly.
//
// Bounds: a chunk header line or trailer line over 4 KiB, a chunk over
// 64 MiB, more than 16 trailer lines: kAuthorizationMalformed (S3 answers
// such bodies with 400). A bad chunk signature: kSignatureDoesNotMatch.
// Data after the final chunk is an error too.
class QCLOUD_EXPORT ChunkedPayloadDecoder {
 public:
  using Sink = std::function<Status(ByteView data)>;
  // `verified` from Verify(); `mode` is its payload_hash (one of the three
  // streaming modes above).
  ChunkedPayloadDecoder(const Verified& verified, std::string_view mode, Sink sink);
  Status Feed(ByteView bytes);
  // Ok when the final chunk (and its trailers) arrived.
  Status Finish() const;
  uint64_t decoded_bytes() const noexcept { return decoded_; }
  // Trailer lines ("name:value"), e.g. x-amz-checksum-crc32.
  const std::vector<std::pair<std::string, std::string>>& trailers() const noexcept { return trailers_; }

 private:
  enum class State { kHeader, kData, kDataEnd, kTrailer, kDone, kFailed };
  Status OnHeader(std::string_view line);
  Status OnChunkEnd();
  Status Fail(Status s);

  Sink sink_;
  bool signed_;
  bool trailer_;
  std::string amz_date_, scope_, previous_;
  Sha256Digest key_{};
  State state_ = State::kHeader;
  std::string line_;
  uint64_t remaining_ = 0;
  bool last_chunk_ = false;
  std::string chunk_signature_;
  Sha256Hasher chunk_hash_;
  uint64_t decoded_ = 0;
  std::vector<std::pair<std::string, std::string>> trailers_;
  Status failure_;
};

}  // namespace qcloud::object::sigv4
