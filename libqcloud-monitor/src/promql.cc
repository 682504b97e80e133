#include "qcloud/monitor/promql.h"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <map>
#include <optional>
#include <unordered_map>

#include <fmt/format.h>

#include "qcloud/core/metrics.h"

namespace qcloud::monitor {

namespace detail {

// A parsed PromQL expression node.
struct Node {
  enum class Kind { kNumber, kString, kSelector, kCall, kAggregate, kBinary, kUnary, kParen };
  Kind kind = Kind::kNumber;
  ValueType type = ValueType::kScalar;
  double number = 0;
  std::string text;  // string literal, function name, aggregation or operator
  // Selector.
  std::string metric;
  std::vector<Matcher> matchers;
  int64_t range = 0;   // ms; 0 = an instant selector
  int64_t offset = 0;  // ms
  // Call, aggregate (args[0]), binary (lhs, rhs), unary, paren.
  std::vector<std::shared_ptr<Node>> args;
  // Aggregate grouping / binary vector matching.
  bool without = false;
  bool grouped = false;
  std::vector<std::string> labels;
  bool bool_modifier = false;
  bool on = false, ignoring = false;
};

}  // namespace detail

namespace {

using detail::Node;
using NodePtr = std::shared_ptr<Node>;

// ---- formatting ----

std::string Quote(std::string_view s) { return "\"" + EscapeLabelValue(s) + "\""; }

// ---- lexer ----

enum class Tok {
  kEnd, kIdent, kNumber, kDuration, kString, kLParen, kRParen, kLBrace, kRBrace, kLBracket, kRBracket,
  kComma, kAssign, kNeq, kRegex, kNotRegex, kEql, kGtr, kLss, kGte, kLte, kAdd, kSub, kMul, kDiv, kMod,
  kPow, kColon, kAt
};

struct Token {
  Tok kind = Tok::kEnd;
  std::string text;
  size_t pos = 0;
};

bool IdentStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':'; }
bool IdentRest(char c) { return IdentStart(c) || (c >= '0' && c <= '9'); }
bool Digit(char c) { return c >= '0' && c <= '9'; }

class Lexer {
 public:
  explicit Lexer(std::string_view in) : in_(in) {}

  Result<std::vector<Token>> All() {
    std::vector<Token> out;
    if (in_.find_first_not_of(" \t\n\r") == std::string_view::npos) return Error(0, "no expression found in input");
    // Prometheus's lexer finds unbalanced parentheses and braces itself,
    // with these words.
    int parens = 0;
    bool braces = false;
    for (;;) {
      QCLOUD_ASSIGN_OR_RETURN(Token t, Next());
      switch (t.kind) {
        case Tok::kLParen: ++parens; break;
        case Tok::kRParen:
          if (--parens < 0) return Error(t.pos + 1, "unexpected right parenthesis ')'");
          break;
        case Tok::kLBrace: braces = true; break;
        case Tok::kRBrace: braces = false; break;
        case Tok::kEnd:
          if (braces) return Error(t.pos, "unexpected end of input inside braces");
          if (parens > 0) return Error(t.pos, "unclosed left parenthesis");
          break;
        default: break;
      }
      if (braces && t.kind != Tok::kLBrace && t.kind != Tok::kIdent && t.kind != Tok::kString &&
          t.kind != Tok::kComma && t.kind != Tok::kAssign && t.kind != Tok::kNeq && t.kind != Tok::kRegex &&
          t.kind != Tok::kNotRegex && t.kind != Tok::kRBrace && t.kind != Tok::kEnd) {
        return Error(t.pos, fmt::format("unexpected character inside braces: '{}'", in_[t.pos]));
      }
      const bool end = t.kind == Tok::kEnd;
      out.push_back(std::move(t));
      if (end) return out;
    }
  }

 private:
  Status Error(size_t pos, const std::string& what) {
    return InvalidArgument(fmt::format("parse error at char {}: {}", pos + 1, what));
  }

  Result<Token> Next() {
    while (pos_ < in_.size() && (in_[pos_] == ' ' || in_[pos_] == '\t' || in_[pos_] == '\n' || in_[pos_] == '\r')) ++pos_;
    if (pos_ < in_.size() && in_[pos_] == '#') {  // a comment to the end of the line
      while (pos_ < in_.size() && in_[pos_] != '\n') ++pos_;
      return Next();
    }
    Token t;
    t.pos = pos_;
    if (pos_ >= in_.size()) return t;
    const char c = in_[pos_];
    auto one = [&](Tok k, size_t n) {
      t.kind = k;
      t.text = std::string(in_.substr(pos_, n));
      pos_ += n;
      return t;
    };
    auto next_is = [&](char d) { return pos_ + 1 < in_.size() && in_[pos_ + 1] == d; };
    switch (c) {
      case '(': return one(Tok::kLParen, 1);
      case ')': return one(Tok::kRParen, 1);
      case '{': return one(Tok::kLBrace, 1);
      case '}': return one(Tok::kRBrace, 1);
      case '[': return one(Tok::kLBracket, 1);
      case ']': return one(Tok::kRBracket, 1);
      case ',': return one(Tok::kComma, 1);
      case '+': return one(Tok::kAdd, 1);
      case '-': return one(Tok::kSub, 1);
      case '*': return one(Tok::kMul, 1);
      case '/': return one(Tok::kDiv, 1);
      case '%': return one(Tok::kMod, 1);
      case '^': return one(Tok::kPow, 1);
      case '@': return one(Tok::kAt, 1);
      case '=':
        if (next_is('=')) return one(Tok::kEql, 2);
        if (next_is('~')) return one(Tok::kRegex, 2);
        return one(Tok::kAssign, 1);
      case '!':
        if (next_is('=')) return one(Tok::kNeq, 2);
        if (next_is('~')) return one(Tok::kNotRegex, 2);
        return Error(pos_, "unexpected character after '!'");
      case '>':
        if (next_is('=')) return one(Tok::kGte, 2);
        return one(Tok::kGtr, 1);
      case '<':
        if (next_is('=')) return one(Tok::kLte, 2);
        return one(Tok::kLss, 1);
      case '"':
      case '\'':
      case '`':
        return String(c);
      default:
        break;
    }
    if (Digit(c) || (c == '.' && pos_ + 1 < in_.size() && Digit(in_[pos_ + 1]))) return NumberOrDuration();
    if (IdentStart(c)) {
      size_t end = pos_ + 1;
      while (end < in_.size() && IdentRest(in_[end])) ++end;
      if (in_[pos_] == ':' && end == pos_ + 1) return one(Tok::kColon, 1);
      return one(Tok::kIdent, end - pos_);
    }
    return Error(pos_, fmt::format("unexpected character '{}'", c));
  }

  Result<Token> String(char quote) {
    Token t;
    t.kind = Tok::kString;
    t.pos = pos_;
    ++pos_;
    while (pos_ < in_.size() && in_[pos_] != quote) {
      char c = in_[pos_++];
      if (c == '\\' && quote != '`') {
        if (pos_ >= in_.size()) break;
        QCLOUD_RETURN_IF_ERROR(Escape(quote, t.text));
        continue;
      } else if (c == '\n' && quote != '`') {
        return Error(pos_ - 1, "unterminated quoted string");
      }
      t.text += c;
    }
    if (pos_ >= in_.size()) return Error(t.pos, "unterminated quoted string");
    ++pos_;
    return t;
  }

