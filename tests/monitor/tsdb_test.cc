// The time-series store: appends and selects against a model, the order
// rule, the write-ahead log across reopen, a torn tail, kill -9 of a
// writer, and the limits.

#include "qcloud/monitor/tsdb.h"

#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstring>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <thread>

#include "monitor/chunk.h"
#include "monitor/wal.h"
#include "qcloud/core/hash.h"
#include "qcloud/testing/doctest_helpers.h"

namespace qcloud::monitor {
namespace {

using testing::TempDir;

Labels L(std::initializer_list<std::pair<std::string_view, std::string_view>> pairs) {
  return REQUIRE_VALUE(Labels::FromPairs(pairs));
}

std::unique_ptr<Tsdb> OpenDb(const std::string& dir, TsdbOptions o = {}) {
  o.data_dir = dir;
  return REQUIRE_VALUE(Tsdb::Open(o));
}

Matcher M(MatchType t, std::string n, std::string v) { return REQUIRE_VALUE(Matcher::Make(t, std::move(n), std::move(v))); }

TEST_CASE("monitor tsdb selects what was appended by matchers and time range") {
  TempDir dir("qcloud-tsdb");
  auto db = OpenDb(dir.path);
  const Labels a = L({{"__name__", "cpu"}, {"host", "h1"}, {"dc", "sz"}});
  const Labels b = L({{"__name__", "cpu"}, {"host", "h2"}});
  const Labels c = L({{"__name__", "mem"}, {"host", "h1"}});
  std::vector<SeriesSamples> batch = {{a, {}}, {b, {}}, {c, {}}};
  for (int i = 0; i < 1000; ++i) {
    batch[0].samples.push_back({i * 1000, i * 0.5});
    batch[1].samples.push_back({i * 1000 + 7, static_cast<double>(i % 3)});
    if (i % 10 == 0) batch[2].samples.push_back({i * 1000, 1e9 + i});
  }
  auto res = REQUIRE_VALUE(db->Append(batch));
  CHECK(res.appended == 2100);
  CHECK(res.new_series == 3);

  auto cpu = REQUIRE_VALUE(db->Select(std::vector{Matcher::Equal("__name__", "cpu")}, 0, 999000));
  REQUIRE(cpu.size() == 2);
  CHECK(cpu[0].labels == a);  // ordered by labels: dc sorts before host
  CHECK(cpu[0].samples == batch[0].samples);
  CHECK(cpu[1].samples.size() == 999);  // 999007 is past maxt

  auto h1 = REQUIRE_VALUE(db->Select(std::vector{M(MatchType::kRegex, "host", "h1|h3")}, 500000, 510000));
  REQUIRE(h1.size() == 2);
  CHECK(h1[0].samples.size() == 11);
  CHECK(h1[0].samples.front() == Sample{500000, 250});
  CHECK(h1[1].labels == c);
  CHECK(h1[1].samples.size() == 2);

  // Absent labels match "": cpu without dc is b only; with dc=~".+" a only.
  auto no_dc = REQUIRE_VALUE(db->Select(std::vector{Matcher::Equal("__name__", "cpu"), Matcher::Equal("dc", "")}, 0, 1));
  REQUIRE(no_dc.size() == 0);  // b's first sample is at 7
  no_dc = REQUIRE_VALUE(db->Select(std::vector{Matcher::Equal("__name__", "cpu"), Matcher::Equal("dc", "")}, 0, 10));
  REQUIRE(no_dc.size() == 1);
  CHECK(no_dc[0].labels == b);
  auto dc = REQUIRE_VALUE(db->Select(std::vector{Matcher::Equal("__name__", "cpu"), M(MatchType::kRegex, "dc", ".+")}, 0, 10));
  REQUIRE(dc.size() == 1);
  CHECK(dc[0].labels == a);
  auto not_h1 = REQUIRE_VALUE(db->Series(std::vector{Matcher::Equal("__name__", "cpu"), M(MatchType::kNotEqual, "host", "h1")}, 0, 1000000));
  REQUIRE(not_h1.size() == 1);
  CHECK(not_h1[0] == b);

  // A selector of only empty-matching matchers is refused, as by Prometheus.
  CHECK_ERRC(db->Select(std::vector{M(MatchType::kRegex, "host", ".*")}, 0, 10), Errc::kInvalidArgument);
  CHECK(db->LabelNames() == std::vector<std::string>{"__name__", "dc", "host"});
  CHECK(db->LabelValues("host") == std::vector<std::string>{"h1", "h2"});
  CHECK(db->LabelValues("nope").empty());
  const TsdbStats st = db->stats();
  CHECK(st.series == 3);
  CHECK(st.samples == 2100);
  MESSAGE("chunk bytes per sample: ", static_cast<double>(st.chunk_bytes) / static_cast<double>(st.samples));
}

size_t FilesIn(const std::string& dir) {
  return static_cast<size_t>(std::distance(std::filesystem::directory_iterator(dir), std::filesystem::directory_iterator()));
}

TEST_CASE("monitor tsdb keeps closed head chunks in files that cuts remove and a restart starts again") {
  TempDir dir("qcloud-tsdb-head-files");
  const std::string head_dir = dir.path + "/chunks_head";
  const int64_t h = 3600000, step = 15000;
  const int64_t t0 = 1700000000000 / (2 * h) * (2 * h);
  constexpr int kSeries = 40;
  auto name = [](int i) { return Labels::FromPairs({{"__name__", "m"}, {"i", std::to_string(i)}}).value(); };
  auto value = [](int i, int64_t t) { return i % 2 == 0 ? static_cast<double>(t / 1000 + i) : 0.1 * static_cast<double>(t % 7919 + i); };
  auto append = [&](Tsdb& db, int64_t from, int64_t to) {
    for (int64_t t = from; t < to; t += step) {
      std::vector<SeriesSamples> batch;
      for (int i = 0; i < kSeries; ++i) batch.push_back({name(i), {{t, value(i, t)}}});
      REQUIRE_OK(db.Append(batch));
    }
  };
  auto check = [&](Tsdb& db, int64_t from, int64_t to) {
    auto got = REQUIRE_VALUE(db.Select(std::vector{Matcher::Equal("__name__", "m")}, from, to - 1));
    REQUIRE(got.size() == size_t{kSeries});
    for (const SeriesSamples& s : got) {
      const int i = std::stoi(std::string(s.labels.Get("i")));
      REQUIRE(s.samples.size() == static_cast<size_t>((to - from) / step));
      for (size_t k = 0; k < s.samples.size(); ++k) {
        const int64_t t = from + static_cast<int64_t>(k) * step;
        REQUIRE(s.samples[k].t == t);
        REQUIRE(std::bit_cast<uint64_t>(s.samples[k].v) == std::bit_cast<uint64_t>(value(i, t)));
      }
    }
  };
  {
    auto db = REQUIRE_VALUE(Tsdb::Open({.data_dir = dir.path}));
    append(*db, t0, t0 + 2 * h);  // 480 samples a series: 3 closed chunks and an open one
    CHECK(FilesIn(head_dir) == 1);
    CHECK(db->stats().chunks == 3 * kSeries);
    check(*db, t0, t0 + 2 * h);
    append(*db, t0 + 2 * h, t0 + 3 * h + step);  // the first two hours can be cut
    REQUIRE_OK(db->Compact());
    CHECK(db->stats().blocks == 1);
    check(*db, t0, t0 + 3 * h + step);  // the block, the head's files and memory
  }
  // The files are not read at a restart: the log is, and the files start over.
  auto db = REQUIRE_VALUE(Tsdb::Open({.data_dir = dir.path}));
  check(*db, t0, t0 + 3 * h + step);
  append(*db, t0 + 3 * h + step, t0 + 5 * h);
  check(*db, t0, t0 + 5 * h);
  REQUIRE_OK(db->Compact());  // cuts [2h, 4h): the chunks before 4 h leave their files
  check(*db, t0, t0 + 5 * h);
  CHECK(FilesIn(head_dir) <= 1);
}

TEST_CASE("monitor tsdb order rule refuses older samples and conflicting duplicates") {
  TempDir dir("qcloud-tsdb");
  auto db = OpenDb(dir.path);
  const Labels s = L({{"__name__", "x"}});
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<SeriesSamples> batch = {{s, {{10, 1}, {20, 2}, {20, 2}, {20, 3}, {15, 9}, {30, nan}, {30, nan}}}};
  auto r = REQUIRE_VALUE(db->Append(batch));
  CHECK(r.appended == 3);
  CHECK(r.duplicates == 2);  // 20=2 again, NaN again (same bits)
  CHECK(r.conflicts == 1);   // 20=3
  CHECK(r.out_of_order == 1);
  batch = {{s, {{25, 1}, {40, 4}}}};
  r = REQUIRE_VALUE(db->Append(batch));
  CHECK(r.out_of_order == 1);
  CHECK(r.appended == 1);
  auto got = REQUIRE_VALUE(db->Select(std::vector{Matcher::Equal("__name__", "x")}, 0, 100));
  REQUIRE(got.size() == 1);
  REQUIRE(got[0].samples.size() == 4);
  CHECK(std::isnan(got[0].samples[2].v));
  CHECK(got[0].samples[3] == Sample{40, 4});
}

TEST_CASE("monitor tsdb refuses timestamps beyond 2^62 ms and cuts blocks at both ends") {
  TempDir dir("qcloud-tsdb-range");
  const Labels x = L({{"__name__", "x"}});
  const int64_t h = 3600000;
  // Each end in a store of its own (retention would drop the far past at
  // once beside the far future).
  for (const int64_t edge : {-kMaxTimestamp, kMaxTimestamp}) {
    INFO("edge ", edge);
    auto db = OpenDb(dir.path + (edge < 0 ? "/early" : "/late"));
    const int64_t first = edge < 0 ? edge : edge - 4 * h, last = edge < 0 ? edge + 4 * h : edge;
    const int64_t beyond = edge < 0 ? INT64_MIN : INT64_MAX, next = edge < 0 ? edge - 1 : edge + 1;
    std::vector<SeriesSamples> batch = {{x, {{beyond, 1}, {next, 2}}}};
    auto r = REQUIRE_VALUE(db->Append(batch));
    CHECK(r.out_of_range == 2);
    batch = {{x, {{first, 3}, {last, 4}}}};
    r = REQUIRE_VALUE(db->Append(batch));
    CHECK(r.appended == 2);
    CHECK(db->stats().out_of_range == 2);
    // The ranges around the edge are int64 arithmetic: the older one is cut.
    REQUIRE_OK(db->Compact());
    CHECK(db->stats().blocks >= 1);
    auto got = REQUIRE_VALUE(db->Select(std::vector{Matcher::Equal("__name__", "x")}, INT64_MIN, INT64_MAX));
    REQUIRE(got.size() == 1);
    CHECK(got[0].samples == std::vector<Sample>{{first, 3}, {last, 4}});
    db.reset();  // and the block's name (a negative mint) reads back
    db = OpenDb(dir.path + (edge < 0 ? "/early" : "/late"));
    CHECK(db->stats().blocks >= 1);
    CHECK(db->stats().corrupt_blocks.empty());
    got = REQUIRE_VALUE(db->Select(std::vector{Matcher::Equal("__name__", "x")}, INT64_MIN, INT64_MAX));
    REQUIRE(got.size() == 1);
    CHECK(got[0].samples == std::vector<Sample>{{first, 3}, {last, 4}});
  }
  CHECK_ERRC(Tsdb::Open({.data_dir = dir.path + "/x", .block_duration = std::chrono::milliseconds(int64_t{1} << 51)}),
             Errc::kInvalidArgument);
}

TEST_CASE("monitor tsdb replays its log at open and cuts a torn tail") {
  TempDir dir("qcloud-tsdb");
  std::vector<SeriesSamples> model;
  {
    auto db = OpenDb(dir.path);
    std::mt19937_64 rng(3);
    for (int round = 0; round < 50; ++round) {
      std::vector<SeriesSamples> batch;
      for (int s = 0; s < 20; ++s) {
        const std::string host = "h" + std::to_string(s);
        SeriesSamples ss{L({{"__name__", "load"}, {"host", host}}), {}};
        for (int k = 0; k < 10; ++k) ss.samples.push_back({round * 100000 + k * 1000 + s, std::bit_cast<double>(rng())});
        batch.push_back(ss);
      }
      REQUIRE_OK(db->Append(batch));
      if (model.empty()) model = batch;
      else
        for (size_t i = 0; i < batch.size(); ++i)
          model[i].samples.insert(model[i].samples.end(), batch[i].samples.begin(), batch[i].samples.end());
    }
  }  // no clean shutdown exists: the log is all there is
  auto check = [&](Tsdb& db, size_t drop_last) {
    auto got = REQUIRE_VALUE(db.Select(std::vector{Matcher::Equal("__name__", "load")}, INT64_MIN, INT64_MAX));
    REQUIRE(got.size() == model.size());
    std::sort(model.begin(), model.end(), [](auto& x, auto& y) { return x.labels < y.labels; });
    for (size_t i = 0; i < got.size(); ++i) {
      CHECK(got[i].labels == model[i].labels);
      std::vector<Sample> want = model[i].samples;
      want.resize(want.size() - drop_last);
      CHECK(got[i].samples == want);
    }
  };
  {
    auto db = OpenDb(dir.path);
    check(*db, 0);
    CHECK(db->stats().replayed_samples == 50 * 20 * 10);
  }
  // A torn last write: the segment written above is cut in its last record.
  const std::string seg = (std::filesystem::path(dir.path) / "wal" / "00000001").string();
  const auto size = std::filesystem::file_size(seg);
  std::filesystem::resize_file(seg, size - 5);
  auto db = OpenDb(dir.path);
  check(*db, 10);  // the last batch (one record) is gone, nothing else
  CHECK(db->stats().wal_torn_bytes > 0);
  // And the store goes on appending after the cut.
  std::vector<SeriesSamples> more = {{model[0].labels, {{10000000, 1}}}};
  CHECK(REQUIRE_VALUE(db->Append(more)).appended == 1);
}

TEST_CASE("monitor tsdb keeps every acknowledged sample across kill -9 of the writer") {
  TempDir dir("qcloud-tsdb");
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    auto db = Tsdb::Open({.data_dir = dir.path});
    if (!db.ok()) ::_exit(2);
    for (int64_t i = 1;; ++i) {
      std::vector<SeriesSamples> b = {{*Labels::FromPairs({{"__name__", "acked"}}), {{i, static_cast<double>(i)}}}};
      if (!(*db)->Append(b).ok()) ::_exit(3);
      // Acknowledged: tell the parent.
      if (::write(fds[1], &i, sizeof i) != sizeof i) ::_exit(4);
    }
  }
  ::close(fds[1]);
  int64_t last = 0, got = 0;
  while (last < 2000 && ::read(fds[0], &got, sizeof got) == sizeof got) last = got;
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  while (::read(fds[0], &got, sizeof got) == sizeof got) last = got;  // acknowledged before the kill
  ::close(fds[0]);
  REQUIRE(last >= 2000);
  auto db = OpenDb(dir.path);
  auto all = REQUIRE_VALUE(db->Select(std::vector{Matcher::Equal("__name__", "acked")}, 0, INT64_MAX));
  REQUIRE(all.size() == 1);
  CHECK(static_cast<int64_t>(all[0].samples.size()) >= last);
  for (size_t i = 0; i < all[0].samples.size(); ++i) {
    CHECK(all[0].samples[i] == Sample{static_cast<int64_t>(i) + 1, static_cast<double>(i + 1)});
  }
}

TEST_CASE("monitor tsdb limits series and batch sizes and refuses label-less series") {
  TempDir dir("qcloud-tsdb");
  auto db = OpenDb(dir.path, {.max_series = 2, .max_batch_samples = 5});
  std::vector<SeriesSamples> three = {{L({{"a", "1"}}), {{1, 1}}}, {L({{"a", "2"}}), {{1, 1}}}, {L({{"a", "3"}}), {{1, 1}}}};
  CHECK_ERRC(db->Append(three), Errc::kResourceExhausted);
  CHECK(db->stats().series == 0);  // nothing of the batch was taken
  three.pop_back();
  CHECK(REQUIRE_VALUE(db->Append(three)).new_series == 2);
  std::vector<SeriesSamples> big = {{L({{"a", "1"}}), {{2, 1}, {3, 1}, {4, 1}, {5, 1}, {6, 1}, {7, 1}}}};
  CHECK_ERRC(db->Append(big), Errc::kInvalidArgument);
  std::vector<SeriesSamples> none = {{Labels(), {{1, 1}}}};
  CHECK_ERRC(db->Append(none), Errc::kInvalidArgument);
  // Many segments: a small segment size rolls the log; all of it replays.
  TempDir dir2("qcloud-tsdb");
  {
    auto small = OpenDb(dir2.path, {.wal_segment_bytes = 1024});
    for (int i = 0; i < 500; ++i) {
      std::vector<SeriesSamples> b = {{L({{"__name__", "r"}, {"i", std::to_string(i % 7)}}), {{i, 1.0 * i}}}};
      REQUIRE_OK(small->Append(b));
    }
    CHECK(small->stats().wal_segments > 5);
  }
  auto again = OpenDb(dir2.path);
  CHECK(again->stats().replayed_samples == 500);
  CHECK(again->stats().series == 7);
}

// 10 series of 15 s samples over `hours`, from `start`, into db and model.
void Fill(Tsdb& db, std::map<Labels, std::vector<Sample>>& model, int64_t start, int hours) {
  std::mt19937_64 rng(11);
  for (int64_t t = start; t < start + hours * 3600000; t += 15000) {
    std::vector<SeriesSamples> batch;
    for (int s = 0; s < 10; ++s) {
      const Labels l = L({{"__name__", s % 2 ? "node_cpu_seconds_total" : "node_load1"}, {"cpu", std::to_string(s)}});
      const double v = s % 2 ? static_cast<double>(t / 1000 + s) : static_cast<double>(rng() % 1000) / 100;
      batch.push_back({l, {{t, v}}});
      model[l].push_back({t, v});
    }
    REQUIRE_OK(db.Append(batch));
  }
}

void CheckAll(Tsdb& db, const std::map<Labels, std::vector<Sample>>& model, int64_t mint, int64_t maxt) {
  auto got = REQUIRE_VALUE(db.Select(std::vector{REQUIRE_VALUE(Matcher::Make(MatchType::kRegex, "__name__", "node_.*"))}, mint, maxt));
  size_t want_series = 0;
  for (const auto& [labels, samples] : model) {
    std::vector<Sample> want;
    for (const Sample& x : samples) {
      if (x.t >= mint && x.t <= maxt) want.push_back(x);
    }
    if (want.empty()) continue;
    REQUIRE(want_series < got.size());
    CHECK(got[want_series].labels == labels);
    CHECK(got[want_series].samples == want);
    ++want_series;
  }
  CHECK(got.size() == want_series);
}

TEST_CASE("monitor tsdb closes head chunks at block range edges so that a cut drops whole chunks") {
  TempDir dir("qcloud-tsdb-chunk-edges");
  const int64_t h = 3600000, step = 60000;
  const int64_t edge = 1700000000000 / (2 * h) * (2 * h) + 2 * h;  // a block range's end
  auto db = REQUIRE_VALUE(Tsdb::Open({.data_dir = dir.path}));
  const Labels l = Labels::FromPairs({{"__name__", "m"}}).value();
  auto append = [&](int64_t from, int64_t to) {
    for (int64_t t = from; t < to; t += step) {
      std::vector<SeriesSamples> batch = {{l, {{t, static_cast<double>(t / step % 1000)}}}};
      REQUIRE_OK(db->Append(batch));
    }
  };
  // 30 samples before the edge, 50 after: no chunk reaches 120 samples;
  // the edge alone closes one.
  append(edge - 30 * step, edge + 50 * step);
  CHECK(db->stats().chunks == 1);  // [edge - 30 min, edge) closed; the rest open
  REQUIRE_OK(db->Compact());       // the head reaches less than half a range past the edge: no cut
  CHECK(db->stats().blocks == 0);
  append(edge + 50 * step, edge + 62 * step);
  REQUIRE_OK(db->Compact());  // cuts the range before the edge: exactly the closed chunk
  const TsdbStats st = db->stats();
  CHECK(st.blocks == 1);
  CHECK(st.block_samples == 30);
  CHECK(st.chunks == 0);
  CHECK(st.samples == 62);
  auto got = REQUIRE_VALUE(db->Select(std::vector{Matcher::Equal("__name__", "m")}, INT64_MIN, INT64_MAX));
  REQUIRE(got.size() == 1);
  REQUIRE(got[0].samples.size() == 30 + 62);
  for (size_t i = 0; i < got[0].samples.size(); ++i) {
    const int64_t t = edge - 30 * step + static_cast<int64_t>(i) * step;
    CHECK(got[0].samples[i].t == t);
    CHECK(got[0].samples[i].v == static_cast<double>(t / step % 1000));
  }
}

TEST_CASE("monitor tsdb cuts the head into blocks that answer queries and survive reopen") {
  TempDir dir("qcloud-tsdb");
  std::map<Labels, std::vector<Sample>> model;
  const int64_t start = 1700000000000 / 3600000 * 3600000 + 600000;  // 10 min into an hour
  const TsdbOptions o{.block_duration = std::chrono::hours(1), .max_block_duration = std::chrono::hours(1)};
  {
    auto db = OpenDb(dir.path, o);
    Fill(*db, model, start, 5);
    const uint64_t segments_before = db->stats().wal_segments;
    REQUIRE_OK(db->Compact());
    const TsdbStats st = db->stats();
    CHECK(st.blocks == 4);  // [h0, h1) .. [h3, h4): the newest is 4h50 in, 1.5 h past h3
    CHECK(st.compactions == 4);
    CHECK(st.block_samples + st.samples == 10 * 5 * 240);
    CHECK(st.wal_segments <= segments_before + 1);  // the checkpoint, and the segment appends went on in
    MESSAGE("block bytes per sample: ", static_cast<double>(st.block_bytes) / static_cast<double>(st.block_samples));
    CheckAll(*db, model, INT64_MIN, INT64_MAX);
    CheckAll(*db, model, start + 3600000 - 15000, start + 7200000 + 30000);  // across a block edge
    // Series() takes blocks too; LabelValues has the block's values.
    CHECK(REQUIRE_VALUE(db->Series(std::vector{Matcher::Equal("__name__", "node_load1")}, start, start + 1)).size() == 5);
    CHECK(db->LabelValues("cpu").size() == 10);
    // Older than the cut: refused as too old; newer goes on.
    std::vector<SeriesSamples> late = {{model.begin()->first, {{start, 1}}}};
    CHECK(REQUIRE_VALUE(db->Append(late)).too_old == 1);
    REQUIRE_OK(db->Compact());  // nothing more to cut
    CHECK(db->stats().blocks == 4);
  }
  auto db = OpenDb(dir.path, o);
  CHECK(db->stats().blocks == 4);
  CHECK(db->stats().corrupt_blocks.empty());
  // The head came back from the checkpoint's chunk records.
  CHECK(db->stats().replayed_samples == 10 * 5 * 240 - db->stats().block_samples);
  CHECK(db->stats().corrupt_chunks == 0);
  CheckAll(*db, model, INT64_MIN, INT64_MAX);
  // More data, more cuts, after the reopen.
  Fill(*db, model, start + 5 * 3600000, 2);
  REQUIRE_OK(db->Compact());
  CHECK(db->stats().blocks == 6);
  CheckAll(*db, model, INT64_MIN, INT64_MAX);
}

TEST_CASE("monitor tsdb checkpoints its log while appends go on and loses none of them") {
  TempDir dir("qcloud-tsdb");
  std::map<Labels, std::vector<Sample>> model;
  const int64_t start = 1700000000000 / 3600000 * 3600000;
  const TsdbOptions o{.block_duration = std::chrono::hours(1), .max_block_duration = std::chrono::hours(1)};
  {
    auto db = OpenDb(dir.path, o);
    Fill(*db, model, start, 2);
    // Another writer goes on in time, with new series now and then, while
    // this thread cuts blocks and checkpoints the log.
    std::map<Labels, std::vector<Sample>> more;
    std::atomic<bool> done{false};
    bool failed = false;
    std::thread writer([&] {
      for (int64_t i = 0; i < 24 * 240; ++i) {
        const int64_t t = start + 2 * 3600000 + i * 15000;
        std::vector<SeriesSamples> batch;
        for (int s = 0; s < 10; ++s) {
          batch.push_back({L({{"__name__", "node_net_bytes"}, {"dev", std::to_string(s)}}), {{t, static_cast<double>(i * s)}}});
        }
        if (i % 50 == 0) batch.push_back({L({{"__name__", "node_new"}, {"n", std::to_string(i)}}), {{t, 1.5}}});
        auto r = db->Append(batch);
        if (!r.ok() || r->appended != batch.size()) {
          failed = true;
          break;
        }
        for (const SeriesSamples& b : batch) more[b.labels].push_back(b.samples[0]);
      }
      done = true;
    });
    for (int rounds = 0; rounds < 100000 && !done; ++rounds) REQUIRE_OK(db->Compact());
    writer.join();
    REQUIRE_FALSE(failed);
    REQUIRE_OK(db->Compact());
    for (auto& [labels, samples] : more) model[labels] = std::move(samples);
    CHECK(db->stats().compactions >= 6);
    CheckAll(*db, model, INT64_MIN, INT64_MAX);
  }
  // A checkpoint a crash cut short: removed at open, and the rest replays.
  std::ofstream(dir.path + "/wal/00000999.checkpoint") << "half a checkpoint";
  auto db = OpenDb(dir.path, o);
  CHECK_FALSE(std::filesystem::exists(dir.path + "/wal/00000999.checkpoint"));
  CHECK(db->stats().wal_torn_bytes == 0);
  CheckAll(*db, model, INT64_MIN, INT64_MAX);
}

TEST_CASE("monitor tsdb replays a checkpoint of Gorilla chunks written before decimal chunks") {
  // The record as builds before decimal chunks wrote it: type 3, Gorilla.
  TempDir dir("qcloud-tsdb");
  std::filesystem::create_directories(dir.path + "/wal");
  const Labels a = L({{"__name__", "old"}, {"job", "j"}});
  detail::ChunkAppender gorilla;
  std::vector<Sample> want;
  for (int i = 0; i < 100; ++i) {
    want.push_back({1000 * i, i * 0.25});
    gorilla.Append(want.back().t, want.back().v);
  }
  Buffer seg;
  detail::EncodeSeriesRecord({{.ref = 1, .labels = a}}, seg);
  Buffer chunks;
  detail::EncodeChunksRecord({{.ref = 1, .bytes = {gorilla.bytes().begin(), gorilla.bytes().end()}}}, chunks);
  std::string rec(chunks.readable().AsStringView());
  REQUIRE(static_cast<uint8_t>(rec[8]) == detail::kRecordChunks);
  rec[8] = static_cast<char>(detail::kRecordGorillaChunks);
  const auto sum = static_cast<uint32_t>(Xxh3_64(ByteView(std::string_view(rec).substr(8))));
  std::memcpy(rec.data() + 4, &sum, 4);
  std::string file(seg.readable().AsStringView());
  file += rec;
  std::ofstream(dir.path + "/wal/00000001", std::ios::binary) << file;
  auto db = OpenDb(dir.path);
  auto got = REQUIRE_VALUE(db->Select(std::vector{Matcher::Equal("__name__", "old")}, 0, 1000000));
  REQUIRE(got.size() == 1);
  CHECK(got[0].labels == a);
  CHECK(got[0].samples == want);
}

// Frames `rec` (a record as Encode*Record makes it) as record type `type`.
std::string Retyped(const Buffer& rec_buf, uint8_t type) {
  std::string rec(rec_buf.readable().AsStringView());
  rec[8] = static_cast<char>(type);
  const auto sum = static_cast<uint32_t>(Xxh3_64(ByteView(std::string_view(rec).substr(8))));
  std::memcpy(rec.data() + 4, &sum, 4);
  return rec;
}

TEST_CASE("monitor tsdb replays a checkpoint of decimal chunks written before adaptive chunks") {
  // A decimal chunk as 7bcc960 wrote it (byte 2 = E, no 0x40), in a type 4
  // record: 12 samples of 1234.5 + 3, 3.25, 3.5, 3.75 ... at 15 s, one late.
  const std::vector<uint8_t> old_chunk = {0x80, 0x0c, 0x02, 0x80, 0xa0, 0xab, 0xfe, 0xf9, 0x62, 0xf4, 0x88, 0x0f,
                                          0x98, 0x75, 0xc2, 0x58, 0x46, 0x48, 0xc9, 0x19, 0x29, 0x58, 0x0f, 0xa8,
                                          0xca, 0xfc, 0x1a, 0x32, 0x46, 0x4a, 0x55, 0x19, 0x23, 0x20};
  std::vector<Sample> want;
  int64_t t = 1700000000000;
  double v = 1234.5;
  for (int i = 0; i < 12; ++i) {
    want.push_back({t, v});
    t += (i == 5 ? 15250 : 15000);
    v += 0.25 * (i % 4) + 3;
  }
  TempDir dir("qcloud-tsdb");
  std::filesystem::create_directories(dir.path + "/wal");
  const Labels a = L({{"__name__", "old_decimal"}, {"job", "j"}});
  Buffer seg, chunks;
  detail::EncodeSeriesRecord({{.ref = 1, .labels = a}}, seg);
  detail::EncodeChunksRecord({{.ref = 1, .bytes = old_chunk}}, chunks);
  std::string file(seg.readable().AsStringView());
  file += Retyped(chunks, detail::kRecordDecimalChunks);
  std::ofstream(dir.path + "/wal/00000001", std::ios::binary) << file;
  auto db = OpenDb(dir.path);
  auto got = REQUIRE_VALUE(db->Select(std::vector{Matcher::Equal("__name__", "old_decimal")}, 0, INT64_MAX));
  REQUIRE(got.size() == 1);
  CHECK(got[0].samples == want);
  CHECK(db->stats().corrupt_chunks == 0);
}

TEST_CASE("monitor tsdb replays one label set logged under two refs into one series") {
  // A cut dropped ref 1's series and an append made it again as ref 2
  // before the checkpoint landed: both refs' records are in the log.
  TempDir dir("qcloud-tsdb");
  std::filesystem::create_directories(dir.path + "/wal");
  const Labels a = L({{"__name__", "twice"}, {"job", "j"}});
  const Labels b = L({{"__name__", "other"}, {"job", "j"}});
  Buffer seg;
  detail::EncodeSeriesRecord({{.ref = 1, .labels = a}}, seg);
  detail::EncodeSamplesRecord({{.ref = 1, .t = 1000, .v = 1}, {.ref = 1, .t = 2000, .v = 2}}, seg);
  detail::EncodeSeriesRecord({{.ref = 2, .labels = a}, {.ref = 3, .labels = b}}, seg);
  detail::EncodeSamplesRecord({{.ref = 2, .t = 3000, .v = 3}, {.ref = 3, .t = 3000, .v = 30}}, seg);
  std::ofstream(dir.path + "/wal/00000001", std::ios::binary) << seg.readable().AsStringView();
  {
    auto db = OpenDb(dir.path);
    CHECK(db->stats().series == 2);
    auto got = REQUIRE_VALUE(db->Select(std::vector{Matcher::Equal("job", "j")}, 0, INT64_MAX));
    REQUIRE(got.size() == 2);
    std::map<Labels, std::vector<Sample>> by;
    for (auto& r : got) by[r.labels] = r.samples;
    CHECK(by[a] == std::vector<Sample>{{1000, 1}, {2000, 2}, {3000, 3}});
    CHECK(by[b] == std::vector<Sample>{{3000, 30}});
    // New samples for the set go to that one series, and a new set gets a ref past both.
    std::vector<SeriesSamples> more = {{a, {{4000, 4}}}, {L({{"__name__", "new"}, {"job", "j"}}), {{4000, 5}}}};
    auto r = REQUIRE_VALUE(db->Append(more));
    CHECK(r.appended == 2);
    CHECK(r.new_series == 1);
    CHECK(db->stats().series == 3);
  }
  auto db = OpenDb(dir.path);
  auto got = REQUIRE_VALUE(db->Select(std::vector{Matcher::Equal("__name__", "twice")}, 0, INT64_MAX));
  REQUIRE(got.size() == 1);
  CHECK(got[0].samples == std::vector<Sample>{{1000, 1}, {2000, 2}, {3000, 3}, {4000, 4}});
}

TEST_CASE("monitor tsdb reports a corrupt block or chunk and answers from the rest") {
  TempDir dir("qcloud-tsdb");
  std::map<Labels, std::vector<Sample>> model;
  const int64_t start = 1700000000000 / 3600000 * 3600000;
  const TsdbOptions o{.block_duration = std::chrono::hours(1), .max_block_duration = std::chrono::hours(1)};
  {
    auto db = OpenDb(dir.path, o);
    Fill(*db, model, start, 4);
    REQUIRE_OK(db->Compact());
    REQUIRE(db->stats().blocks == 3);  // the newest sample is 1.5 h past 2 h in, not past 3 h
  }
  std::vector<std::filesystem::path> blocks;
  for (auto& e : std::filesystem::directory_iterator(std::filesystem::path(dir.path) / "blocks")) blocks.push_back(e.path());
  std::sort(blocks.begin(), blocks.end());
  REQUIRE(blocks.size() == 3);
  auto flip = [](const std::filesystem::path& p, uint64_t at) {
    std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(at));
    char c;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x55);
    f.seekp(static_cast<std::streamoff>(at));
    f.write(&c, 1);
  };
  flip(blocks[0], 100);  // inside the first block's first chunk
  flip(blocks[1], std::filesystem::file_size(blocks[1]) - 40);  // inside the second block's index
  auto db = OpenDb(dir.path, o);
  const TsdbStats st = db->stats();
  REQUIRE(st.corrupt_blocks.size() == 1);
  CHECK(st.corrupt_blocks[0].find(blocks[1].filename().string()) != std::string::npos);
  CHECK(st.blocks == 2);
  // The first block answers all but its damaged chunk; the head answers.
  auto got = REQUIRE_VALUE(db->Select(std::vector{REQUIRE_VALUE(Matcher::Make(MatchType::kRegex, "__name__", ".+"))}, start, start + 3600000 - 1));
  size_t n = 0;
  for (const auto& s : got) n += s.samples.size();
  CHECK(n < 10 * 240);
  CHECK(n >= 10 * 240 - 240);  // one chunk (a series's hour) lost
  CHECK(db->stats().corrupt_chunks == 1);
  auto rest = REQUIRE_VALUE(db->Select(std::vector{REQUIRE_VALUE(Matcher::Make(MatchType::kRegex, "__name__", ".+"))}, start + 2 * 3600000, INT64_MAX));
  n = 0;
  for (const auto& s : rest) n += s.samples.size();
  CHECK(n == 10 * 2 * 240);  // the third block and the head
}

