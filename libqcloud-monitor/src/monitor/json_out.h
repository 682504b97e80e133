#pragma once

// JSON text for the monitor's answers (the HTTP API, webhooks): strings
// escaped as JSON requires, label sets as objects, RFC 3339 times (both
// ways).

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "qcloud/core/clock.h"
#include "qcloud/core/result.h"
#include "qcloud/monitor/labels.h"

namespace qcloud::monitor::detail {

void JsonString(std::string& out, std::string_view s);
void JsonPairs(std::string& out, const std::vector<Label>& pairs);
void JsonPairs(std::string& out, const Labels& labels);
// RFC 3339 with milliseconds in UTC; Go's zero time for WallTime{}.
std::string JsonTime(WallTime t);
// RFC 3339 ("2015-07-01T20:10:51.781Z", "...+08:00") or Unix seconds
// ("1435781451.781"), as Prometheus's and Alertmanager's APIs take them; ms
// since the epoch. kInvalidArgument otherwise.
Result<int64_t> ParseTime(std::string_view s);

}  // namespace qcloud::monitor::detail