  // After a backslash in a quoted string: Go's escapes, as Prometheus's
  // lexer takes them (\a \b \f \n \r \t \v \\ and the quote, \x and three
  // octal digits for a byte, \u and \U for a code point), appended to out.
  Status Escape(char quote, std::string& out) {
    const size_t at = pos_;
    if (pos_ >= in_.size()) return Error(at, "escape sequence not terminated");
    const char e = in_[pos_++];
    switch (e) {
      case 'a': out += '\a'; return Status::Ok();
      case 'b': out += '\b'; return Status::Ok();
      case 'f': out += '\f'; return Status::Ok();
      case 'n': out += '\n'; return Status::Ok();
      case 'r': out += '\r'; return Status::Ok();
      case 't': out += '\t'; return Status::Ok();
      case 'v': out += '\v'; return Status::Ok();
      case '\\': out += '\\'; return Status::Ok();
      default: break;
    }
    if (e == quote) {
      out += e;
      return Status::Ok();
    }
    int digits = 0, base = 0;
    uint32_t max = 0;
    if (e >= '0' && e <= '7') {
      --pos_;
      digits = 3, base = 8, max = 255;
    } else if (e == 'x') {
      digits = 2, base = 16, max = 255;
    } else if (e == 'u') {
      digits = 4, base = 16, max = 0x10FFFF;
    } else if (e == 'U') {
      digits = 8, base = 16, max = 0x10FFFF;
    } else {
      return Error(at, fmt::format("unknown escape sequence U+{:04X} '{}'", static_cast<unsigned char>(e), e));
    }
    uint32_t v = 0;
    for (int i = 0; i < digits; ++i) {
      if (pos_ >= in_.size()) return Error(at, "escape sequence not terminated");
      const char c = in_[pos_];
      const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : 99;
      if (d >= base) return Error(pos_, fmt::format("illegal character U+{:04X} '{}' in escape sequence", static_cast<unsigned char>(c), c));
      v = v * static_cast<uint32_t>(base) + static_cast<uint32_t>(d);
      ++pos_;
    }
    if (v > max || (e != 'x' && base == 16 && v >= 0xD800 && v < 0xE000)) {
      return Error(at, "escape sequence is an invalid Unicode code point");
    }
    if (e == 'x' || base == 8) {
      out += static_cast<char>(v);  // a byte, as Go's string escapes give
    } else if (v < 0x80) {
      out += static_cast<char>(v);
    } else if (v < 0x800) {
      out += static_cast<char>(0xC0 | (v >> 6));
      out += static_cast<char>(0x80 | (v & 0x3F));
    } else if (v < 0x10000) {
      out += static_cast<char>(0xE0 | (v >> 12));
      out += static_cast<char>(0x80 | ((v >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (v & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (v >> 18));
      out += static_cast<char>(0x80 | ((v >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((v >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (v & 0x3F));
    }
    return Status::Ok();
  }

  Result<Token> NumberOrDuration() {
    Token t;
    t.pos = pos_;
    // A duration: digits followed by a unit, possibly repeated (1h30m).
    size_t end = pos_;
    bool duration = false;
    while (end < in_.size() && Digit(in_[end])) {
      size_t d = end;
      while (d < in_.size() && Digit(in_[d])) ++d;
      size_t u = d;
      while (u < in_.size() && (in_[u] >= 'a' && in_[u] <= 'z')) ++u;
      const std::string_view unit = in_.substr(d, u - d);
      if (unit == "ms" || unit == "s" || unit == "m" || unit == "h" || unit == "d" || unit == "w" || unit == "y") {
        duration = true;
        end = u;
      } else {
        break;
      }
    }
    if (duration && (end >= in_.size() || !IdentRest(in_[end]))) {
      t.kind = Tok::kDuration;
      t.text = std::string(in_.substr(pos_, end - pos_));
      pos_ = end;
      return t;
    }
    // A number: as strconv.ParseFloat reads it (hex too).
    end = pos_;
    if (in_.substr(pos_, 2) == "0x" || in_.substr(pos_, 2) == "0X") {
      end += 2;
      while (end < in_.size() && std::isxdigit(static_cast<unsigned char>(in_[end]))) ++end;
    } else {
      while (end < in_.size() && (Digit(in_[end]) || in_[end] == '.')) ++end;
      if (end < in_.size() && (in_[end] == 'e' || in_[end] == 'E')) {
        size_t e = end + 1;
        if (e < in_.size() && (in_[e] == '+' || in_[e] == '-')) ++e;
        if (e < in_.size() && Digit(in_[e])) {
          end = e;
          while (end < in_.size() && Digit(in_[end])) ++end;
        }
      }
    }
    t.kind = Tok::kNumber;
    t.text = std::string(in_.substr(pos_, end - pos_));
    pos_ = end;
    return t;
  }

  std::string_view in_;
  size_t pos_ = 0;
};

// A well-formed decimal number too large for a double (1e309).
bool IsRangeError(const std::string& s) {
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc::result_out_of_range && p == s.data() + s.size();
}

std::optional<double> ParseNumber(const std::string& s) {
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    uint64_t v = 0;
    auto [p, ec] = std::from_chars(s.data() + 2, s.data() + s.size(), v, 16);
    if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
    return static_cast<double>(v);
  }
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

// ---- parser ----

bool IsAggregation(std::string_view s) {
  return s == "sum" || s == "avg" || s == "min" || s == "max" || s == "count";
}

struct FuncSig {
  std::vector<ValueType> args;
  ValueType ret;
};

const FuncSig* Function(std::string_view name) {
  static const std::map<std::string, FuncSig, std::less<>> kFuncs = {
      {"rate", {{ValueType::kMatrix}, ValueType::kVector}},
      {"irate", {{ValueType::kMatrix}, ValueType::kVector}},
      {"increase", {{ValueType::kMatrix}, ValueType::kVector}},
      {"delta", {{ValueType::kMatrix}, ValueType::kVector}},
      {"avg_over_time", {{ValueType::kMatrix}, ValueType::kVector}},
      {"min_over_time", {{ValueType::kMatrix}, ValueType::kVector}},
      {"max_over_time", {{ValueType::kMatrix}, ValueType::kVector}},
      {"sum_over_time", {{ValueType::kMatrix}, ValueType::kVector}},
      {"count_over_time", {{ValueType::kMatrix}, ValueType::kVector}},
      {"last_over_time", {{ValueType::kMatrix}, ValueType::kVector}},
      {"abs", {{ValueType::kVector}, ValueType::kVector}},
      {"time", {{}, ValueType::kScalar}},
      {"vector", {{ValueType::kScalar}, ValueType::kVector}},
      {"scalar", {{ValueType::kVector}, ValueType::kScalar}},
  };
  auto it = kFuncs.find(name);
  return it == kFuncs.end() ? nullptr : &it->second;
}

// Prometheus 2.42's functions: the ones this subset lacks are named as
// unsupported, anything else is unknown.
bool PrometheusFunction(std::string_view name) {
  static constexpr std::string_view kAll[] = {
      "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh", "avg_over_time", "ceil",
      "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh", "count_over_time", "days_in_month", "day_of_month",
      "day_of_week", "day_of_year", "deg", "delta", "deriv", "exp", "floor", "histogram_count", "histogram_sum",
      "histogram_fraction", "histogram_quantile", "holt_winters", "hour", "idelta", "increase", "irate",
      "label_replace", "label_join", "last_over_time", "ln", "log10", "log2", "max_over_time", "min_over_time",
      "minute", "month", "pi", "predict_linear", "present_over_time", "quantile_over_time", "rad", "rate", "resets",
      "round", "scalar", "sgn", "sin", "sinh", "sort", "sort_desc", "sqrt", "stddev_over_time", "stdvar_over_time",
      "sum_over_time", "tan", "tanh", "time", "timestamp", "vector", "year"};
  return std::find(std::begin(kAll), std::end(kAll), name) != std::end(kAll);
}

int Precedence(Tok k, const std::string& text) {
  switch (k) {
    case Tok::kEql: case Tok::kNeq: case Tok::kGtr: case Tok::kLss: case Tok::kGte: case Tok::kLte: return 3;
    case Tok::kAdd: case Tok::kSub: return 4;
    case Tok::kMul: case Tok::kDiv: case Tok::kMod: return 5;
    case Tok::kPow: return 6;
    case Tok::kIdent:
      if (EqualsIgnoreCase(text, "or")) return 1;
      if (EqualsIgnoreCase(text, "and") || EqualsIgnoreCase(text, "unless")) return 2;
      if (EqualsIgnoreCase(text, "atan2")) return 5;
      return -1;
    default: return -1;
  }
}

bool IsComparison(const std::string& op) {
  return op == "==" || op == "!=" || op == ">" || op == "<" || op == ">=" || op == "<=";
}

const char* TypeName(ValueType t) {
  switch (t) {
    case ValueType::kScalar: return "scalar";
    case ValueType::kVector: return "instant vector";
    case ValueType::kMatrix: return "range vector";
    case ValueType::kString: return "string";
  }
  return "?";
}

class Parser {
 public:
  explicit Parser(std::vector<Token> toks) : toks_(std::move(toks)) {}

  Result<NodePtr> Parse() {
    QCLOUD_ASSIGN_OR_RETURN(NodePtr e, Expr(0));
    if (Peek().kind != Tok::kEnd) return Error(Peek(), fmt::format("unexpected {}", Describe(Peek())));
    return e;
  }

 private:
  const Token& Peek(size_t ahead = 0) const { return toks_[std::min(i_ + ahead, toks_.size() - 1)]; }
  Token Take() { return toks_[std::min(i_++, toks_.size() - 1)]; }
  // A token as Prometheus's parser names it in errors: identifier "x",
  // number "1", string "\"a\"", duration "5m", end of input, "(".
  static std::string Item(const Token& t) {
    switch (t.kind) {
      case Tok::kEnd: return "end of input";
      case Tok::kIdent: return fmt::format("identifier \"{}\"", t.text);
      case Tok::kNumber: return fmt::format("number \"{}\"", t.text);
      case Tok::kDuration: return fmt::format("duration \"{}\"", t.text);
      case Tok::kString: return fmt::format("string \"{}\"", t.text);
      default: return fmt::format("\"{}\"", t.text);
    }
  }
  static std::string Describe(const Token& t) {
    if (t.kind == Tok::kEnd) return "end of input";
    return fmt::format("\"{}\"", t.text);
  }
  Status Error(const Token& at, const std::string& what) const {
    return InvalidArgument(fmt::format("parse error at char {}: {}", at.pos + 1, what));
  }
  // Prometheus's keywords and aggregation operators are case-insensitive
  // (BY, Offset, SUM); function names are not.
  static bool Kw(const Token& t, std::string_view word) { return t.kind == Tok::kIdent && EqualsIgnoreCase(t.text, word); }
  Status Expect(Tok k, const char* what) {
    if (Peek().kind != k) return Error(Peek(), fmt::format("expected {}, got {}", what, Describe(Peek())));
    Take();
    return Status::Ok();
  }

  Result<NodePtr> Expr(int min_prec) {
    if (++depth_ > kMaxQueryDepth) return Error(Peek(), "expression nested too deeply");
    QCLOUD_ASSIGN_OR_RETURN(NodePtr lhs, Unary());
    for (;;) {
      const Token& op = Peek();
      const int prec = Precedence(op.kind, op.text);
      if (prec < 0 || prec < min_prec) break;
      if (op.kind == Tok::kIdent) {
        return Error(op, fmt::format("operator \"{}\" is not supported", op.text));
      }
      Token t = Take();
      auto n = std::make_shared<Node>();
      n->kind = Node::Kind::kBinary;
      n->text = t.text;
      if (Kw(Peek(), "bool")) {
        if (!IsComparison(n->text)) return Error(Peek(), "bool modifier can only be used on comparison operators");
        Take();
        n->bool_modifier = true;
      }
      if (Kw(Peek(), "on") || Kw(Peek(), "ignoring")) {
        (Kw(Take(), "on") ? n->on : n->ignoring) = true;
        QCLOUD_ASSIGN_OR_RETURN(n->labels, LabelList());
      }
      if (Kw(Peek(), "group_left") || Kw(Peek(), "group_right")) {
        return Error(Peek(), fmt::format("{} is not supported", Peek().text));
      }
      // ^ is right-associative; the others left.
      QCLOUD_ASSIGN_OR_RETURN(NodePtr rhs, Expr(t.kind == Tok::kPow ? prec : prec + 1));
      n->args = {lhs, rhs};
      QCLOUD_RETURN_IF_ERROR(CheckBinary(*n, t));
      lhs = n;
    }
    --depth_;
    return lhs;
  }

  Status CheckBinary(Node& n, const Token& at) {
    const ValueType l = n.args[0]->type, r = n.args[1]->type;
    if ((l != ValueType::kScalar && l != ValueType::kVector) || (r != ValueType::kScalar && r != ValueType::kVector)) {
      return Error(at, "binary expression must contain only scalar and instant vector types");
    }
    if (IsComparison(n.text) && l == ValueType::kScalar && r == ValueType::kScalar && !n.bool_modifier) {
      return Error(at, "comparisons between scalars must use BOOL modifier");
    }
    if ((n.on || n.ignoring) && (l != ValueType::kVector || r != ValueType::kVector)) {
      return Error(at, "vector matching only allowed between instant vectors");
    }
    n.type = (l == ValueType::kScalar && r == ValueType::kScalar) ? ValueType::kScalar : ValueType::kVector;
    return Status::Ok();
  }

  Result<NodePtr> Unary() {
    if (Peek().kind == Tok::kSub || Peek().kind == Tok::kAdd) {
      const Token t = Take();
      if (++depth_ > kMaxQueryDepth) return Error(t, "expression nested too deeply");
      // Unary minus binds looser than ^: -2^2 is -4.
      QCLOUD_ASSIGN_OR_RETURN(NodePtr e, Expr(Precedence(Tok::kPow, "")));
      --depth_;
      if (e->type != ValueType::kScalar && e->type != ValueType::kVector) {
        return Error(t, "unary expression only allowed on expressions of type scalar or instant vector");
      }
      if (t.kind == Tok::kAdd) return e;
      if (e->kind == Node::Kind::kNumber) {
        e->number = -e->number;
        return e;
      }
      auto n = std::make_shared<Node>();
      n->kind = Node::Kind::kUnary;
      n->type = e->type;
      n->args = {e};
      return n;
    }
    return Postfix();
  }

  Result<NodePtr> Postfix() {
    QCLOUD_ASSIGN_OR_RETURN(NodePtr e, Primary());
    for (;;) {
      if (Peek().kind == Tok::kLBracket) {
        const Token at = Take();
        if (e->kind != Node::Kind::kSelector || e->range != 0 || e->offset != 0) {
          if (Peek().kind == Tok::kDuration && Peek(1).kind == Tok::kColon &&
              (e->type == ValueType::kVector || e->type == ValueType::kScalar)) {
            return Error(at, "subqueries are not supported");
          }
          return Error(at, "ranges only allowed for vector selectors");
        }
        if (Peek().kind != Tok::kDuration) return DurationError("");
        QCLOUD_ASSIGN_OR_RETURN(e->range, ParseDuration(Take().text));
        if (e->range <= 0) return Error(at, "duration must be greater than 0");
        if (Peek().kind == Tok::kColon) return Error(Peek(), "subqueries are not supported");
        QCLOUD_RETURN_IF_ERROR(Expect(Tok::kRBracket, "\"]\""));
        e->type = ValueType::kMatrix;
        continue;
      }
      if (Kw(Peek(), "offset")) {
        const Token at = Take();
        if (e->kind != Node::Kind::kSelector) {
          return Error(at, "offset modifier must be preceded by an instant vector selector or range vector selector or a subquery");
        }
        if (e->offset != 0) return Error(at, "offset may not be set multiple times");
        bool negative = false;
        if (Peek().kind == Tok::kSub) {
          Take();
          negative = true;
        }
        if (Peek().kind != Tok::kDuration) return DurationError(" in offset");
        const Token d = Take();
        QCLOUD_ASSIGN_OR_RETURN(e->offset, ParseDuration(d.text));
        if (e->offset == 0) return Error(d, "duration must be greater than 0");
        if (negative) e->offset = -e->offset;
        continue;
      }
      if (Peek().kind == Tok::kAt) return Error(Peek(), "the @ modifier is not supported");
      return e;
    }
  }

  // Where a duration must be: Prometheus's words for what is there.
  Status DurationError(std::string_view where) {
    const Token& t = Peek();
    if (t.kind == Tok::kNumber) {
      const Token& unit = Peek(1);
      if (unit.kind == Tok::kIdent && unit.pos == t.pos + t.text.size()) {
        return Error(t, fmt::format("not a valid duration string: \"{}{}\"", t.text, unit.text));
      }
      return Error(t, "missing unit character in duration");
    }
    return Error(t, fmt::format("unexpected {}{}, expected duration", Item(t), where));
  }

  Result<std::vector<std::string>> LabelList() {
    QCLOUD_RETURN_IF_ERROR(Expect(Tok::kLParen, "\"(\""));
    std::vector<std::string> out;
    while (Peek().kind != Tok::kRParen) {
      if (Peek().kind != Tok::kIdent || !ValidLabelName(Peek().text)) {
        return Error(Peek(), fmt::format("unexpected {} in grouping opts, expected label", Item(Peek())));
      }
      out.push_back(Take().text);
      if (Peek().kind == Tok::kComma) {
        Take();
      } else if (Peek().kind != Tok::kRParen) {
        return Error(Peek(), fmt::format("unexpected {} in grouping opts, expected \")\" or \",\"", Item(Peek())));
      }
    }
    Take();
    return out;
  }

  Result<NodePtr> Primary() {
    const Token t = Peek();
    auto n = std::make_shared<Node>();
    switch (t.kind) {
      case Tok::kNumber: {
        Take();
        auto v = ParseNumber(t.text);
        if (!v) {
          return Error(t, fmt::format("error parsing number: strconv.ParseFloat: parsing \"{}\": {}", t.text,
                                      IsRangeError(t.text) ? "value out of range" : "invalid syntax"));
        }
        n->number = *v;
        return n;
      }
      case Tok::kDuration:
        return Error(t, fmt::format("unexpected duration \"{}\"", t.text));
      case Tok::kString:
        Take();
        n->kind = Node::Kind::kString;
        n->type = ValueType::kString;
        n->text = t.text;
        return n;
      case Tok::kLParen: {
        Take();
        QCLOUD_ASSIGN_OR_RETURN(NodePtr inner, Expr(0));
        QCLOUD_RETURN_IF_ERROR(Expect(Tok::kRParen, "\")\""));
        n->kind = Node::Kind::kParen;
        n->type = inner->type;
        n->args = {inner};
        return n;
      }
      case Tok::kLBrace:
        return Selector(n, "");
      case Tok::kIdent:
        break;
      default:
        return Error(t, fmt::format("unexpected {}", Describe(t)));
    }
    Take();
    const std::string lower = AsciiLower(t.text);
    if (lower == "inf" || lower == "nan") {
      n->number = lower == "inf" ? HUGE_VAL : std::nan("");
      return n;
    }
    if (IsAggregation(lower) && (Peek().kind == Tok::kLParen || Kw(Peek(), "by") || Kw(Peek(), "without"))) {
      return Aggregation(n, t);
    }
    if (Peek().kind == Tok::kLParen) return Call(n, t);
    if (t.text.find(':') == std::string::npos && !ValidMetricName(t.text)) return Error(t, "bad metric name");
    // Prometheus's keywords are no metric names ({__name__="on"} selects one).
    // The modifiers in any case (Prometheus's grammar has no metric named
    // BOOL); by, and, or, unless as written in lower case only, as before:
    // printed back they would read as the operator.
    for (const char* kw : {"without", "offset", "bool", "on", "ignoring", "group_left", "group_right"}) {
      if (lower == kw) return Error(t, fmt::format("unexpected \"{}\"", t.text));
    }
    for (const char* kw : {"by", "and", "or", "unless", "atan2"}) {
      if (t.text == kw) return Error(t, fmt::format("unexpected \"{}\"", t.text));
    }
    return Selector(n, t.text);
  }

  Result<NodePtr> Selector(NodePtr n, const std::string& metric) {
    n->kind = Node::Kind::kSelector;
    n->type = ValueType::kVector;
    n->metric = metric;
    if (!metric.empty()) n->matchers.push_back(Matcher::Equal(std::string(kMetricNameLabel), metric));
    if (Peek().kind == Tok::kLBrace) {
      const Token open = Take();
      while (Peek().kind != Tok::kRBrace) {
        const Token name = Take();
        if (name.kind != Tok::kIdent || !ValidLabelName(name.text)) {
          return Error(name, fmt::format("expected a label name, got {}", Describe(name)));
        }
        const Token op = Take();
        MatchType type;
        switch (op.kind) {
          case Tok::kAssign: type = MatchType::kEqual; break;
          case Tok::kNeq: type = MatchType::kNotEqual; break;
          case Tok::kRegex: type = MatchType::kRegex; break;
          case Tok::kNotRegex: type = MatchType::kNotRegex; break;
          default: return Error(op, fmt::format("expected a label matching operator, got {}", Describe(op)));
        }
        const Token value = Take();
        if (value.kind != Tok::kString) return Error(value, fmt::format("expected a quoted string, got {}", Describe(value)));
        if (name.text == kMetricNameLabel && !metric.empty()) {
          return Error(name, "metric name must not be set twice");
        }
        auto m = Matcher::Make(type, name.text, value.text);
        if (!m.ok()) return Error(value, m.status().message());
        n->matchers.push_back(std::move(m).value());
        if (Peek().kind == Tok::kComma) {
          Take();
        } else if (Peek().kind != Tok::kRBrace) {
          return Error(Peek(), fmt::format("unexpected {} in label matching, expected \",\" or \"}}\"", Item(Peek())));
        }
      }
      Take();
      bool nonempty = false;
      for (const Matcher& m : n->matchers) nonempty = nonempty || !m.Matches("");
      if (!nonempty) return Error(open, "vector selector must contain at least one non-empty matcher");
    }
    return n;
  }

  Result<NodePtr> Call(NodePtr n, const Token& name) {
    const FuncSig* sig = Function(name.text);
    if (sig == nullptr) {
      if (PrometheusFunction(name.text)) return Error(name, fmt::format("function \"{}\" is not supported", name.text));
      return Error(name, fmt::format("unknown function with name \"{}\"", name.text));
    }
    Take();  // (
    n->kind = Node::Kind::kCall;
    n->text = name.text;
    n->type = sig->ret;
    while (Peek().kind != Tok::kRParen) {
      QCLOUD_ASSIGN_OR_RETURN(NodePtr a, Expr(0));
      n->args.push_back(a);
      if (Peek().kind == Tok::kComma) {
        Take();
      } else if (Peek().kind != Tok::kRParen) {
        return Error(Peek(), fmt::format("expected \",\" or \")\", got {}", Describe(Peek())));
      }
    }
    Take();
    if (n->args.size() != sig->args.size()) {
      return Error(name, fmt::format("expected {} argument(s) in call to \"{}\", got {}", sig->args.size(), name.text,
                                     n->args.size()));
    }
    for (size_t i = 0; i < n->args.size(); ++i) {
      if (n->args[i]->type != sig->args[i]) {
        return Error(name, fmt::format("expected type {} in call to function \"{}\", got {}", TypeName(sig->args[i]),
                                       name.text, TypeName(n->args[i]->type)));
      }
    }
    return n;
  }

  Result<NodePtr> Aggregation(NodePtr n, const Token& op) {
    n->kind = Node::Kind::kAggregate;
    n->type = ValueType::kVector;
    n->text = AsciiLower(op.text);  // keywords are case-insensitive: SUM, Sum
    auto grouping = [&]() -> Status {
      if (Kw(Peek(), "by") || Kw(Peek(), "without")) {
        if (n->grouped) return Error(Peek(), "grouping given twice");
        n->without = Kw(Take(), "without");
        n->grouped = true;
        QCLOUD_ASSIGN_OR_RETURN(n->labels, LabelList());
      }
      return Status::Ok();
    };
    QCLOUD_RETURN_IF_ERROR(grouping());
    if (Peek().kind != Tok::kLParen) {
      return Error(Peek(), fmt::format("unexpected {} in aggregation", Item(Peek())));
    }
    Take();
    if (Peek().kind == Tok::kRParen) return Error(op, "no arguments for aggregate expression provided");
    QCLOUD_ASSIGN_OR_RETURN(NodePtr arg, Expr(0));
    if (Peek().kind == Tok::kComma) return Error(Peek(), fmt::format("\"{}\" takes one argument", op.text));
    QCLOUD_RETURN_IF_ERROR(Expect(Tok::kRParen, "\")\""));
    QCLOUD_RETURN_IF_ERROR(grouping());
    if (arg->type != ValueType::kVector) {
      return Error(op, fmt::format("expected type instant vector in aggregation expression, got {}", TypeName(arg->type)));
    }
    n->args = {arg};
    return n;
  }

  std::vector<Token> toks_;
  size_t i_ = 0;
  int depth_ = 0;
};

std::string ToStringNode(const Node& n) {
  switch (n.kind) {
    case Node::Kind::kNumber: return FormatValue(n.number);
    case Node::Kind::kString: return Quote(n.text);
    case Node::Kind::kParen: return "(" + ToStringNode(*n.args[0]) + ")";
    case Node::Kind::kUnary: return "-" + ToStringNode(*n.args[0]);
    case Node::Kind::kSelector: {
      std::string out = n.metric;
      std::string inner;
      for (const Matcher& m : n.matchers) {
        if (!n.metric.empty() && m.name() == kMetricNameLabel && m.type() == MatchType::kEqual && m.value() == n.metric) continue;
        if (!inner.empty()) inner += ", ";
        inner += m.ToString();
      }
      if (!inner.empty() || out.empty()) out += "{" + inner + "}";
      if (n.range) out += "[" + FormatDuration(n.range) + "]";
      if (n.offset) out += " offset " + (n.offset < 0 ? "-" + FormatDuration(-n.offset) : FormatDuration(n.offset));
      return out;
    }
    case Node::Kind::kCall: {
      std::string out = n.text + "(";
      for (size_t i = 0; i < n.args.size(); ++i) out += (i ? ", " : "") + ToStringNode(*n.args[i]);
      return out + ")";
    }
    case Node::Kind::kAggregate: {
      std::string out = n.text;
      if (n.grouped) out += fmt::format(" {} ({})", n.without ? "without" : "by", fmt::join(n.labels, ", "));
      return out + " (" + ToStringNode(*n.args[0]) + ")";
    }
    case Node::Kind::kBinary: {
      std::string op = n.text;
      if (n.bool_modifier) op += " bool";
      if (n.on || n.ignoring) op += fmt::format(" {} ({})", n.on ? "on" : "ignoring", fmt::join(n.labels, ", "));
      return ToStringNode(*n.args[0]) + " " + op + " " + ToStringNode(*n.args[1]);
    }
  }
  return "";
}

// ---- evaluation ----

bool IsStale(double v) { return std::bit_cast<uint64_t>(v) == kStaleNaNBits; }

struct Elem {
  Labels labels;
  double v = 0;
};

struct Value {
  ValueType type = ValueType::kVector;
  double scalar = 0;
  std::vector<Elem> vec;
  // A range selector's window per series; the labels are the prefetched
  // series' (Evaluator::data_), which outlive every step's Value.
  std::vector<std::pair<const Labels*, std::vector<Sample>>> mat;
};

bool IsOddInteger(double y) {
  if (std::fabs(y) >= 0x1p53) return false;  // every double this large is even
  double whole = 0;
  return std::modf(y, &whole) == 0 && std::fmod(whole, 2) != 0;
}

// x^y as Go's math.Pow computes it, so that PromQL's ^ gives Prometheus's
// digits: the special cases of IEEE pow, then x^frac(y) through exp and
// log and x^int(y) by squaring the mantissa, exponents kept apart. The C
// library's pow is correctly rounded and differs in the last bit at times
// (6 ^ -2.5).
double GoPow(double x, double y) {
  if (y == 0 || x == 1) return 1;
  if (y == 1) return x;
  if (std::isnan(x) || std::isnan(y)) return NAN;
  if (x == 0) {
    if (y < 0) return std::signbit(x) && IsOddInteger(y) ? -HUGE_VAL : HUGE_VAL;
    return std::signbit(x) && IsOddInteger(y) ? x : 0.0;
  }
  if (std::isinf(y)) {
    if (x == -1) return 1;
    return (std::fabs(x) < 1) == (y > 0) ? 0.0 : HUGE_VAL;
  }
  if (std::isinf(x)) {
    if (x < 0) return GoPow(1 / x, -y);  // (-0)^-y
    return y < 0 ? 0.0 : HUGE_VAL;
  }
  if (y == 0.5) return std::sqrt(x);
  if (y == -0.5) return 1 / std::sqrt(x);
  double yi = 0;
  double yf = std::modf(std::fabs(y), &yi);
  if (yf != 0 && x < 0) return NAN;
  if (yi >= 0x1p63) {
    // An even integer so large that only -1 stays finite and non-zero.
    if (x == -1) return 1;
    return (std::fabs(x) < 1) == (y > 0) ? 0.0 : HUGE_VAL;
  }
  double a1 = 1;  // the answer is a1 * 2^ae
  int64_t ae = 0;
  if (yf != 0) {
    if (yf > 0.5) {
      yf -= 1;
      yi += 1;
    }
    a1 = std::exp(yf * std::log(x));
  }
  int xe_int = 0;
  double x1 = std::frexp(x, &xe_int);
  int64_t xe = xe_int;
  for (auto i = static_cast<int64_t>(yi); i != 0; i >>= 1) {
    if (xe < -(int64_t{1} << 12) || (int64_t{1} << 12) < xe) {
      ae += xe;  // overflow or underflow for sure: ldexp says which
      break;
    }
    if ((i & 1) == 1) {
      a1 *= x1;
      ae += xe;
    }
    x1 *= x1;
    xe <<= 1;
    if (x1 < 0.5) {
      x1 += x1;
      --xe;
    }
  }
  if (y < 0) {
    a1 = 1 / a1;
    ae = -ae;
  }
  return std::ldexp(a1, static_cast<int>(std::clamp<int64_t>(ae, -100000, 100000)));
}

double Arith(const std::string& op, double a, double b) {
  if (op == "+") return a + b;
  if (op == "-") return a - b;
  if (op == "*") return a * b;
  if (op == "/") return a / b;
  if (op == "%") return std::fmod(a, b);
  if (op == "^") return GoPow(a, b);
  if (op == "==") return a == b;
  if (op == "!=") return a != b;
  if (op == ">") return a > b;
  if (op == "<") return a < b;
  if (op == ">=") return a >= b;
  if (op == "<=") return a <= b;
  return NAN;
}

// Prometheus's extrapolatedRate (promql/functions.go, 2.42).
std::optional<double> ExtrapolatedRate(const std::vector<Sample>& s, int64_t range_start, int64_t range_end,
                                       int64_t range_ms, bool counter, bool rate) {
  if (s.size() < 2) return std::nullopt;
  double result = s.back().v - s.front().v;
  if (counter) {
    double last = 0;
    for (const Sample& x : s) {
      if (x.v < last) result += last;
      last = x.v;
    }
  }
  double to_start = static_cast<double>(s.front().t - range_start) / 1000;
  const double to_end = static_cast<double>(range_end - s.back().t) / 1000;
  const double sampled = static_cast<double>(s.back().t - s.front().t) / 1000;
  const double avg_step = sampled / static_cast<double>(s.size() - 1);
  if (counter && result > 0 && s.front().v >= 0) {
    const double to_zero = sampled * (s.front().v / result);
    if (to_zero < to_start) to_start = to_zero;
  }
  const double threshold = avg_step * 1.1;
  double interval = sampled;
  interval += to_start < threshold ? to_start : avg_step / 2;
  interval += to_end < threshold ? to_end : avg_step / 2;
  // In Prometheus's order: one factor, divided by the range's seconds
  // (Go's Duration.Seconds()) before it multiplies the result. Dividing
  // the product instead differs in the last bit now and then.
  double factor = interval / sampled;
  if (rate) {
    factor /= static_cast<double>(range_ms / 1000) + static_cast<double>((range_ms % 1000) * 1000000) / 1e9;
  }
  return result * factor;
}

// sum += inc, with the rounding error kept in c (Neumaier's variant of
// Kahan's summation: the larger operand's low bits are the ones lost).
void KahanAdd(double inc, double& sum, double& c) {
  const double t = sum + inc;
  if (std::fabs(sum) >= std::fabs(inc)) {
    c += (sum - t) + inc;
  } else {
    c += (inc - t) + sum;
  }
  sum = t;
}

std::optional<double> OverTime(const std::string& f, const std::vector<Sample>& s) {
  if (s.empty()) return std::nullopt;
  if (f == "count_over_time") return static_cast<double>(s.size());
  if (f == "last_over_time") return s.back().v;
  // Both with Neumaier's compensated sum, as Prometheus 2.42's are; a
  // plain sum differs in the last digits.
  if (f == "sum_over_time") {
    double sum = 0, c = 0;
    for (const Sample& x : s) KahanAdd(x.v, sum, c);
    return std::isinf(sum) ? sum : sum + c;
  }
  if (f == "avg_over_time") {
    double mean = 0, count = 0, c = 0;
    for (const Sample& x : s) {
      count++;
      if (std::isinf(mean)) {
        if (std::isinf(x.v) && (mean > 0) == (x.v > 0)) continue;
        if (!std::isinf(x.v) && !std::isnan(x.v)) continue;
      }
      KahanAdd(x.v / count - mean / count, mean, c);
    }
    return std::isinf(mean) ? mean : mean + c;
  }
  double best = s.front().v;
  for (const Sample& x : s) {
    if (f == "max_over_time" ? (x.v > best || std::isnan(best)) : (x.v < best || std::isnan(best))) best = x.v;
  }
  return best;
}

// The key of a label set for matching and grouping.
std::string Key(const Labels& l) {
  std::string k;
  for (LabelView p : l.pairs()) {
    k += p.name;
    k += '\xff';
    k += p.value;
    k += '\xff';
  }
  return k;
}

// A label set as Go's labels.Labels.String() writes it in error messages:
// {__name__="up", job="api"}.
std::string GoLabelsString(const Labels& l) {
  std::string out = "{";
  for (LabelView p : l.pairs()) {
    if (out.size() > 1) out += ", ";
    out += p.name;
    out += '=';
    out += Quote(p.value);
  }
  return out + "}";
}

// Prometheus's ContainsSameLabelset: by hash, labels compared where hashes meet.
Status CheckDuplicates(const std::vector<Elem>& vec) {
  if (vec.size() < 2) return Status::Ok();
  std::vector<std::pair<uint64_t, size_t>> h;
  h.reserve(vec.size());
  for (size_t i = 0; i < vec.size(); ++i) h.emplace_back(vec[i].labels.Hash(), i);
  std::sort(h.begin(), h.end());
  for (size_t i = 1; i < h.size(); ++i) {
    for (size_t j = i; j > 0 && h[j - 1].first == h[i].first; --j) {
      if (vec[h[j - 1].second].labels == vec[h[i].second].labels) {
        return Status(Errc::kAborted, "vector cannot contain metrics with the same labelset");
      }
    }
  }
  return Status::Ok();
}

class Evaluator {
 public:
  Evaluator(Tsdb& db, const QueryOptions& o) : db_(db), o_(o) {}

  // Loads every selector's series over [start, end] (ms).
  Status Prefetch(const Node& n, int64_t start, int64_t end) {
    if (n.kind == Node::Kind::kSelector) {
      const int64_t back = n.range ? n.range : o_.lookback.count();
      QCLOUD_ASSIGN_OR_RETURN(auto data, db_.Select(n.matchers, start - n.offset - back, end - n.offset));
      for (const auto& s : data) loaded_ += s.samples.size();
      if (loaded_ > o_.max_samples) {
        return Status(Errc::kResourceExhausted,
                      fmt::format("query processing would load too many samples into memory (over {})", o_.max_samples));
      }
      data_[&n] = std::move(data);
    }
    for (const auto& a : n.args) QCLOUD_RETURN_IF_ERROR(Prefetch(*a, start, end));
    return Status::Ok();
  }

  Result<Value> Eval(const Node& n, int64_t t) {
    Value out;
    out.type = n.type;
    switch (n.kind) {
      case Node::Kind::kNumber:
        out.scalar = n.number;
        return out;
      case Node::Kind::kString:
        return InvalidArgument("string values are not supported here");
      case Node::Kind::kParen:
        return Eval(*n.args[0], t);
      case Node::Kind::kSelector: {
        const int64_t ref = t - n.offset;
        for (const SeriesSamples& s : data_[&n]) {
          auto hi = std::upper_bound(s.samples.begin(), s.samples.end(), ref,
                                     [](int64_t x, const Sample& y) { return x < y.t; });
          if (n.range) {
            auto lo = std::lower_bound(s.samples.begin(), s.samples.end(), ref - n.range,
                                       [](const Sample& y, int64_t x) { return y.t < x; });
            std::vector<Sample> pts;
            for (auto it = lo; it != hi; ++it) {
              if (!IsStale(it->v)) pts.push_back(*it);
            }
            if (!pts.empty()) out.mat.emplace_back(&s.labels, std::move(pts));
          } else {
            if (hi == s.samples.begin()) continue;
            const Sample& last = *(hi - 1);
            if (last.t < ref - o_.lookback.count() || IsStale(last.v)) continue;
            out.vec.push_back({s.labels, last.v});
          }
        }
        return out;
      }
      case Node::Kind::kUnary: {
        QCLOUD_ASSIGN_OR_RETURN(Value v, Eval(*n.args[0], t));
        v.scalar = -v.scalar;
        for (Elem& e : v.vec) {
          e.v = -e.v;
          e.labels = e.labels.Without({}, true);
        }
        QCLOUD_RETURN_IF_ERROR(CheckDuplicates(v.vec));
        return v;
      }
      case Node::Kind::kCall: {
        // As Prometheus checks a function's result: with the metric names
        // dropped, two series may have become one label set. (Prometheus
        // checks a range query's whole matrix; this checks each step.)
        QCLOUD_ASSIGN_OR_RETURN(Value v, Call(n, t));
        QCLOUD_RETURN_IF_ERROR(CheckDuplicates(v.vec));
        return v;
      }
      case Node::Kind::kAggregate:
        return Aggregate(n, t);
      case Node::Kind::kBinary: {
        // Prometheus checks every operation's result, not the query's only:
        // 2 * {__name__=~"a|b"} inside a sum is an error too.
        QCLOUD_ASSIGN_OR_RETURN(Value v, Binary(n, t));
        QCLOUD_RETURN_IF_ERROR(CheckDuplicates(v.vec));
        return v;
      }
    }
    return out;
  }

 private:
  // A prefetched series' labels without the metric name: made once per
  // query, not once per step.
  const Labels& WithoutName(const Labels& labels) {
    auto [it, fresh] = without_name_.try_emplace(&labels);
    if (fresh) it->second = labels.Without({}, true);
    return it->second;
  }

  Result<Value> Call(const Node& n, int64_t t) {
    Value out;
    out.type = n.type;
    const std::string& f = n.text;
    if (f == "time") {
      out.scalar = static_cast<double>(t) / 1000;
      return out;
    }
    QCLOUD_ASSIGN_OR_RETURN(Value arg, Eval(*n.args[0], t));
    if (f == "vector") {
      out.vec.push_back({Labels(), arg.scalar});
      return out;
    }
    if (f == "scalar") {
      out.scalar = arg.vec.size() == 1 ? arg.vec[0].v : NAN;
      return out;
    }
    if (f == "abs") {
      for (Elem& e : arg.vec) out.vec.push_back({e.labels.Without({}, true), std::fabs(e.v)});
      return out;
    }
    const Node& sel = *n.args[0];
    const int64_t end = t - sel.offset;
    for (auto& [labels, samples] : arg.mat) {
      std::optional<double> v;
      if (f == "rate" || f == "increase" || f == "delta") {
        v = ExtrapolatedRate(samples, end - sel.range, end, sel.range, f != "delta", f == "rate");
      } else if (f == "irate") {
        if (samples.size() >= 2) {
          const Sample& last = samples.back();
          const Sample& prev = samples[samples.size() - 2];
          const double dv = last.v < prev.v ? last.v : last.v - prev.v;  // a reset: from zero
          const int64_t dt = last.t - prev.t;
          if (dt > 0) v = dv / (static_cast<double>(dt) / 1000);
        }
      } else {
        v = OverTime(f, samples);
      }
      if (!v) continue;
      out.vec.push_back({f == "last_over_time" ? *labels : WithoutName(*labels), *v});
    }
    return out;
  }

  Result<Value> Aggregate(const Node& n, int64_t t) {
    QCLOUD_ASSIGN_OR_RETURN(Value arg, Eval(*n.args[0], t));
    struct Group {
      Labels labels;
      double value = 0, mean = 0, count = 0;
    };
    std::vector<Group> groups;
    std::unordered_map<std::string, size_t> index;
    const std::string& op = n.text;
    for (const Elem& e : arg.vec) {
      Labels key = n.without ? e.labels.Without(n.labels, true) : e.labels.Only(n.labels);
      if (!n.grouped) key = Labels();
      auto [it, fresh] = index.try_emplace(Key(key), groups.size());
      if (fresh) {
        groups.push_back({std::move(key), e.v, e.v, 1});
        continue;
      }
      Group& g = groups[it->second];
      g.count++;
      if (op == "sum") {
        g.value += e.v;
      } else if (op == "avg") {
        if (std::isinf(g.mean)) {
          if (std::isinf(e.v) && (g.mean > 0) == (e.v > 0)) continue;
          if (!std::isinf(e.v) && !std::isnan(e.v)) continue;
        }
        g.mean += e.v / g.count - g.mean / g.count;
      } else if (op == "max") {
        if (g.value < e.v || std::isnan(g.value)) g.value = e.v;
      } else if (op == "min") {
        if (g.value > e.v || std::isnan(g.value)) g.value = e.v;
      }
    }
    Value out;
    out.type = ValueType::kVector;
    for (Group& g : groups) {
      double v = g.value;
      if (op == "count") v = g.count;
      if (op == "avg") v = g.mean;
      out.vec.push_back({std::move(g.labels), v});
    }
    return out;
  }

  Result<Value> Binary(const Node& n, int64_t t) {
    QCLOUD_ASSIGN_OR_RETURN(Value l, Eval(*n.args[0], t));
    QCLOUD_ASSIGN_OR_RETURN(Value r, Eval(*n.args[1], t));
    const std::string& op = n.text;
    const bool cmp = IsComparison(op);
    Value out;
    out.type = n.type;
    if (l.type == ValueType::kScalar && r.type == ValueType::kScalar) {
      out.scalar = Arith(op, l.scalar, r.scalar);
      return out;
    }
    // The name goes with arithmetic and with bool; a filter keeps it.
    const bool drop_name = !cmp || n.bool_modifier;
    auto apply = [&](const Labels& labels, double lv, double rv, double keep) -> std::optional<Elem> {
      const double v = Arith(op, lv, rv);
      if (cmp && !n.bool_modifier) {
        if (v == 0) return std::nullopt;
        return Elem{labels, keep};
      }
      return Elem{drop_name ? labels.Without({}, true) : labels, v};
    };
    if (l.type == ValueType::kVector && r.type == ValueType::kScalar) {
      for (const Elem& e : l.vec) {
        if (auto x = apply(e.labels, e.v, r.scalar, e.v)) out.vec.push_back(std::move(*x));
      }
      return out;
    }
    if (l.type == ValueType::kScalar) {
      for (const Elem& e : r.vec) {
        if (auto x = apply(e.labels, l.scalar, e.v, e.v)) out.vec.push_back(std::move(*x));
      }
      return out;
    }
    // Vector to vector, one to one. As Prometheus: nothing can match when
    // a side is empty, so the other side's duplicates are no error then.
    if (l.vec.empty() || r.vec.empty()) return out;
    auto match_labels = [&](const Labels& x) { return n.on ? x.Only(n.labels) : x.Without(n.labels, true); };
    std::unordered_map<std::string, const Elem*> right;
    for (const Elem& e : r.vec) {
      auto [it, fresh] = right.emplace(Key(match_labels(e.labels)), &e);
      if (!fresh) {
        return Status(Errc::kAborted,
                      fmt::format("found duplicate series for the match group {} on the right hand-side of the "
                                  "operation: [{}, {}];many-to-many matching not allowed: matching labels must be "
                                  "unique on one side",
                                  GoLabelsString(match_labels(e.labels)), GoLabelsString(e.labels),
                                  GoLabelsString(it->second->labels)));
      }
    }
    std::unordered_map<std::string, bool> seen_left;
    for (const Elem& e : l.vec) {
      std::string sig = Key(match_labels(e.labels));
      auto it = right.find(sig);
      if (it == right.end()) continue;
      Labels labels = e.labels;
      if (n.on) {
        labels = labels.Only(n.labels);
      } else if (n.ignoring) {
        labels = labels.Without(n.labels, false);
      }
      auto x = apply(labels, e.v, it->second->v, e.v);
      if (!x) continue;  // filtered out: not a match, as Prometheus counts them
      if (!seen_left.emplace(std::move(sig), true).second) {
        return Status(Errc::kAborted,
                      "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)");
      }
      out.vec.push_back(std::move(*x));
    }
    return out;
  }

  Tsdb& db_;
  const QueryOptions& o_;
  std::unordered_map<const Node*, std::vector<SeriesSamples>> data_;
  std::unordered_map<const Labels*, Labels> without_name_;  // WithoutName()
  size_t loaded_ = 0;
};

}  // namespace

// ---- public ----

Result<Expr> Expr::Parse(std::string_view query) {
  if (query.size() > kMaxQueryBytes) return InvalidArgument("query longer than 64 KiB");
  Lexer lexer(query);
  QCLOUD_ASSIGN_OR_RETURN(std::vector<Token> toks, lexer.All());
  Parser parser(std::move(toks));
  QCLOUD_ASSIGN_OR_RETURN(NodePtr root, parser.Parse());
  Expr e;
  e.root_ = std::move(root);
  return e;
}

ValueType Expr::type() const noexcept { return root_->type; }

Result<std::vector<Matcher>> Expr::SelectorMatchers() const {
  const Node* n = root_.get();
  while (n->kind == Node::Kind::kParen) n = n->args[0].get();
  if (n->kind != Node::Kind::kSelector || n->range != 0 || n->offset != 0) {
    return InvalidArgument("expected a vector selector");
  }
  return n->matchers;
}
std::string Expr::ToString() const { return ToStringNode(*root_); }

Result<QueryResult> QueryEngine::Instant(std::string_view query, int64_t t) {
  QCLOUD_ASSIGN_OR_RETURN(Expr e, Expr::Parse(query));
  return Instant(e, t);
}

Result<QueryResult> QueryEngine::Range(std::string_view query, int64_t start, int64_t end, int64_t step) {
  QCLOUD_ASSIGN_OR_RETURN(Expr e, Expr::Parse(query));
  return Range(e, start, end, step);
}

Result<QueryResult> QueryEngine::Instant(const Expr& expr, int64_t t) {
  if (t < -kMaxTimestamp || t > kMaxTimestamp) return InvalidArgument("query time out of range");
  if (expr.type() == ValueType::kString) {  // a literal, maybe in parentheses
    const detail::Node* n = expr.root_.get();
    while (n->kind == detail::Node::Kind::kParen) n = n->args[0].get();
    QueryResult r;
    r.type = ValueType::kString;
    r.string = n->text;
    r.series.push_back({Labels(), {{t, 0}}});
    return r;
  }
  Evaluator ev(db_, options_);
  QCLOUD_RETURN_IF_ERROR(ev.Prefetch(*expr.root_, t, t));
  QCLOUD_ASSIGN_OR_RETURN(Value v, ev.Eval(*expr.root_, t));
  QueryResult r;
  r.type = v.type;
  switch (v.type) {
    case ValueType::kScalar:
      r.series.push_back({Labels(), {{t, v.scalar}}});
      break;
    case ValueType::kVector:
      QCLOUD_RETURN_IF_ERROR(CheckDuplicates(v.vec));
      for (Elem& e : v.vec) r.series.push_back({std::move(e.labels), {{t, e.v}}});
      break;
    case ValueType::kMatrix:
      for (auto& [labels, samples] : v.mat) {
        SeriesPoints sp{*labels, {}};
        for (const Sample& s : samples) sp.points.push_back({s.t, s.v});
        r.series.push_back(std::move(sp));
      }
      break;
    case ValueType::kString:
      return InvalidArgument("string results are not supported");
  }
  std::sort(r.series.begin(), r.series.end(), [](const SeriesPoints& a, const SeriesPoints& b) { return a.labels < b.labels; });
  return r;
}

Result<QueryResult> QueryEngine::Range(const Expr& expr, int64_t start, int64_t end, int64_t step) {
  if (step <= 0) {
    return InvalidArgument(
        "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive "
        "integer");
  }
  if (end < start) return InvalidArgument("invalid parameter \"end\": end timestamp must not be before start time");
  if (start < -kMaxTimestamp || end > kMaxTimestamp) return InvalidArgument("query time out of range");
  if (step > kMaxDurationMs) return InvalidArgument("invalid parameter \"step\": step out of range");
  // Prometheus bounds the steps between start and end, so 11,001 points.
  // (Unsigned: end - start of times 2^62 apart fits in no int64.)
  if ((static_cast<uint64_t>(end) - static_cast<uint64_t>(start)) / static_cast<uint64_t>(step) > kMaxSteps) {
    return InvalidArgument(
        "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)");
  }
  if (expr.type() != ValueType::kScalar && expr.type() != ValueType::kVector) {
    return InvalidArgument(fmt::format("invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                                       TypeName(expr.type())));
  }
  Evaluator ev(db_, options_);
  QCLOUD_RETURN_IF_ERROR(ev.Prefetch(*expr.root_, start, end));
  // By label set, so in the order the result is sorted in.
  std::map<Labels, std::vector<Point>> series;
  for (int64_t t = start; t <= end; t += step) {
    QCLOUD_ASSIGN_OR_RETURN(Value v, ev.Eval(*expr.root_, t));
    if (v.type == ValueType::kScalar) {
      series[Labels()].push_back({t, v.scalar});
      continue;
    }
    QCLOUD_RETURN_IF_ERROR(CheckDuplicates(v.vec));
    for (Elem& e : v.vec) {
      auto it = series.find(e.labels);
      if (it == series.end()) it = series.emplace(std::move(e.labels), std::vector<Point>()).first;
      it->second.push_back({t, e.v});
    }
  }
  QueryResult r;
  r.type = ValueType::kMatrix;
  r.series.reserve(series.size());
  for (auto& [labels, points] : series) r.series.push_back({labels, std::move(points)});
  return r;
}

namespace {

// v (finite, not zero) as its shortest round-trip decimal digits d1d2...dn
// and the decimal point's place: |v| = 0.d1d2...dn x 10^point. Go's
// strconv and std::to_chars pick the same digits (the shortest string
// that reads back as v, the closest one when several are as short).
struct Digits {
  std::string digits;
  int point = 0;
  bool negative = false;
};

Digits ShortestDigits(double v) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string_view s(buf, static_cast<size_t>(r.ptr - buf));
  Digits d;
  if (!s.empty() && s.front() == '-') {
    d.negative = true;
    s.remove_prefix(1);
  }
  const size_t e = s.find('e');
  for (char c : s.substr(0, e)) {
    if (c != '.') d.digits += c;
  }
  int exp = 0;
  std::from_chars(s.data() + e + 1 + (s[e + 1] == '+' ? 1 : 0), s.data() + s.size(), exp);
  d.point = exp + 1;
  return d;
}

// Go's 'e' layout: d.ddde+XX, two exponent digits at least.
std::string LayoutExp(const Digits& d) {
  std::string out = d.negative ? "-" : "";
  out += d.digits[0];
  if (d.digits.size() > 1) out += "." + d.digits.substr(1);
  const int exp = d.point - 1;
  out += exp < 0 ? "e-" : "e+";
  const int a = exp < 0 ? -exp : exp;
  if (a < 10) out += '0';
  out += std::to_string(a);
  return out;
}

// Go's 'f' layout of the shortest digits: zeros pad out to the point
// ("1152921504606847000" for 2^60, not its 19 exact digits).
std::string LayoutFixed(const Digits& d) {
  std::string out = d.negative ? "-" : "";
  const int n = static_cast<int>(d.digits.size());
  if (d.point <= 0) {
    out += "0." + std::string(static_cast<size_t>(-d.point), '0') + d.digits;
  } else if (d.point >= n) {
    out += d.digits + std::string(static_cast<size_t>(d.point - n), '0');
  } else {
    out += d.digits.substr(0, static_cast<size_t>(d.point)) + "." + d.digits.substr(static_cast<size_t>(d.point));
  }
  return out;
}

}  // namespace

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == 0) return std::signbit(v) ? "-0" : "0";
  const double a = std::fabs(v);
  const Digits d = ShortestDigits(v);
  return a < 1e-6 || a >= 1e21 ? LayoutExp(d) : LayoutFixed(d);
}

std::string FormatScalarValue(double v) {
  if (std::isnan(v) || std::isinf(v) || v == 0) return FormatValue(v);
  return LayoutFixed(ShortestDigits(v));
}

std::string FormatGoFloat(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == 0) return std::signbit(v) ? "-0" : "0";
  const Digits d = ShortestDigits(v);
  const int exp = d.point - 1;
  return exp < -4 || exp >= 6 ? LayoutExp(d) : LayoutFixed(d);
}

std::string FormatTime(int64_t ms) {
  const bool negative = ms < 0;
  const uint64_t a = negative ? uint64_t{0} - static_cast<uint64_t>(ms) : static_cast<uint64_t>(ms);
  std::string out = (negative ? "-" : "") + std::to_string(a / 1000);
  if (a % 1000 != 0) {
    std::string frac = fmt::format("{:03}", a % 1000);
    while (frac.back() == '0') frac.pop_back();
    out += "." + frac;
  }
  return out;
}

std::string FormatDuration(int64_t ms) {
  if (ms == 0) return "0s";
  std::string out;
  static constexpr std::pair<int64_t, const char*> kUnits[] = {
      {int64_t{365} * 24 * 3600 * 1000, "y"}, {int64_t{7} * 24 * 3600 * 1000, "w"}, {int64_t{24} * 3600 * 1000, "d"},
      {int64_t{3600} * 1000, "h"}, {60 * 1000, "m"}, {1000, "s"}, {1, "ms"}};
  for (auto [unit, name] : kUnits) {
    if (ms >= unit) {
      out += std::to_string(ms / unit) + name;
      ms %= unit;
    }
  }
  return out;
}

Result<int64_t> ParseDuration(std::string_view s, bool allow_seconds) {
  if (s.empty()) return InvalidArgument("empty duration");
  if (allow_seconds) {
    double sec = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), sec);
    if (ec == std::errc() && p == s.data() + s.size()) {
      if (!std::isfinite(sec) || sec < 0 || sec * 1000 > static_cast<double>(kMaxDurationMs)) {
        return InvalidArgument(fmt::format("bad duration \"{}\"", s));
      }
      return static_cast<int64_t>(std::llround(sec * 1000));
    }
  }
  int64_t total = 0;
  size_t i = 0;
  int last_rank = 100;
  while (i < s.size()) {
    size_t d = i;
    while (d < s.size() && Digit(s[d])) ++d;
    if (d == i || d - i > 15) return InvalidArgument(fmt::format("bad duration \"{}\"", s));
    int64_t n = 0;
    std::from_chars(s.data() + i, s.data() + d, n);
    size_t u = d;
    while (u < s.size() && s[u] >= 'a' && s[u] <= 'z') ++u;
    const std::string_view unit = s.substr(d, u - d);
    static constexpr std::pair<std::string_view, int64_t> kUnits[] = {
        {"y", int64_t{365} * 24 * 3600 * 1000}, {"w", int64_t{7} * 24 * 3600 * 1000}, {"d", int64_t{24} * 3600 * 1000},
        {"h", int64_t{3600} * 1000}, {"m", 60 * 1000}, {"s", 1000}, {"ms", 1}};
    int rank = -1;
    for (int k = 0; k < 7; ++k) {
      if (kUnits[k].first == unit) rank = k;
    }
    // Units from largest to smallest, each once (Prometheus's rule).
    if (rank < 0 || (last_rank != 100 && rank <= last_rank)) return InvalidArgument(fmt::format("bad duration \"{}\"", s));
    last_rank = rank;
    if (n > INT64_MAX / kUnits[rank].second || total > INT64_MAX - n * kUnits[rank].second) {
      return InvalidArgument(fmt::format("duration \"{}\" out of range", s));
    }
    total += n * kUnits[rank].second;
    i = u;
  }
  if (total > kMaxDurationMs) return InvalidArgument(fmt::format("duration \"{}\" out of range", s));
  return total;
}

}  // namespace qcloud::monitor
