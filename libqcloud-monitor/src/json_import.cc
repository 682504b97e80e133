#include "qcloud/monitor/json_import.h"

#include <cmath>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <fmt/format.h>

namespace qcloud::monitor {

namespace {

namespace json = boost::json;

std::optional<double> Number(const json::value& v) {
  if (v.is_double()) return v.get_double();
  if (v.is_int64()) return static_cast<double>(v.get_int64());
  if (v.is_uint64()) return static_cast<double>(v.get_uint64());
  if (v.is_string()) {
    const json::string& s = v.get_string();
    if (s == "NaN") return std::nan("");
    if (s == "Inf" || s == "+Inf") return HUGE_VAL;
    if (s == "-Inf") return -HUGE_VAL;
  }
  return std::nullopt;
}

}  // namespace

Result<std::vector<SeriesSamples>> ParseJsonLines(std::string_view body, const JsonImportOptions& options) {
  std::vector<SeriesSamples> out;
  size_t number = 0, samples = 0;
  while (!body.empty()) {
    ++number;
    const size_t nl = body.find('\n');
    std::string_view line = body.substr(0, nl);
    body.remove_prefix(nl == std::string_view::npos ? body.size() : nl + 1);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.remove_suffix(1);
    if (line.empty()) continue;
    auto fail = [&](const std::string& what) {
      return InvalidArgument(fmt::format("line {}: {}", number, what));
    };
    if (line.size() > options.max_line_bytes) return fail(fmt::format("longer than {} bytes", options.max_line_bytes));
    boost::system::error_code ec;
    json::parse_options po;
    po.max_depth = 8;
    const json::value doc = json::parse(line, ec, {}, po);
    if (ec) return fail("not JSON: " + ec.message());
    if (!doc.is_object()) return fail("not a JSON object");
    const json::object& o = doc.get_object();
    const json::value* metric = o.if_contains("metric");
    const json::value* values = o.if_contains("values");
    const json::value* times = o.if_contains("timestamps");
    if (!metric || !metric->is_object()) return fail("\"metric\" must be an object of labels");
    if (!values || !values->is_array() || !times || !times->is_array()) {
      return fail("\"values\" and \"timestamps\" must be arrays");
    }
    if (values->get_array().size() != times->get_array().size()) {
      return fail("\"values\" and \"timestamps\" differ in length");
    }
    std::vector<Label> pairs;
    for (const auto& kv : metric->get_object()) {
      if (!kv.value().is_string()) return fail(fmt::format("label {} is not a string", std::string(kv.key()).substr(0, 64)));
      pairs.push_back({std::string(kv.key()), std::string(kv.value().get_string())});
    }
    auto labels = Labels::FromPairs(std::move(pairs));
    if (!labels.ok()) return fail(labels.status().message());
    if (labels->empty()) return fail("a series without labels");
    SeriesSamples s{std::move(labels).value(), {}};
    const json::array& va = values->get_array();
    const json::array& ta = times->get_array();
    samples += va.size();
    if (samples > options.max_samples) {
      return InvalidArgument(fmt::format("more than {} samples in one body", options.max_samples));
    }
    s.samples.reserve(va.size());
    for (size_t i = 0; i < va.size(); ++i) {
      auto v = Number(va[i]);
      if (!v) return fail(fmt::format("value {} is not a number", i));
      int64_t t;
      if (ta[i].is_int64()) {
        t = ta[i].get_int64();
      } else if (ta[i].is_uint64() && ta[i].get_uint64() <= static_cast<uint64_t>(INT64_MAX)) {
        t = static_cast<int64_t>(ta[i].get_uint64());
      } else {
        return fail(fmt::format("timestamp {} is not an integer of milliseconds", i));
      }
      s.samples.push_back({t, *v});
    }
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace qcloud::monitor
