// The S3 service: routing, authentication, S3's semantics and its XML.
#include "s3/service.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <map>

#include <fmt/format.h>
#include <pugixml.hpp>

#include "qcloud/object/errc.h"
#include "s3/xml.h"

namespace qcloud::object::s3 {

namespace {

constexpr size_t kMaxXmlBody = 1 << 20;
constexpr size_t kMaxUserMetadataBytes = 2048;  // S3: the x-amz-meta-* headers together
constexpr size_t kMaxSystemHeaderBytes = 4096;  // each stored Cache-Control, Content-Disposition, ...
constexpr size_t kMaxDeleteKeys = 1000;
constexpr std::string_view kInstantHeader = "x-qcloud-instant-upload";
// Headers S3 stores with an object and returns on GET/HEAD besides
// Content-Type; kept in the user metadata under ':' + name.
constexpr std::string_view kSystemHeaders[] = {"cache-control", "content-disposition", "content-encoding",
                                               "content-language", "expires"};

struct ErrorInfo {
  std::string_view code;
  int status;
  std::string_view message;
};

constexpr ErrorInfo kErrors[] = {
    {"AccessDenied", 403, "Access Denied"},
    {"AuthorizationHeaderMalformed", 400, "The authorization header is malformed."},
    {"AuthorizationQueryParametersError", 400, "The authorization query parameters are malformed."},
    {"BadDigest", 400, "The Content-MD5 you specified did not match what we received."},
    {"BucketAlreadyExists", 409, "The requested bucket name is not available."},
    {"BucketAlreadyOwnedByYou", 409, "Your previous request to create the named bucket succeeded and you already own it."},
    {"BucketNotEmpty", 409, "The bucket you tried to delete is not empty"},
    {"EntityTooLarge", 400, "Your proposed upload exceeds the maximum allowed object size."},
    {"EntityTooSmall", 400, "Your proposed upload is smaller than the minimum allowed object size."},
    {"IllegalLocationConstraintException", 400, "The location constraint is incompatible with this endpoint."},
    {"IncompleteBody", 400, "You did not provide the number of bytes specified by the Content-Length HTTP header."},
    {"InternalError", 500, "We encountered an internal error. Please try again."},
    {"InvalidAccessKeyId", 403, "The AWS Access Key Id you provided does not exist in our records."},
    {"InvalidArgument", 400, "Invalid Argument"},
    {"InvalidBucketName", 400, "The specified bucket is not valid."},
    {"InvalidDigest", 400, "The Content-MD5 you specified is not valid."},
    {"InvalidPart", 400, "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag."},
    {"InvalidPartOrder", 400, "The list of parts was not in ascending order. Parts must be ordered by part number."},
    {"InvalidRange", 416, "The requested range is not satisfiable"},
    {"InvalidRequest", 400, "Invalid Request"},
    {"InvalidURI", 400, "Couldn't parse the specified URI."},
    {"KeyTooLongError", 400, "Your key is too long"},
    {"MalformedXML", 400, "The XML you provided was not well-formed or did not validate against our published schema"},
    {"MetadataTooLarge", 400, "Your metadata headers exceed the maximum allowed metadata size."},
    {"MethodNotAllowed", 405, "The specified method is not allowed against this resource."},
    {"MissingContentLength", 411, "You must provide the Content-Length HTTP header."},
    {"NoSuchBucket", 404, "The specified bucket does not exist"},
    {"NoSuchBucketPolicy", 404, "The bucket policy does not exist"},
    {"NoSuchCORSConfiguration", 404, "The CORS configuration does not exist"},
    {"NoSuchKey", 404, "The specified key does not exist."},
    {"NoSuchLifecycleConfiguration", 404, "The lifecycle configuration does not exist"},
    {"NoSuchTagSet", 404, "The TagSet does not exist"},
    {"NoSuchUpload", 404, "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."},
    {"NoSuchWebsiteConfiguration", 404, "The specified bucket does not have a website configuration"},
    {"NotImplemented", 501, "A header you provided implies functionality that is not implemented"},
    {"PreconditionFailed", 412, "At least one of the pre-conditions you specified did not hold"},
    {"RequestHeaderSectionTooLarge", 400, "Your request header section exceeds the maximum allowed size."},
    {"RequestTimeTooSkewed", 403, "The difference between the request time and the current time is too large."},
    {"ServerSideEncryptionConfigurationNotFoundError", 404, "The server side encryption configuration was not found"},
    {"SignatureDoesNotMatch", 403, "The request signature we calculated does not match the signature you provided. Check your key and signing method."},
    {"XAmzContentSHA256Mismatch", 400, "The provided 'x-amz-content-sha256' header does not match what was computed."},
};

const ErrorInfo& FindError(std::string_view code) {
  for (const ErrorInfo& e : kErrors) {
    if (e.code == code) return e;
  }
  static const ErrorInfo kInternal{"InternalError", 500, "We encountered an internal error. Please try again."};
  return kInternal;
}


std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string Quoted(std::string_view etag) {
  std::string q;
  q.reserve(etag.size() + 2);
  q += '"';
  q += etag;
  q += '"';
  return q;
}

std::string_view Unquote(std::string_view etag) {
  etag = Trim(etag);
  if (etag.starts_with("W/")) etag.remove_prefix(2);
  if (etag.size() >= 2 && etag.front() == '"' && etag.back() == '"') etag = etag.substr(1, etag.size() - 2);
  return etag;
}

// An If-Match / If-None-Match list ("a", "b" or *) holds `etag`?
bool EtagListMatches(std::string_view list, std::string_view etag) {
  size_t at = 0;
  while (at <= list.size()) {
    size_t comma = list.find(',', at);
    if (comma == std::string_view::npos) comma = list.size();
    const std::string_view item = Trim(list.substr(at, comma - at));
    if (item == "*" || Unquote(item) == etag) return true;
    at = comma + 1;
  }
  return false;
}

bool ParseU64(std::string_view s, uint64_t* out) {
  if (s.empty() || s.size() > 19) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  *out = v;
  return true;
}

// S3's encoding-type=url: every byte but unreserved ones and '/' escaped.
std::string UrlEncodeKey(std::string_view s) { return sigv4::UriEncode(s, /*encode_slash=*/false); }

// A Range header's one range resolved against `size`: nullopt to serve the
// whole object (no header, or one S3 ignores), kOutOfRange when it cannot
// be satisfied.
struct ByteRange {
  uint64_t first = 0, length = 0;
};
Result<std::optional<ByteRange>> ResolveRange(std::string_view header, uint64_t size) {
  header = Trim(header);
  if (!header.starts_with("bytes=")) return std::optional<ByteRange>();
  std::string_view spec = Trim(header.substr(6));
  if (spec.find(',') != std::string_view::npos) return std::optional<ByteRange>();  // S3 serves all
  const size_t dash = spec.find('-');
  if (dash == std::string_view::npos) return std::optional<ByteRange>();
  const std::string_view a = Trim(spec.substr(0, dash)), b = Trim(spec.substr(dash + 1));
  uint64_t first = 0, last = 0;
  if (a.empty()) {  // suffix: the last b bytes
    if (!ParseU64(b, &last)) return std::optional<ByteRange>();
    if (last == 0 || size == 0) return Status(qcloud::Errc::kOutOfRange, "unsatisfiable suffix range");
    const uint64_t n = std::min(last, size);
    return std::optional<ByteRange>(ByteRange{size - n, n});
  }
  if (!ParseU64(a, &first)) return std::optional<ByteRange>();
  if (b.empty()) {
    last = size == 0 ? 0 : size - 1;
  } else if (!ParseU64(b, &last) || last < first) {
    return std::optional<ByteRange>();  // syntactically invalid: ignored
  }
  if (first >= size) return Status(qcloud::Errc::kOutOfRange, "range starts past the end");
  last = std::min(last, size - 1);
  return std::optional<ByteRange>(ByteRange{first, last - first + 1});
}

struct QueryParam {
  std::string name, value;
  bool has_value = false;
};

std::optional<std::vector<QueryParam>> ParseQuery(std::string_view q) {
  std::vector<QueryParam> out;
  while (!q.empty()) {
    size_t amp = q.find('&');
    const std::string_view item = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
    if (item.empty()) continue;
    if (out.size() >= 100) return std::nullopt;
    const size_t eq = item.find('=');
    auto name = sigv4::UriDecode(item.substr(0, eq));
    std::optional<std::string> value = std::string();
    if (eq != std::string_view::npos) value = sigv4::UriDecode(item.substr(eq + 1));
    if (!name || !value) return std::nullopt;
    out.push_back({std::move(*name), std::move(*value), eq != std::string_view::npos});
  }
  return out;
}

}  // namespace


std::string_view HttpResponse::HeaderValue(std::string_view name) const {
  std::string_view rest = headers;
  while (!rest.empty()) {
    const size_t end = rest.find("\r\n");
    const std::string_view line = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 2);
    const size_t colon = line.find(": ");
    if (colon != std::string_view::npos && EqualsIgnoreCase(line.substr(0, colon), name)) return line.substr(colon + 2);
  }
  return {};
}

