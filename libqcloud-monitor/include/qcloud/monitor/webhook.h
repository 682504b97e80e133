#pragma once

// Notifications as Alertmanager's webhook receiver sends them (payload
// version 4), so receivers written for Alertmanager — chat bridges, the SMS
// gateway's adapter, PagerDuty shims — take qcloud's unchanged:
//
//   {"receiver":"sms","status":"firing","alerts":[{"status":"firing",
//    "labels":{...},"annotations":{...},"startsAt":"...","endsAt":"...",
//    "generatorURL":"","fingerprint":"..."}],"groupLabels":{...},
//    "commonLabels":{...},"commonAnnotations":{...},"externalURL":"...",
//    "version":"4","groupKey":"{}:{alertname=\"HostDown\"}","truncatedAlerts":0}
//
// Webhook::Send POSTs it (application/json) and succeeds on a 2xx.

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "qcloud/core/endpoint.h"
#include "qcloud/core/export.h"
#include "qcloud/core/result.h"
#include "qcloud/monitor/notify.h"

namespace qcloud::monitor {

// Prometheus's label-set fingerprint (FNV-1a 64 over names and values, each
// followed by 0xff), as 16 hex digits.
QCLOUD_EXPORT std::string AlertFingerprint(const Labels& labels);
// The webhook payload for a notification.
QCLOUD_EXPORT std::string WebhookJson(const Notification& n, const std::string& receiver,
                                      const std::string& external_url);

// Alertmanager's POST /api/v2/alerts body, so what pushes alerts to an
// Alertmanager (a Prometheus, vmalert, scripts using amtool's format) can
// push them to qcloud's dispatcher instead:
//
//   [{"labels":{"alertname":"HostDown","instance":"h1"},"annotations":{...},
//     "startsAt":"2026-12-01T08:00:00Z","endsAt":"...","generatorURL":"..."}]
//
// As Alertmanager does: a missing startsAt is the endsAt if given, else
// `now`; a missing endsAt is now + resolve_timeout (the alert fires until
// then unless pushed again); an endsAt not after `now` is a resolved alert;
// labels with empty values are dropped. Valid alerts are returned even when
// others are not; `errors` then names the invalid ones (one per line) and
// the API answers 400 after taking the valid ones, like Alertmanager.
struct PostableAlertsOptions {
  std::chrono::milliseconds resolve_timeout = std::chrono::minutes(5);  // Alertmanager's global.resolve_timeout
  size_t max_alerts = 100'000;  // per body
};

struct PostedAlerts {
  std::vector<Alert> alerts;
  std::string errors;  // "" when every alert was valid
};

// kInvalidArgument when the body is not a JSON array of objects.
QCLOUD_EXPORT Result<PostedAlerts> ParsePostableAlerts(std::string_view body, WallTime now,
                                                       const PostableAlertsOptions& options = {});

struct WebhookOptions {
  std::string url;  // http://HOST:PORT/path (no TLS)
  std::string receiver = "webhook";
  std::string external_url;  // "externalURL" in the payload
  std::chrono::milliseconds timeout{10000};
};

class QCLOUD_EXPORT Webhook {
 public:
  // kInvalidArgument for a URL that is not http://HOST:PORT/...
  static Result<Webhook> Make(const WebhookOptions& options);
  Status Send(const Notification& n) const;

 private:
  WebhookOptions o_;
  Endpoint ep_;
  std::string path_;
};

}  // namespace qcloud::monitor
