#pragma once

// Result<T>: a T or an error Status, shaped like C++23's std::expected<T,
// Status> (has_value, value, error, operator*, operator->, value_or) so that
// code can move to std::expected later by changing one alias.
//
// Accessing value() of an error Result is a bug in the caller and aborts via
// QCLOUD_CHECK (qcloud does not throw for runtime failures).

#include <type_traits>
#include <utility>
#include <variant>

#include "qcloud/core/check.h"
#include "qcloud/core/status.h"

namespace qcloud {

template <typename T>
class [[nodiscard]] Result {
  static_assert(!std::is_same_v<std::remove_cv_t<T>, Status>, "use Status directly");
  static_assert(!std::is_reference_v<T>, "Result<T&> is not supported");

 public:
  using value_type = T;
  using error_type = Status;

  // A value. Implicit, so `return value;` works.
  template <typename U = T,
            typename = std::enable_if_t<std::is_constructible_v<T, U&&> &&
                                        !std::is_same_v<std::remove_cvref_t<U>, Result> &&
                                        !std::is_same_v<std::remove_cvref_t<U>, Status>>>
  Result(U&& value) : v_(std::in_place_index<0>, std::forward<U>(value)) {}  // NOLINT

  // An error. Implicit, so `return InvalidArgument("...");` works. `status`
  // must not be ok: an ok Status carries no value to return.
  Result(Status status) : v_(std::in_place_index<1>, std::move(status)) {  // NOLINT
    QCLOUD_CHECK_MSG(!std::get<1>(v_).ok(), "Result constructed from an ok Status");
  }

  template <typename... Args>
  explicit Result(std::in_place_t, Args&&... args)
      : v_(std::in_place_index<0>, std::forward<Args>(args)...) {}

  bool has_value() const noexcept { return v_.index() == 0; }
  bool ok() const noexcept { return has_value(); }
  explicit operator bool() const noexcept { return has_value(); }

  T& value() & {
    CheckValue();
    return *std::get_if<0>(&v_);
  }
  const T& value() const& {
    CheckValue();
    return *std::get_if<0>(&v_);
  }
  T&& value() && {
    CheckValue();
    return std::move(*std::get_if<0>(&v_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  template <typename U>
  T value_or(U&& fallback) const& {
    return has_value() ? *std::get_if<0>(&v_) : static_cast<T>(std::forward<U>(fallback));
  }

  // The error. Precondition: !has_value().
  const Status& error() const& {
    QCLOUD_CHECK_MSG(!has_value(), "Result::error() on a value");
    return *std::get_if<1>(&v_);
  }
  Status&& error() && {
    QCLOUD_CHECK_MSG(!has_value(), "Result::error() on a value");
    return std::move(*std::get_if<1>(&v_));
  }
  // Ok when there is a value, the error otherwise.
  Status status() const { return has_value() ? Status::Ok() : *std::get_if<1>(&v_); }

 private:
  void CheckValue() const {
    if (!has_value()) [[unlikely]] {
      detail::CheckFailed(__FILE__, __LINE__, "Result::value() on an error",
                          std::get_if<1>(&v_)->message().c_str());
    }
  }

  std::variant<T, Status> v_;
};

}  // namespace qcloud

#define QCLOUD_CONCAT_INNER_(a, b) a##b
#define QCLOUD_CONCAT_(a, b) QCLOUD_CONCAT_INNER_(a, b)

// QCLOUD_ASSIGN_OR_RETURN(auto file, env.OpenFile(...));
// Evaluates `expr` (a Result<T>); on error returns its Status from the
// enclosing function, otherwise declares/assigns `lhs` from the value.
#define QCLOUD_ASSIGN_OR_RETURN(lhs, expr) \
  QCLOUD_ASSIGN_OR_RETURN_IMPL_(QCLOUD_CONCAT_(qcloud_result_, __LINE__), lhs, expr)
#define QCLOUD_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.has_value()) [[unlikely]]                  \
    return std::move(tmp).error();                    \
  lhs = std::move(tmp).value()
