// qcloud-autoscaler: the scheduling platform's command line.
//
//   qcloud-autoscaler place --hosts HOSTS.json --instances INSTANCES.json [--strategy NAME] [--headroom 0.1]
//
// places the instances on the hosts with qcloud::sched's placement engine
// (formats: qcloud/sched/placement_json.h) and prints one JSON object on
// stdout: {"placements": {...}, "unplaced": [...], "hosts_used": N}. Exit
// 0; 2 with "qcloud-autoscaler: <why>" on stderr for invalid input (a file
// that is not there or not in the format, a bad value, an unknown
// strategy). Strategies: local-search (default), ffd, best-fit, spread,
// dot-product.
//
//   qcloud-autoscaler --config FILE
//
// runs the trigger engine (qcloud/sched/trigger.h): every `interval` it
// queries each configured metric from a Prometheus-compatible endpoint
// (GET /api/v1/query), feeds the samples to the engine, ticks it, and hands
// each decision, as one JSON object with its explanation, to the hook (a
// command, the JSON on its stdin, exit 0 = done; or an HTTP webhook, 2xx =
// done). A decision whose hook fails is not taken: the group's size goes
// back and the engine decides again. It serves /metrics and
// /api/v1/decisions (the recent decisions, JSON) on `listen`, prints
// "qcloud-autoscaler listening on HOST:PORT" when ready, keeps its state in
// `state_file` across restarts, and stops on SIGINT/SIGTERM. The config
// format: qcloud/sched/config.h and the README. Exit 2 for a bad config.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <charconv>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <fmt/format.h>

#include "cli.h"
#include "http_client.h"
#include "qcloud/core/env.h"
#include "qcloud/core/http.h"
#include "qcloud/core/lifecycle.h"
#include "qcloud/core/metrics.h"
#include "qcloud/runtime/http_server.h"
#include "qcloud/sched/config.h"
#include "qcloud/sched/placement.h"
#include "qcloud/sched/placement_json.h"
#include "qcloud/sched/prometheus.h"
#include "qcloud/sched/trigger.h"

extern char** environ;

using namespace qcloud;

