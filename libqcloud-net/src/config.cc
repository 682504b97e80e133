#include "qcloud/net/config.h"

#include <span>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <fmt/format.h>

#include "qcloud/core/units.h"

namespace qcloud::net {
namespace {

namespace json = boost::json;

constexpr size_t kMaxItems = 65536;
constexpr size_t kMaxAddresses = 64;

// Reads one JSON object's fields, each once, and refuses keys nobody asked for.
class Fields {
 public:
  Fields(const json::value& v, std::string path) : path_(std::move(path)) {
    if (!v.is_object()) {
      status_ = Fail("", "must be a JSON object");
      return;
    }
    obj_ = &v.get_object();
  }
  const Status& status() const { return status_; }
  const json::value* Take(std::string_view key) {
    if (obj_ == nullptr) return nullptr;
    taken_.emplace_back(key);
    return obj_->if_contains(key);
  }
  Status Fail(std::string_view key, std::string_view what) const {
    std::string where = path_;
    if (!key.empty()) where += (where.empty() ? "" : ".") + std::string(key);
    return InvalidArgument(fmt::format("{}: {}", where.empty() ? "config" : where, what));
  }
  std::string Path(std::string_view key) const { return path_.empty() ? std::string(key) : path_ + "." + std::string(key); }
  Status Unknown() const {
    if (obj_ == nullptr) return status_;
    for (const auto& kv : *obj_) {
      bool known = false;
      for (const std::string& t : taken_) known = known || t == kv.key();
      if (!known) return Fail(std::string_view(kv.key().data(), kv.key().size()), "unknown key");
    }
    return Status::Ok();
  }

  Status Uint(std::string_view key, uint64_t max, bool required, uint64_t* out) {
    const json::value* v = Take(key);
    if (v == nullptr) return required ? Fail(key, "required") : Status::Ok();
    if (v->is_uint64() && v->get_uint64() <= max) *out = v->get_uint64();
    else if (v->is_int64() && v->get_int64() >= 0 && static_cast<uint64_t>(v->get_int64()) <= max)
      *out = static_cast<uint64_t>(v->get_int64());
    else return Fail(key, fmt::format("must be an integer in 0..{}", max));
    return Status::Ok();
  }
  Status Bool(std::string_view key, bool* out) {
    const json::value* v = Take(key);
    if (v == nullptr) return Status::Ok();
    if (!v->is_bool()) return Fail(key, "must be true or false");
    *out = v->get_bool();
    return Status::Ok();
  }
  Status String(std::string_view key, bool required, std::string* out) {
    const json::value* v = Take(key);
    if (v == nullptr) return required ? Fail(key, "required") : Status::Ok();
    if (!v->is_string()) return Fail(key, "must be a string");
    *out = std::string(v->get_string());
    return Status::Ok();
  }
  Status Ip4(std::string_view key, bool required, Ipv4Addr* out) {
    std::string s;
    if (Status st = String(key, required, &s); !st.ok()) return st;
    if (s.empty()) return required ? Fail(key, "required (an IPv4 address)") : Status::Ok();
    auto a = Ipv4Addr::Parse(s);
    if (!a) return Fail(key, fmt::format("\"{}\" is not an IPv4 address", s));
    *out = *a;
    return Status::Ok();
  }
  Status Mac(std::string_view key, MacAddr* out) {
    std::string s;
    if (Status st = String(key, true, &s); !st.ok()) return st;
    auto m = MacAddr::Parse(s);
    if (!m) return Fail(key, fmt::format("\"{}\" is not a MAC address", s));
    *out = *m;
    return Status::Ok();
  }
  template <typename T, typename Parse>
  Status List(std::string_view key, size_t max, std::vector<T>* out, Parse parse) {
    const json::value* v = Take(key);
    if (v == nullptr) return Status::Ok();
    if (!v->is_array()) return Fail(key, "must be a list");
    if (v->get_array().size() > max) return Fail(key, fmt::format("more than {} items", max));
    size_t i = 0;
    for (const json::value& item : v->get_array()) {
      auto r = parse(item, fmt::format("{}[{}]", Path(key), i++));
      if (!r.ok()) return r.status();
      out->push_back(std::move(*r));
    }
    return Status::Ok();
  }
  Status Rate(std::string_view key, uint64_t* out) {
    const json::value* v = Take(key);
    if (v == nullptr) return Status::Ok();
    // A number is bits per second, as tc reads a bare number.
    Result<uint64_t> r = v->is_string() ? ParseTcRate(std::string_view(v->get_string().data(), v->get_string().size()))
                         : v->is_uint64() && v->get_uint64() <= 8'000'000'000'000'000ull
                             ? Result<uint64_t>((v->get_uint64() + 4) / 8)
                         : v->is_int64() && v->get_int64() >= 0
                             ? Result<uint64_t>((static_cast<uint64_t>(v->get_int64()) + 4) / 8)
                             : Result<uint64_t>(InvalidArgument("not a rate (at most 8 Pbit/s)"));
    if (!r.ok()) return Fail(key, r.status().message());
    *out = *r;
    return Status::Ok();
  }
  Status Size(std::string_view key, uint64_t* out) {
    const json::value* v = Take(key);
    if (v == nullptr) return Status::Ok();
    Result<uint64_t> r = v->is_string() ? ParseTcSize(std::string_view(v->get_string().data(), v->get_string().size()))
                         : v->is_uint64() && v->get_uint64() <= 1'000'000'000'000'000ull
                             ? Result<uint64_t>(v->get_uint64())
                         : v->is_int64() && v->get_int64() >= 0
                             ? Result<uint64_t>(static_cast<uint64_t>(v->get_int64()))
                             : Result<uint64_t>(InvalidArgument("not a size (at most 1e15 bytes)"));
    if (!r.ok()) return Fail(key, r.status().message());
    *out = *r;
    return Status::Ok();
  }
  Status Duration(std::string_view key, std::chrono::milliseconds* out) {
    std::string s;
    if (Status st = String(key, false, &s); !st.ok() || s.empty()) return st;
    auto d = ParseDuration(s);
    if (!d.ok() || d->count() <= 0) return Fail(key, fmt::format("\"{}\" is not a positive duration", s));
    *out = *d;
    return Status::Ok();
  }

