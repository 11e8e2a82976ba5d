#include "tsdb/json_fields.hpp"

#include <boost/json.hpp>

#include <algorithm>

namespace nimbus::tsdb {

namespace json = boost::json;

namespace {

void flatten(const json::object& object, const std::string& prefix,
             std::vector<std::pair<std::string, field_value>>& fields,
             const json_field_options& options) {
  for (const auto& [key_view, value] : object) {
    const std::string key =
        prefix.empty() ? std::string(key_view) : prefix + "_" + std::string(key_view);
    if (prefix.empty() &&
        std::find(options.skip.begin(), options.skip.end(), key) != options.skip.end())
      continue;
    if (key.empty() || key == "time") continue;
    switch (value.kind()) {
      case json::kind::double_:
        fields.emplace_back(key, value.get_double());
        break;
      case json::kind::int64:
        fields.emplace_back(key, static_cast<double>(value.get_int64()));
        break;
      case json::kind::uint64:
        fields.emplace_back(key, static_cast<double>(value.get_uint64()));
        break;
      case json::kind::bool_:
        if (options.include_booleans) fields.emplace_back(key, value.get_bool());
        break;
      case json::kind::string:
        if (options.include_strings) fields.emplace_back(key, std::string(value.get_string()));
        break;
      case json::kind::object:
        flatten(value.get_object(), key, fields, options);
        break;
      case json::kind::array:
      case json::kind::null:
        break;
    }
  }
}

}  // namespace

bool json_fields(std::string_view document,
                 std::vector<std::pair<std::string, field_value>>& fields,
                 const json_field_options& options) {
  boost::system::error_code ec;
  const json::value parsed = json::parse(document, ec);
  if (ec || !parsed.is_object()) return false;
  std::vector<std::pair<std::string, field_value>> found;
  flatten(parsed.get_object(), "", found, options);
  // A key written twice (flattening "a_b" and {"a":{"b"}}): the last wins, kept where it first was.
  for (auto& [key, value] : found) {
    auto same = std::find_if(fields.begin(), fields.end(),
                             [&key](const auto& field) { return field.first == key; });
    if (same != fields.end())
      same->second = std::move(value);
    else
      fields.emplace_back(std::move(key), std::move(value));
  }
  return true;
}

}  // namespace nimbus::tsdb
