#include "qcloud/monitor/webhook.h"

#include <chrono>
#include <ctime>
#include <map>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <fmt/format.h>

#include "monitor/http_post.h"
#include "monitor/json_out.h"

namespace qcloud::monitor {

namespace {

using detail::JsonPairs;
using detail::JsonString;

// The pairs every alert has with the same value.
template <typename Get>
std::vector<Label> Common(const std::vector<Alert>& alerts, Get get) {
  if (alerts.empty()) return {};
  std::map<std::string, std::string> common;
  for (const Label& l : get(alerts[0])) common.insert_or_assign(l.name, l.value);
  for (size_t i = 1; i < alerts.size(); ++i) {
    std::map<std::string, std::string> mine;
    for (const Label& l : get(alerts[i])) mine.insert_or_assign(l.name, l.value);
    std::erase_if(common, [&](const auto& kv) {
      auto it = mine.find(kv.first);
      return it == mine.end() || it->second != kv.second;
    });
  }
  std::vector<Label> out;
  for (auto& [n, v] : common) out.push_back({n, v});
  return out;
}

}  // namespace

std::string AlertFingerprint(const Labels& labels) {
  uint64_t h = 14695981039346656037ULL;
  auto add = [&](std::string_view s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 1099511628211ULL;
    }
    h ^= 0xff;
    h *= 1099511628211ULL;
  };
  for (LabelView l : labels.pairs()) {
    add(l.name);
    add(l.value);
  }
  return fmt::format("{:016x}", h);
}

std::string WebhookJson(const Notification& n, const std::string& receiver, const std::string& external_url) {
  std::string out = "{\"receiver\":";
  JsonString(out, receiver);
  out += ",\"status\":";
  out += n.firing ? "\"firing\"" : "\"resolved\"";
  out += ",\"alerts\":[";
  for (size_t i = 0; i < n.alerts.size(); ++i) {
    const Alert& a = n.alerts[i];
    if (i) out += ',';
    out += "{\"status\":";
    out += a.state == AlertState::kFiring ? "\"firing\"" : "\"resolved\"";
    out += ",\"labels\":";
    JsonPairs(out, a.labels);
    out += ",\"annotations\":";
    JsonPairs(out, a.annotations);
    out += ",\"startsAt\":\"" + detail::JsonTime(a.fired_at != WallTime{} ? a.fired_at : a.active_at) + "\"";
    out += ",\"endsAt\":\"" + detail::JsonTime(a.state == AlertState::kResolved ? a.resolved_at : WallTime{}) + "\"";
    out += ",\"generatorURL\":\"\",\"fingerprint\":\"" + AlertFingerprint(a.labels) + "\"}";
  }
  out += "],\"groupLabels\":";
  JsonPairs(out, n.group_labels);
  out += ",\"commonLabels\":";
  JsonPairs(out, Common(n.alerts, [](const Alert& a) { return a.labels.ToVector(); }));
  out += ",\"commonAnnotations\":";
  JsonPairs(out, Common(n.alerts, [](const Alert& a) { return a.annotations; }));
  out += ",\"externalURL\":";
  JsonString(out, external_url);
  out += ",\"version\":\"4\",\"groupKey\":";
  JsonString(out, n.group_key);
  out += ",\"truncatedAlerts\":0}";
  return out;
}

