#pragma once

// object's error category: the failures only an object store has, named
// after the S3 error codes they become on the wire. Failures that mean the
// same everywhere (not found, bad argument, I/O) use core's qcloud::Errc.

#include <system_error>

#include "qcloud/core/export.h"

namespace qcloud::object {

enum class Errc {
  kAuthorizationMalformed = 1,  // AuthorizationHeaderMalformed / AuthorizationQueryParametersError
  kInvalidAccessKeyId = 2,      // InvalidAccessKeyId
  kSignatureDoesNotMatch = 3,   // SignatureDoesNotMatch
  kRequestTimeTooSkewed = 4,    // RequestTimeTooSkewed
  kRequestExpired = 5,          // AccessDenied: Request has expired
  kAccessDenied = 6,            // AccessDenied
  kNoSuchUpload = 7,            // NoSuchUpload
  kInvalidPart = 8,             // InvalidPart
  kInvalidPartOrder = 9,        // InvalidPartOrder
  kEntityTooSmall = 10,         // EntityTooSmall
  // Not an S3 error: stored content with the same MD5 and size has no
  // SHA-256 yet (or the write brought none), so the index cannot tell
  // whether the contents are one. The object store hashes and retries.
  kContentUnhashed = 11,
};

QCLOUD_EXPORT const std::error_category& ObjectCategory() noexcept;

inline std::error_code make_error_code(Errc e) noexcept {
  return {static_cast<int>(e), ObjectCategory()};
}

}  // namespace qcloud::object

template <>
struct std::is_error_code_enum<qcloud::object::Errc> : std::true_type {};