TEST_CASE("monitor tsdb retention deletes blocks older than the newest sample minus retention") {
  TempDir dir("qcloud-tsdb");
  std::map<Labels, std::vector<Sample>> model;
  const int64_t start = 1700000000000 / 3600000 * 3600000;
  auto db = OpenDb(dir.path, {.block_duration = std::chrono::hours(1),
                              .max_block_duration = std::chrono::hours(1),
                              .retention = std::chrono::hours(3)});
  Fill(*db, model, start, 8);
  REQUIRE_OK(db->Compact());
  // 7 blocks cut; the newest sample is 15 s before 8 h in, so blocks that
  // end at or before 4h59m45s are gone: [4h, 5h) stays (it holds 4h59m45s).
  const TsdbStats st = db->stats();
  CHECK(st.blocks == 3);
  auto got = REQUIRE_VALUE(db->Select(std::vector{Matcher::Equal("cpu", "1")}, INT64_MIN, INT64_MAX));
  REQUIRE(got.size() == 1);
  CHECK(got[0].samples.front().t == start + 4 * 3600000);
  size_t files = 0;
  for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator(std::filesystem::path(dir.path) / "blocks")) ++files;
  CHECK(files == 3);
}

TEST_CASE("monitor tsdb merges finished windows of blocks and drops the sources a crash left") {
  TempDir dir("qcloud-tsdb");
  std::map<Labels, std::vector<Sample>> model;
  const int64_t h = 3600000;
  const int64_t start = 1700000000000 / (12 * h) * (12 * h);  // a 12 h window's start
  const TsdbOptions unmerged{.block_duration = std::chrono::hours(1), .max_block_duration = std::chrono::hours(1)};
  const TsdbOptions merging{.block_duration = std::chrono::hours(1), .max_block_duration = std::chrono::hours(12)};
  uint64_t bytes_unmerged = 0;
  {
    auto db = OpenDb(dir.path, unmerged);
    Fill(*db, model, start, 15);
    REQUIRE_OK(db->Compact());
    CHECK(db->stats().blocks == 14);  // [0, 14h): the newest sample is 1.5 h past 13 h
    bytes_unmerged = db->stats().block_bytes;
  }
  // A source block kept aside, to play a crash between a merge's write and its removals.
  const auto blocks = std::filesystem::path(dir.path) / "blocks";
  const std::string first = std::to_string(start) + "-" + std::to_string(start + h) + ".qtb";
  std::filesystem::copy_file(blocks / first, std::filesystem::path(dir.path) / first);
  {
    auto db = OpenDb(dir.path, merging);
    REQUIRE_OK(db->Compact());
    const TsdbStats st = db->stats();
    // [0, 12h) merges into one block (its 3 h windows first: 4 merges, then
    // 1); [12h, 13h) and [13h, 14h) wait: their 3 h window is not finished.
    CHECK(st.blocks == 3);
    CHECK(st.merges == 5);
    CHECK(st.merge_errors.empty());
    MESSAGE("14 one-hour blocks: ", bytes_unmerged, " bytes; merged into 3 blocks: ", st.block_bytes);
    CHECK(st.block_bytes < bytes_unmerged);
    CHECK(st.block_samples + st.samples == 10 * 15 * 240);
    CheckAll(*db, model, INT64_MIN, INT64_MAX);
    CheckAll(*db, model, start + 11 * h - 15000, start + 12 * h + 30000);  // across the merged block's edge
  }
  std::filesystem::copy_file(std::filesystem::path(dir.path) / first, blocks / first);
  auto db = OpenDb(dir.path, merging);
  CHECK(db->stats().blocks == 3);  // the leftover source, inside the merged block, is dropped
  CHECK_FALSE(std::filesystem::exists(blocks / first));
  CheckAll(*db, model, INT64_MIN, INT64_MAX);
  // Two more hours cut [14h, 16h) and finish [12h, 15h): it merges as well.
  Fill(*db, model, start + 15 * h, 2);
  REQUIRE_OK(db->Compact());
  CHECK(db->stats().merges == 1);
  CheckAll(*db, model, INT64_MIN, INT64_MAX);
}

}  // namespace
}  // namespace qcloud::monitor
