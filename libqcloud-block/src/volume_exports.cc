#include "qcloud/block/volume_exports.h"

#include <utility>

namespace qcloud::block {

namespace {

ExportInfo InfoOf(const std::string& name, uint64_t size) {
  return {.name = name,
          .description = "qcloud block volume",
          .size = size,
          .min_block = 1,
          .preferred_block = kBlockSize,
          .max_block = 32u << 20};
}

class VolumeExport final : public Export {
 public:
  explicit VolumeExport(std::shared_ptr<Volume> v) : v_(std::move(v)), info_(InfoOf(v_->name(), v_->size())) {}
  const ExportInfo& info() const noexcept override { return info_; }
  Status Read(uint64_t offset, MutableByteView dst) override { return v_->Read(offset, dst); }
  Status Write(uint64_t offset, ByteView src, bool fua) override { return v_->Write(offset, src, fua); }
  Status Flush() override { return v_->Flush(); }
  Status Trim(uint64_t offset, uint64_t length, bool fua) override { return v_->Trim(offset, length, fua); }
  Status WriteZeroes(uint64_t offset, uint64_t length, bool fua, bool no_hole) override {
    return v_->WriteZeroes(offset, length, fua, no_hole);
  }
  Status Cache(uint64_t offset, uint64_t length) override { return v_->Prefetch(offset, length); }
  Result<bool> PlanRead(uint64_t offset, uint64_t length, Volume::ReadPlan& plan) override {
    return v_->PlanRead(offset, length, plan);
  }
  Status Allocation(uint64_t offset, uint32_t length, std::vector<AllocationRun>& runs) override {
    std::vector<Volume::Run> map;
    QCLOUD_RETURN_IF_ERROR(v_->Map(offset, length, map));
    for (const Volume::Run& r : map) {
      runs.push_back({.length = static_cast<uint32_t>(r.length), .hole = !r.allocated});
    }
    return Status::Ok();
  }

 private:
  std::shared_ptr<Volume> v_;
  ExportInfo info_;
};

}  // namespace

VolumeExports::VolumeExports(Store& store, std::string default_export)
    : store_(store), default_export_(std::move(default_export)) {}

std::vector<ExportInfo> VolumeExports::List() {
  std::vector<ExportInfo> out;
  for (const VolumeInfo& v : store_.ListVolumes()) out.push_back(InfoOf(v.name, v.size));
  return out;
}

Result<std::shared_ptr<Export>> VolumeExports::Open(std::string_view name) {
  if (name.empty()) name = default_export_;
  QCLOUD_ASSIGN_OR_RETURN(std::shared_ptr<Volume> v, store_.OpenVolume(name));
  return std::shared_ptr<Export>(std::make_shared<VolumeExport>(std::move(v)));
}

}  // namespace qcloud::block
