// qcloud-vswitchd: one host's overlay switch (libqcloud-net's Datapath):
// VM ports on TAP devices, VXLAN/GRE tunnels to the other hosts, VPC
// isolation and anti-spoofing, per-VM HTB rates, dual underlay planes.
//
//   qcloud-vswitchd --config host1.json
//
// The config's shape is libqcloud-net's config.h. The control API (HTTP/JSON
// on the config's "control" address, loopback by default) takes the
// controller's updates, in the config's shapes:
//   GET    /v1/state                 everything, with counters
//   POST   /v1/vpcs                  {"id": 100, "tunnel": "vxlan"}
//   DELETE /v1/vpcs/{id}
//   PUT    /v1/hosts                 {"id": 2, "service": "10.1.0.2", "storage": "10.2.0.2"}
//   DELETE /v1/hosts/{id}
//   POST   /v1/ports                 {"id": 3, "vpc": 100, "tap": "vm3", "mac": ..., "ipv4": [...]}
//   DELETE /v1/ports/{id}
//   PUT    /v1/vms                   {"vpc": 100, "mac": ..., "ipv4": [...], "host": 2}   (adds or moves)
//   DELETE /v1/vms/{vpc}/{mac}
//   GET    /metrics                  Prometheus text
// Errors: 400 (bad JSON or value), 404, 409 (exists), 501 (no TAP here),
// with {"error": "..."}.
#include <cstdio>
#include <string>

#include <fmt/format.h>

#include "cli.h"
#include "qcloud/core/env.h"
#include "qcloud/core/http.h"
#include "qcloud/core/lifecycle.h"
#include "qcloud/core/metrics.h"
#include "qcloud/core/units.h"
#include "qcloud/net/config.h"
#include "qcloud/net/datapath.h"
#include "qcloud/runtime/http_server.h"

namespace {

using namespace qcloud;
using namespace qcloud::net;

constexpr const char* kProgram = "qcloud-vswitchd";

int Fail(const Status& s) {
  std::fprintf(stderr, "%s: %s\n", kProgram, s.ToString().c_str());
  return 1;
}

HttpResponse Json(int status, std::string body) {
  return HttpResponse{.status = status, .content_type = "application/json", .body = std::move(body) + "\n"};
}

HttpResponse FromStatus(const Status& s) {
  if (s.ok()) return Json(200, "{\"ok\":true}");
  int code = 500;
  if (s.code() == Errc::kInvalidArgument) code = 400;
  else if (s.code() == Errc::kNotFound) code = 404;
  else if (s.code() == Errc::kAlreadyExists) code = 409;
  else if (s.code() == Errc::kResourceExhausted) code = 507;
  else if (s.code() == Errc::kNotSupported) code = 501;
  std::string msg;
  for (char c : s.message()) {
    if (c == '"' || c == '\\') msg += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) msg += c;
  }
  return Json(code, fmt::format("{{\"error\":\"{}\"}}", msg));
}

// "/v1/ports/7" with prefix "/v1/ports/" -> 7.
std::optional<uint32_t> IdAfter(std::string_view path, std::string_view prefix) {
  if (!path.starts_with(prefix)) return std::nullopt;
  auto n = ParseUnsigned(path.substr(prefix.size()), UINT32_MAX);
  if (!n.ok()) return std::nullopt;
  return static_cast<uint32_t>(*n);
}

HttpResponse Handle(Datapath& dp, MetricsRegistry& registry, const HttpRequest& r) {
  const std::string& p = r.path;
  if (r.method == "GET" && p == "/metrics")
    return HttpResponse{.content_type = std::string(MetricsRegistry::kContentType), .body = registry.RenderText()};
  if (r.method == "GET" && p == "/-/healthy") return HttpResponse{.body = "ok\n"};
  if (r.method == "GET" && (p == "/v1/state" || p == "/v1/state/")) return Json(200, dp.StateJson());
  if (r.method == "POST" && p == "/v1/vpcs") {
    auto v = ParseVpcJson(r.body);
    return FromStatus(v.ok() ? dp.AddVpc(*v) : v.status());
  }
  if (r.method == "PUT" && p == "/v1/hosts") {
    auto h = ParseHostJson(r.body);
    return FromStatus(h.ok() ? dp.SetHost(*h) : h.status());
  }
  if (r.method == "POST" && p == "/v1/ports") {
    auto port = ParsePortJson(r.body);
    return FromStatus(port.ok() ? dp.AddTapPort(*port) : port.status());
  }
  if (r.method == "PUT" && p == "/v1/vms") {
    auto vm = ParseVmJson(r.body);
    return FromStatus(vm.ok() ? dp.SetVm(*vm) : vm.status());
  }
  if (r.method == "DELETE") {
    if (auto id = IdAfter(p, "/v1/vpcs/")) return FromStatus(dp.RemoveVpc(*id));
    if (auto id = IdAfter(p, "/v1/hosts/")) return FromStatus(dp.RemoveHost(*id));
    if (auto id = IdAfter(p, "/v1/ports/")) return FromStatus(dp.RemovePort(*id));
    if (p.starts_with("/v1/vms/")) {
      std::string_view rest = std::string_view(p).substr(8);
      size_t slash = rest.find('/');
      auto vpc = ParseUnsigned(rest.substr(0, slash == std::string_view::npos ? rest.size() : slash), 0xffffff);
      auto mac = slash == std::string_view::npos ? std::nullopt : MacAddr::Parse(rest.substr(slash + 1));
      if (!vpc.ok() || !mac) return FromStatus(InvalidArgument("expected /v1/vms/{vpc}/{mac}"));
      return FromStatus(dp.RemoveVm(static_cast<uint32_t>(*vpc), *mac));
    }
  }
  if (p.starts_with("/v1/")) return Json(405, "{\"error\":\"no such method on this path\"}");
  return Json(404, "{\"error\":\"not found\"}");
}

