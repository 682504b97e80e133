// The S3 service without sockets: requests signed as a client signs them go
// through Service::Begin / Call::Feed / Call::Finish and the answers are
// checked against what S3 answers (status, error code, headers, XML). Also
// the aws-chunked decoder against AWS's published example.
#include <doctest/doctest.h>

#include <filesystem>
#include <map>
#include <string>

#include <pugixml.hpp>

#include "qcloud/core/hash.h"
#include "qcloud/object/sigv4.h"
#include "qcloud/testing/doctest_helpers.h"
#include "qcloud/testing/mem_env.h"
#include "s3/service.h"
#include "s3/xml.h"

namespace qcloud::object {
namespace {

using s3::HttpRequest;
using s3::HttpResponse;

// ---------------------------------------------------------------------------
// aws-chunked: the example of AWS's "Signature Calculations ... Chunked
// Upload" page (65 KiB of 'a' in a 64 KiB and a 1 KiB chunk).

constexpr char kAwsSecret[] = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

sigv4::Request AwsChunkedRequest(std::vector<std::pair<std::string, std::string>>& headers) {
  headers = {
      {"Host", "s3.amazonaws.com"},
      {"x-amz-date", "20130524T000000Z"},
      {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
      {"Authorization",
       "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
       "SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
       "x-amz-decoded-content-length;x-amz-storage-class,"
       "Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"},
      {"x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"},
      {"Content-Encoding", "aws-chunked"},
      {"x-amz-decoded-content-length", "66560"},
      {"Content-Length", "66824"},
  };
  return {.method = "PUT", .path = "/examplebucket/chunkObject.txt", .query = "", .headers = headers};
}

std::string AwsChunkedBody() {
  return "10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n" +
         std::string(65536, 'a') + "\r\n" +
         "400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n" +
         std::string(1024, 'a') + "\r\n" +
         "0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n";
}

sigv4::Verified AwsVerified() {
  std::vector<std::pair<std::string, std::string>> headers;
  sigv4::Request req = AwsChunkedRequest(headers);
  auto secrets = [](std::string_view) -> std::optional<std::string> { return std::string(kAwsSecret); };
  const WallTime when = WallTime(std::chrono::seconds(1369353600));  // 2013-05-24T00:00:00Z
  auto v = sigv4::Verify(req, secrets, when);
  REQUIRE_MESSAGE(v.ok(), v.status().ToString());
  return *v;
}

std::string Decode(const std::string& body, size_t piece, Status* result) {
  std::string out;
  sigv4::ChunkedPayloadDecoder d(AwsVerified(), sigv4::kStreamingSigned, [&](ByteView data) {
    out.append(data.chars(), data.size());
    return Status::Ok();
  });
  *result = Status::Ok();
  for (size_t at = 0; at < body.size() && result->ok(); at += piece) {
    *result = d.Feed(ByteView(std::string_view(body).substr(at, piece)));
  }
  if (result->ok()) *result = d.Finish();
  return out;
}

TEST_CASE("s3 aws-chunked: AWS's example verifies chunk by chunk in pieces of any size") {
  const std::string body = AwsChunkedBody();
  for (size_t piece : {body.size(), size_t{1}, size_t{7}, size_t{4096}, size_t{65536 + 90}}) {
    Status s;
    const std::string out = Decode(body, piece, &s);
    CHECK_MESSAGE(s.ok(), s.ToString());
    CHECK(out == std::string(66560, 'a'));
  }
}

TEST_CASE("s3 aws-chunked: tampered data or signatures and bad framing are refused") {
  Status s;
  std::string body = AwsChunkedBody();
  body[200] = 'b';  // data of the first chunk
  Decode(body, 1000, &s);
  CHECK(s.code() == object::Errc::kSignatureDoesNotMatch);

  body = AwsChunkedBody();
  const size_t last = body.rfind("0;chunk-signature=") + 18;
  body[last] = body[last] == '0' ? '1' : '0';
  Decode(body, 1000, &s);
  CHECK(s.code() == object::Errc::kSignatureDoesNotMatch);

  body = AwsChunkedBody();
  Decode(body.substr(0, body.size() - 2), 1000, &s);  // the final CRLF missing
  CHECK(s.code() == object::Errc::kAuthorizationMalformed);
  Decode(body + "x", 1000, &s);  // bytes after the end
  CHECK(s.code() == object::Errc::kAuthorizationMalformed);
  Decode(std::string(5000, '1'), 1000, &s);  // a header line that never ends
  CHECK(s.code() == object::Errc::kAuthorizationMalformed);
  Decode("ffffffffff;chunk-signature=" + std::string(64, '0') + "\r\n", 1000, &s);  // 1 TiB chunk
  CHECK(s.code() == object::Errc::kAuthorizationMalformed);
  Decode("10\r\n", 1000, &s);  // signed mode: a chunk without a signature
  CHECK(s.code() == object::Errc::kAuthorizationMalformed);
}

TEST_CASE("s3 aws-chunked: unsigned chunks with a checksum trailer") {
  const std::string body = "5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n";
  std::string out;
  sigv4::ChunkedPayloadDecoder d(sigv4::Verified{}, sigv4::kStreamingUnsignedTrailer, [&](ByteView data) {
    out.append(data.chars(), data.size());
    return Status::Ok();
  });
  REQUIRE_OK(d.Feed(ByteView(body)));
  REQUIRE_OK(d.Finish());
  CHECK(out == "hello world");
  REQUIRE(d.trailers().size() == 1);
  CHECK(d.trailers()[0].first == "x-amz-checksum-crc32");
}

// ---------------------------------------------------------------------------
// The service.

struct User {
  std::string access, secret;
};
const User kAlice{"AKIAALICE", "alice-secret"};
const User kBob{"AKIABOB", "bob-secret"};

struct Reply {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::string Code() const {
    pugi::xml_document doc;
    doc.load_string(body.c_str());
    return doc.child("Error").child_value("Code");
  }
};

struct Fixture {
  Fixture() {
    char tmpl[] = "/tmp/qcloud-s3svc-XXXXXX";
    dir = ::mkdtemp(tmpl);
    store = ObjectStore::Open({.disks = {"/d0", "/d1"},
                               .index_dir = dir,
                               .env = &env,
                               .chunk_bytes = 64 * 1024,
                               .volume_bytes = 4 << 20,
                               .clock = &clock})
                .value();
    S3ServerOptions o;
    o.users = {{"alice", kAlice.access, kAlice.secret}, {"bob", kBob.access, kBob.secret}};
    o.clock = &clock;
    o.min_part_bytes = 100 * 1024;
    options = o;
    service = std::make_unique<s3::Service>(*store, options, counters);
  }
  ~Fixture() {
    service.reset();
    store.reset();
    std::filesystem::remove_all(dir);
  }

  std::string AmzDate() const {
    const auto secs = std::chrono::duration_cast<std::chrono::seconds>(clock.WallNow().time_since_epoch()).count();
    std::time_t t = secs;
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
    return buf;
  }

  // Signs like a client (header SigV4, payload hashed), sends, reads the
  // object body if one follows.
  Reply Send(std::string method, std::string target, std::string body = {},
             std::vector<std::pair<std::string, std::string>> extra = {}, const User* user = &kAlice,
             bool feed_body = true, std::string payload_hash = {}) {
    HttpRequest req;
    req.method = method;
    req.target = target;
    req.headers = {{"host", "127.0.0.1:9000"}};
    for (auto& [n, v] : extra) req.headers.emplace_back(n, v);
    if (user != nullptr) {
      const std::string amz = AmzDate();
      if (payload_hash.empty()) payload_hash = ToHex(AsBytes(Sha256(ByteView(body))));
      req.headers.emplace_back("x-amz-date", amz);
      req.headers.emplace_back("x-amz-content-sha256", payload_hash);
      std::vector<std::string> names;
      for (auto& [n, v] : req.headers) names.push_back(n);
      std::sort(names.begin(), names.end());
      const size_t q = target.find('?');
      sigv4::Request sr{.method = method,
                        .path = std::string_view(target).substr(0, q),
                        .query = q == std::string::npos ? std::string_view() : std::string_view(target).substr(q + 1),
                        .headers = req.headers};
      const std::string canonical = sigv4::CanonicalRequest(sr, names, payload_hash, false);
      const std::string scope = amz.substr(0, 8) + "/us-east-1/s3/aws4_request";
      const std::string sig = sigv4::Signature(sigv4::SigningKey(user->secret, amz.substr(0, 8), "us-east-1", "s3"),
                                               sigv4::StringToSign(amz, scope, canonical));
      std::string signed_list;
      for (const auto& n : names) signed_list += (signed_list.empty() ? "" : ";") + n;
      req.headers.emplace_back("authorization",
                               "AWS4-HMAC-SHA256 Credential=" + user->access + "/" + scope +
                                   ",SignedHeaders=" + signed_list + ",Signature=" + sig);
    }
    return Run(std::move(req), body, feed_body);
  }

  Reply Run(HttpRequest req, const std::string& body, bool feed_body = true) {
    auto call = service->Begin(std::move(req));
    if (call->wants_body()) {
      if (!feed_body) return Reply{-1, {}, {}};  // the client went away: the call is dropped
      for (size_t at = 0; at < body.size(); at += 1000) {
        if (!call->Feed(ByteView(std::string_view(body).substr(at, 1000))).ok()) break;
      }
    }
    HttpResponse r = call->Finish();
    Reply out;
    out.status = r.status;
    std::string_view rest = r.headers;
    while (!rest.empty()) {
      const size_t end = rest.find("\r\n");
      REQUIRE(end != std::string_view::npos);
      const std::string_view line = rest.substr(0, end);
      rest.remove_prefix(end + 2);
      const size_t colon = line.find(": ");
      REQUIRE(colon != std::string_view::npos);
      std::string lower(line.substr(0, colon));
      for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      out.headers[lower] = std::string(line.substr(colon + 2));
    }
    if (r.object && !r.head) {
      auto bytes = store->Read(*r.object, r.offset, r.length);
      const bool read_ok = bytes.ok() || r.length == 0;
      REQUIRE_MESSAGE(read_ok, bytes.status().ToString());
      if (bytes.ok()) out.body = bytes->readable().ToString();
    } else {
      out.body = r.body;
    }
    return out;
  }

  testing::MemEnv env;
  ManualClock clock;
  std::string dir;
  std::unique_ptr<ObjectStore> store;
  S3ServerOptions options;
  s3::Counters counters;
  std::unique_ptr<s3::Service> service;
};

pugi::xml_document Xml(const std::string& body) {
  pugi::xml_document doc;
  REQUIRE_MESSAGE(doc.load_string(body.c_str()), body);
  return doc;
}

TEST_CASE("s3 service: bucket lifecycle and S3's errors") {
  Fixture f;
  CHECK(f.Send("PUT", "/photos").status == 200);
  Reply again = f.Send("PUT", "/photos");
  CHECK(again.status == 409);
  CHECK(again.Code() == "BucketAlreadyOwnedByYou");
  CHECK(f.Send("PUT", "/photos", "", {}, &kBob).Code() == "BucketAlreadyExists");
  CHECK(f.Send("PUT", "/x").Code() == "InvalidBucketName");
  CHECK(f.Send("HEAD", "/photos").status == 200);
  CHECK(f.Send("HEAD", "/nosuch").status == 404);
  CHECK(f.Send("GET", "/photos?location").body.find("LocationConstraint") != std::string::npos);
  // ListBuckets shows one's own buckets only.
  REQUIRE(f.Send("PUT", "/bobs", "", {}, &kBob).status == 200);
  auto mine = Xml(f.Send("GET", "/").body);
  int n = 0;
  for (auto b : mine.child("ListAllMyBucketsResult").child("Buckets").children("Bucket")) {
    CHECK(std::string(b.child_value("Name")) == "photos");
    ++n;
  }
  CHECK(n == 1);
  // Another user's bucket: AccessDenied for everything.
  CHECK(f.Send("GET", "/bobs").Code() == "AccessDenied");
  CHECK(f.Send("PUT", "/bobs/k", "x").Code() == "AccessDenied");
  CHECK(f.Send("DELETE", "/bobs").Code() == "AccessDenied");
  CHECK(f.Send("HEAD", "/bobs").status == 403);
  // Not empty, then empty.
  REQUIRE(f.Send("PUT", "/photos/a", "1").status == 200);
  Reply busy = f.Send("DELETE", "/photos");
  CHECK(busy.status == 409);
  CHECK(busy.Code() == "BucketNotEmpty");
  CHECK(f.Send("DELETE", "/photos/a").status == 204);
  CHECK(f.Send("DELETE", "/photos/a").status == 204);  // S3: deleting a missing key succeeds
  CHECK(f.Send("DELETE", "/photos").status == 204);
  Reply gone = f.Send("GET", "/photos/a");
  CHECK(gone.status == 404);
  CHECK(gone.Code() == "NoSuchBucket");
  auto err = Xml(gone.body);
  CHECK(std::string(err.child("Error").child_value("Resource")) == "/photos/a");
  CHECK(!std::string(err.child("Error").child_value("RequestId")).empty());
}

TEST_CASE("s3 service: authentication failures") {
  Fixture f;
  REQUIRE(f.Send("PUT", "/photos").status == 200);
  const User wrong{kAlice.access, "not-the-secret"};
  Reply r = f.Send("GET", "/photos", "", {}, &wrong);
  CHECK(r.status == 403);
  CHECK(r.Code() == "SignatureDoesNotMatch");
  const User nobody{"AKIANOBODY", "x"};
  CHECK(f.Send("GET", "/photos", "", {}, &nobody).Code() == "InvalidAccessKeyId");
  CHECK(f.Send("GET", "/photos", "", {}, nullptr).Code() == "AccessDenied");  // anonymous
  // A body whose SHA-256 is not the signed one.
  Reply mismatch = f.Send("PUT", "/photos/k", "hello", {}, &kAlice, true, std::string(64, 'a'));
  CHECK(mismatch.Code() == "XAmzContentSHA256Mismatch");
  CHECK(f.Send("GET", "/photos/k").Code() == "NoSuchKey");
  // Skew: a request signed 20 minutes ago.
  HttpRequest stale;
  {
    Fixture& g = f;
    const auto now = g.clock.WallNow();
    g.clock.SetWall(now - std::chrono::minutes(20));
    const std::string amz = g.AmzDate();
    g.clock.SetWall(now);
    stale.method = "GET";
    stale.target = "/photos";
    stale.headers = {{"host", "h"}, {"x-amz-date", amz}, {"x-amz-content-sha256", "UNSIGNED-PAYLOAD"},
                     {"authorization", "AWS4-HMAC-SHA256 Credential=AKIAALICE/" + amz.substr(0, 8) +
                                           "/us-east-1/s3/aws4_request,SignedHeaders=host,Signature=" +
                                           std::string(64, '0')}};
  }
  Reply skewed = f.Run(stale, "");
  CHECK(skewed.status == 403);
  CHECK(skewed.Code() == "RequestTimeTooSkewed");
}

TEST_CASE("s3 service: objects with metadata, ranges and conditions") {
  Fixture f;
  REQUIRE(f.Send("PUT", "/photos").status == 200);
  const std::string body = "0123456789abcdefghij";
  Reply put = f.Send("PUT", "/photos/dir/a.txt", body,
                     {{"content-type", "text/plain"}, {"x-amz-meta-color", "blue"}, {"cache-control", "no-cache"}});
  REQUIRE(put.status == 200);
  const std::string etag = "\"" + ToHex(AsBytes(Md5(ByteView(body)))) + "\"";
  CHECK(put.headers["etag"] == etag);
  Reply get = f.Send("GET", "/photos/dir/a.txt");
  CHECK(get.status == 200);
  CHECK(get.body == body);
  CHECK(get.headers["content-type"] == "text/plain");
  CHECK(get.headers["x-amz-meta-color"] == "blue");
  CHECK(get.headers["cache-control"] == "no-cache");
  CHECK(get.headers["etag"] == etag);
  CHECK(get.headers["last-modified"] == "Wed, 01 Jan 2014 00:00:00 GMT");
  Reply head = f.Send("HEAD", "/photos/dir/a.txt");
  CHECK(head.status == 200);
  CHECK(head.body.empty());
  // Ranges.
  Reply r1 = f.Send("GET", "/photos/dir/a.txt", "", {{"range", "bytes=0-9"}});
  CHECK(r1.status == 206);
  CHECK(r1.body == "0123456789");
  CHECK(r1.headers["content-range"] == "bytes 0-9/20");
  CHECK(f.Send("GET", "/photos/dir/a.txt", "", {{"range", "bytes=-5"}}).body == "fghij");
  CHECK(f.Send("GET", "/photos/dir/a.txt", "", {{"range", "bytes=15-"}}).body == "fghij");
  CHECK(f.Send("GET", "/photos/dir/a.txt", "", {{"range", "bytes=15-100"}}).body == "fghij");
  Reply bad = f.Send("GET", "/photos/dir/a.txt", "", {{"range", "bytes=20-30"}});
  CHECK(bad.status == 416);
  CHECK(bad.Code() == "InvalidRange");
  CHECK(bad.headers["content-range"] == "bytes */20");
  CHECK(f.Send("GET", "/photos/dir/a.txt", "", {{"range", "bytes=9-2"}}).status == 200);  // ignored
  // A response-* override cannot smuggle a header line in.
  Reply split = f.Send("GET", "/photos/dir/a.txt?response-content-type=text%2Fplain%0D%0ASet-Cookie%3A%20x");
  CHECK(split.headers["content-type"] == "text/plain  Set-Cookie: x");
  CHECK(split.headers.count("set-cookie") == 0);
  // Conditions.
  CHECK(f.Send("GET", "/photos/dir/a.txt", "", {{"if-none-match", etag}}).status == 304);
  CHECK(f.Send("GET", "/photos/dir/a.txt", "", {{"if-match", "\"nope\""}}).status == 412);
  CHECK(f.Send("GET", "/photos/dir/a.txt", "", {{"if-match", etag}}).status == 200);
  CHECK(f.Send("GET", "/photos/dir/a.txt", "", {{"if-modified-since", "Thu, 02 Jan 2014 00:00:00 GMT"}}).status ==
        304);
  CHECK(f.Send("GET", "/photos/dir/a.txt", "", {{"if-modified-since", "Tue, 31 Dec 2013 00:00:00 GMT"}}).status ==
        200);
  CHECK(f.Send("GET", "/photos/dir/a.txt", "", {{"if-unmodified-since", "Tue, 31 Dec 2013 00:00:00 GMT"}}).status ==
        412);
  // Content-MD5.
  const std::string good_md5 = Base64Encode(AsBytes(Md5(ByteView(body))));
  CHECK(f.Send("PUT", "/photos/m", body, {{"content-md5", good_md5}}).status == 200);
  Reply wrong = f.Send("PUT", "/photos/m2", body, {{"content-md5", Base64Encode(AsBytes(Md5(ByteView(std::string_view("x")))))}});
  CHECK(wrong.status == 400);
  CHECK(wrong.Code() == "BadDigest");
  CHECK(f.Send("PUT", "/photos/m3", body, {{"content-md5", "!!"}}).Code() == "InvalidDigest");
  CHECK(f.Send("GET", "/photos/m2").Code() == "NoSuchKey");
  // Stored headers are bounded: the index never holds what it cannot read.
  CHECK(f.Send("PUT", "/photos/long", "x", {{"content-disposition", std::string(5000, 'd')}}).Code() ==
        "MetadataTooLarge");
  CHECK(f.Send("PUT", "/photos/meta", "x", {{"x-amz-meta-big", std::string(3000, 'm')}}).Code() ==
        "MetadataTooLarge");
  CHECK(f.Send("GET", "/photos/long").Code() == "NoSuchKey");
}

TEST_CASE("s3 service: odd keys and bad input") {
  Fixture f;
  REQUIRE(f.Send("PUT", "/photos").status == 200);
  // ".." is an ordinary key: never resolved against anything.
  REQUIRE(f.Send("PUT", "/photos/a/../b", "dots").status == 200);
  CHECK(f.Send("GET", "/photos/a/../b").body == "dots");
  CHECK(f.Send("GET", "/photos/b").Code() == "NoSuchKey");
  CHECK(f.Send("PUT", "/photos/a%00b", "x").Code() == "InvalidArgument");
  CHECK(f.Send("PUT", "/photos/" + std::string(1025, 'k'), "x").Code() == "KeyTooLongError");
  CHECK(f.Send("PUT", "/photos/" + std::string(1024, 'k'), "x").status == 200);
  CHECK(f.Send("GET", "/photos/%zz").status == 400);
  CHECK(f.Send("GET", "photos").status == 400);
  // A key with a space, '+' and UTF-8, percent-encoded as clients send it.
  REQUIRE(f.Send("PUT", "/photos/my%20file%2B1%E4%B8%AD", "u").status == 200);
  CHECK(f.Send("GET", "/photos/my%20file%2B1%E4%B8%AD").body == "u");
  // A PUT whose client went away mid-body leaves nothing.
  const uint64_t chunks = f.store->Stats().chunks;
  f.Send("PUT", "/photos/cut", std::string(300 * 1024, 'c'), {{"content-length", "307200"}}, &kAlice,
         /*feed_body=*/false);
  CHECK(f.Send("GET", "/photos/cut").Code() == "NoSuchKey");
  CHECK(f.store->Stats().chunks == chunks);
  // A body shorter than its Content-Length is refused whole.
  Reply short_body = f.Send("PUT", "/photos/short", "abc", {{"content-length", "10"}});
  CHECK(short_body.Code() == "IncompleteBody");
  CHECK(f.Send("GET", "/photos/short").Code() == "NoSuchKey");
  CHECK(f.store->Stats().chunks == chunks);
}

std::vector<std::string> Keys(const pugi::xml_document& doc, const char* root, bool url) {
  std::vector<std::string> out;
  for (auto n : doc.child(root).children()) {
    std::string v;
    if (std::string(n.name()) == "Contents") v = n.child_value("Key");
    else if (std::string(n.name()) == "CommonPrefixes") v = n.child_value("Prefix");
    else continue;
    out.push_back(url ? *sigv4::UriDecode(v) : v);
  }
  return out;
}

TEST_CASE("s3 service: listings page through prefixes and delimiters") {
  Fixture f;
  REQUIRE(f.Send("PUT", "/photos").status == 200);
  const std::vector<std::string> keys = {"a/1", "a/2", "b/x/1", "b/y", "c", "d e+f", "z/1"};
  for (const auto& k : keys) REQUIRE(f.Send("PUT", "/photos/" + sigv4::UriEncode(k, false), k).status == 200);
  // V2, delimiter "/", two per page.
  std::vector<std::string> seen;
  std::string token;
  int pages = 0;
  for (; pages < 10; ++pages) {
    std::string target = "/photos?list-type=2&delimiter=%2F&max-keys=2&encoding-type=url";
    if (!token.empty()) target += "&continuation-token=" + sigv4::UriEncode(token, true);
    Reply r = f.Send("GET", target);
    REQUIRE(r.status == 200);
    auto doc = Xml(r.body);
    auto v = Keys(doc, "ListBucketResult", true);
    CHECK(std::string(doc.child("ListBucketResult").child_value("KeyCount")) == std::to_string(v.size()));
    seen.insert(seen.end(), v.begin(), v.end());
    if (std::string(doc.child("ListBucketResult").child_value("IsTruncated")) != "true") break;
    token = doc.child("ListBucketResult").child_value("NextContinuationToken");
  }
  CHECK(pages == 2);
  CHECK(seen == std::vector<std::string>{"a/", "b/", "c", "d e+f", "z/"});
  // V1 with a prefix and markers.
  Reply v1 = f.Send("GET", "/photos?prefix=b%2F&marker=b%2Fx%2F1");
  auto doc = Xml(v1.body);
  CHECK(Keys(doc, "ListBucketResult", false) == std::vector<std::string>{"b/y"});
  // start-after, max-keys=0, bad token.
  CHECK(Keys(Xml(f.Send("GET", "/photos?list-type=2&start-after=c").body), "ListBucketResult", false) ==
        std::vector<std::string>{"d e+f", "z/1"});
  CHECK(Keys(Xml(f.Send("GET", "/photos?list-type=2&max-keys=0").body), "ListBucketResult", false).empty());
  CHECK(f.Send("GET", "/photos?list-type=2&continuation-token=%21%21").Code() == "InvalidArgument");
}

TEST_CASE("s3 service: multipart upload, copy, batch delete and instant upload") {
  Fixture f;
  REQUIRE(f.Send("PUT", "/photos").status == 200);
  Reply init = f.Send("POST", "/photos/big?uploads", "", {{"content-type", "video/mp4"}});
  REQUIRE(init.status == 200);
  const std::string id = Xml(init.body).child("InitiateMultipartUploadResult").child_value("UploadId");
  REQUIRE(!id.empty());
  const std::string p1(120 * 1024, '1'), p2(10, '2');
  Reply u1 = f.Send("PUT", "/photos/big?partNumber=1&uploadId=" + id, p1);
  Reply u2 = f.Send("PUT", "/photos/big?partNumber=2&uploadId=" + id, p2);
  REQUIRE(u1.status == 200);
  REQUIRE(u2.status == 200);
  auto parts = Xml(f.Send("GET", "/photos/big?uploadId=" + id).body);
  CHECK(std::distance(parts.child("ListPartsResult").children("Part").begin(),
                      parts.child("ListPartsResult").children("Part").end()) == 2);
  auto uploads = Xml(f.Send("GET", "/photos?uploads").body);
  CHECK(std::string(uploads.child("ListMultipartUploadsResult").child("Upload").child_value("UploadId")) == id);
  auto complete = [&](const std::string& xml) { return f.Send("POST", "/photos/big?uploadId=" + id, xml); };
  auto part = [](int n, const std::string& etag) {
    return "<Part><PartNumber>" + std::to_string(n) + "</PartNumber><ETag>" + etag + "</ETag></Part>";
  };
  CHECK(complete("<CompleteMultipartUpload>" + part(2, u2.headers["etag"]) + part(1, u1.headers["etag"]) +
                 "</CompleteMultipartUpload>").Code() == "InvalidPartOrder");
  CHECK(complete("<CompleteMultipartUpload>" + part(1, "\"0000\"") + "</CompleteMultipartUpload>").Code() ==
        "InvalidPart");
  CHECK(complete("<CompleteMultipartUpload><Part>").Code() == "MalformedXML");
  CHECK(f.Send("PUT", "/photos/big?partNumber=0&uploadId=" + id, "x").Code() == "InvalidArgument");
  Reply done = complete("<CompleteMultipartUpload>" + part(1, u1.headers["etag"]) + part(2, u2.headers["etag"]) +
                        "</CompleteMultipartUpload>");
  REQUIRE(done.status == 200);
  std::string digests, raw;
  REQUIRE(FromHex(u1.headers["etag"].substr(1, 32), &raw));
  digests += raw;
  REQUIRE(FromHex(u2.headers["etag"].substr(1, 32), &raw));
  digests += raw;
  const std::string mp_etag = "\"" + ToHex(AsBytes(Md5(ByteView(digests)))) + "-2\"";
  CHECK(std::string(Xml(done.body).child("CompleteMultipartUploadResult").child_value("ETag")) == mp_etag);
  Reply got = f.Send("GET", "/photos/big");
  CHECK(got.body == p1 + p2);
  CHECK(got.headers["content-type"] == "video/mp4");
  CHECK(f.Send("GET", "/photos/big?uploadId=" + id).Code() == "NoSuchUpload");

  // A second upload with a small first part: EntityTooSmall.
  const std::string id2 = Xml(f.Send("POST", "/photos/small?uploads").body)
                              .child("InitiateMultipartUploadResult").child_value("UploadId");
  Reply s1 = f.Send("PUT", "/photos/small?partNumber=1&uploadId=" + id2, "tiny");
  Reply s2 = f.Send("PUT", "/photos/small?partNumber=2&uploadId=" + id2, "tiny");
  CHECK(f.Send("POST", "/photos/small?uploadId=" + id2,
               "<CompleteMultipartUpload>" + part(1, s1.headers["etag"]) + part(2, s2.headers["etag"]) +
                   "</CompleteMultipartUpload>").Code() == "EntityTooSmall");
  // UploadPartCopy from the completed object, then abort.
  Reply pc = f.Send("PUT", "/photos/small?partNumber=3&uploadId=" + id2, "",
                    {{"x-amz-copy-source", "/photos/big"}, {"x-amz-copy-source-range", "bytes=0-99"}});
  CHECK(pc.status == 200);
  CHECK(std::string(Xml(pc.body).child("CopyPartResult").child_value("ETag")) ==
        "\"" + ToHex(AsBytes(Md5(ByteView(p1.substr(0, 100))))) + "\"");
  CHECK(f.Send("DELETE", "/photos/small?uploadId=" + id2).status == 204);
  CHECK(f.Send("DELETE", "/photos/small?uploadId=" + id2).Code() == "NoSuchUpload");

  // Copy: metadata kept, replaced, and the self-copy rule.
  REQUIRE(f.Send("PUT", "/photos/src", "source", {{"x-amz-meta-k", "v"}, {"content-type", "text/a"}}).status ==
          200);
  Reply c1 = f.Send("PUT", "/photos/dst", "", {{"x-amz-copy-source", "photos/src"}});
  REQUIRE(c1.status == 200);
  CHECK(f.Send("GET", "/photos/dst").headers["x-amz-meta-k"] == "v");
  Reply c2 = f.Send("PUT", "/photos/dst2", "",
                    {{"x-amz-copy-source", "/photos/src"}, {"x-amz-metadata-directive", "REPLACE"},
                     {"content-type", "text/b"}, {"x-amz-meta-j", "w"}});
  REQUIRE(c2.status == 200);
  Reply g2 = f.Send("GET", "/photos/dst2");
  CHECK(g2.body == "source");
  CHECK(g2.headers["content-type"] == "text/b");
  CHECK(g2.headers.count("x-amz-meta-k") == 0);
  CHECK(f.Send("PUT", "/photos/src", "", {{"x-amz-copy-source", "/photos/src"}}).Code() == "InvalidRequest");
  CHECK(f.Send("PUT", "/photos/x", "", {{"x-amz-copy-source", "/photos/nope"}}).Code() == "NoSuchKey");
  CHECK(f.Send("PUT", "/photos/x", "", {{"x-amz-copy-source", "/photos/src"}, {"x-amz-copy-source-if-match", "\"0\""}})
            .Code() == "PreconditionFailed");

  // DeleteObjects: missing keys count as deleted.
  const std::string del = "<Delete><Object><Key>src</Key></Object><Object><Key>never</Key></Object></Delete>";
  Reply d = f.Send("POST", "/photos?delete", del, {{"content-md5", Base64Encode(AsBytes(Md5(ByteView(del))))}});
  REQUIRE(d.status == 200);
  auto dr = Xml(d.body);
  CHECK(std::distance(dr.child("DeleteResult").children("Deleted").begin(),
                      dr.child("DeleteResult").children("Deleted").end()) == 2);
  CHECK(f.Send("GET", "/photos/src").Code() == "NoSuchKey");
  CHECK(f.Send("POST", "/photos?delete", "<Delete>", {}).Code() == "MalformedXML");

  // Instant upload: known content without its body; unknown refused.
  const std::string content = "the same bytes";
  REQUIRE(f.Send("PUT", "/photos/orig", content).status == 200);
  const std::string header = ToHex(AsBytes(Md5(ByteView(content)))) + ":" +
                             ToHex(AsBytes(Sha256(ByteView(content)))) + ":" + std::to_string(content.size());
  Reply hit = f.Send("PUT", "/photos/copy-by-hash", "", {{"x-qcloud-instant-upload", header}});
  CHECK(hit.status == 200);
  CHECK(f.Send("GET", "/photos/copy-by-hash").body == content);
  CHECK(f.counters.instant_uploads.load() == 1);
  const std::string other = ToHex(AsBytes(Md5(ByteView(std::string_view("zz"))))) + ":" + ToHex(AsBytes(Sha256(ByteView(std::string_view("zz"))))) + ":2";
  CHECK(f.Send("PUT", "/photos/miss", "", {{"x-qcloud-instant-upload", other}}).status == 412);

  // A large body with a signed payload: its verified SHA-256 becomes the
  // content's (nothing left to hash); an unsigned one is hashed lazily.
  std::string large(300 * 1024, 'x');
  large[7] = 'y';
  REQUIRE(f.Send("PUT", "/photos/large-signed", large).status == 200);
  CHECK(REQUIRE_VALUE(f.store->index().UnhashedContents(10)).empty());
  large[8] = 'z';
  REQUIRE(f.Send("PUT", "/photos/large-unsigned", large, {}, &kAlice, true, "UNSIGNED-PAYLOAD").status == 200);
  CHECK(REQUIRE_VALUE(f.store->index().UnhashedContents(10)).size() == 1);
  // A signed payload whose hash lies is refused, and stores nothing.
  large[9] = 'w';
  Reply lie = f.Send("PUT", "/photos/large-lie", large, {}, &kAlice, true, ToHex(AsBytes(Sha256(ByteView(content)))));
  CHECK(lie.Code() == "XAmzContentSHA256Mismatch");
  CHECK(f.Send("GET", "/photos/large-lie").Code() == "NoSuchKey");
}

TEST_CASE("s3 service: presigned reads, public buckets and the referer allow-list") {
  Fixture f;
  REQUIRE(f.Send("PUT", "/photos").status == 200);
  REQUIRE(f.Send("PUT", "/photos/pic", "image").status == 200);
  auto presigned = [&](std::chrono::seconds expires, std::string referer) {
    sigv4::Request r{.method = "GET", .path = "/photos/pic", .query = "", .headers = {{"host", "127.0.0.1:9000"}}};
    const std::string query = sigv4::Presign(r, kAlice.access, kAlice.secret, "us-east-1", f.clock.WallNow(), expires);
    HttpRequest h;
    h.method = "GET";
    h.target = "/photos/pic?" + query;
    h.headers = {{"host", "127.0.0.1:9000"}};
    if (!referer.empty()) h.headers.emplace_back("referer", referer);
    return h;
  };
  CHECK(f.Run(presigned(std::chrono::seconds(60), ""), "").body == "image");
  HttpRequest expiring = presigned(std::chrono::seconds(60), "");
  f.clock.Advance(std::chrono::seconds(61));
  Reply expired = f.Run(expiring, "");
  CHECK(expired.status == 403);
  CHECK(expired.Code() == "AccessDenied");
  CHECK(expired.body.find("Request has expired") != std::string::npos);
  // Anti-leech: only *.qq.com may embed the bucket's objects.
  const std::string rule =
      "<RefererConfiguration><Status>Enabled</Status><RefererType>White-List</RefererType>"
      "<DomainList><Domain>*.qq.com</Domain></DomainList>"
      "<EmptyReferConfiguration>Deny</EmptyReferConfiguration></RefererConfiguration>";
  REQUIRE(f.Send("PUT", "/photos?referer", rule).status == 200);
  CHECK(f.Send("GET", "/photos?referer").body.find("*.qq.com") != std::string::npos);
  CHECK(f.Run(presigned(std::chrono::seconds(60), "https://img.qq.com/page.html"), "").body == "image");
  CHECK(f.Run(presigned(std::chrono::seconds(60), "https://evil.example/qq.com"), "").Code() == "AccessDenied");
  CHECK(f.Run(presigned(std::chrono::seconds(60), ""), "").Code() == "AccessDenied");
  // Signed SDK requests are not browsers: the rule does not apply to them.
  CHECK(f.Send("GET", "/photos/pic").body == "image");
  CHECK(f.Send("PUT", "/photos?referer", "<RefererConfiguration><Status>Maybe</Status></RefererConfiguration>")
            .Code() == "MalformedXML");
  // Anonymous reads only of public-read buckets.
  HttpRequest anon{.method = "GET", .target = "/photos/pic", .headers = {{"host", "h"}, {"referer", "https://a.qq.com/"}}};
  CHECK(f.Run(anon, "").Code() == "AccessDenied");
  REQUIRE(f.Send("PUT", "/photos?acl", "", {{"x-amz-acl", "public-read"}}).status == 200);
  CHECK(f.Run(anon, "").body == "image");
  // The same through an AccessControlPolicy body (s3cmd setacl), and back.
  const std::string owner_only =
      "<AccessControlPolicy><Owner><ID>alice</ID></Owner><AccessControlList><Grant><Grantee><ID>alice</ID>"
      "</Grantee><Permission>FULL_CONTROL</Permission></Grant></AccessControlList></AccessControlPolicy>";
  REQUIRE(f.Send("PUT", "/photos?acl", owner_only).status == 200);
  CHECK(f.Run(anon, "").Code() == "AccessDenied");
  const std::string everyone =
      "<AccessControlPolicy><AccessControlList><Grant><Grantee><URI>http://acs.amazonaws.com/groups/global/"
      "AllUsers</URI></Grantee><Permission>READ</Permission></Grant></AccessControlList></AccessControlPolicy>";
  REQUIRE(f.Send("PUT", "/photos?acl", everyone).status == 200);
  CHECK(f.Run(anon, "").body == "image");
  CHECK(f.Send("PUT", "/photos?acl", "", {{"x-amz-grant-write", "id=bob"}}).Code() == "NotImplemented");
  HttpRequest anon_put{.method = "PUT", .target = "/photos/x", .headers = {{"host", "h"}}};
  CHECK(f.Run(anon_put, "x").Code() == "AccessDenied");
}

TEST_CASE("s3 service: virtual-host-style addressing") {
  Fixture f;
  REQUIRE(f.Send("PUT", "/photos").status == 200);
  REQUIRE(f.Send("PUT", "/photos/k", "v").status == 200);
  HttpRequest r{.method = "GET", .target = "/k", .headers = {{"host", "photos.localhost:9000"}}};
  // Unsigned: AccessDenied proves the bucket was found by the host name
  // (a wrong bucket would be NoSuchBucket).
  CHECK(f.Run(r, "").Code() == "AccessDenied");
  HttpRequest missing{.method = "GET", .target = "/k", .headers = {{"host", "nosuch.localhost"}}};
  CHECK(f.Run(missing, "").Code() == "NoSuchBucket");
}

TEST_CASE("s3 xml: escaping and times") {
  CHECK(s3::XmlEscape("a<b>&\"'\x01") == "a&lt;b&gt;&amp;&quot;&apos;&#x1;");
  CHECK(s3::IsoTime(1388534400123) == "2014-01-01T00:00:00.123Z");
  CHECK(s3::HttpTime(1388534400000) == "Wed, 01 Jan 2014 00:00:00 GMT");
  // Against the C library's calendar, across leap years, centuries and
  // times before 1970.
  int wrong = 0;
  for (int64_t t = -2208988800; t < 7258118400; t += 86400 * 7 + 3661 * 5 + 17) {
    std::time_t tt = static_cast<std::time_t>(t);
    std::tm tm{};
    ::gmtime_r(&tt, &tm);
    char want[64];
    std::strftime(want, sizeof want, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    char iso[64];
    std::strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%S.042Z", &tm);
    if (s3::HttpTime(t * 1000) != want || s3::IsoTime(t * 1000 + 42) != iso) ++wrong;
  }
  CHECK(wrong == 0);
  CHECK(s3::ParseHttpTime("Wed, 01 Jan 2014 00:00:00 GMT").value_or(0) == 1388534400);
  CHECK_FALSE(s3::ParseHttpTime("yesterday").has_value());
}

}  // namespace
}  // namespace qcloud::object
