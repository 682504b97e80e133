#include "qcloud/object/errc.h"

#include <string>

namespace qcloud::object {
namespace {

class ObjectErrorCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "qcloud.object"; }
  std::string message(int ev) const override {
    switch (static_cast<Errc>(ev)) {
      case Errc::kAuthorizationMalformed: return "authorization malformed";
      case Errc::kInvalidAccessKeyId: return "invalid access key id";
      case Errc::kSignatureDoesNotMatch: return "signature does not match";
      case Errc::kRequestTimeTooSkewed: return "request time too skewed";
      case Errc::kRequestExpired: return "request expired";
      case Errc::kAccessDenied: return "access denied";
      case Errc::kNoSuchUpload: return "no such upload";
      case Errc::kInvalidPart: return "invalid part";
      case Errc::kInvalidPartOrder: return "invalid part order";
      case Errc::kEntityTooSmall: return "entity too small";
      case Errc::kContentUnhashed: return "content not hashed yet";
    }
    return "unknown object error " + std::to_string(ev);
  }
  std::error_condition default_error_condition(int ev) const noexcept override {
    switch (static_cast<Errc>(ev)) {
      case Errc::kAuthorizationMalformed: return std::errc::invalid_argument;
      case Errc::kRequestTimeTooSkewed:
      case Errc::kRequestExpired: return std::errc::timed_out;
      case Errc::kNoSuchUpload: return std::errc::no_such_file_or_directory;
      case Errc::kInvalidPart:
      case Errc::kInvalidPartOrder:
      case Errc::kEntityTooSmall: return std::errc::invalid_argument;
      case Errc::kContentUnhashed: return std::errc::resource_unavailable_try_again;
      default: return std::errc::permission_denied;
    }
  }
};

}  // namespace

const std::error_category& ObjectCategory() noexcept {
  static const ObjectErrorCategory kCategory;
  return kCategory;
}

}  // namespace qcloud::object