int Serve(int argc, char** argv) {
  std::string config_path;
  std::string control;
  examples::CommandLine cli(kProgram, "one host's overlay switch: TAP ports, VXLAN/GRE tunnels, VPCs, HTB, planes");
  cli.AddString("config", &config_path, "JSON: host_id, planes, vpcs, hosts, ports, vms (required)");
  cli.AddString("control", &control, "override the config's control address (HOST:PORT; port 0 picks one)");
  if (auto exit = cli.Parse(argc, argv)) return *exit;
  Logger& log = cli.logger();
  if (config_path.empty()) return Fail(InvalidArgument("--config is required"));
  auto env = OpenPosixEnv();
  if (!env.ok()) return Fail(env.status());
  auto text = ReadFileToString(**env, config_path, kMaxConfigBytes + 1);
  if (!text.ok()) return Fail(text.status().WithContext("--config " + config_path));
  auto config = ParseVswitchdConfig(*text);
  if (!config.ok()) return Fail(config.status().WithContext(config_path));
  VswitchdConfig& c = *config;
  if (!control.empty()) c.control = control;

  auto life = Lifecycle::Open({.drain_timeout = std::chrono::seconds(5), .logger = &log});
  if (!life.ok()) return Fail(life.status());
  if (Status s = (*life)->HandleSignals(); !s.ok()) return Fail(s);

  auto dp_r = Datapath::Open({.host_id = c.host_id, .service = c.service, .storage = c.storage,
                              .vxlan_port = c.vxlan_port, .probe_port = c.probe_port, .gre = c.gre,
                              .probe_interval = c.probe_interval, .dead_after = c.dead_after,
                              .link_rate = c.link_rate, .logger = &log});
  if (!dp_r.ok()) return Fail(dp_r.status());
  Datapath& dp = **dp_r;
  for (const VpcOptions& v : c.vpcs)
    if (Status s = dp.AddVpc(v); !s.ok()) return Fail(s.WithContext(fmt::format("vpc {}", v.id)));
  for (const HostOptions& h : c.hosts)
    if (Status s = dp.SetHost(h); !s.ok()) return Fail(s.WithContext(fmt::format("host {}", h.id)));
  for (const TapPortOptions& p : c.ports)
    if (Status s = dp.AddTapPort(p); !s.ok()) return Fail(s.WithContext(fmt::format("port {}", p.port.id)));
  for (const VmLocation& vm : c.vms)
    if (Status s = dp.SetVm(vm); !s.ok()) return Fail(s.WithContext(fmt::format("vm {}", vm.mac.ToString())));

  MetricsRegistry registry;
  if (Status s = dp.RegisterMetrics(registry); !s.ok()) return Fail(s);
  auto http = HttpServer::Open([&](const HttpRequest& r) { return Handle(dp, registry, r); },
                               {.listen = c.control, .threads = 1, .max_body_bytes = size_t{1} << 20, .logger = &log});
  if (!http.ok()) return Fail(http.status().WithContext("control " + c.control));
  HttpServer& srv = **http;
  std::printf("%s control on http://%s\n", kProgram, srv.address().ToString().c_str());
  std::fflush(stdout);
  (*life)->Spawn("datapath", [&dp] { return dp.Run(); });
  (*life)->Spawn("http", [&srv] { return srv.Serve(0); });
  (*life)->OnStop("http", [&srv] {
    srv.Stop();
    return Status::Ok();
  });
  (*life)->OnStop("datapath", [&dp] {
    dp.Stop();
    return Status::Ok();
  });
  return cli.Exit((*life)->Run());
}

}  // namespace

int main(int argc, char** argv) { return Serve(argc, argv); }
