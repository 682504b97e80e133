#include "qcloud/monitor/labels.h"

#include <algorithm>
#include <iterator>
#include <cstring>

#include <fmt/format.h>

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
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      n = 1;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      n = 2;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (s.size() - i <= n) return false;  // truncated
    for (size_t k = 1; k <= n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    // Overlong forms, surrogates and code points past U+10FFFF.
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    i += n + 1;
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
  return Labels(std::move(pairs));
}

Labels::Labels(std::vector<Label> pairs) {
  if (!pairs.empty()) pairs_ = std::make_shared<const std::vector<Label>>(std::move(pairs));
}

const std::vector<Label>& Labels::NoPairs() noexcept {
  static const std::vector<Label> none;
  return none;
}

Result<Labels> Labels::FromPairs(std::initializer_list<std::pair<std::string_view, std::string_view>> pairs) {
  std::vector<Label> v;
  v.reserve(pairs.size());
  for (const auto& [n, val] : pairs) v.push_back({std::string(n), std::string(val)});
  return FromPairs(std::move(v));
}

std::string_view Labels::Get(std::string_view name) const noexcept {
  const std::vector<Label>& p = pairs();
  auto it = std::lower_bound(p.begin(), p.end(), name, [](const Label& l, std::string_view n) { return l.name < n; });
  return it != p.end() && it->name == name ? std::string_view(it->value) : std::string_view();
}

uint64_t Labels::Hash() const noexcept {
  // The pairs flattened (name 0xff value 0xff ...): on the stack when small.
  char small[512];
  size_t n = 0;
  for (const Label& l : pairs()) n += l.name.size() + l.value.size() + 2;
  if (n <= sizeof small) {
    char* p = small;
    for (const Label& l : pairs()) {
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
  for (const Label& l : pairs()) {
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
  for (const Label& l : pairs()) {
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
  auto dropped = [&](const Label& l) {
    return (drop_name && l.name == kMetricNameLabel) || std::find(names.begin(), names.end(), l.name) != names.end();
  };
  if (std::none_of(pairs().begin(), pairs().end(), dropped)) return *this;  // nothing dropped: share
  std::vector<Label> out;
  out.reserve(size());
  std::copy_if(pairs().begin(), pairs().end(), std::back_inserter(out), [&](const Label& l) { return !dropped(l); });
  return Labels(std::move(out));
}

Labels Labels::Only(const std::vector<std::string>& names) const {
  std::vector<Label> out;
  for (const Label& l : pairs()) {
    if (std::find(names.begin(), names.end(), l.name) != names.end()) out.push_back(l);
  }
  if (out.size() == size()) return *this;  // everything kept: share
  return Labels(std::move(out));
}

}  // namespace qcloud::monitor
