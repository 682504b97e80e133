// SigV4 verification: the example from AWS's S3 API reference (GET with a
// Range, signed in the Authorization header), presigned URLs and their
// expiry, the clock-skew window, wrong keys, and malformed authorization.
#include "qcloud/object/sigv4.h"

#include <doctest/doctest.h>

#include "qcloud/testing/doctest_helpers.h"

namespace qcloud::object::sigv4 {
namespace {

using namespace std::chrono_literals;

constexpr std::string_view kAccess = "AKIAIOSFODNN7EXAMPLE";
constexpr std::string_view kSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const WallTime kSigned = WallTime(std::chrono::seconds(1369353600));  // 2013-05-24T00:00:00Z

std::optional<std::string> Lookup(std::string_view key) {
  if (key == kAccess) return std::string(kSecret);
  return std::nullopt;
}

Request AwsExample() {
  Request r;
  r.method = "GET";
  r.path = "/test.txt";
  r.headers = {{"Host", "examplebucket.s3.amazonaws.com"},
               {"Range", "bytes=0-9"},
               {"x-amz-content-sha256", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
               {"x-amz-date", "20130524T000000Z"},
               {"Authorization",
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
                "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
                "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"}};
  return r;
}

TEST_CASE("sigv4: the S3 API reference's GET example verifies") {
  const Verified v = REQUIRE_VALUE(Verify(AwsExample(), Lookup, kSigned + 5min));
  CHECK(v.access_key == kAccess);
  CHECK(v.region == "us-east-1");
  CHECK_FALSE(v.presigned);
}

TEST_CASE("sigv4: any change to what was signed breaks the signature") {
  Request r = AwsExample();
  r.headers[1].second = "bytes=0-10";
  CHECK_ERRC(Verify(r, Lookup, kSigned), Errc::kSignatureDoesNotMatch);
  r = AwsExample();
  r.path = "/test.txT";
  CHECK_ERRC(Verify(r, Lookup, kSigned), Errc::kSignatureDoesNotMatch);
  r = AwsExample();
  r.query = "x=1";
  CHECK_ERRC(Verify(r, Lookup, kSigned), Errc::kSignatureDoesNotMatch);
  // An unsigned header may change freely; folded spaces are the same value.
  r = AwsExample();
  r.headers.emplace_back("User-Agent", "boto3");
  r.headers[1].second = "  bytes=0-9 ";
  CHECK_OK(Verify(r, Lookup, kSigned).status());
  // Another secret, an unknown key.
  CHECK_ERRC(Verify(AwsExample(), [](std::string_view) { return std::optional<std::string>("x"); }, kSigned),
             Errc::kSignatureDoesNotMatch);
  CHECK_ERRC(Verify(AwsExample(), [](std::string_view) { return std::optional<std::string>(); }, kSigned),
             Errc::kInvalidAccessKeyId);
}

TEST_CASE("sigv4: requests more than 15 minutes off the server's clock are refused") {
  CHECK_OK(Verify(AwsExample(), Lookup, kSigned + 14min).status());
  CHECK_OK(Verify(AwsExample(), Lookup, kSigned - 14min).status());
  CHECK_ERRC(Verify(AwsExample(), Lookup, kSigned + 16min), Errc::kRequestTimeTooSkewed);
  CHECK_ERRC(Verify(AwsExample(), Lookup, kSigned - 16min), Errc::kRequestTimeTooSkewed);
}

TEST_CASE("sigv4: presigned URLs work until they expire") {
  Request r;
  r.method = "GET";
  r.path = "/photos/2014/a%20b.jpg";
  r.headers = {{"Host", "127.0.0.1:9000"}};
  const std::string query = Presign(r, kAccess, kSecret, "us-east-1", kSigned, 3600s);
  r.query = query;
  const Verified v = REQUIRE_VALUE(Verify(r, Lookup, kSigned + 10min));
  CHECK(v.presigned);
  CHECK(v.payload_hash == "UNSIGNED-PAYLOAD");
  CHECK_ERRC(Verify(r, Lookup, kSigned + 3601s), Errc::kRequestExpired);
  Request other = r;
  other.path = "/photos/2014/other.jpg";
  CHECK_ERRC(Verify(other, Lookup, kSigned + 1s), Errc::kSignatureDoesNotMatch);
  Request host = r;
  host.headers = {{"Host", "evil.example"}};
  CHECK_ERRC(Verify(host, Lookup, kSigned + 1s), Errc::kSignatureDoesNotMatch);
  Request longer = r;
  std::string q(query);
  const size_t at = q.find("X-Amz-Expires=3600");
  REQUIRE(at != std::string::npos);
  q.replace(at, 18, "X-Amz-Expires=999999");
  longer.query = q;
  CHECK_ERRC(Verify(longer, Lookup, kSigned + 1s), Errc::kAuthorizationMalformed);
}

TEST_CASE("sigv4: unsigned and malformed requests get clear errors") {
  Request anonymous;
  anonymous.method = "GET";
  anonymous.path = "/";
  CHECK_ERRC(Verify(anonymous, Lookup, kSigned), Errc::kAccessDenied);
  for (const char* bad :
       {"AWS4-HMAC-SHA256", "AWS4-HMAC-SHA256 Credential=x", "Basic Zm9vOmJhcg==",
        "AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request,SignedHeaders=host,Signature=zz",
        "AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/ec2/aws4_request,SignedHeaders=host,"
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
        "AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request,SignedHeaders=range,"
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"}) {
    INFO(bad);
    Request r = AwsExample();
    r.headers.back().second = bad;
    CHECK_ERRC(Verify(r, Lookup, kSigned), Errc::kAuthorizationMalformed);
  }
  Request r = AwsExample();
  r.headers[3].second = "2013-05-24";
  CHECK_ERRC(Verify(r, Lookup, kSigned), Errc::kAuthorizationMalformed);
  CHECK_ERRC(ParseAuthorization(std::string(5000, 'A')), Errc::kAuthorizationMalformed);
}

TEST_CASE("sigv4: URI encoding as S3 canonicalises it") {
  CHECK(UriEncode("a b/c~d_e.f-g*h", false) == "a%20b/c~d_e.f-g%2Ah");
  CHECK(UriEncode("a/b", true) == "a%2Fb");
  CHECK(UriDecode("a%20b%2f") == std::optional<std::string>("a b/"));
  CHECK_FALSE(UriDecode("%").has_value());
  CHECK_FALSE(UriDecode("%4").has_value());
  CHECK_FALSE(UriDecode("%zz").has_value());
  CHECK(CanonicalQuery("prefix=J&max-keys=2", false) == "max-keys=2&prefix=J");
  CHECK(CanonicalQuery("lifecycle", false) == "lifecycle=");
  CHECK(CanonicalQuery("a=x%2Fy&X-Amz-Signature=00", true) == "a=x%2Fy");
}

}  // namespace
}  // namespace qcloud::object::sigv4
