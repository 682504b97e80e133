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

#include <atomic>
#include <charconv>
#include <iostream>
#include <set>
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
#include "qcloud/core/endpoint.h"
#include "qcloud/core/units.h"
#include "qcloud/sched/config.h"
#include "qcloud/sched/failure.h"
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

// One host's heartbeats over UDP: a socket per network path, a datagram
// to every peer on every path each interval, a PathMonitor fed by what
// arrives, and a JSON line on stdout each time a peer becomes suspect or
// is heard again.
int Heartbeat(int argc, char** argv) {
  std::string name, listen_text, interval_text = "250ms";
  std::vector<std::string> peer_texts;
  double threshold = 8;
  std::string threshold_text = "8";
  examples::CommandLine cli(std::string(kProgram) + " heartbeat",
                            "heartbeats between hosts over several networks (UDP), phi-accrual suspicion");
  cli.AddString("name", &name, "this host's name (required)");
  cli.AddString("listen", &listen_text, "one address per network path, comma-separated: 10.0.0.1:7946,10.1.0.1:7946");
  cli.AddStrings("peer", &peer_texts, "NAME=ADDR,ADDR,... one address per path, in the same order (repeat per peer)");
  cli.AddString("interval", &interval_text, "between heartbeats");
  cli.AddString("threshold", &threshold_text, "phi above which a path is suspect");
  std::string arbiter_text;
  cli.AddString("arbiter", &arbiter_text, "ADDR of a qcloud-autoscaler arbiter to send verdicts to (optional)");
  if (auto exit = cli.Parse(argc, argv)) return *exit;
  sockaddr_storage arbiter_addr{};
  socklen_t arbiter_len = 0;
  if (!arbiter_text.empty()) {
    auto ep = ParseEndpoint(arbiter_text);
    if (!ep.ok()) return Fail(ep.status().WithContext("--arbiter"));
    arbiter_len = ep->ToSockaddr(&arbiter_addr);
    if (arbiter_len == 0) return Fail(InvalidArgument("--arbiter " + arbiter_text + ": not a numeric address"));
  }
  auto split = [](std::string_view t) {
    std::vector<std::string> out;
    while (!t.empty()) {
      const size_t c = t.find(',');
      out.emplace_back(t.substr(0, c));
      t.remove_prefix(c == std::string_view::npos ? t.size() : c + 1);
    }
    return out;
  };
  auto interval = ParseDuration(interval_text);
  if (!interval.ok() || interval->count() <= 0) return Fail(InvalidArgument("--interval: " + interval_text));
  auto [tend, tec] = std::from_chars(threshold_text.data(), threshold_text.data() + threshold_text.size(), threshold);
  if (tec != std::errc() || tend != threshold_text.data() + threshold_text.size() || !(threshold > 0)) {
    return Fail(InvalidArgument("--threshold: " + threshold_text));
  }
  if (name.empty() || name.size() > sched::kMaxHeartbeatName) return Fail(InvalidArgument("--name is required (at most 64 bytes)"));
  const std::vector<std::string> listens = split(listen_text);
  if (listens.empty() || listens.size() > 8) return Fail(InvalidArgument("--listen: 1 to 8 addresses"));
  std::vector<int> socks;
  for (const std::string& l : listens) {
    auto ep = ParseEndpoint(l);
    if (!ep.ok()) return Fail(ep.status().WithContext("--listen"));
    sockaddr_storage addr{};
    const socklen_t len = ep->ToSockaddr(&addr);
    if (len == 0) return Fail(InvalidArgument("--listen " + l + ": not a numeric address"));
    const int fd = ::socket(addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || ::bind(fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0) {
      return Fail(Status(Errc::kIoError, fmt::format("--listen {}: {}", l, std::strerror(errno))));
    }
    socks.push_back(fd);
  }
  struct Peer {
    std::string name;
    std::vector<sockaddr_storage> addrs;
  };
  std::vector<Peer> peers;
  for (const std::string& t : peer_texts) {
    const size_t eq = t.find('=');
    if (eq == std::string::npos) return Fail(InvalidArgument("--peer " + t + ": NAME=ADDR,..."));
    Peer p{.name = t.substr(0, eq), .addrs = {}};
    const auto addrs = split(std::string_view(t).substr(eq + 1));
    if (addrs.size() != socks.size()) return Fail(InvalidArgument("--peer " + t + ": one address per --listen path"));
    for (const std::string& a : addrs) {
      auto ep = ParseEndpoint(a);
      if (!ep.ok()) return Fail(ep.status().WithContext("--peer " + p.name));
      sockaddr_storage addr{};
      if (ep->ToSockaddr(&addr) == 0) return Fail(InvalidArgument("--peer " + p.name + ": not a numeric address"));
      p.addrs.push_back(addr);
    }
    peers.push_back(std::move(p));
  }
  sched::PathMonitor monitor({.threshold = threshold, .first_interval = *interval, .max_paths = socks.size()});
  auto life = Lifecycle::Open({.drain_timeout = std::chrono::seconds(1), .logger = &cli.logger()});
  if (!life.ok()) return Fail(life.status());
  if (Status st = (*life)->HandleSignals(); !st.ok()) return Fail(st);
  std::mutex mu;
  std::atomic<bool> stop{false};
  (*life)->Spawn("receive", [&] {
    std::vector<pollfd> fds;
    for (int fd : socks) fds.push_back({.fd = fd, .events = POLLIN, .revents = 0});
    char buf[512];
    while (!stop.load()) {
      if (::poll(fds.data(), fds.size(), 100) <= 0) continue;
      for (size_t path = 0; path < fds.size(); ++path) {
        if (!(fds[path].revents & POLLIN)) continue;
        for (;;) {
          const ssize_t n = ::recv(fds[path].fd, buf, sizeof buf, 0);
          if (n <= 0) break;
          auto m = sched::DecodeHeartbeat(std::string_view(buf, static_cast<size_t>(n)));
          if (!m.ok() || m->path != path) continue;  // not ours, or crossed wires
          std::lock_guard lock(mu);
          monitor.Heartbeat(m->sender, path);
        }
      }
    }
    return Status::Ok();
  });
  (*life)->OnStop("receive", [&] {
    stop.store(true);
    return Status::Ok();
  });
  uint64_t seq = 0;
  std::set<std::string> suspected;
  (*life)->Every("heartbeat", *interval, [&] {
    ++seq;
    const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(RealClock().WallNow().time_since_epoch()).count();
    for (size_t path = 0; path < socks.size(); ++path) {
      const std::string d = sched::EncodeHeartbeat({.sender = name, .path = static_cast<uint8_t>(path), .seq = seq, .sent_ms = now_ms});
      for (const Peer& p : peers) {
        const auto& a = p.addrs[path];
        (void)::sendto(socks[path], d.data(), d.size(), 0, reinterpret_cast<const sockaddr*>(&a),
                       a.ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6));
      }
    }
    std::vector<std::string> now;
    {
      std::lock_guard lock(mu);
      now = monitor.Suspected();
    }
    const std::set<std::string> now_set(now.begin(), now.end());
    auto tell = [&](const std::string& peer, bool suspect) {
      if (arbiter_len == 0) return;
      const std::string d = sched::EncodeSuspicion({.observer = name, .peer = peer, .suspect = suspect, .sent_ms = now_ms});
      (void)::sendto(socks[0], d.data(), d.size(), 0, reinterpret_cast<const sockaddr*>(&arbiter_addr), arbiter_len);
    };
    for (const std::string& p : now_set) {
      if (!suspected.contains(p)) {
        std::cout << fmt::format(R"({{"peer":"{}","suspect":true,"at_ms":{}}})", p, now_ms) << std::endl;
        tell(p, true);
      }
    }
    for (const std::string& p : suspected) {
      if (!now_set.contains(p)) {
        std::cout << fmt::format(R"({{"peer":"{}","suspect":false,"at_ms":{}}})", p, now_ms) << std::endl;
        tell(p, false);
      }
    }
    suspected = now_set;
    // Datagrams get lost: every 10 intervals every verdict again.
    if (seq % 10 == 0) {
      for (const Peer& p : peers) tell(p.name, now_set.contains(p.name));
    }
    return Status::Ok();
  });
  std::cout << kProgram << " heartbeat " << name << " on " << listen_text << std::endl;
  const Status st = (*life)->Run();
  for (int fd : socks) ::close(fd);
  return st.ok() ? 0 : 1;
}