namespace {

constexpr char kProgram[] = "qcloud-autoscaler";

int Fail(const Status& s) {
  std::cerr << kProgram << ": " << s.ToString() << "\n";
  return 2;
}

int Place(int argc, char** argv) {
  std::string hosts_path, instances_path, strategy_name = "local-search", headroom_text = "0";
  examples::CommandLine cli(std::string(kProgram) + " place", "place instances on hosts (multi-resource bin packing)");
  cli.AddString("hosts", &hosts_path, "JSON array of hosts: name, capacity, labels (required)");
  cli.AddString("instances", &instances_path,
                "JSON array of instances: name, demand, anti_affinity, spread_by, affinity, host_labels (required)");
  cli.AddString("strategy", &strategy_name, "local-search, ffd, best-fit, spread or dot-product");
  cli.AddString("headroom", &headroom_text, "fraction of every capacity kept free, 0 <= h < 1");
  if (auto exit = cli.Parse(argc, argv)) return *exit;
  if (hosts_path.empty() || instances_path.empty()) return Fail(InvalidArgument("--hosts and --instances are required"));
  auto strategy = sched::ParseStrategy(strategy_name);
  if (!strategy.ok()) return Fail(strategy.status().WithContext("--strategy"));
  double headroom = 0;
  auto [end, ec] = std::from_chars(headroom_text.data(), headroom_text.data() + headroom_text.size(), headroom);
  if (ec != std::errc() || end != headroom_text.data() + headroom_text.size()) {
    return Fail(InvalidArgument("--headroom: \"" + headroom_text + "\" is not a number"));
  }
  auto env = OpenPosixEnv();
  if (!env.ok()) return Fail(env.status());
  auto hosts_text = ReadFileToString(**env, hosts_path, sched::kMaxPlacementJsonBytes);
  if (!hosts_text.ok()) return Fail(hosts_text.status().WithContext("--hosts " + hosts_path));
  auto instances_text = ReadFileToString(**env, instances_path, sched::kMaxPlacementJsonBytes);
  if (!instances_text.ok()) return Fail(instances_text.status().WithContext("--instances " + instances_path));
  auto hosts = sched::ParseHostsJson(*hosts_text);
  if (!hosts.ok()) return Fail(hosts.status().WithContext(hosts_path));
  auto instances = sched::ParseInstancesJson(*instances_text);
  if (!instances.ok()) return Fail(instances.status().WithContext(instances_path));
  auto placed = sched::Place(*hosts, *instances, {.strategy = *strategy, .headroom = headroom});
  if (!placed.ok()) return Fail(placed.status());
  std::cout << sched::PlacementToJson(*placed) << "\n";
  return 0;
}

// Runs `command` with /bin/sh, `input` on its stdin; ok when it exits 0
// within `timeout` (killed otherwise).
Status RunHook(const std::string& command, const std::string& input, std::chrono::milliseconds timeout) {
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return Status(Errc::kIoError, "pipe");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, pipefd[0], 0);
  const char* args[] = {"/bin/sh", "-c", command.c_str(), nullptr};
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, "/bin/sh", &fa, nullptr, const_cast<char* const*>(args), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(pipefd[0]);
  if (rc != 0) {
    ::close(pipefd[1]);
    return Status(Errc::kIoError, fmt::format("hook: spawn: {}", std::strerror(rc)));
  }
  size_t off = 0;
  while (off < input.size()) {
    const ssize_t n = ::write(pipefd[1], input.data() + off, input.size() - off);
    if (n <= 0) break;  // the hook need not read it all
    off += static_cast<size_t>(n);
  }
  ::close(pipefd[1]);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  for (;;) {
    const pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return Status(Errc::kTimedOut, fmt::format("hook: no exit within {} ms", timeout.count()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return Status(Errc::kAborted, fmt::format("hook: exit status {}", WIFEXITED(status) ? WEXITSTATUS(status) : -1));
  }
  return Status::Ok();
}

int Serve(int argc, char** argv) {
  std::string config_path;
  examples::CommandLine cli(kProgram, "the trigger engine: metrics from Prometheus, decisions to a hook");
  cli.AddString("config", &config_path, "YAML: prometheus, metrics, groups, alarms, actions, hook (required)");
  if (auto exit = cli.Parse(argc, argv)) return *exit;
  Logger& log = cli.logger();
  if (config_path.empty()) return Fail(InvalidArgument("--config is required"));
  auto env = OpenPosixEnv();
  if (!env.ok()) return Fail(env.status());
  auto text = ReadFileToString(**env, config_path, sched::kMaxConfigBytes + 1);
  if (!text.ok()) return Fail(text.status().WithContext("--config " + config_path));
  auto config = sched::ParseAutoscalerConfig(*text);
  if (!config.ok()) return Fail(config.status().WithContext(config_path));
  sched::AutoscalerConfig& c = *config;
  auto prometheus = examples::ParseHttpUrl(c.prometheus);
  if (!prometheus.ok()) return Fail(prometheus.status().WithContext("prometheus"));
  std::optional<examples::HttpUrl> webhook;
  if (!c.hook.webhook.empty()) {
    auto w = examples::ParseHttpUrl(c.hook.webhook);
    if (!w.ok()) return Fail(w.status().WithContext("hook.webhook"));
    webhook = *w;
  }
  sched::EngineOptions eo{.clock = &RealClock()};
  for (const sched::MetricQuery& m : c.metrics) eo.metrics.push_back(m.name);
  if (eo.metrics.empty()) return Fail(InvalidArgument(config_path + ": no metrics to query"));
  auto engine_r = sched::Engine::Open(eo, c.groups, c.alarms, c.actions);
  if (!engine_r.ok()) return Fail(engine_r.status().WithContext(config_path));
  sched::Engine& engine = **engine_r;
  if (!c.state_file.empty() && (*env)->FileExists(c.state_file)) {
    auto saved = ReadFileToString(**env, c.state_file, size_t{64} << 20);
    if (!saved.ok()) return Fail(saved.status().WithContext("state_file"));
    if (Status s = engine.RestoreState(*saved); !s.ok()) return Fail(s.WithContext("state_file " + c.state_file));
  }
  std::mutex engine_mu;  // the tick and the HTTP handlers

  MetricsRegistry registry;
  auto* queries = registry.AddCounter("qcloud_autoscaler_queries_total", "Metric queries by metric and result.",
                                      {"metric", "result"}).value();
  auto* decisions = registry.AddCounter("qcloud_autoscaler_decisions_total", "Decisions by group and kind.",
                                        {"group", "kind"}).value();
  auto* hooks = registry.AddCounter("qcloud_autoscaler_hook_calls_total", "Hook calls by result.", {"result"}).value();
  auto* sizes = registry.AddGauge("qcloud_autoscaler_group_size", "Each group's size as decided.", {"group"}).value();
  (void)registry.AddCallback("qcloud_autoscaler_samples_total", "Samples taken by the engine.", MetricType::kCounter,
                             [&] {
                               std::lock_guard lock(engine_mu);
                               return static_cast<double>(engine.stats().samples);
                             });
  (void)registry.AddCallback("qcloud_autoscaler_ignored_samples_total", "Samples ignored (NaN or infinite).",
                             MetricType::kCounter, [&] {
                               std::lock_guard lock(engine_mu);
                               return static_cast<double>(engine.stats().nan_samples);
                             });
  for (const sched::GroupSpec& g : c.groups) sizes->WithLabels({g.name}).Set(engine.Size(g.name).value());

  auto life = Lifecycle::Open({.drain_timeout = std::chrono::seconds(5), .logger = &log});
  if (!life.ok()) return Fail(life.status());
  if (Status s = (*life)->HandleSignals(); !s.ok()) return Fail(s);
  auto http = HttpServer::Open(
      [&](const HttpRequest& r) {
        if (r.path == "/metrics") {
          return HttpResponse{.content_type = std::string(MetricsRegistry::kContentType), .body = registry.RenderText()};
        }
        if (r.path == "/api/v1/decisions") {
          std::vector<sched::Decision> all;
          {
            std::lock_guard lock(engine_mu);
            all = engine.Decisions();
          }
          std::string body = "[";
          for (size_t i = 0; i < all.size(); ++i) body += (i ? ",\n" : "\n") + sched::DecisionToJson(all[i]);
          body += "\n]\n";
          return HttpResponse{.content_type = "application/json", .body = body};
        }
        if (r.path == "/-/healthy") return HttpResponse{.body = "ok\n"};
        return HttpResponse{.status = 404, .body = "not found\n"};
      },
      {.listen = c.listen, .threads = 1, .logger = &log});
  if (!http.ok()) return Fail(http.status().WithContext("listen"));
  HttpServer& srv = **http;
  (*life)->Spawn("http", [&srv] { return srv.Serve(0); });
  (*life)->OnStop("http", [&srv] {
    srv.Stop();
    return Status::Ok();
  });
  (*life)->Every("tick", c.interval, [&] {
    std::vector<sched::MetricSample> samples;
    for (const sched::MetricQuery& m : c.metrics) {
      auto reply = examples::HttpCall(*prometheus, "GET", sched::QueryTarget(prometheus->path == "/" ? "" : prometheus->path, m.query),
                                      "", "", c.interval * 2);
      Result<sched::QuerySamples> got = reply.ok() ? sched::ParsePrometheusVector(reply->body, m)
                                                   : Result<sched::QuerySamples>(reply.status());
      if (!got.ok()) {
        queries->WithLabels({m.name, "error"}).Increment();
        log.Log(LogLevel::kWarning, "query " + m.name + ": " + got.status().ToString());
        continue;
      }
      queries->WithLabels({m.name, "ok"}).Increment();
      for (sched::MetricSample& x : got->samples) samples.push_back(std::move(x));
    }
    std::vector<sched::Decision> made;
    {
      std::lock_guard lock(engine_mu);
      engine.Observe(samples);
      made = engine.Tick();
    }
    for (const sched::Decision& d : made) {
      const std::string json = sched::DecisionToJson(d);
      Status done = Status::Ok();
      if (!c.hook.command.empty()) {
        done = RunHook(c.hook.command, json + "\n", c.hook.timeout);
      } else if (webhook) {
        auto reply = examples::HttpCall(*webhook, "POST", webhook->path, "application/json", json, c.hook.timeout, 1 << 20);
        done = !reply.ok() ? reply.status()
               : reply->status / 100 == 2 ? Status::Ok()
                                          : Status(Errc::kAborted, fmt::format("webhook: HTTP {}", reply->status));
      }
      decisions->WithLabels({d.group, sched::ActionKindName(d.kind)}).Increment();
      hooks->WithLabels({done.ok() ? "ok" : "error"}).Increment();
      log.Log(done.ok() ? LogLevel::kInfo : LogLevel::kWarning,
              fmt::format("{} {} {} -> {}: {}{}", d.group, sched::ActionKindName(d.kind), d.from, d.to, d.explanation,
                          done.ok() ? "" : " (" + done.ToString() + "; not taken)"));
      if (!done.ok() && d.to != d.from) {
        std::lock_guard lock(engine_mu);
        (void)engine.SetSize(d.group, d.from);
      }
    }
    std::string state;
    {
      std::lock_guard lock(engine_mu);
      for (const sched::GroupSpec& g : c.groups) sizes->WithLabels({g.name}).Set(engine.Size(g.name).value());
      if (!c.state_file.empty()) state = engine.SaveState();
    }
    if (!state.empty()) {
      const std::string tmp = c.state_file + ".tmp";
      auto f = (*env)->OpenFile(tmp, OpenMode::kTruncate);
      Status st = f.ok() ? (*f)->WriteAt(0, ByteView(state)) : f.status();
      if (st.ok()) st = (*f)->Sync();
      if (st.ok()) st = (*env)->RenameFile(tmp, c.state_file);
      if (!st.ok()) log.Log(LogLevel::kWarning, "state_file: " + st.ToString());
    }
    return Status::Ok();
  });
  std::cout << kProgram << " listening on " << srv.address().ToString() << std::endl;
  const Status s = (*life)->Run();
  if (!s.ok()) {
    std::cerr << kProgram << ": " << s.ToString() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]) == "place") return Place(argc - 1, argv + 1);
  if (argc >= 2 && std::string_view(argv[1]).starts_with("--")) return Serve(argc, argv);
  std::cerr << "usage: " << kProgram << " --config FILE\n       " << kProgram
            << " place --hosts HOSTS.json --instances INSTANCES.json [--strategy NAME] [--headroom H]\n";
  return 2;
}
