#include "qcloud/monitor/labels.h"

#include <algorithm>
#include <iterator>
#include <cstring>
#include <new>

#include <fmt/format.h>

#include "monitor/utf8.h"
#include "qcloud/core/bytes.h"
#include "qcloud/core/hash.h"
#include "qcloud/core/metrics.h"

namespace qcloud::monitor {

namespace {

bool NameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool NameRest(char c) { return NameStart(c) || (c >= '0' && c <= '9'); }

}  // namespace

bool ValidLabelName(std::string_view name) noexcept {
  if (name.empty() || !NameStart(name[0])) return false;
  return std::all_of(name.begin() + 1, name.end(), NameRest);
}

bool ValidMetricName(std::string_view name) noexcept {
  if (name.empty() || !(NameStart(name[0]) || name[0] == ':')) return false;
  return std::all_of(name.begin() + 1, name.end(), [](char c) { return NameRest(c) || c == ':'; });
}

bool ValidUtf8(std::string_view s) noexcept {
  for (size_t i = 0; i < s.size(); ++i) {
    if (static_cast<unsigned char>(s[i]) < 0x80) continue;
    const size_t n = detail::Utf8SequenceLength(s, i);
    if (n == 0) return false;
    i += n - 1;
  }
  return true;
}

Result<Labels> Labels::FromPairs(std::vector<Label> pairs) {
  std::erase_if(pairs, [](const Label& l) { return l.value.empty(); });
  if (pairs.size() > kMaxLabels) {
    return InvalidArgument(fmt::format("{} labels: at most {}", pairs.size(), kMaxLabels));
  }
  std::sort(pairs.begin(), pairs.end());
  for (size_t i = 0; i < pairs.size(); ++i) {
    const Label& l = pairs[i];
    if (l.name.size() > kMaxLabelNameBytes || !ValidLabelName(l.name)) {
      return InvalidArgument(fmt::format("invalid label name \"{}\"", l.name.substr(0, 64)));
    }
    if (l.name.starts_with("__") && l.name != kMetricNameLabel) {
      return InvalidArgument(fmt::format("label name \"{}\" is reserved", l.name.substr(0, 64)));
    }
    if (l.value.size() > kMaxLabelValueBytes) {
      return InvalidArgument(fmt::format("label {}: value of {} bytes, at most {}", l.name, l.value.size(),
                                         kMaxLabelValueBytes));
    }
    if (!ValidUtf8(l.value)) return InvalidArgument(fmt::format("label {}: value is not UTF-8", l.name));
    if (i > 0 && pairs[i - 1].name == l.name) {
      return InvalidArgument(fmt::format("label {} appears twice", l.name));
    }
  }
  if (auto name = std::find_if(pairs.begin(), pairs.end(), [](const Label& l) { return l.name == kMetricNameLabel; });
      name != pairs.end() && !ValidMetricName(name->value)) {
    return InvalidArgument(fmt::format("invalid metric name \"{}\"", name->value.substr(0, 64)));
  }
  std::vector<LabelView> views;
  views.reserve(pairs.size());
  for (const Label& l : pairs) views.push_back({l.name, l.value});
  return Labels(views);
}

namespace {

constexpr size_t kRepHeader = 6;  // u32 size, u16 n

uint16_t U16(const char* p) noexcept {
  uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Names most series have (Prometheus's own, node_exporter's, the common
// instrumentation's): stored as their index here, 0x8000 | i in the
// name's length field, and no bytes. Every series names its metric, its
// job and its instance: 19 bytes a series, and a few more for the others.
// The order is fixed (the encoding of a set must be one: == compares it).
constexpr std::string_view kKnownNames[] = {
    "__name__", "instance", "job",       "le",        "quantile", "device",    "mode",    "cpu",
    "mountpoint", "fstype", "handler",   "code",      "method",   "path",      "status",  "service",
    "namespace", "pod",     "container", "node",      "host",     "region",    "zone",    "cluster",
    "env",       "app",     "version",   "name",      "type",     "state",     "reason",  "endpoint",
};
constexpr uint16_t kKnownFlag = 0x8000;
static_assert(kMaxLabelNameBytes < kKnownFlag, "a name's length never has the known-name flag");

uint16_t KnownName(std::string_view name) noexcept {
  for (size_t i = 0; i < std::size(kKnownNames); ++i) {
    if (kKnownNames[i] == name) return static_cast<uint16_t>(kKnownFlag | i);
  }
  return 0;
}

// A pair's name length field: its length, or a known name's flagged index.
std::string_view NameOf(uint16_t field, const char* chars) noexcept {
  return (field & kKnownFlag) != 0 ? kKnownNames[field & ~kKnownFlag] : std::string_view(chars, field);
}
size_t NameBytes(uint16_t field) noexcept { return (field & kKnownFlag) != 0 ? 0 : field; }

}  // namespace

Labels::Labels(const std::vector<LabelView>& pairs) {
  if (pairs.empty()) return;
  size_t bytes = kRepHeader + 4 * pairs.size();
  for (const LabelView& l : pairs) bytes += (KnownName(l.name) != 0 ? 0 : l.name.size()) + l.value.size();
  // The reference count first, then the set (rep_ points past the count).
  char* block = static_cast<char*>(::operator new(sizeof(std::atomic<uint32_t>) + bytes));
  new (block) std::atomic<uint32_t>(1);
  char* p = block + sizeof(std::atomic<uint32_t>);
  const auto total = static_cast<uint32_t>(bytes);
  const auto n = static_cast<uint16_t>(pairs.size());
  std::memcpy(p, &total, 4);
  std::memcpy(p + 4, &n, 2);
  char* lens = p + kRepHeader;
  char* chars = lens + 4 * pairs.size();
  for (const LabelView& l : pairs) {
    const uint16_t known = KnownName(l.name);
    const auto nl = known != 0 ? known : static_cast<uint16_t>(l.name.size());
    const auto vl = static_cast<uint16_t>(l.value.size());
    std::memcpy(lens, &nl, 2);
    std::memcpy(lens + 2, &vl, 2);
    lens += 4;
    if (known == 0) {
      std::memcpy(chars, l.name.data(), l.name.size());
      chars += l.name.size();
    }
    std::memcpy(chars, l.value.data(), l.value.size());
    chars += l.value.size();
  }
  rep_ = p;
}

void Labels::Free(const char* rep) noexcept {
  char* block = const_cast<char*>(rep) - sizeof(std::atomic<uint32_t>);
  reinterpret_cast<std::atomic<uint32_t>*>(block)->~atomic();
  ::operator delete(block);
}

LabelView Labels::Iterator::operator*() const noexcept {
  const uint16_t nl = U16(lens_), vl = U16(lens_ + 2);
  return {NameOf(nl, chars_), std::string_view(chars_ + NameBytes(nl), vl)};
}

Labels::Iterator& Labels::Iterator::operator++() noexcept {
  chars_ += NameBytes(U16(lens_)) + U16(lens_ + 2);
  lens_ += 4;
  ++i_;
  return *this;
}

Labels::Iterator Labels::Pairs::begin() const noexcept {
  if (rep_ == nullptr) return Iterator(nullptr, nullptr, 0);
  return Iterator(rep_ + kRepHeader, rep_ + kRepHeader + 4 * n_, 0);
}

LabelView Labels::Pairs::operator[](size_t i) const noexcept {
  Iterator it = begin();
  while (i-- > 0) ++it;
  return *it;
}

size_t Labels::size() const noexcept { return rep_ ? U16(rep_ + 4) : 0; }

std::vector<Label> Labels::ToVector() const {
  std::vector<Label> out;
  out.reserve(size());
  for (LabelView l : pairs()) out.push_back(l.ToLabel());
  return out;
}

bool Labels::operator==(const Labels& o) const noexcept {
  if (rep_ == o.rep_) return true;
  if (!rep_ || !o.rep_) return false;
  uint32_t a, b;
  std::memcpy(&a, rep_, 4);
  std::memcpy(&b, o.rep_, 4);
  return a == b && std::memcmp(rep_, o.rep_, a) == 0;  // one encoding per set
}

std::strong_ordering Labels::operator<=>(const Labels& o) const noexcept {
  const Pairs x = pairs(), y = o.pairs();
  Iterator i = x.begin(), j = y.begin();
  for (; i != x.end() && j != y.end(); ++i, ++j) {
    if (auto c = *i <=> *j; c != 0) return c;
  }
  return x.size() <=> y.size();
}

Result<Labels> Labels::FromPairs(std::initializer_list<std::pair<std::string_view, std::string_view>> pairs) {
  std::vector<Label> v;
  v.reserve(pairs.size());
  for (const auto& [n, val] : pairs) v.push_back({std::string(n), std::string(val)});
  return FromPairs(std::move(v));
}

std::string_view Labels::Get(std::string_view name) const noexcept {
  for (LabelView l : pairs()) {
    if (l.name == name) return l.value;
    if (l.name > name) break;
  }
  return {};
}

uint64_t Labels::Hash() const noexcept {
  // The pairs flattened (name 0xff value 0xff ...): on the stack when small.
  char small[512];
  size_t n = 0;
  for (LabelView l : pairs()) n += l.name.size() + l.value.size() + 2;
  if (n <= sizeof small) {
    char* p = small;
    for (LabelView l : pairs()) {
      std::memcpy(p, l.name.data(), l.name.size());
      p += l.name.size();
      *p++ = '\xff';
      std::memcpy(p, l.value.data(), l.value.size());
      p += l.value.size();
      *p++ = '\xff';
    }
    return Xxh3_64(ByteView(std::string_view(small, n)));
  }
  std::string flat;
  for (LabelView l : pairs()) {
    flat += l.name;
    flat += '\xff';
    flat += l.value;
    flat += '\xff';
  }
  return Xxh3_64(ByteView(flat));
}

std::string Labels::ToString() const {
  std::string out(metric_name());
  out += '{';
  bool first = true;
  for (LabelView l : pairs()) {
    if (l.name == kMetricNameLabel) continue;
    if (!first) out += ", ";
    first = false;
    out += l.name;
    out += "=\"";
    out += EscapeLabelValue(l.value);
    out += '"';
  }
  out += '}';
  return out;
}

Labels Labels::Without(const std::vector<std::string>& names, bool drop_name) const {
  auto dropped = [&](LabelView l) {
    return (drop_name && l.name == kMetricNameLabel) || std::find(names.begin(), names.end(), l.name) != names.end();
  };
  bool any = false;
  for (LabelView l : pairs()) any = any || dropped(l);
  if (!any) return *this;  // nothing dropped: share, no allocation
  std::vector<LabelView> out;
  out.reserve(size());
  for (LabelView l : pairs()) {
    if (!dropped(l)) out.push_back(l);
  }
  return Labels(out);
}

Labels Labels::Only(const std::vector<std::string>& names) const {
  std::vector<LabelView> out;
  for (LabelView l : pairs()) {
    if (std::find(names.begin(), names.end(), l.name) != names.end()) out.push_back(l);
  }
  if (out.size() == size()) return *this;  // everything kept: share
  return Labels(out);
}

}  // namespace qcloud::monitor
