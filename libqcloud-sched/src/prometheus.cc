#include "qcloud/sched/prometheus.h"

#include <cmath>
#include <cstdlib>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <fmt/format.h>

namespace qcloud::sched {

namespace json = boost::json;

Result<QuerySamples> ParsePrometheusVector(std::string_view body, const MetricQuery& query) {
  auto bad = [&](const std::string& what) { return InvalidArgument(fmt::format("query \"{}\": {}", query.name, what)); };
  if (body.size() > kMaxQueryBodyBytes) return bad(fmt::format("answer of {} bytes, at most {}", body.size(), kMaxQueryBodyBytes));
  boost::system::error_code ec;
  json::parse_options po;
  po.max_depth = 16;
  const json::value doc = json::parse(body, ec, {}, po);
  if (ec) return bad("not JSON: " + ec.message());
  if (!doc.is_object()) return bad("not a JSON object");
  const json::object& root = doc.get_object();
  const json::value* status = root.if_contains("status");
  if (!status || !status->is_string()) return bad("no status");
  if (status->get_string() != "success") {
    const json::value* err = root.if_contains("error");
    return bad(fmt::format("the server says: {}", err && err->is_string() ? std::string(err->get_string()) : "error"));
  }
  const json::value* data = root.if_contains("data");
  if (!data || !data->is_object()) return bad("no data");
  const json::value* type = data->get_object().if_contains("resultType");
  const json::value* result = data->get_object().if_contains("result");
  if (!type || !type->is_string() || type->get_string() != "vector" || !result || !result->is_array()) {
    return bad("not an instant vector (the query must return one)");
  }
  QuerySamples out;
  for (const json::value& e : result->get_array()) {
    if (!e.is_object()) return bad("a vector element that is not an object");
    const json::value* metric = e.get_object().if_contains("metric");
    const json::value* value = e.get_object().if_contains("value");
    if (!metric || !metric->is_object() || !value || !value->is_array() || value->get_array().size() != 2 ||
        !value->get_array()[1].is_string()) {
      return bad("a vector element without metric and value");
    }
    const json::value* group = metric->get_object().if_contains(query.group_label);
    const json::value* instance = metric->get_object().if_contains(query.instance_label);
    if (!group || !group->is_string() || !instance || !instance->is_string()) {
      ++out.skipped;
      continue;
    }
    const std::string text(value->get_array()[1].get_string());
    double v = 0;
    if (text == "NaN") {
      v = std::nan("");
    } else if (text == "+Inf" || text == "Inf") {
      v = HUGE_VAL;
    } else if (text == "-Inf") {
      v = -HUGE_VAL;
    } else {
      char* end = nullptr;
      v = std::strtod(text.c_str(), &end);
      if (text.empty() || end != text.c_str() + text.size()) return bad(fmt::format("value \"{}\" is not a number", text.substr(0, 40)));
    }
    out.samples.push_back({std::string(group->get_string()), std::string(instance->get_string()), query.name, v});
  }
  return out;
}

std::string QueryTarget(std::string_view base_path, std::string_view promql) {
  std::string out(base_path);
  while (!out.empty() && out.back() == '/') out.pop_back();
  out += "/api/v1/query?query=";
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (unsigned char c : promql) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
        c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

}  // namespace qcloud::sched
