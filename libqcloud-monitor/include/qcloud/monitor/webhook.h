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