void HttpResponse::SetHeader(std::string_view name, std::string_view value) {
  // Drop the first line called `name`, then add it anew (AddHeader cleans it).
  size_t at = 0;
  while (at < headers.size()) {
    const size_t end = headers.find("\r\n", at);
    if (end == std::string::npos) break;
    const size_t colon = headers.find(": ", at);
    if (colon != std::string::npos && colon < end &&
        EqualsIgnoreCase(std::string_view(headers).substr(at, colon - at), name)) {
      headers.erase(at, end + 2 - at);
      break;
    }
    at = end + 2;
  }
  AddHeader(name, value);
}

const std::string* HttpRequest::Header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (n == name) return &v;
  }
  return nullptr;
}

// One request's head, parsed.
struct Service::Request {
  HttpRequest http;
  std::string_view method;
  std::string path;    // as received, without the query
  std::string query;   // as received
  std::vector<QueryParam> params;
  std::string host;
  std::string bucket;  // decoded
  std::string key;     // decoded; "" for bucket and service requests
  bool virtual_host = false;
  std::optional<sigv4::Verified> auth;  // nullopt: anonymous
  const S3User* user = nullptr;
  std::string request_id;
  WallTime now;

  const std::string* Param(std::string_view name) const {
    for (const QueryParam& p : params) {
      if (p.name == name) return &p.value;
    }
    return nullptr;
  }
  bool Has(std::string_view name) const { return Param(name) != nullptr; }
  const std::string* Header(std::string_view name) const { return http.Header(name); }
  std::string resource() const {
    if (bucket.empty()) return "/";
    return key.empty() ? "/" + bucket : "/" + bucket + "/" + key;
  }
};

Call::~Call() = default;

Status Call::Feed(ByteView data) {
  if (ready_) return Status(qcloud::Errc::kAborted, "request already answered");
  auto fail = [&](std::string_view code, std::string message) {
    ready_ = error_(code, std::move(message));
    ready_->close = true;
    return Status(qcloud::Errc::kInvalidArgument, std::string(code));
  };
  service_->counters().bytes_in.fetch_add(data.size(), std::memory_order_relaxed);
  if (payload_ == Payload::kChunked) {
    Status s = chunked_->Feed(data);
    if (!s.ok()) {
      if (ready_) return s;  // the consumer failed and answered already
      if (s.code() == object::Errc::kSignatureDoesNotMatch) return fail("SignatureDoesNotMatch", s.message());
      return fail("InvalidRequest", s.message());
    }
    return Status::Ok();
  }
  if (payload_ == Payload::kSha256) sha256_.Update(data);
  return consume_(data);
}

HttpResponse Call::Finish() {
  HttpResponse r = Decide();
  r.AddHeader("x-amz-request-id", request_id_);
  r.AddHeader("x-amz-id-2", request_id_);
  return r;
}

HttpResponse Call::Decide() {
  if (ready_) return std::move(*ready_);
  if (payload_ == Payload::kChunked) {
    if (Status s = chunked_->Finish(); !s.ok()) {
      auto r = error_("IncompleteBody", s.message());
      r.close = true;
      return r;
    }
    if (decoded_length_ && *decoded_length_ != chunked_->decoded_bytes()) {
      auto r = error_("IncompleteBody", "the body's length is not x-amz-decoded-content-length");
      r.close = true;
      return r;
    }
  }
  if (payload_ == Payload::kSha256) {
    const Sha256Digest d = sha256_.Finish();
    if (ToHex(AsBytes(d)) != expected_sha256_) {
      return error_("XAmzContentSHA256Mismatch", "the body's SHA-256 is not x-amz-content-sha256");
    }
  }
  return finish_();
}

Service::Service(ObjectStore& store, const S3ServerOptions& options, Counters& counters)
    : store_(store), options_(options), counters_(counters) {
  clock_ = options_.clock != nullptr ? options_.clock : &RealClock();
  id_base_ = static_cast<uint64_t>(clock_->WallNow().time_since_epoch().count());
}

Service::~Service() = default;

std::string Service::NextRequestId() {
  uint64_t v = id_base_ * 1000003 + next_id_.fetch_add(1, std::memory_order_relaxed);
  std::string id(16, '0');
  for (size_t i = 16; i-- > 0; v >>= 4) id[i] = "0123456789ABCDEF"[v & 15];
  return id;
}

HttpResponse Service::Error(std::string_view code, std::string message, std::string_view resource,
                            std::string_view request_id, bool head) const {
  const ErrorInfo& e = FindError(code);
  HttpResponse r;
  r.status = e.status;
  r.head = head;
  if (message.empty()) message = std::string(e.message);
  if (!head) {
    XmlWriter x("Error", /*ns=*/false);
    x.Element("Code", e.code).Element("Message", message);
    if (!resource.empty()) x.Element("Resource", resource);
    x.Element("RequestId", request_id).Element("HostId", request_id);
    r.body = x.Finish();
    r.AddHeader("Content-Type", "application/xml");
  }
  return r;
}

namespace {

// Reads the x-amz-meta-* headers and the system headers S3 keeps.
Result<std::vector<std::pair<std::string, std::string>>> MetadataFrom(const HttpRequest& http) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t bytes = 0, system_bytes = 0;
  for (const auto& [name, value] : http.headers) {
    if (name.starts_with("x-amz-meta-")) {
      const std::string short_name = name.substr(11);
      bytes += short_name.size() + value.size();
      out.emplace_back(short_name, std::string(Trim(value)));
    } else if (std::find(std::begin(kSystemHeaders), std::end(kSystemHeaders), name) !=
               std::end(kSystemHeaders)) {
      std::string v(Trim(value));
      if (name == "content-encoding") {
        // aws-chunked is the transfer's, not the object's.
        std::string kept;
        size_t at = 0;
        while (at <= v.size()) {
          size_t comma = v.find(',', at);
          if (comma == std::string::npos) comma = v.size();
          const std::string_view item = Trim(std::string_view(v).substr(at, comma - at));
          if (!item.empty() && item != "aws-chunked") {
            if (!kept.empty()) kept += ',';
            kept += item;
          }
          at = comma + 1;
        }
        v = kept;
        if (v.empty()) continue;
      }
      system_bytes += v.size();
      if (v.size() > kMaxSystemHeaderBytes) return InvalidArgument("metadata too large");
      out.emplace_back(":" + name, v);
    }
  }
  if (bytes > kMaxUserMetadataBytes || system_bytes > 2 * kMaxSystemHeaderBytes) {
    return InvalidArgument("metadata too large");
  }
  std::sort(out.begin(), out.end());
  return out;
}

void AddObjectHeaders(HttpResponse& r, const ObjectMeta& m) {
  r.AddHeader("ETag", Quoted(m.etag));
  r.AddHeader("Last-Modified", HttpTime(m.mtime_ms));
  r.AddHeader("Content-Type", m.content_type.empty() ? "binary/octet-stream" : m.content_type);
  for (const auto& [name, value] : m.user_metadata) {
    if (!name.empty() && name[0] == ':') {
      r.AddHeader(name.substr(1), value);
    } else {
      r.AddHeader("x-amz-meta-" + name, value);
    }
  }
}


HttpResponse XmlResponse(std::string body, int status = 200) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  r.AddHeader("Content-Type", "application/xml");
  return r;
}

HttpResponse Empty(int status) {
  HttpResponse r;
  r.status = status;
  return r;
}

// The host of a Referer URL, lower case, without port.
std::string RefererHost(std::string_view referer) {
  const size_t scheme = referer.find("://");
  if (scheme != std::string_view::npos) referer.remove_prefix(scheme + 3);
  const size_t end = referer.find_first_of("/?#");
  std::string_view host = referer.substr(0, end);
  if (const size_t at = host.rfind('@'); at != std::string_view::npos) host.remove_prefix(at + 1);
  if (const size_t colon = host.rfind(':'); colon != std::string_view::npos) host = host.substr(0, colon);
  return AsciiLower(host);
}

bool DomainMatches(std::string_view pattern, std::string_view host) {
  if (pattern.starts_with("*.")) {
    const std::string_view base = pattern.substr(2);
    return host == base || (host.size() > base.size() && host.ends_with(base) &&
                            host[host.size() - base.size() - 1] == '.');
  }
  return pattern == host;
}