namespace {

namespace json = boost::json;

// One alert of the array; an error message when it is not valid.
std::string ParseOne(const json::value& v, WallTime now, const PostableAlertsOptions& o, Alert& a) {
  if (!v.is_object()) return "not an object";
  const json::object& obj = v.get_object();
  auto pairs = [](const json::value* m, std::vector<Label>& out) -> std::string {
    if (m == nullptr || m->is_null()) return "";
    if (!m->is_object()) return "must be an object of strings";
    for (const auto& kv : m->get_object()) {
      if (!kv.value().is_string()) return "value of \"" + std::string(kv.key()) + "\" is not a string";
      if (kv.value().get_string().empty()) continue;  // Alertmanager drops empty labels
      out.push_back({std::string(kv.key()), std::string(kv.value().get_string())});
    }
    return "";
  };
  std::vector<Label> labels;
  if (std::string e = pairs(obj.if_contains("labels"), labels); !e.empty()) return "labels: " + e;
  if (labels.empty()) return "at least one label pair required";
  for (const Label& l : labels) {
    if (!ValidLabelName(l.name)) return "invalid label name \"" + l.name + "\"";
  }
  auto parsed = Labels::FromPairs(std::move(labels));
  if (!parsed) return "labels: " + parsed.status().message();
  a.labels = std::move(parsed).value();
  if (std::string e = pairs(obj.if_contains("annotations"), a.annotations); !e.empty()) return "annotations: " + e;
  for (const Label& l : a.annotations) {
    if (!ValidLabelName(l.name)) return "invalid annotation name \"" + l.name + "\"";
  }
  auto time = [&](const char* key, WallTime& out) -> std::string {
    const json::value* t = obj.if_contains(key);
    if (t == nullptr || t->is_null() || (t->is_string() && t->get_string().empty())) return "";
    if (!t->is_string()) return std::string(key) + " is not a string";
    auto ms = detail::ParseTime(std::string_view(t->get_string()));
    if (!ms) return std::string(key) + ": " + ms.status().message();
    // Go's zero time, as clients that always send both fields write it.
    if (*ms == -62135596800000LL) {
      out = WallTime{};
      return "";
    }
    // WallTime counts nanoseconds: about the years 1678 to 2261.
    if (*ms < -9'000'000'000'000LL || *ms > 9'000'000'000'000LL) return std::string(key) + ": out of range";
    out = WallTime(std::chrono::milliseconds(*ms));
    return "";
  };
  WallTime starts{}, ends{};
  if (std::string e = time("startsAt", starts); !e.empty()) return e;
  if (std::string e = time("endsAt", ends); !e.empty()) return e;
  if (starts == WallTime{}) starts = ends != WallTime{} ? ends : now;
  if (ends == WallTime{}) ends = now + o.resolve_timeout;
  if (ends < starts) return "start time must be before end time";
  a.rule = std::string(a.labels.Get("alertname"));
  a.active_at = a.fired_at = starts;
  if (ends <= now) {
    a.state = AlertState::kResolved;
    a.resolved_at = ends;
  } else {
    a.state = AlertState::kFiring;
    a.ends_at = ends;
  }
  return "";
}

}  // namespace

Result<PostedAlerts> ParsePostableAlerts(std::string_view body, WallTime now, const PostableAlertsOptions& options) {
  boost::system::error_code ec;
  json::parse_options po;
  po.max_depth = 8;
  const json::value doc = json::parse(body, ec, {}, po);
  if (ec) return InvalidArgument("alerts: not JSON: " + ec.message());
  if (!doc.is_array()) return InvalidArgument("alerts: want a JSON array of alerts");
  const json::array& arr = doc.get_array();
  if (arr.size() > options.max_alerts) {
    return InvalidArgument(fmt::format("alerts: {} alerts in one body, at most {}", arr.size(), options.max_alerts));
  }
  PostedAlerts out;
  out.alerts.reserve(arr.size());
  for (size_t i = 0; i < arr.size(); ++i) {
    Alert a;
    if (std::string e = ParseOne(arr[i], now, options, a); !e.empty()) {
      out.errors += fmt::format("alert {}: {}\n", i, e);
      continue;
    }
    out.alerts.push_back(std::move(a));
  }
  return out;
}

Result<Webhook> Webhook::Make(const WebhookOptions& options) {
  std::string_view u = options.url;
  if (!u.starts_with("http://")) return InvalidArgument("webhook: want an http:// URL, got " + options.url);
  u.remove_prefix(7);
  const size_t slash = u.find('/');
  Webhook w;
  w.o_ = options;
  QCLOUD_ASSIGN_OR_RETURN(w.ep_, ParseEndpoint(u.substr(0, slash)));
  if (w.ep_.port == 0) return InvalidArgument("webhook: the URL needs a port: " + options.url);
  w.path_ = slash == std::string_view::npos ? "/" : std::string(u.substr(slash));
  return w;
}

Status Webhook::Send(const Notification& n) const {
  const std::string body = WebhookJson(n, o_.receiver, o_.external_url);
  QCLOUD_ASSIGN_OR_RETURN(int status, detail::HttpPost(ep_, path_, "Content-Type: application/json\r\n", body, o_.timeout));
  if (status / 100 != 2) return Status(Errc::kUnavailable, fmt::format("webhook {}: HTTP {}", o_.url, status));
  return Status::Ok();
}

}  // namespace qcloud::monitor
