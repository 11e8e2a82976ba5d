#include "rules/actions/timestream.hpp"

#include <charconv>
#include <limits>
#include <system_error>

#include "rules/actions/runtime.hpp"

namespace nimbus::rules::actions {

namespace json = boost::json;

namespace {
constexpr std::size_t max_dimensions = 128;  // Timestream's limit
}

std::variant<std::unique_ptr<const action>, rule_error> timestream::parse(
    const json::object& fields, const template_scope& scope, const std::string& where) {
  std::unique_ptr<timestream> out(new timestream());
  if (auto refused = required_string(fields, "databaseName", where, out->database_))
    return std::move(*refused);
  if (auto refused = required_string(fields, "tableName", where, out->table_))
    return std::move(*refused);

  const auto* dimensions = fields.if_contains("dimensions");
  if (dimensions == nullptr || dimensions->is_null())
    return invalid(validation_error("null", where + ".dimensions", "not be null"));
  if (!dimensions->is_array() || dimensions->get_array().empty() ||
      dimensions->get_array().size() > max_dimensions)
    return invalid(where + ".dimensions must be an array of 1 to 128 {name, value}");
  for (const auto& dimension : dimensions->get_array()) {
    const auto* pair = dimension.if_object();
    if (pair == nullptr) return invalid(where + ".dimensions must be an array of {name, value}");
    std::string name;
    if (auto refused = required_string(*pair, "name", where + ".dimensions", name))
      return std::move(*refused);
    std::optional<substitution_template> value;
    if (auto refused = template_field(*pair, "value", scope, where + ".dimensions", value))
      return std::move(*refused);
    if (!value)
      return invalid(validation_error("null", where + ".dimensions.value", "not be null"));
    out->dimensions_.emplace_back(std::move(name), std::move(*value));
  }

  if (const auto* timestamp = fields.if_contains("timestamp");
      timestamp != nullptr && !timestamp->is_null()) {
    if (!timestamp->is_object()) return invalid(where + ".timestamp must be an object");
    const auto& t = timestamp->get_object();
    if (auto refused = template_field(t, "value", scope, where + ".timestamp", out->time_value_))
      return std::move(*refused);
    if (!out->time_value_)
      return invalid(validation_error("null", where + ".timestamp.value", "not be null"));
    std::string unit;
    if (auto refused = required_string(t, "unit", where + ".timestamp", unit))
      return std::move(*refused);
    if (unit == "SECONDS")
      out->ns_per_unit_ = 1'000'000'000;
    else if (unit == "MILLISECONDS")
      out->ns_per_unit_ = 1'000'000;
    else if (unit == "MICROSECONDS")
      out->ns_per_unit_ = 1'000;
    else if (unit == "NANOSECONDS")
      out->ns_per_unit_ = 1;
    else
      return invalid(where +
                     ".timestamp.unit must be SECONDS, MILLISECONDS, MICROSECONDS or NANOSECONDS");
  }
  return std::unique_ptr<const action>(std::move(out));
}

const std::string& timestream::type() const {
  static const std::string name = "timestream";
  return name;
}

bool timestream::executable(const runtime& rt) const {
  return static_cast<bool>(rt.timestream());
}

void timestream::fire(const firing& f, runtime& rt, completion done) const {
  timestream_record record;
  record.database = database_;
  record.table = table_;
  record.output = std::string(f.output);
  std::string error;
  for (const auto& [name, value_template] : dimensions_) {
    std::string value;
    if (!value_template.expand(f.original.payload, f.context, value, error))
      return done(failure{"TimestreamAction", database_, std::move(error)});
    record.dimensions.emplace_back(name, std::move(value));
  }
  record.time_ns = f.context.timestamp_ms * 1'000'000;
  if (time_value_) {
    std::string text;
    if (!time_value_->expand(f.original.payload, f.context, text, error))
      return done(failure{"TimestreamAction", database_, std::move(error)});
    std::int64_t value = 0;
    const auto parsed = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || parsed.ec != std::errc() || parsed.ptr != text.data() + text.size() ||
        value < 0 || value > std::numeric_limits<std::int64_t>::max() / ns_per_unit_)
      return done(failure{"TimestreamAction", database_, "The timestamp is not a time: " + text});
    record.time_ns = value * ns_per_unit_;
  }
  rt.timestream()(std::move(record), std::move(done));
}

}  // namespace nimbus::rules::actions
