#include "qcloud/object/sigv4.h"

#include <algorithm>
#include <cctype>
#include <ctime>
#include <mutex>
#include <unordered_map>

#include <fmt/format.h>

#include "qcloud/core/bytes.h"

namespace qcloud::object::sigv4 {

namespace {

constexpr std::string_view kAlgorithm = "AWS4-HMAC-SHA256";
constexpr std::string_view kTerminator = "aws4_request";
constexpr std::string_view kUnsignedPayload = "UNSIGNED-PAYLOAD";
constexpr size_t kMaxAuthorization = 4096;
constexpr size_t kMaxSignedHeaders = 64;
constexpr auto kMaxSkew = std::chrono::minutes(15);
constexpr int64_t kMaxPresignSeconds = 7 * 24 * 3600;  // S3: a week

Status Malformed(std::string msg) { return Status(Errc::kAuthorizationMalformed, std::move(msg)); }

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Trimmed, with runs of spaces folded to one (SigV4's header value rule),
// appended to `out`.
void AppendFolded(std::string& out, std::string_view v) {
  v = Trim(v);
  // The common case: nothing to fold.
  bool plain = true;
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '\t' || (v[i] == ' ' && i + 1 < v.size() && v[i + 1] == ' ')) {
      plain = false;
      break;
    }
  }
  if (plain) {
    out.append(v);
    return;
  }
  bool space = false;
  const size_t start = out.size();
  for (char c : v) {
    if (c == ' ' || c == '\t') {
      space = true;
      continue;
    }
    if (space && out.size() > start) out.push_back(' ');
    space = false;
    out.push_back(c);
  }
}

std::optional<std::string_view> Header(const Request& r, std::string_view lower_name) {
  for (const auto& [name, value] : r.headers) {
    if (EqualsIgnoreCase(name, lower_name)) return value;
  }
  return std::nullopt;
}

// "20130524T000000Z" <-> time.
std::optional<WallTime> ParseAmzDate(std::string_view s) {
  if (s.size() != 16 || s[8] != 'T' || s[15] != 'Z') return std::nullopt;
  auto num = [&](size_t at, size_t n) -> std::optional<int> {
    int v = 0;
    for (size_t i = at; i < at + n; ++i) {
      if (s[i] < '0' || s[i] > '9') return std::nullopt;
      v = v * 10 + (s[i] - '0');
    }
    return v;
  };
  auto y = num(0, 4), mo = num(4, 2), d = num(6, 2), h = num(9, 2), mi = num(11, 2), se = num(13, 2);
  if (!y || !mo || !d || !h || !mi || !se || *mo < 1 || *mo > 12 || *d < 1 || *d > 31 || *h > 23 ||
      *mi > 59 || *se > 60) {
    return std::nullopt;
  }
  std::tm tm{};
  tm.tm_year = *y - 1900;
  tm.tm_mon = *mo - 1;
  tm.tm_mday = *d;
  tm.tm_hour = *h;
  tm.tm_min = *mi;
  tm.tm_sec = *se;
  return WallTime(std::chrono::seconds(::timegm(&tm)));
}

std::string FormatAmzDate(WallTime t) {
  const std::time_t secs = std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

bool ConstantTimeEqual(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

std::vector<std::pair<std::string, std::string>> QueryParams(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> out;
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view piece = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (piece.empty()) continue;
    const size_t eq = piece.find('=');
    out.emplace_back(std::string(piece.substr(0, eq)),
                     eq == std::string_view::npos ? std::string() : std::string(piece.substr(eq + 1)));
  }
  return out;
}

// "AK/20130524/us-east-1/s3/aws4_request".
Status ParseCredential(std::string_view credential, Authorization* a) {
  std::vector<std::string_view> parts;
  size_t from = 0;
  for (size_t i = 0; i <= credential.size(); ++i) {
    if (i == credential.size() || credential[i] == '/') {
      parts.push_back(credential.substr(from, i - from));
      from = i + 1;
    }
  }
  if (parts.size() != 5 || parts[0].empty() || parts[1].size() != 8 || parts[2].empty() ||
      parts[4] != kTerminator) {
    return Malformed(fmt::format("credential '{}' is not <key>/<date>/<region>/s3/aws4_request", credential));
  }
  if (parts[3] != "s3") return Malformed(fmt::format("credential names service '{}', not s3", parts[3]));
  a->access_key = std::string(parts[0]);
  a->date = std::string(parts[1]);
  a->region = std::string(parts[2]);
  a->service = std::string(parts[3]);
  return Status::Ok();
}

Status ParseSignedHeaders(std::string_view list, Authorization* a) {
  a->signed_headers.clear();
  size_t from = 0;
  for (size_t i = 0; i <= list.size(); ++i) {
    if (i == list.size() || list[i] == ';') {
      if (i == from) return Malformed("empty name in SignedHeaders");
      a->signed_headers.push_back(AsciiLower(list.substr(from, i - from)));
      from = i + 1;
      if (a->signed_headers.size() > kMaxSignedHeaders) return Malformed("too many signed headers");
    }
  }
  if (a->signed_headers.empty()) return Malformed("no SignedHeaders");
  if (std::find(a->signed_headers.begin(), a->signed_headers.end(), "host") == a->signed_headers.end()) {
    return Malformed("SignedHeaders must include host");
  }
  return Status::Ok();
}

bool IsHex64(std::string_view s) {
  if (s.size() != 64) return false;
  bool ok = true;  // no early exit: 64 independent tests the compiler can vectorise
  for (char c : s) ok &= (c >= '0' && c <= '9') | (c >= 'a' && c <= 'f');
  return ok;
}

}  // namespace

std::string UriEncode(std::string_view s, bool encode_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size() * 3);
  for (unsigned char c : s) {
    const bool unreserved = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                            c == '-' || c == '_' || c == '.' || c == '~';
    if (unreserved || (c == '/' && !encode_slash)) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::optional<std::string> UriDecode(std::string_view s) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    const int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

std::string CanonicalQuery(std::string_view query, bool drop_signature) {
  std::vector<std::pair<std::string, std::string>> params;
  for (auto& [name, value] : QueryParams(query)) {
    const std::string n = UriEncode(UriDecode(name).value_or(name), true);
    if (drop_signature && n == "X-Amz-Signature") continue;
    params.emplace_back(n, UriEncode(UriDecode(value).value_or(value), true));
  }
  std::sort(params.begin(), params.end());
  std::string out;
  for (const auto& [n, v] : params) {
    if (!out.empty()) out.push_back('&');
    out += n;
    out.push_back('=');
    out += v;
  }
  return out;
}

std::string CanonicalRequest(const Request& r, const std::vector<std::string>& signed_headers,
                             std::string_view payload_hash, bool presigned) {
  // A path of unreserved characters and '/' is its own canonical form.
  const bool plain = std::all_of(r.path.begin(), r.path.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '~' || c == '/';
  });
  std::string path = plain ? std::string(r.path) : UriEncode(UriDecode(r.path).value_or(std::string(r.path)), false);
  if (path.empty()) path = "/";
  std::string out;
  out.reserve(256 + path.size() + r.query.size());
  out += r.method;
  out += '\n';
  out += path;
  out += '\n';
  out += CanonicalQuery(r.query, presigned);
  out += '\n';
  for (const std::string& name : signed_headers) {
    out += name;
    out += ':';
    bool first = true;
    for (const auto& [n, v] : r.headers) {
      if (!EqualsIgnoreCase(n, name)) continue;
      if (!first) out.push_back(',');
      first = false;
      AppendFolded(out, v);
    }
    out += '\n';
  }
  out += '\n';
  for (size_t i = 0; i < signed_headers.size(); ++i) {
    if (i > 0) out += ';';
    out += signed_headers[i];
  }
  out += '\n';
  out += payload_hash;
  return out;
}

std::string StringToSign(std::string_view amz_date, std::string_view scope,
                         std::string_view canonical_request) {
  const std::string hash = ToHex(AsBytes(Sha256(ByteView(canonical_request))));
  std::string out;
  out.reserve(kAlgorithm.size() + amz_date.size() + scope.size() + hash.size() + 3);
  out.append(kAlgorithm).push_back('\n');
  out.append(amz_date).push_back('\n');
  out.append(scope).push_back('\n');
  out.append(hash);
  return out;
}

Sha256Digest SigningKey(std::string_view secret, std::string_view date, std::string_view region,
                        std::string_view service) {
  const std::string k = "AWS4" + std::string(secret);
  const Sha256Digest k_date = HmacSha256(ByteView(k), ByteView(date));
  const Sha256Digest k_region = HmacSha256(AsBytes(k_date), ByteView(region));
  const Sha256Digest k_service = HmacSha256(AsBytes(k_region), ByteView(service));
  return HmacSha256(AsBytes(k_service), ByteView(kTerminator));
}

std::string Signature(const Sha256Digest& key, std::string_view string_to_sign) {
  return ToHex(AsBytes(HmacSha256(AsBytes(key), ByteView(string_to_sign))));
}

Result<Authorization> ParseAuthorization(std::string_view header) {
  if (header.size() > kMaxAuthorization) return Malformed("Authorization header too long");
  if (!header.starts_with(kAlgorithm) || header.size() == kAlgorithm.size() ||
      header[kAlgorithm.size()] != ' ') {
    return Malformed("Authorization is not AWS4-HMAC-SHA256");
  }
  std::string_view rest = header.substr(kAlgorithm.size() + 1);
  Authorization a;
  bool have_credential = false, have_headers = false, have_signature = false;
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    const std::string_view item = Trim(rest.substr(0, comma));
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    const size_t eq = item.find('=');
    if (eq == std::string_view::npos) return Malformed(fmt::format("bad Authorization item '{}'", item));
    const std::string_view name = item.substr(0, eq), value = item.substr(eq + 1);
    if (name == "Credential") {
      QCLOUD_RETURN_IF_ERROR(ParseCredential(value, &a));
      have_credential = true;
    } else if (name == "SignedHeaders") {
      QCLOUD_RETURN_IF_ERROR(ParseSignedHeaders(value, &a));
      have_headers = true;
    } else if (name == "Signature") {
      if (!IsHex64(value)) return Malformed("Signature is not 64 lower-case hex digits");
      a.signature = std::string(value);
      have_signature = true;
    } else {
      return Malformed(fmt::format("unknown Authorization item '{}'", name));
    }
  }
  if (!have_credential || !have_headers || !have_signature) {
    return Malformed("Authorization needs Credential, SignedHeaders and Signature");
  }
  return a;
}

