#include "qcloud/monitor/text_format.h"

#include <charconv>
#include <optional>
#include <cmath>
#include <unordered_map>

#include <fmt/format.h>

namespace qcloud::monitor {

namespace {

bool Space(char c) { return c == ' ' || c == '\t'; }

class LineParser {
 public:
  LineParser(std::string_view line, size_t number) : s_(line), number_(number) {}

  Status Error(const std::string& what) const {
    return InvalidArgument(fmt::format("line {}: {}", number_, what));
  }
  void SkipSpace() {
    while (i_ < s_.size() && Space(s_[i_])) ++i_;
  }
  bool AtEnd() const { return i_ >= s_.size(); }

  // [a-zA-Z_:][a-zA-Z0-9_:]* (label names are checked later by Labels).
  std::string_view Name() {
    const size_t start = i_;
    auto ok = [&](char c, bool first) {
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || (!first && c >= '0' && c <= '9');
    };
    if (i_ < s_.size() && ok(s_[i_], true)) {
      ++i_;
      while (i_ < s_.size() && ok(s_[i_], false)) ++i_;
    }
    return s_.substr(start, i_ - start);
  }

  Result<std::vector<Label>> LabelSet() {
    std::vector<Label> out;
    ++i_;  // {
    for (;;) {
      SkipSpace();
      if (i_ < s_.size() && s_[i_] == '}') {
        ++i_;
        return out;
      }
      const std::string_view name = Name();
      if (name.empty()) return Error("expected a label name");
      SkipSpace();
      if (i_ >= s_.size() || s_[i_] != '=') return Error(fmt::format("expected '=' after label name {}", name));
      ++i_;
      SkipSpace();
      if (i_ >= s_.size() || s_[i_] != '"') return Error(fmt::format("expected '\"' to open the value of {}", name));
      ++i_;
      std::string value;
      for (;;) {
        if (i_ >= s_.size()) return Error(fmt::format("unterminated value of label {}", name));
        const char c = s_[i_++];
        if (c == '"') break;
        if (c == '\\') {
          if (i_ >= s_.size()) return Error("escape at the end of the line");
          const char e = s_[i_++];
          if (e == 'n') {
            value += '\n';
          } else if (e == '\\' || e == '"') {
            value += e;
          } else {
            return Error(fmt::format("invalid escape \\{} in label {}", e, name));
          }
          continue;
        }
        value += c;
      }
      out.push_back({std::string(name), std::move(value)});
      SkipSpace();
      if (i_ < s_.size() && s_[i_] == ',') {
        ++i_;
        continue;
      }
      if (i_ < s_.size() && s_[i_] == '}') continue;
      return Error("expected ',' or '}' after a label");
    }
  }

  std::string_view Token() {
    const size_t start = i_;
    while (i_ < s_.size() && !Space(s_[i_])) ++i_;
    return s_.substr(start, i_ - start);
  }

  char Peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }

 private:
  std::string_view s_;
  size_t number_;
  size_t i_ = 0;
};

std::optional<double> ParseValue(std::string_view t) {
  // Go's ParseFloat: case-insensitive Inf/Infinity/NaN with an optional sign.
  std::string lower;
  for (char c : t) lower += static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
  std::string_view l(lower);
  bool neg = false;
  if (!l.empty() && (l[0] == '+' || l[0] == '-')) {
    neg = l[0] == '-';
    l.remove_prefix(1);
  }
  if (l == "inf" || l == "infinity") return neg ? -HUGE_VAL : HUGE_VAL;
  if (l == "nan") return std::nan("");
  if (t.empty()) return std::nullopt;
  const char* b = t.data();
  if (*b == '+') ++b;  // from_chars takes no '+'
  double v = 0;
  auto [p, ec] = std::from_chars(b, t.data() + t.size(), v);
  if (ec != std::errc() || p != t.data() + t.size()) return std::nullopt;
  return v;
}

}  // namespace

Result<std::vector<SeriesSamples>> ParseTextFormat(std::string_view body, const TextFormatOptions& options) {
  std::vector<SeriesSamples> out;
  std::unordered_map<std::string, size_t> index;
  size_t samples = 0;
  size_t number = 0;
  while (!body.empty()) {
    ++number;
    const size_t nl = body.find('\n');
    std::string_view line = body.substr(0, nl);
    body.remove_prefix(nl == std::string_view::npos ? body.size() : nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() > options.max_line_bytes) {
      return InvalidArgument(fmt::format("line {}: longer than {} bytes", number, options.max_line_bytes));
    }
    LineParser p(line, number);
    p.SkipSpace();
    if (p.AtEnd()) continue;
    if (p.Peek() == '#') {
      // # HELP name text / # TYPE name kind; other comments are free text.
      std::string_view rest = line.substr(line.find('#') + 1);
      while (!rest.empty() && Space(rest.front())) rest.remove_prefix(1);
      if (rest.starts_with("TYPE ")) {
        rest.remove_prefix(5);
        const size_t sp = rest.find_first_of(" \t");
        if (sp == std::string_view::npos) return p.Error("# TYPE without a type");
        std::string_view kind = rest.substr(sp + 1);
        while (!kind.empty() && Space(kind.front())) kind.remove_prefix(1);
        while (!kind.empty() && Space(kind.back())) kind.remove_suffix(1);
        if (kind != "counter" && kind != "gauge" && kind != "histogram" && kind != "summary" && kind != "untyped") {
          return p.Error(fmt::format("unknown metric type \"{}\"", kind.substr(0, 32)));
        }
      }
      continue;
    }
    const std::string_view name = p.Name();
    if (name.empty()) return p.Error("expected a metric name");
    std::vector<Label> pairs;
    pairs.push_back({std::string(kMetricNameLabel), std::string(name)});
    p.SkipSpace();
    if (p.Peek() == '{') {
      QCLOUD_ASSIGN_OR_RETURN(std::vector<Label> more, p.LabelSet());
      for (Label& l : more) pairs.push_back(std::move(l));
    }
    p.SkipSpace();
    const std::string_view value_text = p.Token();
    auto value = ParseValue(value_text);
    if (!value) return p.Error(fmt::format("invalid value \"{}\"", value_text.substr(0, 64)));
    p.SkipSpace();
    int64_t ts = options.default_timestamp;
    if (!p.AtEnd()) {
      const std::string_view t = p.Token();
      auto [q, ec] = std::from_chars(t.data(), t.data() + t.size(), ts);
      if (ec != std::errc() || q != t.data() + t.size()) return p.Error(fmt::format("invalid timestamp \"{}\"", t.substr(0, 64)));
      p.SkipSpace();
      if (!p.AtEnd()) return p.Error("unexpected text after the timestamp");
    }
    auto labels = Labels::FromPairs(std::move(pairs));
    if (!labels.ok()) return p.Error(labels.status().message());
    if (++samples > options.max_samples) {
      return InvalidArgument(fmt::format("more than {} samples in one body", options.max_samples));
    }
    std::string key = labels->ToString();
    auto [it, fresh] = index.try_emplace(std::move(key), out.size());
    if (fresh) out.push_back({std::move(labels).value(), {}});
    out[it->second].samples.push_back({ts, *value});
  }
  return out;
}

}  // namespace qcloud::monitor
