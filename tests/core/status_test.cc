#include <doctest/doctest.h>

#include <cerrno>
#include <memory>
#include <string>

#include "qcloud/core/result.h"
#include "qcloud/core/status.h"
#include "qcloud/testing/doctest_helpers.h"

namespace qcloud {
namespace {

Result<int> ParsePositive(int v) {
  if (v <= 0) return InvalidArgument("not positive");
  return v;
}

Status UsesReturnIfError(int v) {
  QCLOUD_RETURN_IF_ERROR(ParsePositive(v).status());
  return Status::Ok();
}

Result<int> UsesAssignOrReturn(int v) {
  QCLOUD_ASSIGN_OR_RETURN(int x, ParsePositive(v));
  return x * 2;
}

TEST_CASE("status: ok and error") {
  Status ok;
  CHECK(ok.ok());
  CHECK(ok.ToString() == "OK");
  Status err = NotFound("key abc");
  CHECK_FALSE(err.ok());
  CHECK(err == Errc::kNotFound);
  CHECK(err.code().category().name() == std::string("qcloud"));
  CHECK(err.ToString() == "qcloud: not found: key abc");
  CHECK(err.WithContext("get").message() == "get: key abc");
  // Core codes map onto generic conditions.
  CHECK(err.code() == std::errc::no_such_file_or_directory);
}

TEST_CASE("status: from errno") {
  CHECK(Status::FromErrno(ENOENT, "open /x") == Errc::kNotFound);
  CHECK(Status::FromErrno(ENOSPC, "write") == Errc::kResourceExhausted);
  CHECK(Status::FromErrno(EIO, "read") == Errc::kIoError);  // as env.h promises
  CHECK(Status::FromErrno(ETIMEDOUT, "connect") == Errc::kTimedOut);
  Status s = Status::FromErrno(EACCES, "open /root/x");
  CHECK(s.code() == std::error_code(EACCES, std::system_category()));
  CHECK(s.message().find("open /root/x") == 0);
}

TEST_CASE("result: value, error and macros") {
  Result<int> r = ParsePositive(3);
  REQUIRE(r.has_value());
  CHECK(*r == 3);
  CHECK(r.status().ok());
  Result<int> e = ParsePositive(-1);
  CHECK_FALSE(e);
  CHECK(e.error() == Errc::kInvalidArgument);
  CHECK(e.value_or(7) == 7);
  CHECK_OK(UsesReturnIfError(1));
  CHECK_ERRC(UsesReturnIfError(0), Errc::kInvalidArgument);
  CHECK(REQUIRE_VALUE(UsesAssignOrReturn(4)) == 8);
  CHECK_ERRC(UsesAssignOrReturn(-4), Errc::kInvalidArgument);
}

TEST_CASE("result: move-only values") {
  Result<std::unique_ptr<int>> r = std::make_unique<int>(5);
  REQUIRE(r.ok());
  std::unique_ptr<int> p = std::move(r).value();
  CHECK(*p == 5);
}

}  // namespace
}  // namespace qcloud