 private:
  const json::object* obj_ = nullptr;
  std::string path_;
  std::vector<std::string> taken_;
  Status status_;
};

#define QCLOUD_NET_TRY(expr)              \
  do {                                    \
    if (Status each_ = (expr); !each_.ok()) return each_; \
  } while (0)

Result<Ipv4Addr> Ip4Item(const json::value& v, const std::string& path) {
  if (!v.is_string()) return InvalidArgument(path + ": must be an IPv4 address string");
  auto a = Ipv4Addr::Parse(std::string_view(v.get_string().data(), v.get_string().size()));
  if (!a) return InvalidArgument(fmt::format("{}: \"{}\" is not an IPv4 address", path, std::string_view(v.get_string())));
  return *a;
}

Result<Ipv6Addr> Ip6Item(const json::value& v, const std::string& path) {
  if (!v.is_string()) return InvalidArgument(path + ": must be an IPv6 address string");
  auto a = Ipv6Addr::Parse(std::string_view(v.get_string().data(), v.get_string().size()));
  if (!a) return InvalidArgument(fmt::format("{}: \"{}\" is not an IPv6 address", path, std::string_view(v.get_string())));
  return *a;
}

Result<VpcOptions> VpcFrom(const json::value& v, const std::string& path) {
  Fields f(v, path);
  QCLOUD_NET_TRY(f.status());
  VpcOptions o;
  uint64_t id = 0;
  QCLOUD_NET_TRY(f.Uint("id", 0xffffff, true, &id));
  if (id == 0) return f.Fail("id", "must be in 1..16777215");
  o.id = static_cast<uint32_t>(id);
  std::string tunnel = "vxlan";
  QCLOUD_NET_TRY(f.String("tunnel", false, &tunnel));
  if (tunnel == "vxlan") o.tunnel = Tunnel::kVxlan;
  else if (tunnel == "gre") o.tunnel = Tunnel::kGre;
  else return f.Fail("tunnel", "must be \"vxlan\" or \"gre\"");
  QCLOUD_NET_TRY(f.Bool("learning", &o.learning));
  QCLOUD_NET_TRY(f.Bool("arp_responder", &o.arp_responder));
  QCLOUD_NET_TRY(f.List("flood_peers", kMaxAddresses, &o.flood_peers, Ip4Item));
  QCLOUD_NET_TRY(f.Unknown());
  return o;
}

Result<HostOptions> HostFrom(const json::value& v, const std::string& path) {
  Fields f(v, path);
  QCLOUD_NET_TRY(f.status());
  HostOptions o;
  uint64_t id = 0;
  QCLOUD_NET_TRY(f.Uint("id", UINT32_MAX, true, &id));
  if (id == 0) return f.Fail("id", "must be nonzero");
  o.id = static_cast<uint32_t>(id);
  QCLOUD_NET_TRY(f.Ip4("service", true, &o.service));
  QCLOUD_NET_TRY(f.Ip4("storage", false, &o.storage));
  QCLOUD_NET_TRY(f.Unknown());
  return o;
}

Result<PortQos> QosFrom(const json::value& v, const std::string& path) {
  Fields f(v, path);
  QCLOUD_NET_TRY(f.status());
  PortQos q;
  QCLOUD_NET_TRY(f.Rate("rate", &q.rate));
  QCLOUD_NET_TRY(f.Rate("ceil", &q.ceil));
  QCLOUD_NET_TRY(f.Size("burst", &q.burst));
  QCLOUD_NET_TRY(f.Size("cburst", &q.cburst));
  uint64_t prio = 0;
  QCLOUD_NET_TRY(f.Uint("prio", 7, false, &prio));
  q.prio = static_cast<uint32_t>(prio);
  if (q.rate == 0) return f.Fail("rate", "required (a positive rate)");
  if (q.ceil != 0 && q.ceil < q.rate) return f.Fail("ceil", "must be at least the rate");
  QCLOUD_NET_TRY(f.Unknown());
  return q;
}

Result<TapPortOptions> PortFrom(const json::value& v, const std::string& path) {
  Fields f(v, path);
  QCLOUD_NET_TRY(f.status());
  TapPortOptions o;
  uint64_t n = 0;
  QCLOUD_NET_TRY(f.Uint("id", UINT32_MAX, true, &n));
  if (n == 0) return f.Fail("id", "must be nonzero");
  o.port.id = static_cast<uint32_t>(n);
  QCLOUD_NET_TRY(f.Uint("vpc", 0xffffff, true, &n));
  o.port.vpc = static_cast<uint32_t>(n);
  QCLOUD_NET_TRY(f.String("tap", true, &o.tap));
  if (o.tap.empty() || o.tap.size() > 15 || o.tap.find_first_of("/ :\t\n") != std::string::npos)
    return f.Fail("tap", "must be a device name of 1..15 characters without '/', ':' or spaces");
  QCLOUD_NET_TRY(f.Mac("mac", &o.port.mac));
  if (o.port.mac.IsMulticast() || o.port.mac.IsZero()) return f.Fail("mac", "must be a unicast address");
  QCLOUD_NET_TRY(f.List("ipv4", kMaxAddresses, &o.port.ipv4, Ip4Item));
  QCLOUD_NET_TRY(f.List("ipv6", kMaxAddresses, &o.port.ipv6, Ip6Item));
  QCLOUD_NET_TRY(f.Bool("anti_spoof", &o.port.anti_spoof));
  n = o.mtu;
  QCLOUD_NET_TRY(f.Uint("mtu", 9000, false, &n));
  if (n < 576) return f.Fail("mtu", "must be in 576..9000");
  o.mtu = static_cast<uint32_t>(n);
  if (const json::value* q = f.Take("qos")) {
    auto qos = QosFrom(*q, f.Path("qos"));
    if (!qos.ok()) return qos.status();
    o.qos = *qos;
  }
  QCLOUD_NET_TRY(f.Unknown());
  return o;
}

Result<VmLocation> VmFrom(const json::value& v, const std::string& path) {
  Fields f(v, path);
  QCLOUD_NET_TRY(f.status());
  VmLocation o;
  uint64_t n = 0;
  QCLOUD_NET_TRY(f.Uint("vpc", 0xffffff, true, &n));
  o.vpc = static_cast<uint32_t>(n);
  QCLOUD_NET_TRY(f.Mac("mac", &o.mac));
  if (o.mac.IsMulticast() || o.mac.IsZero()) return f.Fail("mac", "must be a unicast address");
  QCLOUD_NET_TRY(f.List("ipv4", kMaxAddresses, &o.ipv4, Ip4Item));
  QCLOUD_NET_TRY(f.List("ipv6", kMaxAddresses, &o.ipv6, Ip6Item));
  QCLOUD_NET_TRY(f.Uint("host", UINT32_MAX, true, &n));
  o.host = static_cast<uint32_t>(n);
  QCLOUD_NET_TRY(f.Unknown());
  return o;
}

Result<json::value> ParseDoc(std::string_view text) {
  if (text.size() > kMaxConfigBytes) return InvalidArgument(fmt::format("larger than {} bytes", kMaxConfigBytes));
  boost::system::error_code ec;
  json::parse_options po;
  po.max_depth = 16;
  json::value doc = json::parse(text, ec, {}, po);
  if (ec) return InvalidArgument("not JSON: " + ec.message());
  return doc;
}

template <typename T>
Result<T> ParseOne(std::string_view text, Result<T> (*from)(const json::value&, const std::string&)) {
  auto doc = ParseDoc(text);
  if (!doc.ok()) return doc.status();
  return from(*doc, "");
}

json::array Ip4Array(const std::vector<Ipv4Addr>& v) {
  json::array a;
  for (const Ipv4Addr& x : v) a.emplace_back(x.ToString());
  return a;
}
json::array Ip6Array(const std::vector<Ipv6Addr>& v) {
  json::array a;
  for (const Ipv6Addr& x : v) a.emplace_back(x.ToString());
  return a;
}

}  // namespace

namespace {

// tc's numbers: decimal digits with an optional fraction ("1.5gbit"), and
// a unit matched without regard to case ("100Mbit"), as tc(8) reads them.
struct TcUnit {
  std::string_view suffix;
  double scale;
};

Result<uint64_t> ParseTcNumber(std::string_view text, std::span<const TcUnit> units, double plain,
                               std::string_view what, std::string_view example) {
  auto bad = [&] { return InvalidArgument(fmt::format("\"{}\" is not a {} (tc's units: {})", text, what, example)); };
  std::string lower(text);
  for (char& c : lower) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  double scale = plain;
  std::string_view num = lower;
  for (const TcUnit& u : units) {
    if (num.size() > u.suffix.size() && num.ends_with(u.suffix)) {
      scale = u.scale;
      num.remove_suffix(u.suffix.size());
      break;
    }
  }
  size_t dot = num.find('.');
  std::string_view whole = num.substr(0, dot), frac = dot == std::string_view::npos ? "" : num.substr(dot + 1);
  if (whole.empty() || whole.size() > 15 || frac.size() > 9 || (dot != std::string_view::npos && frac.empty()))
    return bad();
  double v = 0;
  for (char c : whole) {
    if (c < '0' || c > '9') return bad();
    v = v * 10 + (c - '0');
  }
  double f = 0.1;
  for (char c : frac) {
    if (c < '0' || c > '9') return bad();
    v += (c - '0') * f;
    f /= 10;
  }
  double bytes = v * scale;
  // 1e15 bytes (8 Pbit/s, or a petabyte): past any link, and exact in a double.
  if (bytes > 1e15) return InvalidArgument(fmt::format("{} \"{}\" is too large", what, text));
  return static_cast<uint64_t>(bytes + 0.5);
}

}  // namespace

Result<uint64_t> ParseTcRate(std::string_view text) {
  // Longest suffixes first. Bits: bit, kbit, mbit, gbit, tbit; bytes: bps, kbps, ...
  static constexpr TcUnit kUnits[] = {
      {"tbit", 1e12 / 8}, {"gbit", 1e9 / 8}, {"mbit", 1e6 / 8}, {"kbit", 1e3 / 8},
      {"tbps", 1e12}, {"gbps", 1e9}, {"mbps", 1e6}, {"kbps", 1e3}, {"bit", 1.0 / 8}, {"bps", 1}};
  return ParseTcNumber(text, kUnits, 1.0 / 8, "rate", "100mbit, 1gbit, 500kbps");
}

Result<uint64_t> ParseTcSize(std::string_view text) {
  static constexpr TcUnit kUnits[] = {
      {"gbit", 1073741824.0 / 8}, {"mbit", 1048576.0 / 8}, {"kbit", 1024.0 / 8},
      {"gb", 1073741824.0}, {"mb", 1048576.0}, {"kb", 1024}, {"g", 1073741824.0}, {"m", 1048576.0},
      {"k", 1024}, {"b", 1}};
  return ParseTcNumber(text, kUnits, 1, "size", "1500b, 15kb, 1mb");
}

Result<VswitchdConfig> ParseVswitchdConfig(std::string_view text) {
  auto doc = ParseDoc(text);
  if (!doc.ok()) return doc.status();
  Fields f(*doc, "");
  QCLOUD_NET_TRY(f.status());
  VswitchdConfig c;
  uint64_t n = 0;
  QCLOUD_NET_TRY(f.Uint("host_id", UINT32_MAX, true, &n));
  if (n == 0) return f.Fail("host_id", "must be nonzero");
  c.host_id = static_cast<uint32_t>(n);
  QCLOUD_NET_TRY(f.Ip4("service", true, &c.service));
  QCLOUD_NET_TRY(f.Ip4("storage", false, &c.storage));
  QCLOUD_NET_TRY(f.String("control", false, &c.control));
  n = c.vxlan_port;
  QCLOUD_NET_TRY(f.Uint("vxlan_port", 65535, false, &n));
  c.vxlan_port = static_cast<uint16_t>(n);
  n = c.probe_port;
  QCLOUD_NET_TRY(f.Uint("probe_port", 65535, false, &n));
  c.probe_port = static_cast<uint16_t>(n);
  if (c.vxlan_port == 0 || c.probe_port == 0 || c.vxlan_port == c.probe_port)
    return f.Fail("probe_port", "vxlan_port and probe_port must be distinct nonzero ports");
  QCLOUD_NET_TRY(f.Bool("gre", &c.gre));
  QCLOUD_NET_TRY(f.Duration("probe_interval", &c.probe_interval));
  QCLOUD_NET_TRY(f.Duration("dead_after", &c.dead_after));
  QCLOUD_NET_TRY(f.Rate("link_rate", &c.link_rate));
  if (c.link_rate == 0) return f.Fail("link_rate", "must be positive");
  QCLOUD_NET_TRY(f.List("vpcs", kMaxItems, &c.vpcs, VpcFrom));
  QCLOUD_NET_TRY(f.List("hosts", kMaxItems, &c.hosts, HostFrom));
  QCLOUD_NET_TRY(f.List("ports", kMaxItems, &c.ports, PortFrom));
  QCLOUD_NET_TRY(f.List("vms", kMaxItems, &c.vms, VmFrom));
  QCLOUD_NET_TRY(f.Unknown());
  return c;
}

Result<VpcOptions> ParseVpcJson(std::string_view json) { return ParseOne<VpcOptions>(json, VpcFrom); }
Result<HostOptions> ParseHostJson(std::string_view json) { return ParseOne<HostOptions>(json, HostFrom); }
Result<TapPortOptions> ParsePortJson(std::string_view json) { return ParseOne<TapPortOptions>(json, PortFrom); }
Result<VmLocation> ParseVmJson(std::string_view json) { return ParseOne<VmLocation>(json, VmFrom); }

std::string VpcToJson(const VpcOptions& v) {
  json::object o;
  o["id"] = v.id;
  o["tunnel"] = v.tunnel == Tunnel::kGre ? "gre" : "vxlan";
  o["learning"] = v.learning;
  o["arp_responder"] = v.arp_responder;
  o["flood_peers"] = Ip4Array(v.flood_peers);
  return json::serialize(o);
}

std::string HostToJson(const HostOptions& h) {
  json::object o;
  o["id"] = h.id;
  o["service"] = h.service.ToString();
  if (h.storage.value != 0) o["storage"] = h.storage.ToString();
  return json::serialize(o);
}

std::string PortToJson(const TapPortOptions& p) {
  json::object o;
  o["id"] = p.port.id;
  o["vpc"] = p.port.vpc;
  o["tap"] = p.tap;
  o["mac"] = p.port.mac.ToString();
  o["ipv4"] = Ip4Array(p.port.ipv4);
  o["ipv6"] = Ip6Array(p.port.ipv6);
  o["anti_spoof"] = p.port.anti_spoof;
  o["mtu"] = p.mtu;
  if (p.qos.rate != 0) {
    json::object q;
    q["rate"] = fmt::format("{}bit", p.qos.rate * 8);
    if (p.qos.ceil != 0) q["ceil"] = fmt::format("{}bit", p.qos.ceil * 8);
    if (p.qos.burst != 0) q["burst"] = fmt::format("{}b", p.qos.burst);
    if (p.qos.cburst != 0) q["cburst"] = fmt::format("{}b", p.qos.cburst);
    q["prio"] = p.qos.prio;
    o["qos"] = std::move(q);
  }
  return json::serialize(o);
}

std::string VmToJson(const VmLocation& v) {
  json::object o;
  o["vpc"] = v.vpc;
  o["mac"] = v.mac.ToString();
  o["ipv4"] = Ip4Array(v.ipv4);
  o["ipv6"] = Ip6Array(v.ipv6);
  o["host"] = v.host;
  return json::serialize(o);
}

}  // namespace qcloud::net
