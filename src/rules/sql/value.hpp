#pragma once
// The IoT SQL value model: a JSON value, or Undefined, which JSON cannot hold (a missing key, a
// function given the wrong types). JSON int64 is AWS's Int and double its Decimal (AWS keeps 34
// digits; we keep a double, and a uint64 past int64 is a Decimal). The conversions and
// comparisons here follow AWS's tables ("Data types", "Operators"): they are the rules every
// operator and function goes through, so they live in one place.
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <boost/json/storage_ptr.hpp>
#include <boost/json/string.hpp>
#include <boost/json/value.hpp>

namespace nimbus::rules::sql {

enum class sql_type : std::uint8_t {
  undefined,
  null,
  boolean,
  integer,
  decimal,
  string,
  array,
  object
};

// AWS's names: "Undefined", "Null", "Boolean", "Int", "Decimal", "String", "Array", "Object".
std::string_view type_name(sql_type type);

// A value of one evaluation. Its JSON usually lives in the evaluation's arena (see evaluator.cpp),
// so a value never outlives the evaluate() call that made it.
class value {
 public:
  value() = default;  // Undefined
  explicit value(boost::json::value j) noexcept : json_(std::move(j)), is_defined_(true) {}
  value(const value&) = default;
  value(value&&) noexcept = default;
  value& operator=(const value&) = default;
  // A move takes the other value's storage along with its JSON. boost::json's own move assignment
  // keeps the target's storage and deep-copies whenever the two differ: assigning an arena value
  // to a default-constructed one (a function's arguments) would copy it onto the heap, outside the
  // evaluation's memory budget.
  value& operator=(value&& other) noexcept {
    if (this != &other) {
      std::destroy_at(&json_);
      std::construct_at(&json_, std::move(other.json_));
      is_defined_ = other.is_defined_;
    }
    return *this;
  }

  bool is_undefined() const { return !is_defined_; }
  sql_type type() const;
  const boost::json::value& json() const { return json_; }
  boost::json::value& json() { return json_; }

 private:
  boost::json::value json_;  // null while Undefined
  bool is_defined_ = false;
};

value make_int(std::int64_t i);
value make_bool(bool b);
value make_null();
// Undefined when `d` is not finite (AWS's Decimal has neither NaN nor infinities). With
// `whole_as_int` (SQL 2016-03-23) a whole number that fits an Int becomes one, as AWS documents.
value make_decimal(double d, bool whole_as_int);
value make_string(std::string_view text, const boost::json::storage_ptr& storage);

// 2016-03-23 reads 10.0 as the Int 10: applied where a JSON number enters the SQL world.
void normalize_number(value& v, bool whole_as_int);
bool is_whole_int(double d);

inline std::string_view view_of(const boost::json::string& s) {
  return {s.data(), s.size()};
}
// ASCII letters only: SQL keywords, function names, "true"/"false".
bool equals_ignore_case(std::string_view a, std::string_view b);

// A number as operators see it: an Int stays an Int, anything else is a double.
struct number {
  bool is_int = false;
  std::int64_t int_value = 0;
  double decimal_value = 0;
  double as_double() const { return is_int ? static_cast<double>(int_value) : decimal_value; }
};

// AWS's pattern for strings that convert to numbers: ^-?\d+(\.\d+)?((?i)E-?\d+)?$ .
std::optional<double> parse_decimal(std::string_view text);
// Int, Decimal, or a String matching the pattern (as a Decimal); nullopt for anything else.
std::optional<number> to_number(const value& v);
// The "To int" conversion: Decimals and numeric strings truncated toward zero, clamped to Int.
std::optional<std::int64_t> to_int(const value& v);
std::int64_t truncate_to_int(double d);
// The "To Boolean" conversion: Booleans, and the strings "true"/"false" in any case.
std::optional<bool> to_boolean(const value& v);
inline constexpr std::size_t no_byte_limit = std::numeric_limits<std::size_t>::max();

// The "To string" conversion appended to `out`: false (nothing appended) for Null and Undefined.
// An Array or Object, written as its JSON, stops once `out` holds more than `max_bytes`: a caller
// that bounds its text sees it as too long without it ever being built in full.
bool append_string(const value& v, bool whole_as_int, std::string& out,
                   std::size_t max_bytes = no_byte_limit);

// The = operator: nullopt when either side is Undefined; Int and Decimal compare by value;
// mismatched types are unequal; arrays in order, objects whatever their key order.
std::optional<bool> sql_equals(const value& a, const value& b);
bool json_equals(const boost::json::value& a, const boost::json::value& b);
// The ordering operators: both sides as numbers (numeric strings too), nullopt otherwise.
// Returns <0, 0 or >0.
std::optional<int> compare_numbers(const value& a, const value& b);

// Compact JSON as AWS writes it: Decimals keep a decimal point ("10.0"), or, with
// `whole_as_int`, print as the Int they are read as; keys in insertion order. False once `out`
// holds more than `max_bytes` (it is then cut short, somewhere past them), so that an output too
// long to keep is refused without being written in full.
bool write_json(const boost::json::value& json, bool whole_as_int, std::string& out,
                std::size_t max_bytes = no_byte_limit);
void write_decimal(double d, bool whole_as_int, std::string& out);

}  // namespace nimbus::rules::sql
