#include "qcloud/monitor/rules.h"

#include <algorithm>

#include <fmt/format.h>

namespace qcloud::monitor {

namespace {

// {{ $labels.NAME }}, {{ $value }} and {{ $labels }} absent: the rest stays.
std::string Expand(std::string_view text, const Labels& labels, double value) {
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    const size_t open = text.find("{{", i);
    if (open == std::string_view::npos) break;
    const size_t close = text.find("}}", open + 2);
    if (close == std::string_view::npos) break;
    out.append(text.substr(i, open - i));
    std::string_view inner = text.substr(open + 2, close - open - 2);
    while (!inner.empty() && inner.front() == ' ') inner.remove_prefix(1);
    while (!inner.empty() && inner.back() == ' ') inner.remove_suffix(1);
    if (inner == "$value") {
      out += FormatGoFloat(value);  // as Go's templates print a float64
    } else if (inner.starts_with("$labels.")) {
      out += labels.Get(inner.substr(8));
    } else {
      out.append(text.substr(open, close + 2 - open));  // not ours: as written
    }
    i = close + 2;
  }
  out.append(text.substr(i));
  return out;
}

}  // namespace

const char* AlertStateName(AlertState s) noexcept {
  switch (s) {
    case AlertState::kPending: return "pending";
    case AlertState::kFiring: return "firing";
    case AlertState::kResolved: return "resolved";
  }
  return "?";
}

RuleEngine::RuleEngine(QueryEngine& engine, RuleEngineOptions options) : engine_(engine), options_(std::move(options)) {
  if (options_.clock == nullptr) options_.clock = &RealClock();
}

Status RuleEngine::AddRule(AlertRule rule) {
  if (!ValidLabelName(rule.name)) return InvalidArgument(fmt::format("alert rule name \"{}\" is invalid", rule.name));
  QCLOUD_ASSIGN_OR_RETURN(Expr e, Expr::Parse(rule.expr));
  if (e.type() != ValueType::kVector && e.type() != ValueType::kScalar) {
    return InvalidArgument(fmt::format("alert rule {}: the query must be an instant vector", rule.name));
  }
  QCLOUD_RETURN_IF_ERROR(Labels::FromPairs(rule.labels).status());
  std::lock_guard lock(mu_);
  rules_.push_back({std::move(rule), std::move(e), {}});
  return Status::Ok();
}

std::vector<RuleEvaluation> RuleEngine::Evaluate() {
  const WallTime now = options_.clock->WallNow();
  const int64_t t = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  std::vector<RuleEvaluation> out;
  std::vector<Alert> to_send;
  {
    std::lock_guard lock(mu_);
    for (RuleState& r : rules_) {
      Result<QueryResult> res = engine_.Instant(r.expr, t);
      out.push_back({r.rule.name, res.status()});
      if (!res.ok()) continue;
      std::vector<std::pair<Labels, double>> present;
      for (const SeriesPoints& s : res->series) {
        std::vector<Label> pairs;
        for (LabelView l : s.labels.pairs()) {
          if (l.name != kMetricNameLabel) pairs.push_back(l.ToLabel());
        }
        const double v = s.points.empty() ? 0 : s.points[0].v;
        const Labels base = *Labels::FromPairs(pairs);
        for (const Label& l : r.rule.labels) {
          std::erase_if(pairs, [&](const Label& p) { return p.name == l.name; });
          pairs.push_back({l.name, Expand(l.value, base, v)});
        }
        std::erase_if(pairs, [](const Label& p) { return p.name == "alertname"; });
        pairs.push_back({"alertname", r.rule.name});
        auto labels = Labels::FromPairs(std::move(pairs));
        if (labels.ok()) present.emplace_back(std::move(labels).value(), v);
      }
      std::vector<bool> seen(r.active.size(), false);
      for (auto& item : present) {
        const Labels& labels = item.first;
        const double v = item.second;
        auto it = std::find_if(r.active.begin(), r.active.end(), [&](const Alert& a) { return a.labels == labels; });
        Alert* a;
        if (it == r.active.end()) {
          r.active.push_back({.rule = r.rule.name, .labels = labels, .state = AlertState::kPending, .active_at = now});
          seen.push_back(true);
          a = &r.active.back();
        } else {
          seen[static_cast<size_t>(it - r.active.begin())] = true;
          a = &*it;
          if (a->state == AlertState::kResolved) {  // back again: a new alert in its place
            *a = Alert{.rule = r.rule.name, .labels = labels, .state = AlertState::kPending, .active_at = now};
          }
        }
        a->value = v;
        a->annotations.clear();
        for (const Label& l : r.rule.annotations) a->annotations.push_back({l.name, Expand(l.value, labels, v)});
        if (a->state == AlertState::kPending && now - a->active_at >= r.rule.hold) {
          a->state = AlertState::kFiring;
          a->fired_at = now;
        }
      }
      // Gone from the result: pending ones are forgotten, firing ones resolve.
      for (size_t i = 0; i < r.active.size(); ++i) {
        Alert& a = r.active[i];
        if (seen[i] || a.state == AlertState::kResolved) continue;
        if (a.state == AlertState::kFiring) {
          a.state = AlertState::kResolved;
          a.resolved_at = now;
        } else {
          a.state = AlertState::kResolved;
          a.resolved_at = WallTime{};  // marks "forget": pending never notified
        }
      }
      std::erase_if(r.active, [&](const Alert& a) {
        return a.state == AlertState::kResolved &&
               (a.resolved_at == WallTime{} || now - a.resolved_at >= options_.resolved_retention);
      });
      for (const Alert& a : r.active) {
        if (a.state != AlertState::kPending) to_send.push_back(a);
      }
    }
  }
  if (options_.sink) options_.sink(to_send);
  return out;
}

std::vector<Alert> RuleEngine::alerts() const {
  std::lock_guard lock(mu_);
  std::vector<Alert> out;
  for (const RuleState& r : rules_) out.insert(out.end(), r.active.begin(), r.active.end());
  return out;
}

}  // namespace qcloud::monitor
