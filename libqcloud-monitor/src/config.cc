#include "qcloud/monitor/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>

#include <fmt/format.h>

namespace qcloud::monitor {

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

Result<std::chrono::milliseconds> Duration(const YAML::Node& n, const std::string& where) {
  auto d = ParseDuration(n.as<std::string>());
  if (!d.ok()) return Bad(where + ": " + d.status().message());
  return std::chrono::milliseconds(*d);
}

Result<std::vector<Label>> Pairs(const YAML::Node& n, const std::string& where) {
  std::vector<Label> out;
  if (!n) return out;
  if (!n.IsMap()) return Bad(where + " must be a mapping");
  for (const auto& kv : n) out.push_back({kv.first.as<std::string>(), kv.second.as<std::string>()});
  return out;
}

// One of Alertmanager's matcher strings: a label name, =, !=, =~ or !~,
// and a value, double-quoted (with \\, \" and \n escapes) or bare to
// the end: 'alertname="HostDown"', 'severity!=page', 'job=~"node|db"'.
Result<Matcher> ParseMatcher(std::string_view text, const std::string& where) {
  auto bad = [&](std::string_view why) { return Bad(fmt::format("{}: matcher '{}': {}", where, text, why)); };
  auto trim = [](std::string_view v) {
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
    return v;
  };
  const size_t op = text.find_first_of("=!");
  if (op == std::string_view::npos) return bad("want NAME=VALUE, NAME!=VALUE, NAME=~RE or NAME!~RE");
  const std::string_view name = trim(text.substr(0, op));
  if (!ValidLabelName(name)) return bad("invalid label name");
  MatchType type;
  size_t rest = op;
  if (text.substr(op).starts_with("=~")) {
    type = MatchType::kRegex, rest += 2;
  } else if (text.substr(op).starts_with("!~")) {
    type = MatchType::kNotRegex, rest += 2;
  } else if (text.substr(op).starts_with("!=")) {
    type = MatchType::kNotEqual, rest += 2;
  } else if (text[op] == '=') {
    type = MatchType::kEqual, rest += 1;
  } else {
    return bad("want =, !=, =~ or !~");
  }
  std::string_view v = trim(text.substr(rest));
  std::string value;
  if (!v.empty() && v.front() == '"') {
    if (v.size() < 2 || v.back() != '"') return bad("an unterminated quoted value");
    v = v.substr(1, v.size() - 2);
    for (size_t i = 0; i < v.size(); ++i) {
      if (v[i] == '"') return bad("a quote inside the value must be escaped");
      if (v[i] != '\\') {
        value += v[i];
        continue;
      }
      if (++i == v.size()) return bad("a trailing backslash");
      value += v[i] == 'n' ? '\n' : v[i];
    }
  } else {
    value = std::string(v);
  }
  auto m = Matcher::Make(type, std::string(name), std::move(value));
  if (!m) return bad(m.status().message());
  return m;
}

Result<std::vector<Matcher>> Matchers(const YAML::Node& n, const std::string& where) {
  std::vector<Matcher> out;
  if (!n) return out;
  if (!n.IsSequence()) return Bad(where + " must be a list");
  for (const auto& item : n) {
    QCLOUD_ASSIGN_OR_RETURN(Matcher m, ParseMatcher(item.as<std::string>(), where));
    out.push_back(std::move(m));
  }
  return out;
}

Result<MonitorConfig> Parse(const YAML::Node& root) {
  MonitorConfig c;
  if (!root || root.IsNull()) return c;
  QCLOUD_RETURN_IF_ERROR(KnownKeys(
      root, {"global", "scrape_configs", "groups", "evaluation_interval", "route", "receivers", "inhibit_rules"},
      "top level"));
  std::chrono::milliseconds scrape_interval = std::chrono::minutes(1), scrape_timeout = std::chrono::seconds(10);
  if (const YAML::Node g = root["global"]) {
    QCLOUD_RETURN_IF_ERROR(KnownKeys(g, {"scrape_interval", "scrape_timeout", "evaluation_interval"}, "global"));
    if (g["scrape_interval"]) {
      QCLOUD_ASSIGN_OR_RETURN(scrape_interval, Duration(g["scrape_interval"], "global scrape_interval"));
    }
    if (g["scrape_timeout"]) {
      QCLOUD_ASSIGN_OR_RETURN(scrape_timeout, Duration(g["scrape_timeout"], "global scrape_timeout"));
    }
    if (g["evaluation_interval"]) {
      QCLOUD_ASSIGN_OR_RETURN(c.evaluation_interval, Duration(g["evaluation_interval"], "global evaluation_interval"));
    }
  }
  if (root["evaluation_interval"]) {
    QCLOUD_ASSIGN_OR_RETURN(c.evaluation_interval, Duration(root["evaluation_interval"], "evaluation_interval"));
  }
  for (const auto& sc : root["scrape_configs"]) {
    QCLOUD_RETURN_IF_ERROR(KnownKeys(sc, {"job_name", "scrape_interval", "scrape_timeout", "metrics_path", "honor_labels",
                                          "static_configs"},
                                     "scrape_config"));
    ScrapeTarget proto;
    proto.job = sc["job_name"].as<std::string>("");
    if (proto.job.empty()) return Bad("a scrape_config needs a job_name");
    const std::string where = "scrape_config " + proto.job;
    proto.interval = scrape_interval;
    if (sc["scrape_interval"]) {
      QCLOUD_ASSIGN_OR_RETURN(proto.interval, Duration(sc["scrape_interval"], where + " scrape_interval"));
    }
    // Prometheus: the timeout defaults to the global one, capped at the interval.
    proto.timeout = std::min(scrape_timeout, proto.interval);
    if (sc["scrape_timeout"]) {
      QCLOUD_ASSIGN_OR_RETURN(proto.timeout, Duration(sc["scrape_timeout"], where + " scrape_timeout"));
      if (proto.timeout > proto.interval) return Bad(where + ": scrape_timeout greater than scrape_interval");
    }
    proto.metrics_path = sc["metrics_path"].as<std::string>("/metrics");
    proto.honor_labels = sc["honor_labels"].as<bool>(false);
    for (const auto& st : sc["static_configs"]) {
      QCLOUD_RETURN_IF_ERROR(KnownKeys(st, {"targets", "labels"}, where + " static_config"));
      ScrapeTarget t = proto;
      QCLOUD_ASSIGN_OR_RETURN(t.labels, Pairs(st["labels"], where + " labels"));
      for (const auto& addr : st["targets"]) {
        t.address = addr.as<std::string>();
        c.scrape_targets.push_back(t);
      }
    }
  }
  for (const auto& g : root["groups"]) {
    QCLOUD_RETURN_IF_ERROR(KnownKeys(g, {"name", "interval", "rules"}, "group"));
    RuleGroup group;
    group.name = g["name"].as<std::string>("");
    if (group.name.empty()) return Bad("a group needs a name");
    if (g["interval"]) {
      QCLOUD_ASSIGN_OR_RETURN(group.interval, Duration(g["interval"], "group " + group.name));
    }
    for (const auto& r : g["rules"]) {
      if (r["record"]) return Bad(fmt::format("group {}: recording rules are not supported", group.name));
      QCLOUD_RETURN_IF_ERROR(KnownKeys(r, {"alert", "expr", "for", "labels", "annotations"}, "rule in " + group.name));
      AlertRule rule;
      rule.name = r["alert"].as<std::string>("");
      rule.expr = r["expr"].as<std::string>("");
      if (rule.name.empty() || rule.expr.empty()) return Bad(fmt::format("group {}: a rule needs alert and expr", group.name));
      if (r["for"]) {
        QCLOUD_ASSIGN_OR_RETURN(rule.hold, Duration(r["for"], "rule " + rule.name));
      }
      QCLOUD_ASSIGN_OR_RETURN(rule.labels, Pairs(r["labels"], "rule " + rule.name + " labels"));
      QCLOUD_ASSIGN_OR_RETURN(rule.annotations, Pairs(r["annotations"], "rule " + rule.name + " annotations"));
      group.rules.push_back(std::move(rule));
    }
    c.groups.push_back(std::move(group));
  }
  if (const YAML::Node route = root["route"]) {
    QCLOUD_RETURN_IF_ERROR(KnownKeys(route, {"receiver", "group_by", "group_wait", "group_interval", "repeat_interval"}, "route"));
    c.receiver = route["receiver"].as<std::string>("");
    if (route["group_by"]) {
      c.route.group_by.clear();
      for (const auto& l : route["group_by"]) c.route.group_by.push_back(l.as<std::string>());
    }
    if (route["group_wait"]) {
      QCLOUD_ASSIGN_OR_RETURN(c.route.group_wait, Duration(route["group_wait"], "route group_wait"));
    }
    if (route["group_interval"]) {
      QCLOUD_ASSIGN_OR_RETURN(c.route.group_interval, Duration(route["group_interval"], "route group_interval"));
    }
    if (route["repeat_interval"]) {
      QCLOUD_ASSIGN_OR_RETURN(c.route.repeat_interval, Duration(route["repeat_interval"], "route repeat_interval"));
    }
  }
  bool found = c.receiver.empty();
  for (const auto& r : root["receivers"]) {
    QCLOUD_RETURN_IF_ERROR(KnownKeys(r, {"name", "webhook_configs", "max_per_minute"}, "receiver"));
    if (r["name"].as<std::string>("") != c.receiver) continue;
    found = true;
    c.route.max_per_minute = r["max_per_minute"].as<unsigned>(0);
    for (const auto& w : r["webhook_configs"]) {
      QCLOUD_RETURN_IF_ERROR(KnownKeys(w, {"url", "send_resolved"}, "webhook_config"));
      WebhookOptions wo{.url = w["url"].as<std::string>(""), .receiver = c.receiver};
      QCLOUD_RETURN_IF_ERROR(Webhook::Make(wo).status());
      c.send_resolved = w["send_resolved"].as<bool>(true);
      c.webhooks.push_back(std::move(wo));
    }
  }
  if (!found) return Bad(fmt::format("route: receiver \"{}\" is not defined", c.receiver));
  c.route.send_resolved = c.send_resolved;
  for (const auto& ir : root["inhibit_rules"]) {
    QCLOUD_RETURN_IF_ERROR(KnownKeys(ir, {"source_matchers", "target_matchers", "equal"}, "inhibit rule"));
    InhibitRule rule;
    QCLOUD_ASSIGN_OR_RETURN(rule.source, Matchers(ir["source_matchers"], "inhibit rule source_matchers"));
    QCLOUD_ASSIGN_OR_RETURN(rule.target, Matchers(ir["target_matchers"], "inhibit rule target_matchers"));
    for (const auto& l : ir["equal"]) rule.equal.push_back(l.as<std::string>());
    c.route.inhibit.push_back(std::move(rule));
  }
  return c;
}

}  // namespace

Result<MonitorConfig> ParseConfig(std::string_view yaml) {
  try {
    return Parse(YAML::Load(std::string(yaml)));
  } catch (const YAML::Exception& e) {
    return InvalidArgument(std::string("config: ") + e.what());
  }
}

}  // namespace qcloud::monitor
