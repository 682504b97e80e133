#include "kv/prefix_stats.h"

#include <bit>

#include <fmt/format.h>

namespace qcloud::kv {

uint32_t Murmur3_32(std::string_view data, uint32_t seed) noexcept {
  constexpr uint32_t c1 = 0xcc9e2d51, c2 = 0x1b873593;
  const auto* p = reinterpret_cast<const uint8_t*>(data.data());
  const size_t blocks = data.size() / 4;
  uint32_t h = seed;
  for (size_t i = 0; i < blocks; ++i) {
    uint32_t k = uint32_t{p[4 * i]} | uint32_t{p[4 * i + 1]} << 8 | uint32_t{p[4 * i + 2]} << 16 |
                 uint32_t{p[4 * i + 3]} << 24;
    k *= c1;
    k = std::rotl(k, 15);
    k *= c2;
    h ^= k;
    h = std::rotl(h, 13);
    h = h * 5 + 0xe6546b64;
  }
  const uint8_t* tail = p + blocks * 4;
  uint32_t k = 0;
  switch (data.size() & 3) {
    case 3:
      k ^= uint32_t{tail[2]} << 16;
      [[fallthrough]];
    case 2:
      k ^= uint32_t{tail[1]} << 8;
      [[fallthrough]];
    case 1:
      k ^= tail[0];
      k *= c1;
      k = std::rotl(k, 15);
      k *= c2;
      h ^= k;
  }
  h ^= static_cast<uint32_t>(data.size());
  h ^= h >> 16;
  h *= 0x85ebca6b;
  h ^= h >> 13;
  h *= 0xc2b2ae35;
  h ^= h >> 16;
  return h;
}

void PrefixStats::Record(std::string_view key, bool get, bool hit, bool set, bool del) {
  if (!enabled()) return;
  const size_t colon = key.find(':');
  if (colon == std::string_view::npos) return;
  const std::string_view prefix = key.substr(0, colon);
  std::vector<Entry>& bucket = buckets_[Murmur3_32(prefix) % buckets_.size()];
  std::lock_guard lock(mu_);
  Entry* e = nullptr;
  for (Entry& x : bucket) {
    if (x.prefix == prefix) {
      e = &x;
      break;
    }
  }
  if (e == nullptr) {
    if (count_ >= kMaxPrefixes) return;
    bucket.push_back({std::string(prefix)});
    e = &bucket.back();
    ++count_;
  }
  e->get += get;
  e->hit += hit;
  e->set += set;
  e->del += del;
}

void PrefixStats::RecordGet(std::string_view key, bool hit) { Record(key, true, hit, false, false); }
void PrefixStats::RecordSet(std::string_view key) { Record(key, false, false, true, false); }
void PrefixStats::RecordDelete(std::string_view key) { Record(key, false, false, false, true); }

std::string PrefixStats::Dump() const {
  std::string out;
  std::lock_guard lock(mu_);
  for (const auto& bucket : buckets_) {
    for (auto it = bucket.rbegin(); it != bucket.rend(); ++it) {  // memcached: newest first
      out += fmt::format("PREFIX {} get {} hit {} set {} del {}\r\n", it->prefix, it->get, it->hit, it->set,
                         it->del);
    }
  }
  out += "END\r\n";
  return out;
}

void PrefixStats::Clear() {
  std::lock_guard lock(mu_);
  for (auto& bucket : buckets_) bucket.clear();
  count_ = 0;
}

}  // namespace qcloud::kv
