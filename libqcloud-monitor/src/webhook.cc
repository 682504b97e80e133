#include "qcloud/monitor/webhook.h"

#include <chrono>
#include <ctime>
#include <map>

#include <fmt/format.h>

#include "monitor/http_post.h"

namespace qcloud::monitor {

namespace {

void JsonString(std::string& out, std::string_view s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += fmt::format("\\u{:04x}", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

void JsonPairs(std::string& out, const std::vector<Label>& pairs) {
  out += '{';
  for (size_t i = 0; i < pairs.size(); ++i) {
    if (i) out += ',';
    JsonString(out, pairs[i].name);
    out += ':';
    JsonString(out, pairs[i].value);
  }
  out += '}';
}

// RFC 3339 with milliseconds, UTC; Go's zero time for "never".
std::string Time(WallTime t) {
  if (t == WallTime{}) return "0001-01-01T00:00:00Z";
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec, ms % 1000);
}

// The pairs every alert has with the same value.
template <typename Get>
std::vector<Label> Common(const std::vector<Alert>& alerts, Get get) {
  if (alerts.empty()) return {};
  std::map<std::string, std::string> common;
  for (const Label& l : get(alerts[0])) common[l.name] = l.value;
  for (size_t i = 1; i < alerts.size(); ++i) {
    std::map<std::string, std::string> mine;
    for (const Label& l : get(alerts[i])) mine[l.name] = l.value;
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
  for (const Label& l : labels.pairs()) {
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
    JsonPairs(out, a.labels.pairs());
    out += ",\"annotations\":";
    JsonPairs(out, a.annotations);
    out += ",\"startsAt\":\"" + Time(a.fired_at != WallTime{} ? a.fired_at : a.active_at) + "\"";
    out += ",\"endsAt\":\"" + Time(a.state == AlertState::kResolved ? a.resolved_at : WallTime{}) + "\"";
    out += ",\"generatorURL\":\"\",\"fingerprint\":\"" + AlertFingerprint(a.labels) + "\"}";
  }
  out += "],\"groupLabels\":";
  JsonPairs(out, n.group_labels.pairs());
  out += ",\"commonLabels\":";
  JsonPairs(out, Common(n.alerts, [](const Alert& a) { return a.labels.pairs(); }));
  out += ",\"commonAnnotations\":";
  JsonPairs(out, Common(n.alerts, [](const Alert& a) { return a.annotations; }));
  out += ",\"externalURL\":";
  JsonString(out, external_url);
  out += ",\"version\":\"4\",\"groupKey\":";
  JsonString(out, n.group_key);
  out += ",\"truncatedAlerts\":0}";
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
