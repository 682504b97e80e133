#pragma once

// /metrics for an example server: the registry served over HTTP on its own
// one-thread Asio runtime, beside the server's own workers, started and
// stopped by the program's Lifecycle. Prints
// "<program> metrics on http://HOST:PORT/metrics" once it listens.

#include <memory>
#include <string>
#include <string_view>

#include "qcloud/core/lifecycle.h"
#include "qcloud/core/log.h"
#include "qcloud/core/metrics.h"
#include "qcloud/core/result.h"
#include "qcloud/runtime/runtime.h"

namespace qcloud::examples {

// Null when `listen` is empty (no /metrics wanted). The registry must
// outlive the returned runtime.
Result<std::unique_ptr<Runtime>> StartMetricsHttp(std::string_view program, const std::string& listen,
                                                  MetricsRegistry& registry, Lifecycle& life, Logger& log);

}  // namespace qcloud::examples
