#pragma once

// An open-addressing hash map from a 64-bit key to a value, for the switch's
// per-frame lookups (MAC -> where, port id -> port, address -> host):
// linear probing in a power-of-two table at most half full, keys mixed by
// a multiply-shift, deletion by backward shift (no tombstones), so a lookup
// is one multiply and, nearly always, one cache line. std::unordered_map
// spends a division and a pointer chase per lookup (the switch's profile:
// a third of its time).
//
// Key UINT64_MAX is reserved (never a MAC key, a port id or an address).
// Pointers to values are invalidated by insertions and erasures.

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace qcloud::net::internal {

template <typename V>
class FlatMap {
 public:
  static constexpr uint64_t kEmpty = UINT64_MAX;

  FlatMap() { Rehash(16); }

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  V* find(uint64_t key) {
    for (size_t i = Home(key);; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (s.key == key) return &s.value;
      if (s.key == kEmpty) return nullptr;
    }
  }
  const V* find(uint64_t key) const { return const_cast<FlatMap*>(this)->find(key); }
  bool contains(uint64_t key) const { return find(key) != nullptr; }

  // The value for `key`, default-constructed if it was absent.
  V& operator[](uint64_t key) {
    if (V* v = find(key)) return *v;
    if ((size_ + 1) * 2 > slots_.size()) Rehash(slots_.size() * 2);
    size_t i = Home(key);
    while (slots_[i].key != kEmpty) i = (i + 1) & mask_;
    slots_[i].key = key;
    slots_[i].value = V();
    ++size_;
    return slots_[i].value;
  }

  bool erase(uint64_t key) {
    size_t i = Home(key);
    for (;; i = (i + 1) & mask_) {
      if (slots_[i].key == key) break;
      if (slots_[i].key == kEmpty) return false;
    }
    // Backward shift: pull later entries of the run into the hole when
    // their home is not between the hole and them.
    size_t hole = i;
    for (size_t j = (i + 1) & mask_; slots_[j].key != kEmpty; j = (j + 1) & mask_) {
      size_t home = Home(slots_[j].key);
      bool movable = hole <= j ? (home <= hole || home > j) : (home <= hole && home > j);
      if (movable) {
        slots_[hole] = std::move(slots_[j]);
        slots_[j].key = kEmpty;
        hole = j;
      }
    }
    slots_[hole].key = kEmpty;
    slots_[hole].value = V();
    --size_;
    return true;
  }

  void clear() {
    slots_ = std::vector<Slot>(16);
    mask_ = 15;
    shift_ = 60;
    size_ = 0;
  }

  // fn(key, value&) for every entry, in no particular order; fn must not
  // insert or erase.
  template <typename Fn>
  void ForEach(Fn&& fn) {
    for (Slot& s : slots_)
      if (s.key != kEmpty) fn(s.key, s.value);
  }
  template <typename Fn>
  void ForEach(Fn&& fn) const {
    for (const Slot& s : slots_)
      if (s.key != kEmpty) fn(s.key, s.value);
  }

 private:
  struct Slot {
    uint64_t key = kEmpty;
    V value{};
  };

  size_t Home(uint64_t key) const { return static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> shift_); }

  void Rehash(size_t n) {
    std::vector<Slot> old = std::move(slots_);
    slots_ = std::vector<Slot>(n);
    mask_ = n - 1;
    shift_ = 64;
    for (size_t s = n; s > 1; s >>= 1) --shift_;
    size_ = 0;
    for (Slot& s : old) {
      if (s.key == kEmpty) continue;
      size_t i = Home(s.key);
      while (slots_[i].key != kEmpty) i = (i + 1) & mask_;
      slots_[i] = std::move(s);
      ++size_;
    }
  }

  std::vector<Slot> slots_;
  size_t size_ = 0;
  size_t mask_ = 0;
  unsigned shift_ = 64;
};

}  // namespace qcloud::net::internal
