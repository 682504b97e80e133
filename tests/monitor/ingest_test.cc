// Ingestion formats: the text exposition format and remote-write bodies
// (snappy + protobuf), their round trips, and bad input refused with a
// clear error.

#include "qcloud/monitor/json_import.h"
#include "qcloud/monitor/remote_write.h"
#include "qcloud/monitor/text_format.h"
#include "qcloud/monitor/tsdb.h"

#include <doctest/doctest.h>
#include <snappy.h>

#include <atomic>
#include <bit>
#include <cmath>
#include <string>
#include <thread>

#include "qcloud/testing/doctest_helpers.h"

namespace qcloud::monitor {
namespace {

TEST_CASE("monitor text format reads what exporters serve") {
  const std::string body =
      "# HELP http_requests_total The total number of HTTP requests.\n"
      "# TYPE http_requests_total counter\n"
      "http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n"
      "http_requests_total{method=\"post\",code=\"400\",} 3 1395066363000\r\n"
      "\n"
      "# a free comment\n"
      "msdos_file_access_time_seconds{path=\"C:\\\\DIR\\\\FILE.TXT\",error=\"Cannot find file:\\n\\\"FILE.TXT\\\"\"} 1.458255915e9\n"
      "metric_without_timestamp_and_labels 12.47\n"
      "something_weird{problem=\"division by zero\"} +Inf -3982045\n"
      "nan_metric NaN\n"
      "http_requests_total{code=\"200\",method=\"post\"} 1028 1395066364000\n";
  auto got = REQUIRE_VALUE(ParseTextFormat(body, {.default_timestamp = 42}));
  REQUIRE(got.size() == 6);
  CHECK(got[0].labels.ToString() == "http_requests_total{code=\"200\", method=\"post\"}");
  REQUIRE(got[0].samples.size() == 2);  // the same series, labels in another order
  CHECK(got[0].samples[1] == Sample{1395066364000, 1028});
  CHECK(got[1].samples[0] == Sample{1395066363000, 3});
  CHECK(got[2].labels.Get("path") == "C:\\DIR\\FILE.TXT");
  CHECK(got[2].labels.Get("error") == "Cannot find file:\n\"FILE.TXT\"");
  CHECK(got[2].samples[0].v == 1458255915);
  CHECK(got[3].samples[0] == Sample{42, 12.47});
  CHECK(got[4].samples[0].t == -3982045);
  CHECK(std::isinf(got[4].samples[0].v));
  CHECK(std::isnan(got[5].samples[0].v));
}

TEST_CASE("monitor text format refuses bad lines naming them") {
  for (const char* bad : {"1metric 1", "m{a=\"b\" 1", "m{a=b} 1", "m{a=\"b\\x\"} 1", "m", "m x", "m 1 2 3", "m 1 1.5",
                          "m{__bad=\"x\"} 1", "m{a=\"1\",a=\"2\"} 1", "# TYPE m strange", "m{a=\"\xff\"} 1", "m{=\"x\"} 1"}) {
    INFO(bad);
    auto r = ParseTextFormat(std::string("ok 1\n") + bad + "\n");
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Errc::kInvalidArgument);
    CHECK(r.status().message().starts_with("line 2: "));
  }
  CHECK_ERRC(ParseTextFormat(std::string(70000, 'a') + " 1\n"), Errc::kInvalidArgument);
  CHECK_ERRC(ParseTextFormat("a 1\nb 2\nc 3\n", {.max_samples = 2}), Errc::kInvalidArgument);
  std::string many = "m{";
  for (int i = 0; i < 10000; ++i) many += "l" + std::to_string(i) + "=\"v\",";
  CHECK_ERRC(ParseTextFormat(many + "} 1\n", {.max_line_bytes = 1 << 20}), Errc::kInvalidArgument);
}

TEST_CASE("monitor remote write bodies round trip and bad ones are refused") {
  std::vector<SeriesSamples> series = {
      {REQUIRE_VALUE(Labels::FromPairs({{"__name__", "up"}, {"job", "node"}})), {{1000, 1}, {2000, 0}}},
      {REQUIRE_VALUE(Labels::FromPairs({{"__name__", "x"}})), {{5, std::bit_cast<double>(kStaleNaNBits)}}}};
  const std::string body = EncodeRemoteWrite(series);
  auto got = REQUIRE_VALUE(DecodeRemoteWrite(ByteView(body)));
  REQUIRE(got.size() == 2);
  CHECK(got[0].labels == series[0].labels);
  CHECK(got[0].samples == series[0].samples);
  CHECK(std::bit_cast<uint64_t>(got[1].samples[0].v) == kStaleNaNBits);

  CHECK_ERRC(DecodeRemoteWrite(ByteView(std::string_view("not snappy at all"))), Errc::kInvalidArgument);
  CHECK_ERRC(DecodeRemoteWrite(ByteView(body), {.max_body_bytes = 4}), Errc::kInvalidArgument);
  CHECK_ERRC(DecodeRemoteWrite(ByteView(body), {.max_decoded_bytes = 4}), Errc::kInvalidArgument);
  std::string cut = body.substr(0, body.size() - 3);
  CHECK_ERRC(DecodeRemoteWrite(ByteView(cut)), Errc::kInvalidArgument);
  // Bodies a hostile sender builds by hand: a series of 10,000 labels, a
  // series with none, a bad label name. Valid snappy and protobuf each.
  auto varint = [](std::string& out, uint64_t v) {
    while (v >= 0x80) {
      out += static_cast<char>((v & 0x7f) | 0x80);
      v >>= 7;
    }
    out += static_cast<char>(v);
  };
  auto field = [&](std::string& out, int number, const std::string& bytes) {
    varint(out, static_cast<uint64_t>(number) << 3 | 2);
    varint(out, bytes.size());
    out += bytes;
  };
  auto label = [&](const std::string& n, const std::string& v) {
    std::string l;
    field(l, 1, n);
    field(l, 2, v);
    return l;
  };
  auto body_of = [&](const std::vector<std::pair<std::string, std::string>>& labels) {
    std::string ts;
    for (const auto& [n, v] : labels) field(ts, 1, label(n, v));
    std::string req;
    field(req, 1, ts);
    std::string compressed;
    snappy::Compress(req.data(), req.size(), &compressed);
    return compressed;
  };
  std::vector<std::pair<std::string, std::string>> wide;
  for (int i = 0; i < 10000; ++i) wide.push_back({"l" + std::to_string(i), "v"});
  for (const auto& labels : {wide, {}, {{"__name__", "x"}, {"bad-name", "v"}}}) {
    const std::string b = body_of(labels);
    CHECK_ERRC(DecodeRemoteWrite(ByteView(b)), Errc::kInvalidArgument);
  }
  CHECK_OK(DecodeRemoteWrite(ByteView(body_of({{"__name__", "ok"}}))));

  // The wire format as libprotobuf reads it: unknown fields skipped (every
  // wire type, groups too), a known field with another wire type skipped
  // as unknown, the last value of a scalar wins; bad framing refused.
  auto snappy_of = [](const std::string& raw) {
    std::string c;
    snappy::Compress(raw.data(), raw.size(), &c);
    return c;
  };
  auto fixed64 = [](std::string& out, int number, uint64_t v) {
    out += static_cast<char>(number << 3 | 1);
    for (int i = 0; i < 8; ++i) out += static_cast<char>(v >> (8 * i));
  };
  std::string sample;
  fixed64(sample, 1, std::bit_cast<uint64_t>(1.5));
  varint(sample, 2 << 3 | 0);
  varint(sample, 1000);
  fixed64(sample, 1, std::bit_cast<uint64_t>(2.5));  // repeated: the last wins
  varint(sample, 9 << 3 | 5);                        // unknown fixed32
  sample += std::string(4, '\0');
  std::string ts;
  field(ts, 1, label("__name__", "odd"));
  varint(ts, 7 << 3 | 3);  // an unknown group holding a varint, closed
  varint(ts, 1 << 3 | 0);
  varint(ts, 5);
  varint(ts, 7 << 3 | 4);
  varint(ts, 1 << 3 | 0);  // field 1 (labels) as a varint: skipped as unknown
  varint(ts, 42);
  field(ts, 2, sample);
  std::string req;
  field(req, 1, ts);
  varint(req, 3 << 3 | 0);  // WriteRequest's unknown field 3
  varint(req, 1);
  auto odd = REQUIRE_VALUE(DecodeRemoteWrite(ByteView(snappy_of(req))));
  REQUIRE(odd.size() == 1);
  CHECK(odd[0].labels.ToString() == "odd{}");
  CHECK(odd[0].samples == std::vector<Sample>{{1000, 2.5}});
  for (const std::string& bad : {std::string("\x0a\x05\x0a\x01"),            // a length past the end
                                 std::string("\x00\x01", 2),                     // field number 0
                                 std::string("\x0b\x08\x01"),                  // a group never closed
                                 std::string("\x0b\x14"),                       // closed by another field's end
                                 std::string("\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"),  // an 11-byte varint
                                 std::string("\x0e")}) {                         // wire type 6
    CAPTURE(bad.size());
    CHECK_ERRC(DecodeRemoteWrite(ByteView(snappy_of(bad))), Errc::kInvalidArgument);
  }
}

TEST_CASE("monitor JSON lines read VictoriaMetrics' import format") {
  const std::string body =
      "{\"metric\":{\"__name__\":\"up\",\"job\":\"node\"},\"values\":[1,0,\"NaN\"],\"timestamps\":[1549891472010,1549891487724,1549891503438]}\n"
      "\n"
      "{\"metric\":{\"__name__\":\"temp\"},\"values\":[-3.5e-1],\"timestamps\":[5]}\r\n";
  auto got = REQUIRE_VALUE(ParseJsonLines(body));
  REQUIRE(got.size() == 2);
  CHECK(got[0].labels.ToString() == "up{job=\"node\"}");
  REQUIRE(got[0].samples.size() == 3);
  CHECK(got[0].samples[1] == Sample{1549891487724, 0});
  CHECK(std::isnan(got[0].samples[2].v));
  CHECK(got[1].samples[0] == Sample{5, -0.35});
  for (const char* bad : {"{", "[1,2]", "{\"metric\":1,\"values\":[],\"timestamps\":[]}",
                          "{\"metric\":{\"a\":\"b\"},\"values\":[1],\"timestamps\":[]}",
                          "{\"metric\":{\"a\":\"b\"},\"values\":[\"x\"],\"timestamps\":[1]}",
                          "{\"metric\":{\"a\":\"b\"},\"values\":[1],\"timestamps\":[1.5]}",
                          "{\"metric\":{\"a-b\":\"c\"},\"values\":[1],\"timestamps\":[1]}",
                          "{\"metric\":{},\"values\":[1],\"timestamps\":[1]}",
                          "{\"metric\":{\"a\":2},\"values\":[1],\"timestamps\":[1]}",
                          "{\"metric\":{\"a\":\"b\"},\"values\":[[[[[[[[[[1]]]]]]]]]],\"timestamps\":[1]}"}) {
    INFO(bad);
    auto r = ParseJsonLines(std::string("\n") + bad + "\n");
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().message().starts_with("line 2: "));
  }
  CHECK_ERRC(ParseJsonLines(body, {.max_samples = 2}), Errc::kInvalidArgument);
  CHECK_ERRC(ParseJsonLines(body, {.max_line_bytes = 20}), Errc::kInvalidArgument);
}

