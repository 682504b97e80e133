#include "block/tier.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include <fmt/format.h>

namespace qcloud::block::detail {

namespace {

constexpr uint64_t kBlock = 4096;

uint64_t Mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

}  // namespace

// ---- CachePolicy ----

CachePolicy::CachePolicy(uint32_t slots) {
  slots = std::max<uint32_t>(slots, 16);
  key_.assign(slots, 0);
  next_.assign(slots, 0);
  meta_.assign(slots, 0);
  bucket_.assign(std::bit_ceil(std::max<uint32_t>(slots / 2, 1)), 0);
  for (uint32_t s = slots; s-- > 0;) {
    next_[s] = free_head_;
    free_head_ = s + 1;
  }
  free_count_ = slots;
  // Each filter: 8 bits per slot, remembering up to one slot count of
  // first-time misses with 3 hash functions (about 3% false positives).
  const uint64_t bits = std::bit_ceil(uint64_t{slots} * 8);
  for (auto& f : filter_) f.assign(bits / 64, 0);
  filter_mask_ = bits - 1;
  filter_cap_ = slots;
}

double CachePolicy::bytes_per_slot() const noexcept {
  const double bytes = key_.size() * 4.0 + next_.size() * 4.0 + meta_.size() + bucket_.size() * 4.0 +
                       (filter_[0].size() + filter_[1].size()) * 8.0;
  return bytes / key_.size();
}

uint32_t CachePolicy::Bucket(uint32_t key) const noexcept {
  return static_cast<uint32_t>(Mix(key) & (bucket_.size() - 1));
}

uint32_t CachePolicy::Find(uint32_t key) const {
  for (uint32_t s1 = bucket_[Bucket(key)]; s1 != 0; s1 = next_[s1 - 1]) {
    if (key_[s1 - 1] == key + 1) return (meta_[s1 - 1] & kFilling) ? kNone : s1 - 1;
  }
  return kNone;
}

uint32_t CachePolicy::Hit(uint32_t key) {
  const uint32_t s = Find(key);
  if (s != kNone && (meta_[s] & kUse) < kUse) meta_[s]++;
  return s;
}

bool CachePolicy::Seen(uint32_t key) const {
  const uint64_t h = Mix(uint64_t{key} + 0x9e3779b97f4a7c15ULL);
  for (const auto& f : filter_) {
    bool all = true;
    for (int i = 0; i < 3 && all; ++i) {
      const uint64_t bit = (h >> (i * 21)) & filter_mask_;
      all = (f[bit / 64] >> (bit % 64)) & 1;
    }
    if (all) return true;
  }
  return false;
}

void CachePolicy::Remember(uint32_t key) {
  if (filter_count_ == filter_cap_) {
    fresh_ ^= 1;
    std::fill(filter_[fresh_].begin(), filter_[fresh_].end(), 0);
    filter_count_ = 0;
  }
  const uint64_t h = Mix(uint64_t{key} + 0x9e3779b97f4a7c15ULL);
  for (int i = 0; i < 3; ++i) {
    const uint64_t bit = (h >> (i * 21)) & filter_mask_;
    filter_[fresh_][bit / 64] |= uint64_t{1} << (bit % 64);
  }
  filter_count_++;
}

void CachePolicy::Unlink(uint32_t slot) {
  uint32_t* link = &bucket_[Bucket(key_[slot] - 1)];
  while (*link != slot + 1) link = &next_[*link - 1];
  *link = next_[slot];
  key_[slot] = 0;
  meta_[slot] = 0;
  next_[slot] = free_head_;
  free_head_ = slot + 1;
  free_count_++;
}

uint32_t CachePolicy::TakeFree(const std::unordered_map<uint32_t, int>& pinned) {
  if (free_head_ == 0) {
    Demote(1, pinned);
    if (free_head_ == 0) return kNone;
  }
  const uint32_t s = free_head_ - 1;
  free_head_ = next_[s];
  free_count_--;
  return s;
}

uint32_t CachePolicy::Admit(uint32_t key, const std::unordered_map<uint32_t, int>& pinned) {
  if (key == UINT32_MAX) return kNone;
  for (uint32_t s1 = bucket_[Bucket(key)]; s1 != 0; s1 = next_[s1 - 1]) {
    if (key_[s1 - 1] == key + 1) return kNone;  // cached, or being filled
  }
  if (!Seen(key)) {
    Remember(key);
    return kNone;
  }
  const uint32_t s = TakeFree(pinned);
  if (s == kNone) return kNone;
  key_[s] = key + 1;
  meta_[s] = kFilling;
  uint32_t& head = bucket_[Bucket(key)];
  next_[s] = head;
  head = s + 1;
  return s;
}

void CachePolicy::Filled(uint32_t slot) { meta_[slot] &= static_cast<uint8_t>(~kFilling); }

void CachePolicy::Drop(uint32_t key) {
  for (uint32_t s1 = bucket_[Bucket(key)]; s1 != 0; s1 = next_[s1 - 1]) {
    if (key_[s1 - 1] == key + 1) {
      Unlink(s1 - 1);
      return;
    }
  }
}

uint32_t CachePolicy::Demote(uint32_t free_target, const std::unordered_map<uint32_t, int>& pinned) {
  uint32_t evicted = 0;
  // Two turns at most: the first may only lower use counts.
  for (uint64_t steps = 0; free_count_ < free_target && steps < 2 * uint64_t{slots()} + 8; ++steps) {
    const uint32_t s = hand_;
    hand_ = hand_ + 1 == slots() ? 0 : hand_ + 1;
    if (key_[s] == 0 || (meta_[s] & kFilling) || pinned.contains(s)) continue;
    if ((meta_[s] & kUse) > 0) {
      meta_[s]--;
      continue;
    }
    Unlink(s);
    ++evicted;
  }
  return evicted;
}

// ---- Tier ----

Tier::Tier(Mirror& below, std::unique_ptr<File> file, uint32_t slots)
    : below_(below), file_(std::move(file)), policy_(slots) {}

Result<std::unique_ptr<Tier>> Tier::Open(Env& env, const std::string& dir, uint64_t bytes, Mirror& below) {
  const uint64_t slots = bytes / kBlock;
  if (slots < 16 || slots >= UINT32_MAX) {
    return InvalidArgument(fmt::format("SSD tier of {} bytes: 64 KiB .. 16 TiB", bytes));
  }
  QCLOUD_RETURN_IF_ERROR(env.CreateDirs(dir));
  // Its contents are a cache of the capacity tier: whatever a previous run
  // left is not trusted, the file is emptied.
  QCLOUD_ASSIGN_OR_RETURN(auto file, env.OpenFile(JoinPath(dir, "cache.dat"), OpenMode::kTruncate));
  return std::unique_ptr<Tier>(new Tier(below, std::move(file), static_cast<uint32_t>(slots)));
}

void Tier::Unpin(uint32_t slot) {
  std::lock_guard lock(mu_);
  auto it = pinned_.find(slot);
  if (--it->second == 0) pinned_.erase(it);
}

bool Tier::TryHit(uint32_t pba, std::byte* dst) {
  uint32_t slot;
  {
    std::lock_guard lock(mu_);
    slot = policy_.Hit(pba);
    if (slot == CachePolicy::kNone) return false;
    pinned_[slot]++;
  }
  auto got = file_->ReadAt(uint64_t{slot} * kBlock, MutableByteView(dst, kBlock));
  Unpin(slot);
  if (got.ok() && *got == kBlock) {
    hits_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  // A failing SSD: the block is dropped and read from the capacity tier.
  std::lock_guard lock(mu_);
  policy_.Drop(pba);
  return false;
}

void Tier::MaybeAdmit(uint32_t pba, const std::byte* data) {
  uint32_t slot;
  {
    std::lock_guard lock(mu_);
    slot = policy_.Admit(pba, pinned_);
  }
  if (slot == CachePolicy::kNone) return;
  Status st = file_->WriteAt(uint64_t{slot} * kBlock, ByteView(data, kBlock));
  std::lock_guard lock(mu_);
  policy_.Filled(slot);
  if (st.ok()) {
    admissions_.fetch_add(1, std::memory_order_relaxed);
  } else {
    policy_.Drop(pba);
  }
}

Status Tier::ReadBlock(uint32_t pba, std::byte* dst, bool admit) {
  if (TryHit(pba, dst)) return Status::Ok();
  misses_.fetch_add(1, std::memory_order_relaxed);
  QCLOUD_RETURN_IF_ERROR(below_.Read(uint64_t{pba} * kBlock, MutableByteView(dst, kBlock)));
  if (admit) MaybeAdmit(pba, dst);
  return Status::Ok();  // the read itself succeeded
}

Status Tier::Read(uint64_t offset, MutableByteView dst) {
  // Whole cached blocks come from the SSD file; runs of whole blocks that
  // miss are read from the capacity tier in one call.
  const uint64_t end = offset + dst.size();
  uint64_t pos = offset;
  std::array<std::byte, kBlock> block;
  while (pos < end) {
    const uint64_t b = pos / kBlock;
    const uint64_t bstart = b * kBlock;
    const uint64_t take = std::min(end, bstart + kBlock) - pos;
    std::byte* out = dst.data() + (pos - offset);
    if (b >= UINT32_MAX) {
      QCLOUD_RETURN_IF_ERROR(below_.Read(pos, MutableByteView(out, take)));
    } else if (take != kBlock) {
      QCLOUD_RETURN_IF_ERROR(ReadBlock(static_cast<uint32_t>(b), block.data(), true));
      std::memcpy(out, block.data() + (pos - bstart), take);
    } else if (!TryHit(static_cast<uint32_t>(b), out)) {
      // A miss: with the whole blocks after it that miss too.
      uint64_t run_end = pos + kBlock;
      {
        std::lock_guard lock(mu_);
        while (run_end + kBlock <= end && run_end / kBlock < UINT32_MAX &&
               policy_.Find(static_cast<uint32_t>(run_end / kBlock)) == CachePolicy::kNone) {
          run_end += kBlock;
        }
      }
      QCLOUD_RETURN_IF_ERROR(below_.Read(pos, MutableByteView(out, run_end - pos)));
      misses_.fetch_add((run_end - pos) / kBlock, std::memory_order_relaxed);
      for (uint64_t at = pos; at < run_end; at += kBlock) {
        MaybeAdmit(static_cast<uint32_t>(at / kBlock), dst.data() + (at - offset));
      }
      pos = run_end;
      continue;
    }
    pos += take;
  }
  return Status::Ok();
}

Status Tier::Write(uint64_t offset, ByteView src) {
  QCLOUD_RETURN_IF_ERROR(below_.Write(offset, src));
  // Cached blocks the write covers get its bytes too.
  const uint64_t end = offset + src.size();
  for (uint64_t b = offset / kBlock; b * kBlock < end && b < UINT32_MAX; ++b) {
    uint32_t slot;
    {
      std::lock_guard lock(mu_);
      slot = policy_.Find(static_cast<uint32_t>(b));
      if (slot == CachePolicy::kNone) continue;
      pinned_[slot]++;
    }
    const uint64_t from = std::max(offset, b * kBlock), to = std::min(end, (b + 1) * kBlock);
    Status st = file_->WriteAt(uint64_t{slot} * kBlock + (from - b * kBlock),
                               ByteView(src.data() + (from - offset), to - from));
    Unpin(slot);
    updates_.fetch_add(1, std::memory_order_relaxed);
    if (!st.ok()) {
      std::lock_guard lock(mu_);
      policy_.Drop(static_cast<uint32_t>(b));
    }
  }
  return Status::Ok();
}

Status Tier::Zero(uint64_t offset, uint64_t length, bool release) {
  QCLOUD_RETURN_IF_ERROR(below_.Zero(offset, length, release));
  std::lock_guard lock(mu_);
  for (uint64_t b = offset / kBlock; b * kBlock < offset + length && b < UINT32_MAX; ++b) {
    policy_.Drop(static_cast<uint32_t>(b));
  }
  return Status::Ok();
}

void Tier::Demote() {
  std::lock_guard lock(mu_);
  const uint32_t target = std::max<uint32_t>(policy_.slots() / 64, 1);
  evictions_.fetch_add(policy_.Demote(target, pinned_), std::memory_order_relaxed);
}

TierStats Tier::stats() {
  TierStats st;
  {
    std::lock_guard lock(mu_);
    st.slots = policy_.slots();
    st.used = policy_.slots() - policy_.free_slots();
    st.bytes_per_slot = policy_.bytes_per_slot();
  }
  st.hits = hits_.load(std::memory_order_relaxed);
  st.misses = misses_.load(std::memory_order_relaxed);
  st.admissions = admissions_.load(std::memory_order_relaxed);
  st.evictions = evictions_.load(std::memory_order_relaxed);
  st.updates = updates_.load(std::memory_order_relaxed);
  return st;
}

}  // namespace qcloud::block::detail
