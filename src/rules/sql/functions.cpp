// The function lookup, what the bodies share, and the bodies about the message, numbers, types
// and collections. Each body follows the argument tables of AWS's "Functions" page: a wrong type
// or a conversion that fails is Undefined, never an error.
#include "rules/sql/functions.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include <boost/json/array.hpp>
#include <boost/json/error.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/parse_options.hpp>
#include <boost/json/string_view.hpp>

namespace nimbus::rules::sql {
namespace {

namespace json = boost::json;

constexpr auto v1 = sql_version::v2015_10_08;
constexpr auto v2 = sql_version::v2016_03_23;
constexpr std::int64_t int_min = std::numeric_limits<std::int64_t>::min();

json::string_view key_of(const json::string& s) {
  return json::string_view(s.data(), s.size());
}

// ---- the message ------------------------------------------------------------------------------

// Basic Ingest's "$aws/rules/<rule-name>/" prefix is not part of what topic() sees.
std::string_view rule_topic(std::string_view topic) {
  constexpr std::string_view basic_ingest = "$aws/rules/";
  if (!topic.starts_with(basic_ingest)) return topic;
  const std::size_t slash = topic.find('/', basic_ingest.size());
  return slash == std::string_view::npos ? std::string_view() : topic.substr(slash + 1);
}

value fn_topic(eval_state& state, const call_args& call) {
  const std::string_view topic = rule_topic(state.context.topic);
  if (call.values.empty()) return string_result(topic, state);
  const auto wanted = to_int(call.values[0]);
  if (!wanted || *wanted < 1) return {};
  std::int64_t level = 1;
  std::size_t start = 0;
  for (;;) {
    const std::size_t slash = topic.find('/', start);
    if (level == *wanted)
      return string_result(
          topic.substr(start, slash == std::string_view::npos ? slash : slash - start), state);
    if (slash == std::string_view::npos) return {};
    start = slash + 1;
    ++level;
  }
}

value fn_clientid(eval_state& state, const call_args&) {
  return string_result(state.context.client_id, state);
}

value fn_principal(eval_state& state, const call_args&) {
  return string_result(state.context.principal, state);
}

value fn_accountid(eval_state& state, const call_args&) {
  return string_result(state.context.account_id, state);
}

value fn_timestamp(eval_state& state, const call_args&) {
  return make_int(state.context.timestamp_ms);
}

value fn_traceid(eval_state& state, const call_args&) {
  if (state.context.trace_id.empty()) return {};  // not an MQTT message: AWS says Undefined
  return string_result(state.context.trace_id, state);
}

value fn_sql_version(eval_state& state, const call_args&) {
  return string_result(version_name(state.version), state);
}

std::mt19937_64& random_engine() {
  thread_local std::mt19937_64 engine{std::random_device{}()};
  return engine;
}

value fn_newuuid(eval_state& state, const call_args&) {
  std::uint64_t high = random_engine()();
  std::uint64_t low = random_engine()();
  high = (high & ~0xF000ull) | 0x4000ull;                       // version 4: random
  low = (low & 0x3FFFFFFFFFFFFFFFull) | 0x8000000000000000ull;  // the RFC 4122 variant
  static constexpr char hex[] = "0123456789abcdef";
  char text[36];
  std::size_t out = 0;
  for (int digit = 0; digit < 32; ++digit) {
    if (digit == 8 || digit == 12 || digit == 16 || digit == 20) text[out++] = '-';
    const std::uint64_t half = digit < 16 ? high : low;
    const int shift = 60 - 4 * (digit % 16);
    text[out++] = hex[(half >> shift) & 0xF];
  }
  return string_result(std::string_view(text, sizeof text), state);
}

value fn_rand(eval_state&, const call_args&) {
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  return value(json::value(uniform(random_engine())));  // a Decimal even at 0.0
}

value fn_get_thing_shadow(eval_state& state, const call_args& call) {
  if (!state.context.thing_shadow) return {};
  for (const value& argument : call.values)
    if (argument.type() != sql_type::string) return {};
  const std::string_view thing = view_of(call.values[0].json().get_string());
  const std::string_view shadow_name =
      call.values.size() == 3 ? view_of(call.values[1].json().get_string()) : std::string_view();
  if (thing.empty()) return {};
  // The last argument is the role AWS assumes to read the shadow; there is no role to assume here.
  const auto document = state.context.thing_shadow(thing, shadow_name);
  if (!document) return {};
  return parse_json_value(*document, state);
}

// ---- numbers ----------------------------------------------------------------------------------

// The functions AWS computes in double precision: Int, Decimal or numeric String in, a Decimal
// out, Undefined for results that are not real numbers (acos(2), ln(0)).
value double_math(const eval_state& state, const call_args& call, double (*operation)(double)) {
  const auto n = to_number(call.values[0]);
  if (!n) return {};
  return make_decimal(operation(n->as_double()), state.whole_as_int());
}

value fn_acos(eval_state& s, const call_args& c) {
  return double_math(s, c, [](double x) { return std::acos(x); });
}
value fn_asin(eval_state& s, const call_args& c) {
  return double_math(s, c, [](double x) { return std::asin(x); });
}
value fn_atan(eval_state& s, const call_args& c) {
  return double_math(s, c, [](double x) { return std::atan(x); });
}
value fn_cos(eval_state& s, const call_args& c) {
  return double_math(s, c, [](double x) { return std::cos(x); });
}
value fn_cosh(eval_state& s, const call_args& c) {
  return double_math(s, c, [](double x) { return std::cosh(x); });
}
value fn_exp(eval_state& s, const call_args& c) {
  return double_math(s, c, [](double x) { return std::exp(x); });
}
value fn_ln(eval_state& s, const call_args& c) {
  return double_math(s, c, [](double x) { return std::log(x); });
}
value fn_log(eval_state& s, const call_args& c) {
  return double_math(s, c, [](double x) { return std::log10(x); });
}
value fn_sin(eval_state& s, const call_args& c) {
  return double_math(s, c, [](double x) { return std::sin(x); });
}
value fn_sinh(eval_state& s, const call_args& c) {
  return double_math(s, c, [](double x) { return std::sinh(x); });
}
value fn_sqrt(eval_state& s, const call_args& c) {
  return double_math(s, c, [](double x) { return std::sqrt(x); });
}
value fn_tan(eval_state& s, const call_args& c) {
  return double_math(s, c, [](double x) { return std::tan(x); });
}
value fn_tanh(eval_state& s, const call_args& c) {
  return double_math(s, c, [](double x) { return std::tanh(x); });
}

value fn_atan2(eval_state& state, const call_args& call) {
  const auto y = to_number(call.values[0]);
  const auto x = to_number(call.values[1]);
  if (!y || !x) return {};
  return make_decimal(std::atan2(y->as_double(), x->as_double()), state.whole_as_int());
}

value fn_power(eval_state& state, const call_args& call) {
  const auto base = to_number(call.values[0]);
  const auto exponent = to_number(call.values[1]);
  if (!base || !exponent) return {};
  return make_decimal(std::pow(base->as_double(), exponent->as_double()), state.whole_as_int());
}

value fn_abs(eval_state& state, const call_args& call) {
  const auto n = to_number(call.values[0]);
  if (!n) return {};
  if (n->is_int) {
    if (n->int_value == int_min) return make_decimal(-n->as_double(), state.whole_as_int());
    return make_int(n->int_value < 0 ? -n->int_value : n->int_value);
  }
  return make_decimal(std::fabs(n->decimal_value), state.whole_as_int());
}

value fn_sign(eval_state&, const call_args& call) {
  const auto n = to_number(call.values[0]);
  if (!n) return {};
  const double d = n->as_double();
  return make_int(d > 0 ? 1 : (d < 0 ? -1 : 0));
}

// ceil, floor and round answer an Int; past int64 the whole Decimal itself.
value rounded(const eval_state& state, const call_args& call, double (*rounding)(double)) {
  const auto n = to_number(call.values[0]);
  if (!n) return {};
  if (n->is_int) return make_int(n->int_value);
  const double r = rounding(n->decimal_value);
  if (is_whole_int(r)) return make_int(static_cast<std::int64_t>(r));
  return make_decimal(r, state.whole_as_int());
}

value fn_ceil(eval_state& s, const call_args& c) {
  return rounded(s, c, [](double x) { return std::ceil(x); });
}
value fn_floor(eval_state& s, const call_args& c) {
  return rounded(s, c, [](double x) { return std::floor(x); });
}
// AWS: round(1.5) = 2 and round(-1.5) = -2, halves away from zero, which is std::round.
value fn_round(eval_state& s, const call_args& c) {
  return rounded(s, c, [](double x) { return std::round(x); });
}

// trunc(2.888, 2) = 2.88: cut in the shortest decimal spelling of the double, not by scaling,
// which would make 0.29 into 0.28. Trailing zeros go; a whole result is an Int (trunc(2.00, 5) =
// 2).
value fn_trunc(eval_state& state, const call_args& call) {
  const auto n = to_number(call.values[0]);
  const auto places = to_int(call.values[1]);
  if (!n || !places) return {};
  if (n->is_int) return make_int(n->int_value);
  const std::size_t keep = static_cast<std::size_t>(std::clamp<std::int64_t>(*places, 0, 34));
  char buffer[512];
  const auto written =
      std::to_chars(buffer, buffer + sizeof buffer, n->decimal_value, std::chars_format::fixed);
  if (written.ec != std::errc()) return {};
  std::string text(buffer, written.ptr);
  if (const std::size_t dot = text.find('.'); dot != std::string::npos) {
    text.resize(std::min(text.size(), dot + 1 + keep));
    while (text.back() == '0') text.pop_back();
    if (text.back() == '.') text.pop_back();
  }
  const char* first = text.data();
  const char* last = text.data() + text.size();
  if (text.find('.') == std::string::npos) {
    std::int64_t i = 0;
    const auto parsed = std::from_chars(first, last, i);
    if (parsed.ec == std::errc() && parsed.ptr == last) return make_int(i);
  }
  double d = 0;
  const auto parsed = std::from_chars(first, last, d);
  if (parsed.ec != std::errc()) return {};
  return make_decimal(d, state.whole_as_int());
}

value fn_mod(eval_state& state, const call_args& call) {
  return arithmetic(arithmetic_op::remainder, call.values[0], call.values[1], state);
}

value fn_nanvl(eval_state&, const call_args& call) {
  value& first = call.values[0];
  // AWS's Decimal NaN cannot arise here (make_decimal refuses it): Undefined and Null remain.
  if (first.is_undefined() || first.json().is_null()) return std::move(call.values[1]);
  return std::move(first);
}

// The bit functions take Ints; Decimals and numeric Strings are truncated to one first.
value bitwise(const call_args& call, std::int64_t (*operation)(std::int64_t, std::int64_t)) {
  const auto a = to_int(call.values[0]);
  const auto b = to_int(call.values[1]);
  if (!a || !b) return {};
  return make_int(operation(*a, *b));
}

value fn_bitand(eval_state&, const call_args& c) {
  return bitwise(c, [](std::int64_t a, std::int64_t b) { return a & b; });
}
value fn_bitor(eval_state&, const call_args& c) {
  return bitwise(c, [](std::int64_t a, std::int64_t b) { return a | b; });
}
value fn_bitxor(eval_state&, const call_args& c) {
  return bitwise(c, [](std::int64_t a, std::int64_t b) { return a ^ b; });
}
value fn_bitnot(eval_state&, const call_args& call) {
  const auto a = to_int(call.values[0]);
  if (!a) return {};
  return make_int(~*a);
}

value fn_chr(eval_state& state, const call_args& call) {
  const auto code = to_int(call.values[0]);
  if (!code || *code < 0 || *code > 127) return {};
  const char c = static_cast<char>(*code);
  return string_result(std::string_view(&c, 1), state);
}

// ---- types and collections -------------------------------------------------------------------

value fn_isnull(eval_state&, const call_args& call) {
  const value& v = call.values[0];
  return make_bool(!v.is_undefined() && v.json().is_null());
}

value fn_isundefined(eval_state&, const call_args& call) {
  return make_bool(call.values[0].is_undefined());
}

// get(array, index), get(string, index) and get(object, key): the way to odd keys ("my-key",
// "0") and to array elements, which the dot cannot reach.
value fn_get(eval_state& state, const call_args& call) {
  value& collection = call.values[0];
  const value& key = call.values[1];
  switch (collection.type()) {
    case sql_type::array: {
      const auto index = to_int(key);
      json::array& elements = collection.json().get_array();
      if (!index || *index < 0 || static_cast<std::uint64_t>(*index) >= elements.size()) return {};
      return adopt(std::move(elements[static_cast<std::size_t>(*index)]), state);
    }
    case sql_type::string: {
      const auto index = to_int(key);
      if (!index || *index < 0) return {};
      const std::string_view text = view_of(collection.json().get_string());
      const std::size_t first = code_point_offset(text, static_cast<std::size_t>(*index));
      if (first >= text.size()) return {};
      const std::size_t last = code_point_offset(text, static_cast<std::size_t>(*index) + 1);
      return string_result(text.substr(first, last - first), state);
    }
    case sql_type::object: {
      if (key.type() != sql_type::string) return {};  // no conversion for object keys
      json::value* found =
          collection.json().get_object().if_contains(key_of(key.json().get_string()));
      if (found == nullptr) return {};
      return adopt(std::move(*found), state);
    }
    default:
      return {};
  }
}

// transform("enrichArray", object, array): each object of the array with the object's keys added.
// It copies the object once per element: the evaluation's memory budget (evaluator.cpp) stops a
// big object times a long array.
value fn_transform(eval_state& state, const call_args& call) {
  const value& mode = call.values[0];
  if (mode.type() != sql_type::string || view_of(mode.json().get_string()) != "enrichArray")
    return {};
  if (call.values[1].type() != sql_type::object || call.values[2].type() != sql_type::array)
    return {};
  const json::object& attributes = call.values[1].json().get_object();
  json::value result(json::array_kind, state.storage);
  json::array& out = result.get_array();
  for (json::value& element : call.values[2].json().get_array()) {
    if (!element.is_object()) continue;
    json::object& enriched = element.get_object();
    for (const auto& attribute : attributes)
      enriched.insert_or_assign(attribute.key(), json::value(attribute.value(), state.storage));
    out.push_back(std::move(element));
  }
  return value(std::move(result));
}

// What AWS offers and we do not: each calls another AWS service. Listed so that a rule using
// one is refused with that reason rather than as an unknown function.
constexpr function_body not_offered = nullptr;

const function_info core_table[] = {
    {"abs", 1, 1, v1, fn_abs, false},
    {"accountid", 0, 0, v1, fn_accountid, false},
    {"acos", 1, 1, v1, fn_acos, false},
    {"asin", 1, 1, v1, fn_asin, false},
    {"atan", 1, 1, v1, fn_atan, false},
    {"atan2", 2, 2, v1, fn_atan2, false},
    {"aws_lambda", 0, any_count, v1, not_offered, false},
    {"bitand", 2, 2, v1, fn_bitand, false},
    {"bitnot", 1, 1, v1, fn_bitnot, false},
    {"bitor", 2, 2, v1, fn_bitor, false},
    {"bitxor", 2, 2, v1, fn_bitxor, false},
    {"ceil", 1, 1, v1, fn_ceil, false},
    {"chr", 1, 1, v1, fn_chr, false},
    {"clientid", 0, 0, v1, fn_clientid, false},
    {"cos", 1, 1, v1, fn_cos, false},
    {"cosh", 1, 1, v1, fn_cosh, false},
    {"exp", 1, 1, v1, fn_exp, false},
    {"floor", 1, 1, v1, fn_floor, false},
    {"get", 2, 2, v1, fn_get, false},
    {"get_dynamodb", 0, any_count, v2, not_offered, false},
    {"get_registry_data", 0, any_count, v2, not_offered, false},
    {"get_secret", 0, any_count, v1, not_offered, false},
    {"get_thing_shadow", 2, 3, v2, fn_get_thing_shadow, false},
    {"isNull", 1, 1, v1, fn_isnull, false},
    {"isUndefined", 1, 1, v2, fn_isundefined, false},
    {"ln", 1, 1, v1, fn_ln, false},
    {"log", 1, 1, v1, fn_log, false},
    {"machinelearning_predict", 0, any_count, v1, not_offered, false},
    {"mod", 2, 2, v1, fn_mod, false},
    {"nanvl", 2, 2, v1, fn_nanvl, false},
    {"newuuid", 0, 0, v1, fn_newuuid, false},
    {"power", 2, 2, v1, fn_power, false},
    {"principal", 0, 0, v1, fn_principal, false},
    {"rand", 0, 0, v1, fn_rand, false},
    {"remainder", 2, 2, v1, fn_mod, false},
    {"round", 1, 1, v1, fn_round, false},
    {"sign", 1, 1, v1, fn_sign, false},
    {"sin", 1, 1, v1, fn_sin, false},
    {"sinh", 1, 1, v1, fn_sinh, false},
    {"sql_version", 0, 0, v1, fn_sql_version, false},
    {"sqrt", 1, 1, v1, fn_sqrt, false},
    {"tan", 1, 1, v1, fn_tan, false},
    {"tanh", 1, 1, v1, fn_tanh, false},
    {"timestamp", 0, 0, v1, fn_timestamp, false},
    {"topic", 0, 1, v1, fn_topic, false},
    {"traceid", 0, 0, v1, fn_traceid, false},
    {"transform", 3, 3, v2, fn_transform, false},
    {"trunc", 2, 2, v1, fn_trunc, false},
};

}  // namespace

std::span<const function_info> core_functions() {
  return core_table;
}

const function_info* find_function(std::string_view name) {
  for (const std::span<const function_info> table :
       {core_functions(), string_functions(), encoding_functions(), time_functions()}) {
    for (const function_info& function : table)
      if (equals_ignore_case(function.name, name)) return &function;
  }
  return nullptr;
}

namespace {

// Decimal arithmetic in doubles says 0.1 + 0.2 = 0.30000000000000004 where AWS's 34-digit
// Decimal says 0.3. Rounding the result to 15 significant digits, all that a double holds for
// certain, gives AWS's answer in the common cases.
double decimal_rounded(double d) {
  if (!std::isfinite(d)) return d;
  char buffer[32];
  const auto written =
      std::to_chars(buffer, buffer + sizeof buffer, d, std::chars_format::general, 15);
  if (written.ec != std::errc()) return d;
  double rounded = d;
  const auto parsed = std::from_chars(buffer, written.ptr, rounded);
  return parsed.ec == std::errc() ? rounded : d;
}

}  // namespace

value arithmetic(arithmetic_op op, const value& a, const value& b, eval_state& state) {
  const bool whole_as_int = state.whole_as_int();
  // + with a String on either side concatenates the string forms (AWS "+ operator").
  if (op == arithmetic_op::add && (a.type() == sql_type::string || b.type() == sql_type::string)) {
    std::string text;
    const std::size_t limit = state.bounds.max_output_bytes;  // past it string_result fails
    if (!append_string(a, whole_as_int, text, limit) ||
        !append_string(b, whole_as_int, text, limit))
      return {};
    return string_result(text, state);
  }
  const auto x = to_number(a);
  const auto y = to_number(b);
  if (!x || !y) return {};
  if (x->is_int && y->is_int) {
    const std::int64_t i = x->int_value;
    const std::int64_t j = y->int_value;
    std::int64_t r = 0;
    switch (op) {
      case arithmetic_op::add:
        if (!__builtin_add_overflow(i, j, &r)) return make_int(r);
        break;
      case arithmetic_op::subtract:
        if (!__builtin_sub_overflow(i, j, &r)) return make_int(r);
        break;
      case arithmetic_op::multiply:
        if (!__builtin_mul_overflow(i, j, &r)) return make_int(r);
        break;
      case arithmetic_op::divide:  // Int / Int is an Int, truncated
        if (j == 0) return {};
        if (i != int_min || j != -1) return make_int(i / j);
        break;
      case arithmetic_op::remainder:
        if (j == 0) return {};
        return make_int(j == -1 ? 0 : i % j);
    }
    // Overflowed: AWS's Int has 34 digits, ours 64 bits; carry on as a Decimal.
  }
  const double p = x->as_double();
  const double q = y->as_double();
  const auto decimal = [whole_as_int](double d) {
    return make_decimal(decimal_rounded(d), whole_as_int);
  };
  switch (op) {
    case arithmetic_op::add:
      return decimal(p + q);
    case arithmetic_op::subtract:
      return decimal(p - q);
    case arithmetic_op::multiply:
      return decimal(p * q);
    case arithmetic_op::divide:
      if (q == 0) return {};
      return decimal(p / q);
    case arithmetic_op::remainder:
      if (q == 0) return {};
      return decimal(std::fmod(p, q));
  }
  return {};
}

value string_result(std::string_view text, eval_state& state) {
  if (text.size() > state.bounds.max_output_bytes) {
    state.fail("a string value exceeds max_output_bytes");
    return {};
  }
  return make_string(text, state.storage);
}

bool text_argument(const value& v, eval_state& state, std::string& scratch,
                   std::string_view& text) {
  if (v.type() == sql_type::string) {
    text = view_of(v.json().get_string());
    return true;
  }
  scratch.clear();
  const std::size_t limit = state.bounds.max_output_bytes;
  if (!append_string(v, state.whole_as_int(), scratch, limit)) return false;
  if (scratch.size() > limit) {  // an Array or Object, cut short: a string built on the way
    state.fail("a string value exceeds max_output_bytes");
    return false;
  }
  text = scratch;
  return true;
}

value adopt(json::value taken, const eval_state& state) {
  value v(std::move(taken));
  normalize_number(v, state.whole_as_int());
  return v;
}

value parse_json_value(std::string_view text, const eval_state& state) {
  json::parse_options options;
  options.max_depth = static_cast<std::size_t>(std::max(state.bounds.max_depth, 1));
  json::error_code ec;
  json::value parsed =
      json::parse(json::string_view(text.data(), text.size()), ec, state.storage, options);
  if (ec) return {};
  return adopt(std::move(parsed), state);
}

}  // namespace nimbus::rules::sql