struct SigningKeyCache::Impl {
  struct Entry {
    std::string secret;
    Sha256Digest key;
  };
  std::mutex mu;
  std::unordered_map<std::string, Entry> keys;
};

SigningKeyCache::SigningKeyCache() : impl_(std::make_unique<Impl>()) {}
SigningKeyCache::~SigningKeyCache() = default;

Sha256Digest SigningKeyCache::Get(std::string_view access_key, std::string_view secret, std::string_view date,
                                  std::string_view region, std::string_view service) {
  std::string id;
  id.reserve(access_key.size() + date.size() + region.size() + service.size() + 3);
  id.append(access_key).push_back('\0');
  id.append(date).push_back('\0');
  id.append(region).push_back('\0');
  id.append(service);
  {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->keys.find(id);
    if (it != impl_->keys.end() && it->second.secret == secret) return it->second.key;
  }
  const Sha256Digest key = SigningKey(secret, date, region, service);
  std::lock_guard lock(impl_->mu);
  if (impl_->keys.size() >= 4096) impl_->keys.clear();
  impl_->keys[id] = {std::string(secret), key};
  return key;
}

Result<Verified> Verify(const Request& r, const SecretLookup& secrets, WallTime now, SigningKeyCache* cache) {
  Verified out;
  Authorization a;
  std::string amz_date;
  std::string payload;
  const auto header = Header(r, "authorization");
  if (header) {
    QCLOUD_ASSIGN_OR_RETURN(a, ParseAuthorization(*header));
    auto date = Header(r, "x-amz-date");
    if (!date) return Malformed("x-amz-date is missing");
    amz_date = std::string(Trim(*date));
    auto payload_header = Header(r, "x-amz-content-sha256");
    if (!payload_header) return Malformed("x-amz-content-sha256 is missing");
    payload = std::string(Trim(*payload_header));
    auto t = ParseAmzDate(amz_date);
    if (!t) return Malformed(fmt::format("bad x-amz-date '{}'", amz_date));
    if (*t > now + kMaxSkew || *t < now - kMaxSkew) {
      return Status(Errc::kRequestTimeTooSkewed,
                    fmt::format("request time {} is more than 15 minutes from the server's", amz_date));
    }
  } else {
    std::string algorithm, credential, expires, signed_headers;
    for (const auto& [name, value] : QueryParams(r.query)) {
      auto v = UriDecode(value);
      if (!v) return Malformed("bad escape in the query");
      if (name == "X-Amz-Algorithm") algorithm = *v;
      if (name == "X-Amz-Credential") credential = *v;
      if (name == "X-Amz-Date") amz_date = *v;
      if (name == "X-Amz-Expires") expires = *v;
      if (name == "X-Amz-SignedHeaders") signed_headers = *v;
      if (name == "X-Amz-Signature") a.signature = *v;
    }
    if (algorithm.empty() && a.signature.empty()) {
      return Status(Errc::kAccessDenied, "the request is not signed");
    }
    if (algorithm != kAlgorithm) return Malformed("X-Amz-Algorithm must be AWS4-HMAC-SHA256");
    QCLOUD_RETURN_IF_ERROR(ParseCredential(credential, &a));
    QCLOUD_RETURN_IF_ERROR(ParseSignedHeaders(signed_headers, &a));
    if (!IsHex64(a.signature)) return Malformed("X-Amz-Signature is not 64 lower-case hex digits");
    auto t = ParseAmzDate(amz_date);
    if (!t) return Malformed(fmt::format("bad X-Amz-Date '{}'", amz_date));
    int64_t secs = -1;
    if (!expires.empty() && expires.size() <= 7 &&
        std::all_of(expires.begin(), expires.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      secs = std::stoll(expires);
    }
    if (secs < 1 || secs > kMaxPresignSeconds) return Malformed("X-Amz-Expires must be 1..604800");
    if (now > *t + std::chrono::seconds(secs)) return Status(Errc::kRequestExpired, "Request has expired");
    if (*t > now + kMaxSkew) return Status(Errc::kRequestTimeTooSkewed, "X-Amz-Date is in the future");
    payload = std::string(kUnsignedPayload);
    out.presigned = true;
  }
  if (a.date != amz_date.substr(0, 8)) {
    return Malformed(fmt::format("credential date {} is not the request's {}", a.date, amz_date.substr(0, 8)));
  }
  const std::optional<std::string> secret = secrets(a.access_key);
  if (!secret) {
    return Status(Errc::kInvalidAccessKeyId, fmt::format("no access key '{}'", a.access_key));
  }
  std::string scope;
  scope.reserve(a.date.size() + a.region.size() + a.service.size() + kTerminator.size() + 3);
  scope.append(a.date).append("/").append(a.region).append("/").append(a.service).append("/").append(kTerminator);
  const std::string canonical = CanonicalRequest(r, a.signed_headers, payload, out.presigned);
  const Sha256Digest key = cache != nullptr ? cache->Get(a.access_key, *secret, a.date, a.region, a.service)
                                            : SigningKey(*secret, a.date, a.region, a.service);
  const std::string expected = Signature(key, StringToSign(amz_date, scope, canonical));
  if (!ConstantTimeEqual(expected, a.signature)) {
    return Status(Errc::kSignatureDoesNotMatch,
                  "the request signature we calculated does not match the signature you provided");
  }
  out.access_key = std::move(a.access_key);
  out.region = std::move(a.region);
  if (payload.starts_with("STREAMING-")) {  // what the chunks' signatures chain from
    out.amz_date = std::move(amz_date);
    out.scope = std::move(scope);
    out.signature = std::move(a.signature);
    out.signing_key = key;
  }
  out.payload_hash = std::move(payload);
  return out;
}

std::string Presign(const Request& r, std::string_view access_key, std::string_view secret,
                    std::string_view region, WallTime now, std::chrono::seconds expires) {
  const std::string amz_date = FormatAmzDate(now);
  const std::string date = amz_date.substr(0, 8);
  const std::string credential = fmt::format("{}/{}/{}/s3/{}", access_key, date, region, kTerminator);
  std::string query(r.query);
  if (!query.empty()) query += '&';
  query += fmt::format("X-Amz-Algorithm={}&X-Amz-Credential={}&X-Amz-Date={}&X-Amz-Expires={}&X-Amz-SignedHeaders=host",
                       kAlgorithm, UriEncode(credential, true), amz_date, expires.count());
  Request signed_request = r;
  signed_request.query = query;
  const std::string scope = fmt::format("{}/{}/s3/{}", date, region, kTerminator);
  const std::string canonical = CanonicalRequest(signed_request, {"host"}, kUnsignedPayload, true);
  const std::string sig = Signature(SigningKey(secret, date, region, "s3"), StringToSign(amz_date, scope, canonical));
  return query + "&X-Amz-Signature=" + sig;
}

namespace {
constexpr size_t kMaxChunkLine = 4096;
constexpr uint64_t kMaxChunk = uint64_t{64} << 20;
constexpr size_t kMaxTrailers = 16;
// SHA-256 of the empty string, hex: part of every chunk's string to sign.
constexpr std::string_view kEmptySha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
}  // namespace

ChunkedPayloadDecoder::ChunkedPayloadDecoder(const Verified& v, std::string_view mode, Sink sink)
    : sink_(std::move(sink)),
      signed_(mode == kStreamingSigned || mode == kStreamingSignedTrailer),
      trailer_(mode == kStreamingUnsignedTrailer || mode == kStreamingSignedTrailer),
      amz_date_(v.amz_date),
      scope_(v.scope),
      previous_(v.signature),
      key_(v.signing_key) {}

Status ChunkedPayloadDecoder::Fail(Status s) {
  state_ = State::kFailed;
  failure_ = s;
  return s;
}

Status ChunkedPayloadDecoder::OnHeader(std::string_view line) {
  // "<hex>[;chunk-signature=<64 hex>]"
  const size_t semi = line.find(';');
  const std::string_view hex = line.substr(0, semi);
  if (hex.empty() || hex.size() > 16) return Malformed("aws-chunked: bad chunk size");
  uint64_t size = 0;
  for (char c : hex) {
    int d = -1;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    if (d < 0) return Malformed("aws-chunked: bad chunk size");
    size = size * 16 + static_cast<uint64_t>(d);
  }
  if (size > kMaxChunk) return Malformed("aws-chunked: chunk over 64 MiB");
  chunk_signature_.clear();
  if (semi != std::string_view::npos) {
    const std::string_view ext = line.substr(semi + 1);
    constexpr std::string_view kSig = "chunk-signature=";
    if (!ext.starts_with(kSig)) return Malformed("aws-chunked: unknown chunk extension");
    chunk_signature_ = std::string(ext.substr(kSig.size()));
    if (!IsHex64(chunk_signature_)) return Malformed("aws-chunked: bad chunk signature");
  }
  if (signed_ && chunk_signature_.empty()) return Malformed("aws-chunked: chunk without a signature");
  remaining_ = size;
  last_chunk_ = size == 0;
  chunk_hash_ = Sha256Hasher();
  state_ = size == 0 ? State::kDataEnd : State::kData;
  if (size == 0) return OnChunkEnd();
  return Status::Ok();
}

Status ChunkedPayloadDecoder::OnChunkEnd() {
  if (signed_) {
    const Sha256Digest digest = chunk_hash_.Finish();
    const std::string to_sign = fmt::format("AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{}\n{}\n{}", amz_date_,
                                            scope_, previous_, kEmptySha256, ToHex(AsBytes(digest)));
    const std::string expected = Signature(key_, to_sign);
    if (!ConstantTimeEqual(expected, chunk_signature_)) {
      return Status(Errc::kSignatureDoesNotMatch, "aws-chunked: a chunk's signature does not match");
    }
    previous_ = expected;
  }
  if (last_chunk_) {
    // The final chunk: without trailers its header is followed by "\r\n";
    // with them, trailer lines and then an empty line.
    state_ = State::kTrailer;
  } else {
    state_ = State::kDataEnd;
  }
  return Status::Ok();
}

Status ChunkedPayloadDecoder::Feed(ByteView in) {
  if (state_ == State::kFailed) return failure_;
  while (!in.empty()) {
    switch (state_) {
      case State::kHeader:
      case State::kTrailer: {
        const char c = static_cast<char>(in[0]);
        in.RemovePrefix(1);
        if (c != '\n') {
          if (line_.size() >= kMaxChunkLine) return Fail(Malformed("aws-chunked: line over 4 KiB"));
          line_.push_back(c);
          continue;
        }
        if (line_.empty() || line_.back() != '\r') return Fail(Malformed("aws-chunked: line without CRLF"));
        line_.pop_back();
        const std::string line = std::move(line_);
        line_.clear();
        if (state_ == State::kHeader) {
          if (Status s = OnHeader(line); !s.ok()) return Fail(s);
          continue;
        }
        if (line.empty()) {
          state_ = State::kDone;
          continue;
        }
        const size_t colon = line.find(':');
        if (colon == std::string::npos || trailers_.size() >= kMaxTrailers) {
          return Fail(Malformed("aws-chunked: bad trailer"));
        }
        trailers_.emplace_back(AsciiLower(Trim(std::string_view(line).substr(0, colon))),
                               std::string(Trim(std::string_view(line).substr(colon + 1))));
        continue;
      }
      case State::kData: {
        const size_t take = static_cast<size_t>(std::min<uint64_t>(remaining_, in.size()));
        const ByteView piece = in.subview(0, take);
        if (signed_) chunk_hash_.Update(piece);
        if (Status s = sink_(piece); !s.ok()) return Fail(s);
        decoded_ += take;
        remaining_ -= take;
        in.RemovePrefix(take);
        if (remaining_ == 0) {
          if (Status s = OnChunkEnd(); !s.ok()) return Fail(s);
        }
        continue;
      }
      case State::kDataEnd: {
        // "\r\n" after a chunk's data.
        const char c = static_cast<char>(in[0]);
        in.RemovePrefix(1);
        if (line_.empty() && c == '\r') {
          line_.push_back(c);
          continue;
        }
        if (line_ == "\r" && c == '\n') {
          line_.clear();
          state_ = State::kHeader;
          continue;
        }
        return Fail(Malformed("aws-chunked: chunk data not followed by CRLF"));
      }
      case State::kDone:
        return Fail(Malformed("aws-chunked: bytes after the final chunk"));
      case State::kFailed:
        return failure_;
    }
  }
  return Status::Ok();
}

Status ChunkedPayloadDecoder::Finish() const {
  if (state_ == State::kFailed) return failure_;
  if (state_ != State::kDone) return Malformed("aws-chunked: the body ended before its final chunk");
  return Status::Ok();
}

}  // namespace qcloud::object::sigv4
