#include "qcloud/sched/placement_json.h"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <fmt/format.h>

namespace qcloud::sched {

namespace {

namespace json = boost::json;

Result<json::array> ParseArray(std::string_view text, const char* what) {
  if (text.size() > kMaxPlacementJsonBytes) {
    return InvalidArgument(fmt::format("{}: {} bytes, at most {}", what, text.size(), kMaxPlacementJsonBytes));
  }
  boost::system::error_code ec;
  json::parse_options po;
  po.max_depth = 8;
  json::value doc = json::parse(text, ec, {}, po);
  if (ec) return InvalidArgument(fmt::format("{}: not JSON: {}", what, ec.message()));
  if (!doc.is_array()) return InvalidArgument(fmt::format("{}: not a JSON array", what));
  return std::move(doc.get_array());
}

Result<std::string> String(const json::value& v, const std::string& where) {
  if (!v.is_string()) return InvalidArgument(where + ": not a string");
  return std::string(v.get_string());
}

Result<double> Number(const json::value& v, const std::string& where) {
  if (v.is_double()) return v.get_double();
  if (v.is_int64()) return static_cast<double>(v.get_int64());
  if (v.is_uint64()) return static_cast<double>(v.get_uint64());
  return InvalidArgument(where + ": not a number");
}

Result<std::map<std::string, double>> Amounts(const json::value& v, const std::string& where) {
  if (!v.is_object()) return InvalidArgument(where + ": not an object of amounts");
  std::map<std::string, double> out;
  for (const auto& kv : v.get_object()) {
    const std::string key(kv.key());
    QCLOUD_ASSIGN_OR_RETURN(double x, Number(kv.value(), where + "." + key));
    out[key] = x;
  }
  return out;
}

Result<std::map<std::string, std::string>> Strings(const json::value& v, const std::string& where) {
  if (!v.is_object()) return InvalidArgument(where + ": not an object of strings");
  std::map<std::string, std::string> out;
  for (const auto& kv : v.get_object()) {
    const std::string key(kv.key());
    QCLOUD_ASSIGN_OR_RETURN(out[key], String(kv.value(), where + "." + key));
  }
  return out;
}

Result<const json::object*> Entry(const json::value& v, const std::string& where) {
  if (!v.is_object()) return InvalidArgument(where + ": not an object");
  const json::object& o = v.get_object();
  const json::value* name = o.if_contains("name");
  if (name == nullptr) return InvalidArgument(where + ": no \"name\"");
  return &o;
}

void Escape(std::string& out, std::string_view s) { out += json::serialize(json::string(s)); }

}  // namespace

Result<std::vector<Host>> ParseHostsJson(std::string_view text) {
  QCLOUD_ASSIGN_OR_RETURN(json::array arr, ParseArray(text, "hosts"));
  std::vector<Host> out;
  out.reserve(arr.size());
  for (size_t i = 0; i < arr.size(); ++i) {
    const std::string where = fmt::format("hosts[{}]", i);
    QCLOUD_ASSIGN_OR_RETURN(const json::object* o, Entry(arr[i], where));
    Host h;
    for (const auto& kv : *o) {
      const std::string key(kv.key());
      const std::string at = where + "." + key;
      if (key == "name") {
        QCLOUD_ASSIGN_OR_RETURN(h.name, String(kv.value(), at));
      } else if (key == "capacity") {
        QCLOUD_ASSIGN_OR_RETURN(h.capacity, Amounts(kv.value(), at));
      } else if (key == "labels") {
        QCLOUD_ASSIGN_OR_RETURN(h.labels, Strings(kv.value(), at));
      } else {
        return InvalidArgument(at + ": unknown key (name, capacity, labels)");
      }
    }
    out.push_back(std::move(h));
  }
  return out;
}

Result<std::vector<Instance>> ParseInstancesJson(std::string_view text) {
  QCLOUD_ASSIGN_OR_RETURN(json::array arr, ParseArray(text, "instances"));
  std::vector<Instance> out;
  out.reserve(arr.size());
  for (size_t i = 0; i < arr.size(); ++i) {
    const std::string where = fmt::format("instances[{}]", i);
    QCLOUD_ASSIGN_OR_RETURN(const json::object* o, Entry(arr[i], where));
    Instance in;
    for (const auto& kv : *o) {
      const std::string key(kv.key());
      const std::string at = where + "." + key;
      if (key == "name") {
        QCLOUD_ASSIGN_OR_RETURN(in.name, String(kv.value(), at));
      } else if (key == "demand") {
        QCLOUD_ASSIGN_OR_RETURN(in.demand, Amounts(kv.value(), at));
      } else if (key == "anti_affinity") {
        QCLOUD_ASSIGN_OR_RETURN(in.anti_affinity, String(kv.value(), at));
      } else if (key == "spread_by") {
        QCLOUD_ASSIGN_OR_RETURN(in.spread_by, String(kv.value(), at));
      } else if (key == "affinity") {
        QCLOUD_ASSIGN_OR_RETURN(in.affinity, String(kv.value(), at));
      } else if (key == "host_labels") {
        QCLOUD_ASSIGN_OR_RETURN(in.host_labels, Strings(kv.value(), at));
      } else if (key == "pinned_host") {
        QCLOUD_ASSIGN_OR_RETURN(in.pinned_host, String(kv.value(), at));
      } else {
        return InvalidArgument(at + ": unknown key (name, demand, anti_affinity, spread_by, affinity, host_labels, pinned_host)");
      }
    }
    out.push_back(std::move(in));
  }
  return out;
}

Result<Placement> ParsePlacementJson(std::string_view text) {
  if (text.size() > kMaxPlacementJsonBytes) return InvalidArgument("placement: too large");
  boost::system::error_code ec;
  json::parse_options po;
  po.max_depth = 8;
  json::value doc = json::parse(text, ec, {}, po);
  if (ec) return InvalidArgument("placement: not JSON: " + ec.message());
  if (!doc.is_object()) return InvalidArgument("placement: not a JSON object");
  Placement out;
  for (const auto& kv : doc.get_object()) {
    const std::string key(kv.key());
    if (key == "placements") {
      if (!kv.value().is_object()) return InvalidArgument("placement.placements: not an object");
      for (const auto& p : kv.value().get_object()) {
        QCLOUD_ASSIGN_OR_RETURN(std::string host, String(p.value(), "placement.placements." + std::string(p.key())));
        out.placements[std::string(p.key())] = std::move(host);
      }
    } else if (key == "unplaced") {
      if (!kv.value().is_array()) return InvalidArgument("placement.unplaced: not an array");
      for (const json::value& u : kv.value().get_array()) {
        if (!u.is_object()) return InvalidArgument("placement.unplaced: not objects");
        const json::value* name = u.get_object().if_contains("name");
        const json::value* reason = u.get_object().if_contains("reason");
        if (!name || !name->is_string()) return InvalidArgument("placement.unplaced: an entry without a name");
        out.unplaced.push_back({std::string(name->get_string()),
                                reason && reason->is_string() ? std::string(reason->get_string()) : std::string()});
      }
    } else if (key == "hosts_used") {
      if (!kv.value().is_int64() || kv.value().get_int64() < 0) return InvalidArgument("placement.hosts_used: not a count");
      out.hosts_used = static_cast<size_t>(kv.value().get_int64());
    } else {
      return InvalidArgument("placement." + key + ": unknown key (placements, unplaced, hosts_used)");
    }
  }
  return out;
}

std::string PlacementToJson(const Placement& p) {
  std::string out = "{\"placements\": {";
  bool first = true;
  for (const auto& [instance, host] : p.placements) {
    if (!first) out += ", ";
    first = false;
    Escape(out, instance);
    out += ": ";
    Escape(out, host);
  }
  out += "}, \"unplaced\": [";
  first = true;
  for (const Unplaced& u : p.unplaced) {
    if (!first) out += ", ";
    first = false;
    out += "{\"name\": ";
    Escape(out, u.name);
    out += ", \"reason\": ";
    Escape(out, u.reason);
    out += "}";
  }
  out += fmt::format("], \"hosts_used\": {}}}", p.hosts_used);
  return out;
}

}  // namespace qcloud::sched
