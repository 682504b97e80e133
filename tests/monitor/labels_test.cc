// Labels and matchers: Prometheus's naming rules, bounds, notation, and
// matcher semantics (anchored regexes, absent labels as "").

#include "qcloud/monitor/labels.h"
#include "qcloud/monitor/matcher.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "qcloud/testing/doctest_helpers.h"

namespace qcloud::monitor {
namespace {

TEST_CASE("monitor labels sort drop empty values and print as Prometheus does") {
  Labels l = REQUIRE_VALUE(Labels::FromPairs({{"zone", "a"}, {"__name__", "up"}, {"job", "n\"o\\de"}, {"x", ""}}));
  REQUIRE(l.size() == 3);
  CHECK(l.pairs()[0].name == "__name__");
  CHECK(l.metric_name() == "up");
  CHECK(l.Get("x") == "");
  CHECK(l.ToString() == "up{job=\"n\\\"o\\\\de\", zone=\"a\"}");
  CHECK(l.Hash() == REQUIRE_VALUE(Labels::FromPairs({{"job", "n\"o\\de"}, {"__name__", "up"}, {"zone", "a"}})).Hash());
  CHECK(l.Without({"zone"}, true).ToString() == "{job=\"n\\\"o\\\\de\"}");
  CHECK(l.Only({"zone"}).ToString() == "{zone=\"a\"}");
}

TEST_CASE("monitor labels in one block compare order and iterate as the pairs they hold") {
  std::mt19937_64 rng(3);
  std::vector<std::vector<Label>> sets;
  std::vector<Labels> built;
  for (int i = 0; i < 300; ++i) {
    std::vector<Label> pairs;
    const int n = static_cast<int>(rng() % 5);
    // Names of the fixed list (stored as an index) and others, mixed.
    const char* known[] = {"job", "instance", "le", "zone", "mode"};
    for (int k = 0; k < n; ++k) {
      pairs.push_back({rng() % 2 == 0 ? std::string(known[k]) : std::string(1, static_cast<char>('a' + rng() % 4)) + std::to_string(k),
                       std::string(rng() % 3, static_cast<char>('x' + rng() % 3))});
    }
    Labels l = REQUIRE_VALUE(Labels::FromPairs(pairs));
    std::vector<Label> want = pairs;
    std::erase_if(want, [](const Label& p) { return p.value.empty(); });
    std::sort(want.begin(), want.end());
    REQUIRE(l.ToVector() == want);
    CHECK(l.size() == want.size());
    CHECK(l.empty() == want.empty());
    size_t k = 0;
    for (LabelView v : l.pairs()) {
      REQUIRE(k < want.size());
      CHECK(v.name == want[k].name);
      CHECK(v.value == want[k].value);
      CHECK(l.Get(v.name) == v.value);
      ++k;
    }
    CHECK(k == want.size());
    CHECK(l.Get("zz") == "");
    CHECK(l.Get("") == "");
    sets.push_back(want);
    built.push_back(l);
  }
  // ==, <=> and Hash agree with the vectors of pairs they were made from.
  for (size_t i = 0; i < sets.size(); ++i) {
    for (size_t j = 0; j < sets.size(); j += 7) {
      CHECK((built[i] == built[j]) == (sets[i] == sets[j]));
      CHECK((built[i] <=> built[j]) == (sets[i] <=> sets[j]));
      if (sets[i] == sets[j]) CHECK(built[i].Hash() == built[j].Hash());
    }
  }
  // Copies share one block; assignments and moves keep the count.
  const Labels copy = built[1];
  CHECK(copy == built[1]);
  CHECK(built[1].use_count() == (built[1].empty() ? 0 : 2));
  {
    Labels a = REQUIRE_VALUE(Labels::FromPairs({{"__name__", "up"}, {"instance", "h:9100"}, {"odd_name", "v"}}));
    CHECK(a.use_count() == 1);
    Labels b = a;
    b = a;  // the same block again
    CHECK(a.use_count() == 2);
    const Labels& alias = b;
    b = alias;  // itself
    CHECK(a.use_count() == 2);
    Labels c = std::move(b);
    CHECK(b.empty());  // NOLINT(bugprone-use-after-move): moved from is empty
    CHECK(a.use_count() == 2);
    c = Labels();
    CHECK(a.use_count() == 1);
    b = built[2];
    b = std::move(a);
    CHECK(a.empty());  // NOLINT(bugprone-use-after-move)
    CHECK(b.use_count() == 1);
    CHECK(b.ToString() == "up{instance=\"h:9100\", odd_name=\"v\"}");
    CHECK(b.metric_name() == "up");
    CHECK(b.Get("instance") == "h:9100");
  }
  // The largest set the bounds allow: 64 labels with values of 4096 bytes.
  std::vector<Label> big;
  for (int k = 0; k < static_cast<int>(kMaxLabels); ++k) {
    big.push_back({"l" + std::to_string(k), std::string(kMaxLabelValueBytes, static_cast<char>('a' + k % 26))});
  }
  big.front().name = std::string(kMaxLabelNameBytes, 'n');
  Labels b = REQUIRE_VALUE(Labels::FromPairs(big));
  std::sort(big.begin(), big.end());
  CHECK(b.ToVector() == big);
  CHECK(b.Get(std::string(kMaxLabelNameBytes, 'n')).size() == kMaxLabelValueBytes);
}

TEST_CASE("monitor labels refuse bad names duplicates bad UTF-8 and oversize series") {
  CHECK_ERRC(Labels::FromPairs({{"1abc", "v"}}), Errc::kInvalidArgument);
  CHECK_ERRC(Labels::FromPairs({{"a-b", "v"}}), Errc::kInvalidArgument);
  CHECK_ERRC(Labels::FromPairs({{"__reserved", "v"}}), Errc::kInvalidArgument);
  CHECK_ERRC(Labels::FromPairs({{"__name__", "1bad"}}), Errc::kInvalidArgument);
  CHECK_ERRC(Labels::FromPairs({{"a", "1"}, {"a", "2"}}), Errc::kInvalidArgument);
  CHECK_ERRC(Labels::FromPairs({{"a", "\xff"}}), Errc::kInvalidArgument);
  CHECK_ERRC(Labels::FromPairs({{"a", "\xe2\x82"}}), Errc::kInvalidArgument);       // cut short
  CHECK_ERRC(Labels::FromPairs({{"a", "\xc0\xaf"}}), Errc::kInvalidArgument);       // overlong
  CHECK_ERRC(Labels::FromPairs({{"a", "\xed\xa0\x80"}}), Errc::kInvalidArgument);   // a surrogate
  CHECK_OK(Labels::FromPairs({{"a", "\xe2\x82\xac \xf0\x9f\x98\x80 ok"}}));
  CHECK_OK(Labels::FromPairs({{"__name__", "ns:metric_total"}}));
  std::vector<Label> many;
  for (int i = 0; i < 10000; ++i) many.push_back({"l" + std::to_string(i), "v"});
  CHECK_ERRC(Labels::FromPairs(many), Errc::kInvalidArgument);
  CHECK_ERRC(Labels::FromPairs({{"a", std::string(kMaxLabelValueBytes + 1, 'x')}}), Errc::kInvalidArgument);
}

TEST_CASE("monitor matchers anchor regexes and treat absent labels as empty") {
  Matcher re = REQUIRE_VALUE(Matcher::Make(MatchType::kRegex, "job", "api|web.*"));
  CHECK(re.Matches("api"));
  CHECK(re.Matches("webserver"));
  CHECK_FALSE(re.Matches("xapi"));
  CHECK_FALSE(re.Matches("apix"));
  CHECK_FALSE(re.Matches(""));
  Matcher nre = REQUIRE_VALUE(Matcher::Make(MatchType::kNotRegex, "job", "api"));
  CHECK(nre.Matches(""));
  CHECK_FALSE(nre.Matches("api"));
  Matcher any = REQUIRE_VALUE(Matcher::Make(MatchType::kRegex, "env", ".*"));
  CHECK(any.Matches(""));
  Matcher dot = REQUIRE_VALUE(Matcher::Make(MatchType::kRegex, "m", "a.b"));
  CHECK(dot.Matches("a.b"));
  CHECK(dot.Matches("axb"));
  CHECK_FALSE(dot.Matches("a\nb"));  // no (?s) in Prometheus 2.x (3.0 added it)
  CHECK(REQUIRE_VALUE(Matcher::Make(MatchType::kNotEqual, "a", "")).Matches("x"));
  CHECK_ERRC(Matcher::Make(MatchType::kRegex, "a", "("), Errc::kInvalidArgument);
  CHECK(re.ToString() == "job=~\"api|web.*\"");
}

TEST_CASE("monitor label values must be UTF-8 as RFC 3629 has it") {
  for (const char* good : {"", "plain", "\xc3\xbc", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf", "\xed\x9f\xbf"}) {
    INFO(good);
    CHECK(ValidUtf8(good));
  }
  for (const char* bad : {"\xff", "\xc0\x80", "\xe0\x80\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xf0\x9f\x98",
                          "a\xc3", "\x80", "\xf8\x88\x80\x80\x80"}) {
    INFO(bad);
    CHECK_FALSE(ValidUtf8(bad));
  }
}

}  // namespace
}  // namespace qcloud::monitor
