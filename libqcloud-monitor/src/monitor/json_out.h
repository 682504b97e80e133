#pragma once

// JSON text for the monitor's answers (the HTTP API, webhooks): strings
// escaped as JSON requires, label sets as objects, RFC 3339 times.

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "qcloud/core/clock.h"
#include "qcloud/monitor/labels.h"

namespace qcloud::monitor::detail {

void JsonString(std::string& out, std::string_view s);
void JsonPairs(std::string& out, const std::vector<Label>& pairs);
// RFC 3339 with milliseconds in UTC; Go's zero time for WallTime{}.
std::string JsonTime(WallTime t);

}  // namespace qcloud::monitor::detail
