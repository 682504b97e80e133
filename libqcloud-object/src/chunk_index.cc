#include "object/chunk_index.h"

#include <bit>

namespace qcloud::object {

namespace {
constexpr size_t kInitialSlots = 1024;
}  // namespace

ChunkIndex::ChunkIndex()
    : slots_(kInitialSlots), shift_(64 - static_cast<unsigned>(std::countr_zero(kInitialSlots))) {}

void ChunkIndex::Put(uint64_t id, uint64_t packed) {
  if ((size_ + 1) * 8 > slots_.size() * 7) Grow();
  const size_t mask = slots_.size() - 1;
  for (size_t i = Home(id);; i = (i + 1) & mask) {
    Slot& s = slots_[i];
    if (s.id == id) {
      s.packed = packed;
      return;
    }
    if (s.id == 0) {
      s = {id, packed};
      ++size_;
      return;
    }
  }
}

std::optional<uint64_t> ChunkIndex::Find(uint64_t id) const noexcept {
  if (id == 0) return std::nullopt;
  const size_t mask = slots_.size() - 1;
  for (size_t i = Home(id);; i = (i + 1) & mask) {
    const Slot& s = slots_[i];
    if (s.id == id) return s.packed;
    if (s.id == 0) return std::nullopt;
  }
}

bool ChunkIndex::Erase(uint64_t id) noexcept {
  if (id == 0) return false;
  const size_t mask = slots_.size() - 1;
  size_t i = Home(id);
  while (slots_[i].id != id) {
    if (slots_[i].id == 0) return false;
    i = (i + 1) & mask;
  }
  // Backward shift: move each later member of the run whose home is not in
  // (i, j] into the hole, so every entry stays reachable from its home.
  for (size_t j = (i + 1) & mask; slots_[j].id != 0; j = (j + 1) & mask) {
    const size_t home = Home(slots_[j].id);
    const bool between = i <= j ? (i < home && home <= j) : (i < home || home <= j);
    if (!between) {
      slots_[i] = slots_[j];
      i = j;
    }
  }
  slots_[i] = {};
  --size_;
  return true;
}

void ChunkIndex::Grow() {
  std::vector<Slot> old(slots_.size() * 2);
  old.swap(slots_);
  --shift_;
  size_ = 0;
  for (const Slot& s : old) {
    if (s.id != 0) Put(s.id, s.packed);
  }
}

}  // namespace qcloud::object