TEST_CASE("monitor remote write ingester appends known series by reference and the rest by labels") {
  testing::TempDir dir("qcloud-ingest");
  auto db = REQUIRE_VALUE(Tsdb::Open({.data_dir = dir.path,
                                      .block_duration = std::chrono::hours(1),
                                      .max_block_duration = std::chrono::hours(1)}));
  RemoteWriteIngester in(*db);
  const int64_t h = 3600000;
  const int64_t t0 = 1700000000000 / h * h;
  auto body_at = [&](int64_t t, int n) {
    std::vector<SeriesSamples> series;
    for (int i = 0; i < n; ++i) {
      series.push_back({REQUIRE_VALUE(Labels::FromPairs({{"__name__", "up"}, {"instance", "h" + std::to_string(i)}})),
                        {{t, static_cast<double>(i)}}});
    }
    return EncodeRemoteWrite(series);
  };
  auto r = REQUIRE_VALUE(in.Ingest(ByteView(body_at(t0, 100))));
  CHECK(r.appended == 100);
  CHECK(r.new_series == 100);
  CHECK(in.cached() == 100);
  r = REQUIRE_VALUE(in.Ingest(ByteView(body_at(t0 + 1000, 100))));  // all known: by reference
  CHECK(r.appended == 100);
  CHECK(r.new_series == 0);
  r = REQUIRE_VALUE(in.Ingest(ByteView(body_at(t0 + 1000, 100))));  // a resend: duplicates, taken silently
  CHECK(r.duplicates == 100);
  // h100..h149 are new; the rest known.
  r = REQUIRE_VALUE(in.Ingest(ByteView(body_at(t0 + 2000, 150))));
  CHECK(r.appended == 150);
  CHECK(r.new_series == 50);
  CHECK(in.cached() == 150);
  // A body with one bad series takes nothing, known series included.
  std::vector<SeriesSamples> mixed = {
      {REQUIRE_VALUE(Labels::FromPairs({{"__name__", "up"}, {"instance", "h1"}})), {{t0 + 3000, 1}}}};
  std::string bad = EncodeRemoteWrite(mixed);
  {
    // Hand-made: a second series whose label name is invalid.
    std::string raw;
    CHECK(snappy::Uncompress(bad.data(), bad.size(), &raw));
    const std::string label = std::string("\x0a\x03") + "a-b" + "\x12\x01" + "x";
    const std::string ts = "\x0a" + std::string(1, static_cast<char>(label.size())) + label;
    raw += "\x0a" + std::string(1, static_cast<char>(ts.size())) + ts;
    bad.clear();
    snappy::Compress(raw.data(), raw.size(), &bad);
  }
  CHECK_ERRC(in.Ingest(ByteView(bad)), Errc::kInvalidArgument);
  auto h1 = REQUIRE_VALUE(db->Select(std::vector{Matcher::Equal("instance", "h1")}, INT64_MIN, INT64_MAX));
  REQUIRE(h1.size() == 1);
  CHECK(h1[0].samples.size() == 3);  // t0, +1s, +2s: nothing of the bad body
  // A cut two hours on lets the quiet series go from the head: their
  // references are stale, and their samples go by labels again.
  std::vector<SeriesSamples> later = {
      {REQUIRE_VALUE(Labels::FromPairs({{"__name__", "other"}})), {{t0 + 2 * h + h / 2 + 1, 1}}}};
  REQUIRE_OK(db->Append(later));
  REQUIRE_OK(db->Compact());
  CHECK(db->Ref(REQUIRE_VALUE(Labels::FromPairs({{"__name__", "up"}, {"instance", "h1"}}))) == 0);
  r = REQUIRE_VALUE(in.Ingest(ByteView(body_at(t0 + 2 * h + h / 2, 150))));
  CHECK(r.appended == 150);
  CHECK(r.new_series == 150);
  h1 = REQUIRE_VALUE(db->Select(std::vector{Matcher::Equal("instance", "h1")}, INT64_MIN, INT64_MAX));
  REQUIRE(h1.size() == 1);
  CHECK(h1[0].samples.size() == 4);
  CHECK(h1[0].samples.back().t == t0 + 2 * h + h / 2);
}

