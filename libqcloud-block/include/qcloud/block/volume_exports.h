#pragma once

// qcloud::block::VolumeExports — a Store's volumes as NBD exports, one per
// volume by name, for NbdServer:
//
//   auto store = Store::Open({.data_dir = dir}).value();
//   VolumeExports exports(*store);
//   auto server = NbdServer::Open(exports, {.listen = "127.0.0.1:10809"}).value();
//
// Every export can FLUSH (store-wide, hence multi-conn), FUA, TRIM and
// WRITE_ZEROES. The size a client sees is the volume's when it connected;
// after a resize, requests are checked against the volume's size now.
// A connection to a volume that is then deleted gets errors (EIO) for
// every request.

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "qcloud/block/nbd_server.h"
#include "qcloud/block/store.h"
#include "qcloud/core/export.h"

namespace qcloud::block {

class QCLOUD_EXPORT VolumeExports final : public ExportDirectory {
 public:
  // `store` is not owned and must outlive this. `default_export`: the
  // volume a client that asks for "" gets ("" = none: kNotFound).
  explicit VolumeExports(Store& store, std::string default_export = "");
  std::vector<ExportInfo> List() override;
  Result<std::shared_ptr<Export>> Open(std::string_view name) override;

 private:
  Store& store_;
  std::string default_export_;
};

}  // namespace qcloud::block
