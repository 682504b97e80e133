// Labels and matchers: Prometheus's naming rules, bounds, notation, and
// matcher semantics (anchored regexes, absent labels as "").

#include "qcloud/monitor/labels.h"
#include "qcloud/monitor/matcher.h"

#include <doctest/doctest.h>

#include <string>

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
  CHECK(dot.Matches("a\nb"));  // (?s), as Prometheus
  CHECK(REQUIRE_VALUE(Matcher::Make(MatchType::kNotEqual, "a", "")).Matches("x"));
  CHECK_ERRC(Matcher::Make(MatchType::kRegex, "a", "("), Errc::kInvalidArgument);
  CHECK(re.ToString() == "job=~\"api|web.*\"");
}

}  // namespace
}  // namespace qcloud::monitor
