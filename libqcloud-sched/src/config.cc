#include "qcloud/sched/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>

#include <fmt/format.h>

#include "qcloud/core/units.h"

namespace qcloud::sched {

namespace {

Status Bad(const std::string& what) { return InvalidArgument("config: " + what); }

Status KnownKeys(const YAML::Node& n, std::initializer_list<std::string_view> keys, const std::string& where) {
  if (!n.IsMap()) return Bad(where + " must be a mapping");
  for (const auto& kv : n) {
    const std::string k = kv.first.as<std::string>();
    if (std::find(keys.begin(), keys.end(), k) == keys.end()) return Bad(fmt::format("{}: unknown key \"{}\"", where, k));
  }
  return Status::Ok();
}

Result<std::string> Str(const YAML::Node& n, const std::string& where) {
  if (!n.IsScalar()) return Bad(where + " must be a string");
  return n.as<std::string>();
}

Result<std::chrono::milliseconds> Dur(const YAML::Node& n, const std::string& where) {
  QCLOUD_ASSIGN_OR_RETURN(std::string text, Str(n, where));
  auto d = ParseDuration(text);
  if (!d.ok()) return Bad(where + ": " + d.status().message());
  return std::chrono::milliseconds(*d);
}

Result<double> Num(const YAML::Node& n, const std::string& where) {
  QCLOUD_ASSIGN_OR_RETURN(std::string text, Str(n, where));
  double v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(v)) {
    return Bad(fmt::format("{}: \"{}\" is not a number", where, text));
  }
  return v;
}

Result<int> Int(const YAML::Node& n, const std::string& where) {
  QCLOUD_ASSIGN_OR_RETURN(double v, Num(n, where));
  if (v != std::floor(v) || v < -1e9 || v > 1e9) return Bad(where + " must be a whole number");
  return static_cast<int>(v);
}

Result<bool> Bool(const YAML::Node& n, const std::string& where) {
  QCLOUD_ASSIGN_OR_RETURN(std::string text, Str(n, where));
  if (text == "true") return true;
  if (text == "false") return false;
  return Bad(where + " must be true or false");
}

template <typename T>
Status Each(const YAML::Node& n, const std::string& where, T&& fn) {
  if (!n) return Status::Ok();
  if (!n.IsSequence()) return Bad(where + " must be a list");
  for (size_t i = 0; i < n.size(); ++i) QCLOUD_RETURN_IF_ERROR(fn(n[i], fmt::format("{}[{}]", where, i)));
  return Status::Ok();
}

Result<AutoscalerConfig> Parse(const YAML::Node& root) {
  AutoscalerConfig c;
  QCLOUD_RETURN_IF_ERROR(KnownKeys(root, {"prometheus", "interval", "listen", "state_file", "hook", "metrics", "groups",
                                          "alarms", "actions"},
                                   "the document"));
  if (!root["prometheus"]) return Bad("prometheus (the query endpoint's URL) is required");
  QCLOUD_ASSIGN_OR_RETURN(c.prometheus, Str(root["prometheus"], "prometheus"));
  if (!c.prometheus.starts_with("http://")) return Bad("prometheus: only http:// URLs");
  if (root["interval"]) {
    QCLOUD_ASSIGN_OR_RETURN(c.interval, Dur(root["interval"], "interval"));
  }
  if (c.interval.count() <= 0) return Bad("interval must be positive");
  if (root["listen"]) {
    QCLOUD_ASSIGN_OR_RETURN(c.listen, Str(root["listen"], "listen"));
  }
  if (root["state_file"]) {
    QCLOUD_ASSIGN_OR_RETURN(c.state_file, Str(root["state_file"], "state_file"));
  }
  if (const YAML::Node h = root["hook"]) {
    QCLOUD_RETURN_IF_ERROR(KnownKeys(h, {"command", "webhook", "timeout"}, "hook"));
    if (h["command"]) {
      QCLOUD_ASSIGN_OR_RETURN(c.hook.command, Str(h["command"], "hook.command"));
    }
    if (h["webhook"]) {
      QCLOUD_ASSIGN_OR_RETURN(c.hook.webhook, Str(h["webhook"], "hook.webhook"));
    }
    if (h["timeout"]) {
      QCLOUD_ASSIGN_OR_RETURN(c.hook.timeout, Dur(h["timeout"], "hook.timeout"));
    }
    if (!c.hook.command.empty() && !c.hook.webhook.empty()) return Bad("hook: command or webhook, not both");
    if (!c.hook.webhook.empty() && !c.hook.webhook.starts_with("http://")) return Bad("hook.webhook: only http:// URLs");
  }
  if (Status each = Each(root["metrics"], "metrics", [&](const YAML::Node& n, const std::string& w) -> Status {
    QCLOUD_RETURN_IF_ERROR(KnownKeys(n, {"name", "query", "group_label", "instance_label"}, w));
    MetricQuery m;
    if (!n["name"] || !n["query"]) return Bad(w + ": name and query are required");
    QCLOUD_ASSIGN_OR_RETURN(m.name, Str(n["name"], w + ".name"));
    QCLOUD_ASSIGN_OR_RETURN(m.query, Str(n["query"], w + ".query"));
    if (n["group_label"]) {
      QCLOUD_ASSIGN_OR_RETURN(m.group_label, Str(n["group_label"], w + ".group_label"));
    }
    if (n["instance_label"]) {
      QCLOUD_ASSIGN_OR_RETURN(m.instance_label, Str(n["instance_label"], w + ".instance_label"));
    }
    for (const MetricQuery& o : c.metrics) {
      if (o.name == m.name) return Bad(fmt::format("{}: metric \"{}\" appears twice", w, m.name));
    }
    c.metrics.push_back(std::move(m));
    return Status::Ok();
  }); !each.ok()) {
    return each;
  }
  if (Status each = Each(root["groups"], "groups", [&](const YAML::Node& n, const std::string& w) -> Status {
    QCLOUD_RETURN_IF_ERROR(KnownKeys(n, {"name", "min_size", "max_size", "initial_size", "warmup", "target_tracking", "predictive"}, w));
    GroupSpec g;
    if (!n["name"]) return Bad(w + ": name is required");
    QCLOUD_ASSIGN_OR_RETURN(g.name, Str(n["name"], w + ".name"));
    if (n["min_size"]) {
      QCLOUD_ASSIGN_OR_RETURN(g.min_size, Int(n["min_size"], w + ".min_size"));
    }
    if (n["max_size"]) {
      QCLOUD_ASSIGN_OR_RETURN(g.max_size, Int(n["max_size"], w + ".max_size"));
    }
    g.initial_size = g.min_size;
    if (n["initial_size"]) {
      QCLOUD_ASSIGN_OR_RETURN(g.initial_size, Int(n["initial_size"], w + ".initial_size"));
    }
    if (n["warmup"]) {
      QCLOUD_ASSIGN_OR_RETURN(g.warmup, Dur(n["warmup"], w + ".warmup"));
    }
    if (const YAML::Node t = n["target_tracking"]) {
      const std::string tw = w + ".target_tracking";
      QCLOUD_RETURN_IF_ERROR(KnownKeys(t, {"metric", "target", "tolerance", "scale_down_stabilization",
                                           "scale_up_instances", "scale_up_percent", "scale_up_period"},
                                       tw));
      TargetTracking tt;
      if (!t["metric"] || !t["target"]) return Bad(tw + ": metric and target are required");
      QCLOUD_ASSIGN_OR_RETURN(tt.metric, Str(t["metric"], tw + ".metric"));
      QCLOUD_ASSIGN_OR_RETURN(tt.target, Num(t["target"], tw + ".target"));
      if (t["tolerance"]) {
        QCLOUD_ASSIGN_OR_RETURN(tt.tolerance, Num(t["tolerance"], tw + ".tolerance"));
      }
      if (t["scale_down_stabilization"]) {
        QCLOUD_ASSIGN_OR_RETURN(tt.scale_down_stabilization, Dur(t["scale_down_stabilization"], tw + ".scale_down_stabilization"));
      }
      if (t["scale_up_instances"]) {
        QCLOUD_ASSIGN_OR_RETURN(tt.scale_up_instances, Int(t["scale_up_instances"], tw + ".scale_up_instances"));
      }
      if (t["scale_up_percent"]) {
        QCLOUD_ASSIGN_OR_RETURN(tt.scale_up_percent, Num(t["scale_up_percent"], tw + ".scale_up_percent"));
      }
      if (t["scale_up_period"]) {
        QCLOUD_ASSIGN_OR_RETURN(tt.scale_up_period, Dur(t["scale_up_period"], tw + ".scale_up_period"));
      }
      g.target_tracking = tt;
    }
    if (const YAML::Node p = n["predictive"]) {
      const std::string pw = w + ".predictive";
      QCLOUD_RETURN_IF_ERROR(KnownKeys(p, {"season", "bucket", "lead", "learning_rate", "max_error"}, pw));
      Predictive pr;
      if (p["season"]) {
        QCLOUD_ASSIGN_OR_RETURN(pr.season, Dur(p["season"], pw + ".season"));
      }
      if (p["bucket"]) {
        QCLOUD_ASSIGN_OR_RETURN(pr.bucket, Dur(p["bucket"], pw + ".bucket"));
      }
      if (p["lead"]) {
        QCLOUD_ASSIGN_OR_RETURN(pr.lead, Dur(p["lead"], pw + ".lead"));
      }
      if (p["learning_rate"]) {
        QCLOUD_ASSIGN_OR_RETURN(pr.learning_rate, Num(p["learning_rate"], pw + ".learning_rate"));
      }
      if (p["max_error"]) {
        QCLOUD_ASSIGN_OR_RETURN(pr.max_error, Num(p["max_error"], pw + ".max_error"));
      }
      g.predictive = pr;
    }
    c.groups.push_back(std::move(g));
    return Status::Ok();
  }); !each.ok()) {
    return each;
  }
  if (Status each = Each(root["alarms"], "alarms", [&](const YAML::Node& n, const std::string& w) -> Status {
    QCLOUD_RETURN_IF_ERROR(KnownKeys(n, {"name", "group", "metric", "aggregation", "window", "comparison", "threshold",
                                         "duration", "hysteresis", "per_instance"},
                                     w));
    AlarmPolicy a;
    if (!n["name"] || !n["group"] || !n["metric"] || !n["threshold"]) {
      return Bad(w + ": name, group, metric and threshold are required");
    }
    QCLOUD_ASSIGN_OR_RETURN(a.name, Str(n["name"], w + ".name"));
    QCLOUD_ASSIGN_OR_RETURN(a.group, Str(n["group"], w + ".group"));
    QCLOUD_ASSIGN_OR_RETURN(a.metric, Str(n["metric"], w + ".metric"));
    QCLOUD_ASSIGN_OR_RETURN(a.threshold, Num(n["threshold"], w + ".threshold"));
    if (n["aggregation"]) {
      QCLOUD_ASSIGN_OR_RETURN(std::string agg, Str(n["aggregation"], w + ".aggregation"));
      if (agg == "avg") a.aggregation = Aggregation::kAvg;
      else if (agg == "max") a.aggregation = Aggregation::kMax;
      else if (agg == "min") a.aggregation = Aggregation::kMin;
      else return Bad(fmt::format("{}.aggregation: \"{}\" (avg, max, min)", w, agg));
    }
    if (n["comparison"]) {
      QCLOUD_ASSIGN_OR_RETURN(std::string cmp, Str(n["comparison"], w + ".comparison"));
      if (cmp == ">") a.comparison = Comparison::kGreater;
      else if (cmp == ">=") a.comparison = Comparison::kGreaterOrEqual;
      else if (cmp == "<") a.comparison = Comparison::kLess;
      else if (cmp == "<=") a.comparison = Comparison::kLessOrEqual;
      else return Bad(fmt::format("{}.comparison: \"{}\" (>, >=, <, <=)", w, cmp));
    }
    if (n["window"]) {
      QCLOUD_ASSIGN_OR_RETURN(a.window, Dur(n["window"], w + ".window"));
    }
    if (n["duration"]) {
      QCLOUD_ASSIGN_OR_RETURN(a.duration, Dur(n["duration"], w + ".duration"));
    }
    if (n["hysteresis"]) {
      QCLOUD_ASSIGN_OR_RETURN(a.hysteresis, Num(n["hysteresis"], w + ".hysteresis"));
    }
    if (n["per_instance"]) {
      QCLOUD_ASSIGN_OR_RETURN(a.per_instance, Bool(n["per_instance"], w + ".per_instance"));
    }
    c.alarms.push_back(std::move(a));
    return Status::Ok();
  }); !each.ok()) {
    return each;
  }
  if (Status each = Each(root["actions"], "actions", [&](const YAML::Node& n, const std::string& w) -> Status {
    QCLOUD_RETURN_IF_ERROR(KnownKeys(n, {"name", "alarm", "kind", "adjustment", "cooldown", "trigger"}, w));
    ActionPolicy p;
    if (!n["name"] || !n["alarm"] || !n["kind"]) return Bad(w + ": name, alarm and kind are required");
    QCLOUD_ASSIGN_OR_RETURN(p.name, Str(n["name"], w + ".name"));
    QCLOUD_ASSIGN_OR_RETURN(p.alarm, Str(n["alarm"], w + ".alarm"));
    QCLOUD_ASSIGN_OR_RETURN(std::string kind, Str(n["kind"], w + ".kind"));
    bool known = false;
    for (ActionKind k : {ActionKind::kScaleOut, ActionKind::kScaleIn, ActionKind::kSetSize, ActionKind::kMigrate,
                         ActionKind::kNotify, ActionKind::kTrigger}) {
      if (kind == ActionKindName(k)) {
        p.kind = k;
        known = true;
      }
    }
    if (!known) return Bad(fmt::format("{}.kind: \"{}\" (scale_out, scale_in, set_size, migrate, notify, trigger)", w, kind));
    if (n["adjustment"]) {
      QCLOUD_ASSIGN_OR_RETURN(std::string adj, Str(n["adjustment"], w + ".adjustment"));
      if (adj.ends_with('%')) {
        p.adjustment_type = Adjustment::kPercent;
        adj.pop_back();
      }
      QCLOUD_ASSIGN_OR_RETURN(p.adjustment, Num(YAML::Node(adj), w + ".adjustment"));
    }
    if (n["cooldown"]) {
      QCLOUD_ASSIGN_OR_RETURN(p.cooldown, Dur(n["cooldown"], w + ".cooldown"));
    }
    if (n["trigger"]) {
      QCLOUD_ASSIGN_OR_RETURN(p.trigger, Str(n["trigger"], w + ".trigger"));
    }
    c.actions.push_back(std::move(p));
    return Status::Ok();
  }); !each.ok()) {
    return each;
  }
  return c;
}

}  // namespace

Result<AutoscalerConfig> ParseAutoscalerConfig(std::string_view yaml) {
  if (yaml.size() > kMaxConfigBytes) return Bad(fmt::format("{} bytes, at most {}", yaml.size(), kMaxConfigBytes));
  try {
    return Parse(YAML::Load(std::string(yaml)));
  } catch (const YAML::Exception& e) {
    return Bad(e.what());
  }
}

}  // namespace qcloud::sched