TEST_CASE("monitor remote write ingester keeps every sample while idle buffers are released from another thread") {
  testing::TempDir dir("qcloud-ingest-release");
  auto db = REQUIRE_VALUE(Tsdb::Open({.data_dir = dir.path}));
  RemoteWriteIngester in(*db);
  const int64_t t0 = 1700000000000;
  constexpr int kThreads = 3, kBodies = 40, kSeries = 50;
  auto body = [&](int sender, int b) {
    std::vector<SeriesSamples> series;
    for (int i = 0; i < kSeries; ++i) {
      series.push_back({Labels::FromPairs({{"__name__", "up"}, {"sender", std::to_string(sender)},
                                           {"instance", "h" + std::to_string(i)}})
                            .value(),
                        {{t0 + b * 1000, static_cast<double>(b)}}});
    }
    return EncodeRemoteWrite(series);
  };
  std::atomic<bool> done{false};
  std::atomic<int> failures{0};
  std::thread releaser([&] {
    while (!done.load()) {
      in.ReleaseIdleMemory();
      if (!db->Compact().ok()) ++failures;  // frees append scratch beyond the recent peak
      std::this_thread::yield();
    }
  });
  std::vector<std::thread> senders;
  std::atomic<uint64_t> appended{0};
  for (int t = 0; t < kThreads; ++t) {
    senders.emplace_back([&, t] {
      for (int b = 0; b < kBodies; ++b) {
        const std::string one = body(t, b);
        auto r = in.Ingest(ByteView(one));
        if (!r.ok()) {
          ++failures;
          continue;
        }
        appended += r->appended;
      }
    });
  }
  for (std::thread& s : senders) s.join();
  done = true;
  releaser.join();
  CHECK(failures.load() == 0);
  CHECK(appended.load() == uint64_t{kThreads} * kBodies * kSeries);
  auto all = REQUIRE_VALUE(db->Select(std::vector{Matcher::Equal("__name__", "up")}, INT64_MIN, INT64_MAX));
  REQUIRE(all.size() == size_t{kThreads} * kSeries);
  for (const SeriesSamples& s : all) CHECK(s.samples.size() == size_t{kBodies});
  // Buffers: at most one per concurrent request (the releaser may already
  // have freed them); gone after two idle calls.
  CHECK(in.idle_buffers() <= size_t{kThreads});
  in.ReleaseIdleMemory();
  in.ReleaseIdleMemory();
  CHECK(in.idle_buffers() == 0);
  // And it still takes bodies afterwards, with one buffer again.
  CHECK(REQUIRE_VALUE(in.Ingest(ByteView(body(0, kBodies)))).appended == uint64_t{kSeries});
  CHECK(in.idle_buffers() == 1);
}

}  // namespace
}  // namespace qcloud::monitor
