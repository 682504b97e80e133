#include "qcloud/monitor/webhook.h"

#include <chrono>
#include <ctime>
#include <map>

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
    out += ",\"startsAt\":\"" + detail::JsonTime(a.fired_at != WallTime{} ? a.fired_at : a.active_at) + "\"";
    out += ",\"endsAt\":\"" + detail::JsonTime(a.state == AlertState::kResolved ? a.resolved_at : WallTime{}) + "\"";
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
