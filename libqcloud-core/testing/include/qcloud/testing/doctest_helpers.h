#pragma once

// doctest assertions for Status and Result: on failure they print the error
// text, not just "false".
//
//   CHECK_OK(env->RemoveFile(path));
//   REQUIRE_OK(file);                 // a Result<T>
//   auto f = REQUIRE_VALUE(env->OpenFile(path, OpenMode::kCreate));

#include <doctest/doctest.h>

#include <stdlib.h>

#include <filesystem>
#include <string>
#include <utility>

#include "qcloud/core/result.h"
#include "qcloud/core/status.h"

namespace qcloud::testing {

inline std::string StatusText(const Status& s) { return s.ToString(); }

// A fresh directory under /tmp, removed with everything in it at scope exit.
struct TempDir {
  explicit TempDir(std::string prefix = "qcloud-test") {
    std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string path;
};
template <typename T>
std::string StatusText(const Result<T>& r) {
  return r.status().ToString();
}

}  // namespace qcloud::testing

#define CHECK_OK(expr)                                                            \
  do {                                                                            \
    const auto& qcloud_check_ok_ = (expr);                                        \
    CHECK_MESSAGE(qcloud_check_ok_.ok(), ::qcloud::testing::StatusText(qcloud_check_ok_)); \
  } while (0)

#define REQUIRE_OK(expr)                                                          \
  do {                                                                            \
    const auto& qcloud_require_ok_ = (expr);                                      \
    REQUIRE_MESSAGE(qcloud_require_ok_.ok(),                                      \
                    ::qcloud::testing::StatusText(qcloud_require_ok_));           \
  } while (0)

// Evaluates to the value of a Result, failing the test case when it is an
// error.
#define REQUIRE_VALUE(expr) QCLOUD_REQUIRE_VALUE_IMPL_(QCLOUD_CONCAT_(qcloud_r_, __COUNTER__), expr)
#define QCLOUD_REQUIRE_VALUE_IMPL_(r, expr)                              \
  ([&]() {                                                               \
    auto r = (expr);                                                     \
    REQUIRE_MESSAGE(r.has_value(), ::qcloud::testing::StatusText(r));    \
    return std::move(r).value();                                         \
  }())

// Checks that `expr` (Status or Result) failed with error code `code`.
#define CHECK_ERRC(expr, code)                                                  \
  do {                                                                          \
    const auto& qcloud_e_ = (expr);                                             \
    CHECK_MESSAGE(!qcloud_e_.ok(), "expected an error, got ok");                \
    if (!qcloud_e_.ok()) {                                                      \
      CHECK_MESSAGE(::qcloud::testing::detail_code(qcloud_e_) == (code),        \
                    ::qcloud::testing::StatusText(qcloud_e_));                  \
    }                                                                           \
  } while (0)

namespace qcloud::testing {
inline std::error_code detail_code(const Status& s) { return s.code(); }
template <typename T>
std::error_code detail_code(const Result<T>& r) {
  return r.status().code();
}
}  // namespace qcloud::testing