// COS's RefererConfiguration, parsed.
struct RefererRule {
  bool enabled = false;
  bool white_list = true;
  bool allow_empty = true;
  std::vector<std::string> domains;
};

std::optional<RefererRule> ParseReferer(std::string_view xml) {
  pugi::xml_document doc;
  if (!doc.load_buffer(xml.data(), xml.size(), pugi::parse_default)) return std::nullopt;
  pugi::xml_node root = doc.child("RefererConfiguration");
  if (!root) return std::nullopt;
  RefererRule rule;
  const std::string status = root.child_value("Status");
  if (status != "Enabled" && status != "Disabled") return std::nullopt;
  rule.enabled = status == "Enabled";
  const std::string type = root.child_value("RefererType");
  if (type == "Black-List") rule.white_list = false;
  else if (type != "White-List" && !type.empty()) return std::nullopt;
  const std::string empty = root.child_value("EmptyReferConfiguration");
  if (empty == "Deny") rule.allow_empty = false;
  else if (empty != "Allow" && !empty.empty()) return std::nullopt;
  for (pugi::xml_node d : root.child("DomainList").children("Domain")) {
    if (rule.domains.size() >= 400) return std::nullopt;
    std::string domain = AsciiLower(Trim(d.child_value()));
    if (domain.empty() || domain.size() > 255) return std::nullopt;
    rule.domains.push_back(std::move(domain));
  }
  return rule;
}

bool RefererAllowed(const RefererRule& rule, const std::string* referer) {
  if (!rule.enabled) return true;
  if (referer == nullptr || Trim(*referer).empty()) return rule.allow_empty;
  const std::string host = RefererHost(*referer);
  bool listed = false;
  for (const std::string& d : rule.domains) {
    if (DomainMatches(d, host)) {
      listed = true;
      break;
    }
  }
  return rule.white_list ? listed : !listed;
}

}  // namespace

std::unique_ptr<Call> Service::Begin(HttpRequest http) {
  auto call = std::unique_ptr<Call>(new Call());
  call->service_ = this;
  counters_.requests.fetch_add(1, std::memory_order_relaxed);
  Request r;
  r.http = std::move(http);
  r.method = r.http.method;
  r.request_id = NextRequestId();
  r.now = clock_->WallNow();
  call->request_id_ = r.request_id;
  const bool head = r.method == "HEAD";
  call->error_ = [this, head, id = r.request_id](std::string_view code, std::string message) {
    return Error(code, std::move(message), "", id, head);
  };
  auto answer = [&](HttpResponse resp) {
    call->ready_ = std::move(resp);
    call->wants_body_ = false;
    return std::move(call);
  };
  auto error = [&](std::string_view code, std::string message = {}) {
    return answer(Error(code, std::move(message), r.resource(), r.request_id, head));
  };

  // Target: origin-form "/path?query".
  const std::string& target = r.http.target;
  if (target.empty() || target[0] != '/') return error("InvalidRequest", "the request target must be a path");
  const size_t q = target.find('?');
  r.path = target.substr(0, q);
  r.query = q == std::string::npos ? "" : target.substr(q + 1);
  auto params = ParseQuery(r.query);
  if (!params) return error("InvalidArgument", "malformed query string");
  r.params = std::move(*params);
  auto decoded = sigv4::UriDecode(r.path);
  if (!decoded) return error("InvalidURI", "malformed percent-encoding in the path");
  if (const std::string* h = r.Header("host")) {
    r.host = AsciiLower(Trim(*h));
  }
  std::string host_name = r.host;
  if (!host_name.empty() && host_name[0] != '[') {
    if (const size_t colon = host_name.rfind(':'); colon != std::string::npos) host_name.resize(colon);
  }
  for (const std::string& domain : options_.domains) {
    const std::string d = AsciiLower(domain);
    if (host_name.size() > d.size() + 1 && host_name.ends_with(d) &&
        host_name[host_name.size() - d.size() - 1] == '.') {
      r.bucket = host_name.substr(0, host_name.size() - d.size() - 1);
      r.virtual_host = true;
      break;
    }
  }
  if (r.virtual_host) {
    r.key = decoded->substr(1);
  } else {
    const std::string_view p = std::string_view(*decoded).substr(1);
    const size_t slash = p.find('/');
    r.bucket = std::string(p.substr(0, slash));
    if (slash != std::string_view::npos) r.key = std::string(p.substr(slash + 1));
  }
  // Prometheus' scrape: an unsigned GET of /metrics on the S3 port (a
  // signed one, or a public-read bucket called "metrics", stays S3's).
  if (counters_.registry != nullptr && r.path == "/metrics" && !r.virtual_host &&
      (r.method == "GET" || head) && r.Header("authorization") == nullptr && !r.Has("X-Amz-Signature")) {
    HttpResponse m;
    m.head = head;
    m.body = counters_.registry->RenderText();
    m.AddHeader("Content-Type", MetricsRegistry::kContentType);
    call->op_ = "Metrics";
    return answer(std::move(m));
  }
  if (r.key.find('\0') != std::string::npos) return error("InvalidArgument", "object keys may not contain NUL");
  if (r.key.size() > kMaxKeyBytes) return error("KeyTooLongError");

  // Authentication.
  // The headers move into the signature check and back: no copy.
  sigv4::Request sreq{.method = r.method, .path = r.path, .query = r.query, .headers = std::move(r.http.headers)};
  auto verified = sigv4::Verify(
      sreq,
      [this](std::string_view access_key) -> std::optional<std::string> {
        for (const S3User& u : options_.users) {
          if (u.access_key == access_key) return u.secret_key;
        }
        return std::nullopt;
      },
      r.now, &signing_keys_);
  r.http.headers = std::move(sreq.headers);
  if (verified.ok()) {
    r.auth = std::move(*verified);
    for (const S3User& u : options_.users) {
      if (u.access_key == r.auth->access_key) r.user = &u;
    }
  } else {
    const Status& s = verified.status();
    if (s.code() == object::Errc::kAccessDenied) {
      // Unsigned: anonymous, allowed only where the bucket says so.
    } else if (s.code() == object::Errc::kSignatureDoesNotMatch) {
      return error("SignatureDoesNotMatch");
    } else if (s.code() == object::Errc::kInvalidAccessKeyId) {
      return error("InvalidAccessKeyId");
    } else if (s.code() == object::Errc::kRequestTimeTooSkewed) {
      return error("RequestTimeTooSkewed", s.message());
    } else if (s.code() == object::Errc::kRequestExpired) {
      return error("AccessDenied", "Request has expired");
    } else {
      const bool presigned = r.Has("X-Amz-Algorithm") || r.Has("X-Amz-Signature");
      return error(presigned ? "AuthorizationQueryParametersError" : "AuthorizationHeaderMalformed",
                   s.message());
    }
  }

  HttpResponse resp = Dispatch(r, *call);
  if (call->wants_body_ && !call->ready_) {
    // The payload's mode, from x-amz-content-sha256.
    const std::string mode = r.auth ? r.auth->payload_hash : std::string("UNSIGNED-PAYLOAD");
    if (mode == "UNSIGNED-PAYLOAD") {
      call->payload_ = Call::Payload::kUnsigned;
    } else if (mode == sigv4::kStreamingSigned || mode == sigv4::kStreamingUnsignedTrailer ||
               mode == sigv4::kStreamingSignedTrailer) {
      call->payload_ = Call::Payload::kChunked;
      Call* c = call.get();
      call->chunked_ = std::make_unique<sigv4::ChunkedPayloadDecoder>(
          *r.auth, mode, [c](ByteView data) { return c->consume_(data); });
      if (const std::string* d = r.Header("x-amz-decoded-content-length")) {
        uint64_t n = 0;
        if (!ParseU64(Trim(*d), &n)) return error("InvalidArgument", "bad x-amz-decoded-content-length");
        call->decoded_length_ = n;
      }
    } else if (mode.size() == 64 && std::all_of(mode.begin(), mode.end(), [](char c) {
                 return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
               })) {
      call->payload_ = Call::Payload::kSha256;
      call->expected_sha256_ = mode;
    } else {
      return error("InvalidArgument", fmt::format("x-amz-content-sha256 '{}' is not a payload mode", mode));
    }
    return call;
  }
  if (!call->ready_) call->ready_ = std::move(resp);
  call->wants_body_ = false;
  return call;
}

// ---------------------------------------------------------------------------
// Dispatch: one function per S3 operation, as lambdas over the request.