// The arbiter: verdicts from every host's heartbeat process in, a death
// out when a quorum of observers suspect a host and none hears it; with
// the cluster's hosts, instances and placement, each death's evacuation
// plan from the placement engine. JSON lines on stdout.
int ArbiterMain(int argc, char** argv) {
  std::string listen_text, members_text, quorum_text = "2", hosts_path, instances_path, placement_path;
  examples::CommandLine cli(std::string(kProgram) + " arbiter", "declares hosts dead from the heartbeats' verdicts");
  cli.AddString("listen", &listen_text, "UDP address the verdicts come to (required)");
  cli.AddString("members", &members_text, "the hosts watched, comma-separated (or from --hosts)");
  cli.AddString("quorum", &quorum_text, "observers that must suspect a host");
  cli.AddString("hosts", &hosts_path, "HOSTS.json (as for place): evacuation plans on deaths");
  cli.AddString("instances", &instances_path, "INSTANCES.json (with --hosts)");
  cli.AddString("placement", &placement_path, "PLACEMENT.json: place's answer, what runs where (with --hosts)");
  if (auto exit = cli.Parse(argc, argv)) return *exit;
  size_t quorum = 0;
  auto [qend, qec] = std::from_chars(quorum_text.data(), quorum_text.data() + quorum_text.size(), quorum);
  if (qec != std::errc() || qend != quorum_text.data() + quorum_text.size() || quorum == 0) {
    return Fail(InvalidArgument("--quorum: " + quorum_text));
  }
  std::vector<sched::Host> hosts;
  std::vector<sched::Instance> instances;
  std::map<std::string, std::string> current;
  const bool plans = !hosts_path.empty();
  if (plans) {
    if (instances_path.empty() || placement_path.empty()) {
      return Fail(InvalidArgument("--hosts needs --instances and --placement"));
    }
    auto env = OpenPosixEnv();
    if (!env.ok()) return Fail(env.status());
    auto read = [&](const std::string& path) { return ReadFileToString(**env, path, sched::kMaxPlacementJsonBytes); };
    auto h = read(hosts_path);
    auto i = read(instances_path);
    auto p = read(placement_path);
    for (const auto* r : {&h, &i, &p}) {
      if (!r->ok()) return Fail(r->status());
    }
    auto hp = sched::ParseHostsJson(*h);
    if (!hp.ok()) return Fail(hp.status().WithContext(hosts_path));
    auto ip = sched::ParseInstancesJson(*i);
    if (!ip.ok()) return Fail(ip.status().WithContext(instances_path));
    auto pp = sched::ParsePlacementJson(*p);
    if (!pp.ok()) return Fail(pp.status().WithContext(placement_path));
    hosts = std::move(*hp);
    instances = std::move(*ip);
    current = std::move(pp->placements);
  }
  std::vector<std::string> members;
  if (!members_text.empty()) {
    std::string_view t = members_text;
    while (!t.empty()) {
      const size_t c = t.find(',');
      members.emplace_back(t.substr(0, c));
      t.remove_prefix(c == std::string_view::npos ? t.size() : c + 1);
    }
  } else {
    for (const sched::Host& h : hosts) members.push_back(h.name);
  }
  if (members.empty()) return Fail(InvalidArgument("--members or --hosts is required"));
  auto ep = ParseEndpoint(listen_text);
  if (!ep.ok()) return Fail(ep.status().WithContext("--listen"));
  sockaddr_storage addr{};
  const socklen_t len = ep->ToSockaddr(&addr);
  const int fd = len == 0 ? -1 : ::socket(addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || ::bind(fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0) {
    return Fail(Status(Errc::kIoError, fmt::format("--listen {}: {}", listen_text, std::strerror(errno))));
  }
  sched::Arbiter arbiter({.quorum = quorum}, members);
  auto life = Lifecycle::Open({.drain_timeout = std::chrono::seconds(1), .logger = &cli.logger()});
  if (!life.ok()) return Fail(life.status());
  if (Status st = (*life)->HandleSignals(); !st.ok()) return Fail(st);
  std::atomic<bool> stop{false};
  (*life)->Spawn("receive", [&] {
    std::set<std::string> dead;
    char buf[512];
    pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
    while (!stop.load()) {
      if (::poll(&p, 1, 100) <= 0) continue;
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) continue;
      auto r = sched::DecodeSuspicion(std::string_view(buf, static_cast<size_t>(n)));
      if (!r.ok()) continue;
      arbiter.Report(r->observer, r->peer, r->suspect);
      const auto now_dead = arbiter.Dead();
      const std::set<std::string> now_set(now_dead.begin(), now_dead.end());
      const int64_t now_ms =
          std::chrono::duration_cast<std::chrono::milliseconds>(RealClock().WallNow().time_since_epoch()).count();
      for (const std::string& h : now_set) {
        if (dead.contains(h)) continue;
        std::cout << fmt::format(R"({{"host":"{}","dead":true,"at_ms":{}}})", h, now_ms) << std::endl;
        if (!plans) continue;
        auto plan = sched::PlanEvacuation(hosts, instances, current, h);
        if (!plan.ok()) {
          std::string why;
          const std::string message(plan.status().message());
          for (char ch : message) {
            if (ch == '"' || ch == '\\') why += '\\';
            if (static_cast<unsigned char>(ch) >= 0x20) why += ch;
          }
          std::cout << fmt::format(R"({{"evacuate":"{}","error":"{}"}})", h, why) << std::endl;
          continue;
        }
        sched::Placement moves{.placements = plan->moves, .unplaced = plan->stranded, .hosts_used = 0};
        std::cout << fmt::format(R"({{"evacuate":"{}","plan":{}}})", h, sched::PlacementToJson(moves)) << std::endl;
        for (const auto& [inst, to] : plan->moves) current[inst] = to;
        for (const sched::Unplaced& u : plan->stranded) current.erase(u.name);
      }
      for (const std::string& h : dead) {
        if (!now_set.contains(h)) std::cout << fmt::format(R"({{"host":"{}","dead":false,"at_ms":{}}})", h, now_ms) << std::endl;
      }
      dead = now_set;
    }
    return Status::Ok();
  });
  (*life)->OnStop("receive", [&] {
    stop.store(true);
    return Status::Ok();
  });
  std::cout << kProgram << " arbiter on " << listen_text << " (" << members.size() << " hosts, quorum " << quorum << ")"
            << std::endl;
  const Status st = (*life)->Run();
  ::close(fd);
  return st.ok() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]) == "arbiter") return ArbiterMain(argc - 1, argv + 1);
  if (argc >= 2 && std::string(argv[1]) == "heartbeat") return Heartbeat(argc - 1, argv + 1);
  if (argc >= 2 && std::string(argv[1]) == "place") return Place(argc - 1, argv + 1);
  if (argc >= 2 && std::string_view(argv[1]).starts_with("--")) return Serve(argc, argv);
  std::cerr << "usage: " << kProgram << " --config FILE\n       " << kProgram
            << " place --hosts HOSTS.json --instances INSTANCES.json [--strategy NAME] [--headroom H]\n       "
            << kProgram << " heartbeat --name NAME --listen ADDR[,ADDR...] --peer NAME=ADDR[,ADDR...]... [--arbiter ADDR]\n       "
            << kProgram << " arbiter --listen ADDR (--members A,B,... | --hosts H.json --instances I.json --placement P.json)\n";
  return 2;
}