HttpResponse Service::Dispatch(Request& r, Call& call) {
  const bool head = r.method == "HEAD";
  // Both error helpers hold only the call (which outlives every completion
  // it keeps): the body's completion runs them after this function returned.
  call.resource_ = r.resource();
  Call* self = &call;
  auto error = [this, self, head](std::string_view code, std::string message = {}) {
    return Error(code, std::move(message), self->resource_, self->request_id_, head);
  };
  auto op = [&](std::string_view name) { call.op_ = std::string(name); };
  IndexStore& index = store_.index();

  // Maps a store failure to S3's error, telling a missing bucket from a
  // missing key.
  auto store_error = [error, idx = &index, bucket = r.bucket](const Status& s) -> HttpResponse {
    if (s == qcloud::Errc::kNotFound) {
      if (!bucket.empty() && !idx->GetBucket(bucket).ok()) return error("NoSuchBucket");
      return error("NoSuchKey");
    }
    if (s.code() == object::Errc::kNoSuchUpload) return error("NoSuchUpload");
    if (s.code() == object::Errc::kInvalidPart) return error("InvalidPart", s.message());
    if (s.code() == object::Errc::kInvalidPartOrder) return error("InvalidPartOrder");
    if (s.code() == object::Errc::kEntityTooSmall) return error("EntityTooSmall");
    if (s == qcloud::Errc::kInvalidArgument) return error("InvalidArgument", s.message());
    if (s == qcloud::Errc::kOutOfRange) return error("InvalidRange");
    if (s == qcloud::Errc::kCorruption) return error("InternalError", "stored data failed its checksum");
    return error("InternalError", s.message());
  };

  // Access to the bucket: its owner only; anonymous (and presigned) reads
  // may be allowed by a public-read bucket; the referer rule on top.
  auto load_bucket = [&](bool read_object, std::string_view bucket) -> std::optional<HttpResponse> {
    auto info = index.GetBucket(bucket);
    if (!info.ok()) {
      if (info.status() == qcloud::Errc::kNotFound) return error("NoSuchBucket");
      return store_error(info.status());
    }
    if (r.user == nullptr) {
      auto acl = index.GetBucketAttribute(bucket, "acl");
      const bool public_read = acl.ok() && *acl && **acl == "public-read";
      if (!(read_object && public_read)) return error("AccessDenied");
    } else if (info->owner != r.user->name) {
      return error("AccessDenied");
    }
    if (read_object && (r.user == nullptr || r.auth->presigned)) {
      auto rule_xml = index.GetBucketAttribute(bucket, "referer");
      if (rule_xml.ok() && *rule_xml) {
        auto rule = ParseReferer(**rule_xml);
        if (rule && !RefererAllowed(*rule, r.Header("referer"))) {
          return error("AccessDenied", "the Referer is not allowed to read this bucket (anti-leech)");
        }
      }
    }
    return std::nullopt;
  };

  // The upload named in the query, if it is this bucket's and key's.
  auto find_upload = [&](const std::string& id) -> std::optional<UploadInfo> {
    auto upload = index.GetUpload(id);
    if (!upload.ok() || upload->bucket != r.bucket || upload->key != r.key) return std::nullopt;
    return std::move(*upload);
  };

  auto want_body = [&](uint64_t limit, std::function<Status(ByteView)> consume,
                       std::function<HttpResponse()> finish) {
    call.wants_body_ = true;
    call.limit_ = limit;
    Call* c = &call;
    call.consume_ = [c, consume = std::move(consume)](ByteView data) -> Status {
      c->received_ += data.size();
      if (c->received_ > c->limit_) {
        c->ready_ = c->error_("EntityTooLarge", "");
        c->ready_->close = true;
        return Status(qcloud::Errc::kInvalidArgument, "body over its limit");
      }
      Status s = consume(data);
      if (!s.ok() && !c->ready_) {
        c->ready_ = c->error_("InternalError", s.message());
        c->ready_->close = true;
      }
      return s;
    };
    call.finish_ = std::move(finish);
    return HttpResponse{};
  };

  // Collects a small (XML) body, then runs `then` on it.
  auto xml_body = [&](std::function<HttpResponse(const std::string&)> then) {
    auto body = std::make_shared<std::string>();
    return want_body(
        kMaxXmlBody,
        [body](ByteView data) {
          body->append(data.chars(), data.size());
          return Status::Ok();
        },
        [body, then = std::move(then)] { return then(*body); });
  };

  auto content_md5 = [&](std::optional<Md5Digest>* out) -> std::optional<HttpResponse> {
    const std::string* h = r.Header("content-md5");
    if (h == nullptr) return std::nullopt;
    std::string raw;
    if (!Base64Decode(Trim(*h), &raw) || raw.size() != 16) return error("InvalidDigest");
    Md5Digest d;
    std::memcpy(d.data(), raw.data(), 16);
    *out = d;
    return std::nullopt;
  };

  auto content_length = [&]() -> std::optional<uint64_t> {
    const std::string* h = r.Header("x-amz-decoded-content-length");
    if (h == nullptr) h = r.Header("content-length");
    uint64_t n = 0;
    if (h == nullptr || !ParseU64(Trim(*h), &n)) return std::nullopt;
    return n;
  };

  const std::string& method = r.http.method;

  // ---- Service: ListBuckets.
  if (r.bucket.empty()) {
    op("ListBuckets");
    if (method != "GET") return error("MethodNotAllowed");
    if (r.user == nullptr) return error("AccessDenied");
    auto buckets = index.ListBuckets(r.user->name);
    if (!buckets.ok()) return store_error(buckets.status());
    XmlWriter x("ListAllMyBucketsResult");
    x.Open("Owner").Element("ID", r.user->name).Element("DisplayName", r.user->name).Close("Owner");
    x.Open("Buckets");
    for (const BucketInfo& b : *buckets) {
      x.Open("Bucket").Element("Name", b.name).Element("CreationDate", IsoTime(b.created_ms)).Close("Bucket");
    }
    x.Close("Buckets");
    return XmlResponse(x.Finish());
  }

  // ---- Bucket operations.
  if (r.key.empty()) {
    if (method == "PUT" && r.Has("referer")) {
      op("PutBucketReferer");
      if (auto denied = load_bucket(false, r.bucket)) return *denied;
      return xml_body([idx = &index, bucket = r.bucket, error](const std::string& body) {
        auto rule = ParseReferer(body);
        if (!rule) return error("MalformedXML", "");
        // Stored in a normal form.
        XmlWriter x("RefererConfiguration", false);
        x.Element("Status", rule->enabled ? "Enabled" : "Disabled")
            .Element("RefererType", rule->white_list ? "White-List" : "Black-List")
            .Open("DomainList");
        for (const std::string& d : rule->domains) x.Element("Domain", d);
        x.Close("DomainList").Element("EmptyReferConfiguration", rule->allow_empty ? "Allow" : "Deny");
        Status s = idx->SetBucketAttribute(bucket, "referer", x.Finish());
        if (!s.ok()) return error("InternalError", s.message());
        return Empty(200);
      });
    }
    if (method == "GET" && r.Has("referer")) {
      op("GetBucketReferer");
      if (auto denied = load_bucket(false, r.bucket)) return *denied;
      auto rule = index.GetBucketAttribute(r.bucket, "referer");
      if (!rule.ok()) return store_error(rule.status());
      if (!*rule) {
        XmlWriter x("RefererConfiguration", false);
        x.Element("Status", "Disabled").Element("RefererType", "White-List");
        return XmlResponse(x.Finish());
      }
      return XmlResponse(**rule);
    }
    if (method == "DELETE" && r.Has("referer")) {
      op("DeleteBucketReferer");
      if (auto denied = load_bucket(false, r.bucket)) return *denied;
      Status s = index.SetBucketAttribute(r.bucket, "referer", "");
      if (!s.ok()) return store_error(s);
      return Empty(204);
    }
    if (r.Has("acl")) {
      op(method == "GET" ? "GetBucketAcl" : "PutBucketAcl");
      if (auto denied = load_bucket(false, r.bucket)) return *denied;
      if (method == "GET") {
        auto acl = index.GetBucketAttribute(r.bucket, "acl");
        XmlWriter x("AccessControlPolicy");
        x.Open("Owner").Element("ID", r.user->name).Element("DisplayName", r.user->name).Close("Owner");
        x.Open("AccessControlList");
        x.Open("Grant").Open("Grantee xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:type=\"CanonicalUser\"");
        x.Element("ID", r.user->name).Element("DisplayName", r.user->name).Close("Grantee");
        x.Element("Permission", "FULL_CONTROL").Close("Grant");
        if (acl.ok() && *acl && **acl == "public-read") {
          x.Open("Grant").Open("Grantee xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:type=\"Group\"");
          x.Element("URI", "http://acs.amazonaws.com/groups/global/AllUsers").Close("Grantee");
          x.Element("Permission", "READ").Close("Grant");
        }
        x.Close("AccessControlList");
        return XmlResponse(x.Finish());
      }
      if (method == "PUT") {
        // Three ways to say it: a canned x-amz-acl, x-amz-grant-read, or an
        // AccessControlPolicy body (s3cmd setacl). Only "private" and
        // "public-read" (AllUsers may READ) exist here; decided once the
        // body has arrived whole and verified.
        std::optional<std::string> acl;
        if (const std::string* canned = r.Header("x-amz-acl")) acl = std::string(Trim(*canned));
        if (const std::string* grant = r.Header("x-amz-grant-read")) {
          if (grant->find("/global/AllUsers") == std::string::npos) {
            return error("NotImplemented", "only grants to AllUsers are supported");
          }
          acl = "public-read";
        }
        for (const char* other : {"x-amz-grant-write", "x-amz-grant-read-acp", "x-amz-grant-write-acp",
                                  "x-amz-grant-full-control"}) {
          if (r.Header(other) != nullptr) return error("NotImplemented", "only canned ACLs and READ grants to AllUsers");
        }
        if (acl && *acl != "private" && *acl != "public-read") {
          return error("NotImplemented", "only the canned ACLs private and public-read are supported");
        }
        return xml_body([idx = &index, bucket = r.bucket, acl, error, store_error](const std::string& body) {
          std::string decided = acl.value_or("private");
          if (!acl && !Trim(body).empty()) {
            pugi::xml_document doc;
            if (!doc.load_buffer(body.data(), body.size())) return error("MalformedXML", "");
            pugi::xml_node list = doc.child("AccessControlPolicy").child("AccessControlList");
            if (!list) return error("MalformedXML", "");
            for (pugi::xml_node g : list.children("Grant")) {
              const std::string uri = g.child("Grantee").child_value("URI");
              const std::string permission = g.child_value("Permission");
              if (uri.find("/global/AllUsers") == std::string::npos) continue;  // owner grants
              if (permission != "READ") {
                return error("NotImplemented", "AllUsers may only be granted READ");
              }
              decided = "public-read";
            }
          }
          Status s = idx->SetBucketAttribute(bucket, "acl", decided == "private" ? "" : decided);
          if (!s.ok()) return store_error(s);
          return Empty(200);
        });
      }
      return error("MethodNotAllowed");
    }
    if (method == "GET") {
      struct Missing {
        std::string_view param, op, code;
      };
      static constexpr Missing kMissing[] = {
          {"policy", "GetBucketPolicy", "NoSuchBucketPolicy"},
          {"cors", "GetBucketCors", "NoSuchCORSConfiguration"},
          {"lifecycle", "GetBucketLifecycle", "NoSuchLifecycleConfiguration"},
          {"tagging", "GetBucketTagging", "NoSuchTagSet"},
          {"website", "GetBucketWebsite", "NoSuchWebsiteConfiguration"},
          {"encryption", "GetBucketEncryption", "ServerSideEncryptionConfigurationNotFoundError"},
      };
      for (const Missing& m : kMissing) {
        if (r.Has(m.param)) {
          op(m.op);
          if (auto denied = load_bucket(false, r.bucket)) return *denied;
          return error(m.code);
        }
      }
      if (r.Has("requestPayment")) {
        op("GetBucketRequestPayment");
        if (auto denied = load_bucket(false, r.bucket)) return *denied;
        return XmlResponse(XmlWriter("RequestPaymentConfiguration").Element("Payer", "BucketOwner").Finish());
      }
      if (r.Has("logging")) {
        op("GetBucketLogging");
        if (auto denied = load_bucket(false, r.bucket)) return *denied;
        return XmlResponse(XmlWriter("BucketLoggingStatus").Finish());
      }
      if (r.Has("notification")) {
        op("GetBucketNotificationConfiguration");
        if (auto denied = load_bucket(false, r.bucket)) return *denied;
        return XmlResponse(XmlWriter("NotificationConfiguration").Finish());
      }
      for (std::string_view unsupported : {"replication", "object-lock", "ownershipControls",
                                           "publicAccessBlock", "accelerate", "analytics", "inventory",
                                           "metrics", "intelligent-tiering", "versions"}) {
        if (r.Has(unsupported)) {
          op("Unsupported");
          return error("NotImplemented", fmt::format("?{} is not implemented", unsupported));
        }
      }
      if (r.Has("versioning")) {
        op("GetBucketVersioning");
        if (auto denied = load_bucket(false, r.bucket)) return *denied;
        return XmlResponse(XmlWriter("VersioningConfiguration").Finish());
      }
      if (r.Has("location")) {
        op("GetBucketLocation");
        if (auto denied = load_bucket(false, r.bucket)) return *denied;
        std::string body = R"(<?xml version="1.0" encoding="UTF-8"?>)" "\n";
        if (options_.region == "us-east-1") {
          body += R"(<LocationConstraint xmlns="http://s3.amazonaws.com/doc/2006-03-01/"/>)";
        } else {
          body += R"(<LocationConstraint xmlns="http://s3.amazonaws.com/doc/2006-03-01/">)" +
                  XmlEscape(options_.region) + "</LocationConstraint>";
        }
        return XmlResponse(std::move(body));
      }
      if (r.Has("uploads")) {
        op("ListMultipartUploads");
        if (auto denied = load_bucket(false, r.bucket)) return *denied;
        ListUploadsOptions o;
        if (const std::string* p = r.Param("prefix")) o.prefix = *p;
        if (const std::string* p = r.Param("key-marker")) o.key_marker = *p;
        if (const std::string* p = r.Param("upload-id-marker")) o.upload_id_marker = *p;
        if (const std::string* p = r.Param("max-uploads")) {
          uint64_t n = 0;
          if (!ParseU64(*p, &n)) return error("InvalidArgument", "max-uploads must be an integer");
          o.max_uploads = static_cast<size_t>(std::clamp<uint64_t>(n, 1, 1000));
        }
        const bool url = r.Param("encoding-type") != nullptr && *r.Param("encoding-type") == "url";
        auto enc = [url](std::string_view s) { return url ? UrlEncodeKey(s) : std::string(s); };
        auto list = index.ListUploads(r.bucket, o);
        if (!list.ok()) return store_error(list.status());
        XmlWriter x("ListMultipartUploadsResult");
        x.Element("Bucket", r.bucket).Element("KeyMarker", enc(o.key_marker))
            .Element("UploadIdMarker", o.upload_id_marker)
            .Element("NextKeyMarker", enc(list->next_key_marker))
            .Element("NextUploadIdMarker", list->next_upload_id_marker)
            .Element("Prefix", enc(o.prefix))
            .Element("MaxUploads", o.max_uploads).Bool("IsTruncated", list->truncated);
        if (url) x.Element("EncodingType", "url");
        for (const UploadInfo& u : list->uploads) {
          x.Open("Upload").Element("Key", enc(u.key)).Element("UploadId", u.upload_id);
          x.Open("Initiator").Element("ID", u.owner).Element("DisplayName", u.owner).Close("Initiator");
          x.Open("Owner").Element("ID", u.owner).Element("DisplayName", u.owner).Close("Owner");
          x.Element("StorageClass", "STANDARD").Element("Initiated", IsoTime(u.initiated_ms)).Close("Upload");
        }
        return XmlResponse(x.Finish());
      }
      // ListObjects (V1) and ListObjectsV2.
      const bool v2 = r.Param("list-type") != nullptr && *r.Param("list-type") == "2";
      op(v2 ? "ListObjectsV2" : "ListObjects");
      if (auto denied = load_bucket(true, r.bucket)) return *denied;
      ListOptions o;
      if (const std::string* p = r.Param("prefix")) o.prefix = *p;
      if (const std::string* p = r.Param("delimiter")) o.delimiter = *p;
      uint64_t max_keys = 1000;
      if (const std::string* p = r.Param("max-keys")) {
        if (!ParseU64(*p, &max_keys)) return error("InvalidArgument", "max-keys must be a non-negative integer");
      }
      const std::string* encoding = r.Param("encoding-type");
      if (encoding != nullptr && *encoding != "url") {
        return error("InvalidArgument", "Invalid Encoding Method specified in Request");
      }
      const bool url = encoding != nullptr;
      auto enc = [url](std::string_view s) { return url ? UrlEncodeKey(s) : std::string(s); };
      std::string token, start_after, marker;
      if (v2) {
        if (const std::string* p = r.Param("continuation-token")) {
          if (!Base64Decode(*p, &token) || token.empty()) {
            return error("InvalidArgument", "The continuation token provided is incorrect");
          }
        }
        if (const std::string* p = r.Param("start-after")) start_after = *p;
        o.start_after = !token.empty() ? token : start_after;
      } else {
        if (const std::string* p = r.Param("marker")) marker = *p;
        o.start_after = marker;
      }
      ListResult list;
      if (max_keys > 0) {
        o.max_keys = static_cast<size_t>(std::min<uint64_t>(max_keys, 1000));
        auto got = index.List(r.bucket, o);
        if (!got.ok()) return store_error(got.status());
        list = std::move(*got);
      }
      XmlWriter x("ListBucketResult");
      x.Element("Name", r.bucket).Element("Prefix", enc(o.prefix));
      if (v2) {
        if (const std::string* p = r.Param("continuation-token")) x.Element("ContinuationToken", *p);
        if (!start_after.empty()) x.Element("StartAfter", enc(start_after));
        x.Element("KeyCount", list.objects.size() + list.common_prefixes.size());
      } else {
        x.Element("Marker", enc(marker));
      }
      x.Element("MaxKeys", std::min<uint64_t>(max_keys, 1000));
      if (!o.delimiter.empty()) x.Element("Delimiter", enc(o.delimiter));
      if (url) x.Element("EncodingType", "url");
      x.Bool("IsTruncated", list.truncated);
      if (list.truncated) {
        if (v2) {
          x.Element("NextContinuationToken", Base64Encode(ByteView(list.next_start_after)));
        } else {
          x.Element("NextMarker", enc(list.next_start_after));
        }
      }
      const bool owner = !v2 || (r.Param("fetch-owner") != nullptr && *r.Param("fetch-owner") == "true");
      auto bucket_owner = index.GetBucket(r.bucket);
      const std::string owner_name = bucket_owner.ok() ? bucket_owner->owner : "";
      for (const ListEntry& e : list.objects) {
        x.Open("Contents").Element("Key", enc(e.key)).Element("LastModified", IsoTime(e.mtime_ms))
            .Element("ETag", Quoted(e.etag)).Element("Size", e.size);
        if (owner) x.Open("Owner").Element("ID", owner_name).Element("DisplayName", owner_name).Close("Owner");
        x.Element("StorageClass", "STANDARD").Close("Contents");
      }
      for (const std::string& p : list.common_prefixes) {
        x.Open("CommonPrefixes").Element("Prefix", enc(p)).Close("CommonPrefixes");
      }
      return XmlResponse(x.Finish());
    }
    if (method == "HEAD") {
      op("HeadBucket");
      if (auto denied = load_bucket(false, r.bucket)) return *denied;
      HttpResponse resp = Empty(200);
      resp.AddHeader("x-amz-bucket-region", options_.region);
      return resp;
    }
    if (method == "PUT") {
      op("CreateBucket");
      if (r.user == nullptr) return error("AccessDenied");
      auto existing = index.GetBucket(r.bucket);
      if (existing.ok()) {
        return error(existing->owner == r.user->name ? "BucketAlreadyOwnedByYou" : "BucketAlreadyExists");
      }
      const std::string* canned = r.Header("x-amz-acl");
      const std::string acl = canned != nullptr ? std::string(Trim(*canned)) : "private";
      if (acl != "private" && acl != "public-read") {
        return error("NotImplemented", "only the canned ACLs private and public-read are supported");
      }
      const std::string region = options_.region;
      const S3User* user = r.user;
      return xml_body([idx = &index, bucket = r.bucket, user, acl, region, error,
                       store_error](const std::string& body) -> HttpResponse {
        if (!Trim(body).empty()) {
          pugi::xml_document doc;
          if (!doc.load_buffer(body.data(), body.size())) return error("MalformedXML", "");
          const std::string location = doc.child("CreateBucketConfiguration").child_value("LocationConstraint");
          if (!location.empty() && location != region) {
            return error("IllegalLocationConstraintException",
                         fmt::format("The {} location constraint is incompatible for the region specific "
                                     "endpoint this request was sent to.", location));
          }
        }
        Status s = idx->CreateBucket(user->name, bucket);
        if (s == qcloud::Errc::kInvalidArgument) return error("InvalidBucketName", "");
        if (s == qcloud::Errc::kAlreadyExists) {
          auto again = idx->GetBucket(bucket);
          return error(again.ok() && again->owner == user->name ? "BucketAlreadyOwnedByYou"
                                                                 : "BucketAlreadyExists", "");
        }
        if (!s.ok()) return store_error(s);
        if (acl == "public-read") {
          if (Status a = idx->SetBucketAttribute(bucket, "acl", acl); !a.ok()) return store_error(a);
        }
        HttpResponse resp = Empty(200);
        resp.AddHeader("Location", "/" + bucket);
        return resp;
      });
    }
    if (method == "DELETE") {
      op("DeleteBucket");
      if (auto denied = load_bucket(false, r.bucket)) return *denied;
      Status s = store_.DeleteBucket(r.bucket);
      if (s == qcloud::Errc::kAborted) return error("BucketNotEmpty");
      if (!s.ok()) return store_error(s);
      return Empty(204);
    }
    if (method == "POST" && r.Has("delete")) {
      op("DeleteObjects");
      if (auto denied = load_bucket(false, r.bucket)) return *denied;
      std::optional<Md5Digest> md5;
      if (auto bad = content_md5(&md5)) return *bad;
      return xml_body([this, bucket = r.bucket, md5, error](const std::string& body) -> HttpResponse {
        if (md5 && Md5(ByteView(body)) != *md5) return error("BadDigest", "");
        pugi::xml_document doc;
        if (!doc.load_buffer(body.data(), body.size())) return error("MalformedXML", "");
        pugi::xml_node root = doc.child("Delete");
        if (!root) return error("MalformedXML", "");
        const bool quiet = std::string(root.child_value("Quiet")) == "true";
        std::vector<std::string> keys;
        for (pugi::xml_node o : root.children("Object")) {
          if (keys.size() == kMaxDeleteKeys) return error("MalformedXML", "more than 1000 keys");
          keys.emplace_back(o.child_value("Key"));
        }
        if (keys.empty()) return error("MalformedXML", "");
        XmlWriter x("DeleteResult");
        for (const std::string& key : keys) {
          Status s = key.empty() || key.size() > kMaxKeyBytes ? InvalidArgument("bad key")
                                                              : store_.Delete(bucket, key);
          if (s.ok() || s == qcloud::Errc::kNotFound) {
            if (!quiet) x.Open("Deleted").Element("Key", key).Close("Deleted");
          } else {
            const bool bad_key = s == qcloud::Errc::kInvalidArgument;
            x.Open("Error").Element("Key", key).Element("Code", bad_key ? "InvalidArgument" : "InternalError")
                .Element("Message", s.message()).Close("Error");
          }
        }
        return XmlResponse(x.Finish());
      });
    }
    op("Unknown");
    return error("MethodNotAllowed");
  }

  // ---- Object operations.
  if (method == "GET" && r.Has("uploadId")) {
    op("ListParts");
    if (auto denied = load_bucket(false, r.bucket)) return *denied;
    const std::string& id = *r.Param("uploadId");
    auto upload = find_upload(id);
    if (!upload) return error("NoSuchUpload");
    uint64_t after = 0, max_parts = 1000;
    if (const std::string* p = r.Param("part-number-marker")) {
      if (!ParseU64(*p, &after)) return error("InvalidArgument", "part-number-marker must be an integer");
    }
    if (const std::string* p = r.Param("max-parts")) {
      if (!ParseU64(*p, &max_parts)) return error("InvalidArgument", "max-parts must be an integer");
    }
    auto parts = index.ListParts(id, static_cast<uint32_t>(std::min<uint64_t>(after, kMaxPartNumber)),
                                 static_cast<size_t>(std::clamp<uint64_t>(max_parts, 1, 1000)));
    if (!parts.ok()) return store_error(parts.status());
    XmlWriter x("ListPartsResult");
    x.Element("Bucket", r.bucket).Element("Key", r.key).Element("UploadId", id);
    x.Open("Initiator").Element("ID", upload->owner).Element("DisplayName", upload->owner).Close("Initiator");
    x.Open("Owner").Element("ID", upload->owner).Element("DisplayName", upload->owner).Close("Owner");
    x.Element("StorageClass", "STANDARD").Element("PartNumberMarker", after);
    if (parts->truncated) x.Element("NextPartNumberMarker", parts->next_marker);
    else if (!parts->parts.empty()) x.Element("NextPartNumberMarker", parts->parts.back().number);
    x.Element("MaxParts", std::clamp<uint64_t>(max_parts, 1, 1000)).Bool("IsTruncated", parts->truncated);
    for (const PartInfo& p : parts->parts) {
      x.Open("Part").Element("PartNumber", p.number).Element("LastModified", IsoTime(p.mtime_ms))
          .Element("ETag", Quoted(p.etag)).Element("Size", p.size).Close("Part");
    }
    return XmlResponse(x.Finish());
  }

  if ((method == "GET" || method == "HEAD") && !r.Has("acl") && !r.Has("tagging")) {
    op(head ? "HeadObject" : "GetObject");
    if (auto denied = load_bucket(true, r.bucket)) return *denied;
    auto meta = index.GetObject(r.bucket, r.key);
    if (!meta.ok()) return store_error(meta.status());
    // Preconditions (RFC 7232 section 6 order, as S3 applies them).
    const std::string* if_match = r.Header("if-match");
    const std::string* if_none = r.Header("if-none-match");
    const int64_t mtime_s = meta->mtime_ms / 1000;
    if (if_match != nullptr) {
      if (!EtagListMatches(*if_match, meta->etag)) return error("PreconditionFailed");
    } else if (const std::string* ius = r.Header("if-unmodified-since")) {
      auto t = ParseHttpTime(Trim(*ius));
      if (t && mtime_s > *t) return error("PreconditionFailed");
    }
    bool not_modified = false;
    if (if_none != nullptr) {
      not_modified = EtagListMatches(*if_none, meta->etag);
    } else if (const std::string* ims = r.Header("if-modified-since")) {
      auto t = ParseHttpTime(Trim(*ims));
      not_modified = t && mtime_s <= *t;
    }
    if (not_modified) {
      HttpResponse resp = Empty(304);
      resp.AddHeader("ETag", Quoted(meta->etag));
      resp.AddHeader("Last-Modified", HttpTime(meta->mtime_ms));
      return resp;
    }
    HttpResponse resp;
    resp.head = head;
    AddObjectHeaders(resp, *meta);
    resp.AddHeader("Accept-Ranges", "bytes");
    uint64_t first = 0, length = meta->size;
    if (const std::string* range = r.Header("range")) {
      auto resolved = ResolveRange(*range, meta->size);
      if (!resolved.ok()) {
        HttpResponse bad = error("InvalidRange");
        bad.AddHeader("Content-Range", fmt::format("bytes */{}", meta->size));
        return bad;
      }
      if (*resolved) {
        first = (*resolved)->first;
        length = (*resolved)->length;
        resp.status = 206;
        resp.AddHeader("Content-Range",
                                  fmt::format("bytes {}-{}/{}", first, first + length - 1, meta->size));
      }
    }
    // Presigned links may ask for other response headers.
    static constexpr std::pair<std::string_view, std::string_view> kOverrides[] = {
        {"response-content-type", "Content-Type"},
        {"response-content-language", "Content-Language"},
        {"response-expires", "Expires"},
        {"response-cache-control", "Cache-Control"},
        {"response-content-disposition", "Content-Disposition"},
        {"response-content-encoding", "Content-Encoding"},
    };
    for (const auto& [param, header] : kOverrides) {
      if (const std::string* v = r.Param(param)) resp.SetHeader(header, *v);
    }
    resp.object = std::move(*meta);
    resp.offset = first;
    resp.length = length;
    return resp;
  }

  if (r.Has("acl") || r.Has("tagging")) {
    const bool acl = r.Has("acl");
    op(std::string(method == "GET" ? "Get" : "Put") + (acl ? "ObjectAcl" : "ObjectTagging"));
    if (auto denied = load_bucket(false, r.bucket)) return *denied;
    auto meta = index.GetObject(r.bucket, r.key);
    if (!meta.ok()) return store_error(meta.status());
    if (method == "GET") {
      if (!acl) return XmlResponse(XmlWriter("Tagging").Open("TagSet").Close("TagSet").Finish());
      XmlWriter x("AccessControlPolicy");
      x.Open("Owner").Element("ID", r.user->name).Element("DisplayName", r.user->name).Close("Owner");
      x.Open("AccessControlList").Open("Grant")
          .Open("Grantee xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:type=\"CanonicalUser\"")
          .Element("ID", r.user->name).Element("DisplayName", r.user->name).Close("Grantee")
          .Element("Permission", "FULL_CONTROL").Close("Grant").Close("AccessControlList");
      return XmlResponse(x.Finish());
    }
    return error("NotImplemented", acl ? "object ACLs are not supported; use bucket ACLs"
                                       : "object tagging is not supported");
  }

  if (method == "DELETE") {
    if (r.Has("uploadId")) {
      op("AbortMultipartUpload");
      if (auto denied = load_bucket(false, r.bucket)) return *denied;
      const std::string& id = *r.Param("uploadId");
      if (!find_upload(id)) return error("NoSuchUpload");
      Status s = store_.AbortUpload(id);
      if (!s.ok()) return store_error(s);
      return Empty(204);
    }
    op("DeleteObject");
    if (auto denied = load_bucket(false, r.bucket)) return *denied;
    Status s = store_.Delete(r.bucket, r.key);
    if (!s.ok() && !(s == qcloud::Errc::kNotFound)) return store_error(s);
    return Empty(204);
  }

  if (method == "POST" && r.Has("uploads")) {
    op("CreateMultipartUpload");
    if (auto denied = load_bucket(false, r.bucket)) return *denied;
    auto metadata = MetadataFrom(r.http);
    if (!metadata.ok()) return error("MetadataTooLarge");
    PutOptions o;
    if (const std::string* ct = r.Header("content-type")) o.content_type = std::string(Trim(*ct));
    o.user_metadata = std::move(*metadata);
    auto id = store_.CreateUpload(r.bucket, r.key, r.user->name, o);
    if (!id.ok()) return store_error(id.status());
    XmlWriter x("InitiateMultipartUploadResult");
    x.Element("Bucket", r.bucket).Element("Key", r.key).Element("UploadId", *id);
    // The request may carry an (empty) body.
    return xml_body([doc = x.Finish()](const std::string&) { return XmlResponse(doc); });
  }

  if (method == "POST" && r.Has("uploadId")) {
    op("CompleteMultipartUpload");
    if (auto denied = load_bucket(false, r.bucket)) return *denied;
    const std::string id = *r.Param("uploadId");
    auto upload = find_upload(id);
    if (!upload) return error("NoSuchUpload");
    const std::string location = fmt::format("http://{}{}", r.host, r.path);
    return xml_body([this, id, bucket = r.bucket, key = r.key, location, error,
                     store_error](const std::string& body) -> HttpResponse {
      pugi::xml_document doc;
      if (!doc.load_buffer(body.data(), body.size())) return error("MalformedXML", "");
      pugi::xml_node root = doc.child("CompleteMultipartUpload");
      if (!root) return error("MalformedXML", "");
      std::vector<std::pair<uint32_t, std::string>> parts;
      for (pugi::xml_node p : root.children("Part")) {
        uint64_t n = 0;
        if (!ParseU64(Trim(p.child_value("PartNumber")), &n) || n < 1 || n > kMaxPartNumber ||
            parts.size() >= kMaxPartNumber) {
          return error("MalformedXML", "");
        }
        parts.emplace_back(static_cast<uint32_t>(n), std::string(Unquote(p.child_value("ETag"))));
      }
      if (parts.empty()) return error("MalformedXML", "");
      auto meta = store_.CompleteUpload(id, parts, options_.min_part_bytes);
      if (!meta.ok()) return store_error(meta.status());
      XmlWriter x("CompleteMultipartUploadResult");
      x.Element("Location", location).Element("Bucket", bucket).Element("Key", key)
          .Element("ETag", Quoted(meta->etag));
      return XmlResponse(x.Finish());
    });
  }

  if (method == "PUT") {
    const std::string* copy_source = r.Header("x-amz-copy-source");
    const bool part = r.Has("partNumber") || r.Has("uploadId");
    uint32_t part_number = 0;
    std::string upload_id;
    if (part) {
      uint64_t n = 0;
      if (!r.Has("partNumber") || !r.Has("uploadId")) {
        return error("InvalidRequest", "UploadPart needs both partNumber and uploadId");
      }
      if (!ParseU64(*r.Param("partNumber"), &n) || n < 1 || n > kMaxPartNumber) {
        return error("InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive");
      }
      part_number = static_cast<uint32_t>(n);
      upload_id = *r.Param("uploadId");
    }
    op(part ? (copy_source != nullptr ? "UploadPartCopy" : "UploadPart")
            : (copy_source != nullptr ? "CopyObject" : "PutObject"));
    if (auto denied = load_bucket(false, r.bucket)) return *denied;
    if (part) {
      if (!find_upload(upload_id)) return error("NoSuchUpload");
    }

    if (copy_source != nullptr) {
      // "/bucket/key" or "bucket/key", URL-encoded, maybe "?versionId=".
      std::string_view src = Trim(*copy_source);
      if (const size_t qm = src.find('?'); qm != std::string_view::npos) src = src.substr(0, qm);
      auto decoded_src = sigv4::UriDecode(src);
      if (!decoded_src) return error("InvalidArgument", "Invalid copy source encoding");
      std::string_view s = *decoded_src;
      if (s.starts_with('/')) s.remove_prefix(1);
      const size_t slash = s.find('/');
      if (slash == std::string_view::npos || slash == 0 || slash + 1 == s.size()) {
        return error("InvalidArgument", "Copy Source must mention the source bucket and key: sourcebucket/sourcekey");
      }
      const std::string src_bucket(s.substr(0, slash)), src_key(s.substr(slash + 1));
      if (src_key.size() > kMaxKeyBytes) return error("KeyTooLongError");
      if (auto denied = load_bucket(false, src_bucket)) return *denied;
      auto src_meta = index.GetObject(src_bucket, src_key);
      if (!src_meta.ok()) {
        if (src_meta.status() == qcloud::Errc::kNotFound) return error("NoSuchKey");
        return store_error(src_meta.status());
      }
      // x-amz-copy-source-if-*.
      const int64_t mtime_s = src_meta->mtime_ms / 1000;
      if (const std::string* h = r.Header("x-amz-copy-source-if-match")) {
        if (!EtagListMatches(*h, src_meta->etag)) return error("PreconditionFailed");
      } else if (const std::string* h2 = r.Header("x-amz-copy-source-if-unmodified-since")) {
        auto t = ParseHttpTime(Trim(*h2));
        if (t && mtime_s > *t) return error("PreconditionFailed");
      }
      if (const std::string* h = r.Header("x-amz-copy-source-if-none-match")) {
        if (EtagListMatches(*h, src_meta->etag)) return error("PreconditionFailed");
      } else if (const std::string* h2 = r.Header("x-amz-copy-source-if-modified-since")) {
        auto t = ParseHttpTime(Trim(*h2));
        if (t && mtime_s <= *t) return error("PreconditionFailed");
      }
      if (part) {
        uint64_t first = 0, length = src_meta->size;
        if (const std::string* range = r.Header("x-amz-copy-source-range")) {
          std::string_view spec = Trim(*range);
          uint64_t a = 0, b = 0;
          const size_t dash = spec.find('-');
          if (!spec.starts_with("bytes=") || dash == std::string_view::npos ||
              !ParseU64(spec.substr(6, dash - 6), &a) || !ParseU64(spec.substr(dash + 1), &b) || b < a) {
            return error("InvalidArgument", "The x-amz-copy-source-range value must be of the form bytes=first-last");
          }
          if (b >= src_meta->size) return error("InvalidRange");
          first = a;
          length = b - a + 1;
        }
        if (length > options_.max_object_bytes) return error("EntityTooLarge");
        auto w = store_.BeginPut();
        for (uint64_t at = 0; at < length;) {
          const uint64_t piece = std::min<uint64_t>(length - at, uint64_t{8} << 20);
          auto bytes = store_.Read(*src_meta, first + at, piece);
          if (!bytes.ok()) return store_error(bytes.status());
          if (Status ws = w->Write(bytes->readable()); !ws.ok()) return store_error(ws);
          at += piece;
        }
        auto p = w->FinishPart(upload_id, part_number);
        if (!p.ok()) return store_error(p.status());
        XmlWriter x("CopyPartResult");
        x.Element("LastModified", IsoTime(p->mtime_ms)).Element("ETag", Quoted(p->etag));
        return XmlResponse(x.Finish());
      }
      const std::string* directive = r.Header("x-amz-metadata-directive");
      const std::string dir = directive != nullptr ? std::string(Trim(*directive)) : "COPY";
      if (dir != "COPY" && dir != "REPLACE") return error("InvalidArgument", "Unknown metadata directive.");
      const bool replace = dir == "REPLACE";
      if (!replace && src_bucket == r.bucket && src_key == r.key) {
        return error("InvalidRequest",
                     "This copy request is illegal because it is trying to copy an object to itself without "
                     "changing the object's metadata, storage class, website redirect location or encryption "
                     "attributes.");
      }
      PutOptions replacement;
      if (replace) {
        auto metadata = MetadataFrom(r.http);
        if (!metadata.ok()) return error("MetadataTooLarge");
        replacement.user_metadata = std::move(*metadata);
        if (const std::string* ct = r.Header("content-type")) replacement.content_type = std::string(Trim(*ct));
      }
      auto copied = store_.Copy(src_bucket, src_key, r.bucket, r.key, replace ? &replacement : nullptr);
      if (!copied.ok()) return store_error(copied.status());
      XmlWriter x("CopyObjectResult");
      x.Element("LastModified", IsoTime(copied->mtime_ms)).Element("ETag", Quoted(copied->etag));
      return XmlResponse(x.Finish());
    }

    // PutObject / UploadPart: the body goes straight into chunks.
    std::optional<Md5Digest> md5;
    if (auto bad = content_md5(&md5)) return *bad;
    const std::optional<uint64_t> length = content_length();
    if (length && *length > options_.max_object_bytes) return error("EntityTooLarge");
    PutOptions o;
    o.expected_md5 = md5;
    if (!part) {
      auto metadata = MetadataFrom(r.http);
      if (!metadata.ok()) return error("MetadataTooLarge");
      o.user_metadata = std::move(*metadata);
      if (const std::string* ct = r.Header("content-type")) o.content_type = std::string(Trim(*ct));
    }

    if (const std::string* instant = r.Header(kInstantHeader); instant != nullptr && !part) {
      // <md5 hex>:<sha256 hex>:<size>
      op("PutObjectInstant");
      const std::string_view v = Trim(*instant);
      const size_t c1 = v.find(':'), c2 = c1 == std::string_view::npos ? c1 : v.find(':', c1 + 1);
      std::string md5_raw, sha_raw;
      uint64_t size = 0;
      if (c2 == std::string_view::npos || !FromHex(v.substr(0, c1), &md5_raw) || md5_raw.size() != 16 ||
          !FromHex(v.substr(c1 + 1, c2 - c1 - 1), &sha_raw) || sha_raw.size() != 32 ||
          !ParseU64(v.substr(c2 + 1), &size)) {
        return error("InvalidArgument", "x-qcloud-instant-upload must be <md5 hex>:<sha256 hex>:<size>");
      }
      if (length && *length != 0) return error("InvalidArgument", "an instant upload has no body");
      ContentId content;
      std::memcpy(content.md5, md5_raw.data(), 16);
      std::memcpy(content.sha256, sha_raw.data(), 32);
      content.size = size;
      auto meta = store_.PutInstant(r.bucket, r.key, content, o);
      if (!meta.ok()) {
        if (meta.status() == qcloud::Errc::kNotFound && index.GetBucket(r.bucket).ok()) {
          return error("PreconditionFailed", "instant upload: no such content is stored; send the body");
        }
        return store_error(meta.status());
      }
      counters_.instant_uploads.fetch_add(1, std::memory_order_relaxed);
      HttpResponse resp = Empty(200);
      resp.AddHeader("ETag", Quoted(meta->etag));
      return resp;
    }

    auto writer = std::shared_ptr<ObjectWriter>(store_.BeginPut().release());
    const uint64_t limit = std::min(options_.max_object_bytes, length.value_or(options_.max_object_bytes));
    return want_body(
        limit, [writer](ByteView data) { return writer->Write(data); },
        [writer, part, upload_id, part_number, bucket = r.bucket, key = r.key, o, length, error,
         store_error, c = &call]() -> HttpResponse {
          if (length && c->received_ != *length) return error("IncompleteBody", "");
          if (part) {
            auto p = writer->FinishPart(upload_id, part_number, o.expected_md5);
            if (!p.ok()) {
              if (p.status() == qcloud::Errc::kCorruption) return error("BadDigest", "");
              return store_error(p.status());
            }
            HttpResponse resp = Empty(200);
            resp.AddHeader("ETag", Quoted(p->etag));
            return resp;
          }
          // A signed payload's SHA-256 was verified above (Call::Finish):
          // the content's, so the store need not compute it again.
          PutOptions po = o;
          std::string verified;
          if (c->payload_ == Call::Payload::kSha256 && FromHex(c->expected_sha256_, &verified) &&
              verified.size() == 32) {
            Sha256Digest d;
            std::memcpy(d.data(), verified.data(), d.size());
            po.sha256 = d;
          }
          auto meta = writer->Finish(bucket, key, po);
          if (!meta.ok()) {
            if (meta.status() == qcloud::Errc::kCorruption) return error("BadDigest", "");
            return store_error(meta.status());
          }
          HttpResponse resp = Empty(200);
          resp.AddHeader("ETag", Quoted(meta->etag));
          return resp;
        });
  }

  op("Unknown");
  return error("MethodNotAllowed");
}

}  // namespace qcloud::object::s3
