#include "shadow/document.hpp"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include <boost/json/array.hpp>
#include <boost/json/error.hpp>
#include <boost/json/kind.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/parse_options.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/string_view.hpp>
#include <boost/json/value.hpp>

namespace nimbus::shadow {

namespace {

namespace json = boost::json;

// Past this many nested containers the parser itself refuses a text, so the recursive walks
// below (merge, metadata, delta, comparison) stay shallow whatever arrives. Far above any useful
// limits::max_depth: AWS allows 6 levels inside desired or reported, 8 from the root.
constexpr std::size_t parse_depth_limit = 64;

// The last version a shadow may reach. No shadow gets there one update at a time, but a stored
// document could claim it: past it JavaScript clients would misread versions and, further on,
// the count would overflow. from_json refuses more, apply_update stops there (a 500).
constexpr std::int64_t max_version = std::int64_t{1} << 53;

// AWS's texts (the Device Shadow error messages page), verbatim: clients match on some of them.
constexpr std::string_view invalid_json = "Invalid JSON";
constexpr std::string_view missing_state = "Missing required node: state";
constexpr std::string_view state_not_object = "State node must be an object";
constexpr std::string_view desired_not_object = "Desired node must be an object";
constexpr std::string_view reported_not_object = "Reported node must be an object";
constexpr std::string_view invalid_version = "Invalid version";
constexpr std::string_view invalid_client_token = "Invalid clientToken";
// The page gives no separate text for a state key other than desired/reported or for a null in
// an array (which AWS documents as rejected); this is the one it lists for a bad node in state.
constexpr std::string_view invalid_node = "State contains an invalid node";
constexpr std::string_view version_conflict = "Version conflict";
constexpr std::string_view internal_failure = "Internal service failure";
// Sic: "documented", as AWS writes it.
constexpr std::string_view unsupported_encoding =
    "Unsupported documented encoding; supported encoding is UTF-8";

std::string too_deep_message(int max_depth) {
  return "JSON contains too many levels of nesting; maximum is " + std::to_string(max_depth);
}

// The documentation says "The payload exceeds the maximum size allowed"; the service itself
// answers with the sizes, two spaces included (seen on update/rejected, esp-aws-iot#70).
std::string too_large_message(std::size_t size, std::size_t max_size) {
  return "Json document too large.  Size is " + std::to_string(size) +
         ", max allowed: " + std::to_string(max_size);
}

// Strict UTF-8 (RFC 3629): no overlong forms, surrogates or code points past U+10FFFF. Checked
// before parsing because AWS answers bad encoding (415) apart from bad JSON (400).
bool is_valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    auto lead = static_cast<unsigned char>(s[i]);
    if (lead < 0x80) {
      ++i;
      continue;
    }
    std::size_t extra = 0;
    unsigned char low = 0x80;  // the range of the byte after the lead
    unsigned char high = 0xbf;
    if (lead >= 0xc2 && lead <= 0xdf) {
      extra = 1;
    } else if (lead >= 0xe0 && lead <= 0xef) {
      extra = 2;
      if (lead == 0xe0) low = 0xa0;   // overlong
      if (lead == 0xed) high = 0x9f;  // surrogates
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      extra = 3;
      if (lead == 0xf0) low = 0x90;   // overlong
      if (lead == 0xf4) high = 0x8f;  // past U+10FFFF
    } else {
      return false;
    }
    if (s.size() - i <= extra) return false;
    for (std::size_t k = 1; k <= extra; ++k) {
      auto byte = static_cast<unsigned char>(s[i + k]);
      if (k == 1 ? (byte < low || byte > high) : (byte < 0x80 || byte > 0xbf)) return false;
    }
    i += extra + 1;
  }
  return true;
}

json::value parse(std::string_view text, json::error_code& ec) {
  json::parse_options options;
  options.max_depth = parse_depth_limit;
  return json::parse(text, ec, {}, options);
}

// Boost.JSON 1.81 reads a number past the range of a double (1e400, or 0e400) as infinity or NaN,
// and would write it back as "Infinity" or "NaN", which is not JSON: a stored shadow holding one
// could not be read again. Such a text counts as invalid JSON.
bool has_non_finite(const json::value& value) {
  if (value.is_double()) return !std::isfinite(value.get_double());
  if (const auto* object = value.if_object()) {
    for (const auto& entry : *object)
      if (has_non_finite(entry.value())) return true;
  } else if (const auto* array = value.if_array()) {
    for (const auto& element : *array)
      if (has_non_finite(element)) return true;
  }
  return false;
}

void add_client_token(json::object& out, const std::optional<std::string>& token) {
  if (token) out.insert_or_assign("clientToken", json::string_view(token->data(), token->size()));
}

// The metadata of a value written at `now`: {"timestamp": now} for a scalar (and for a null, in
// the echo of a request), one entry per element for an array, the same tree for an object.
json::value metadata_of(const json::value& value, std::int64_t now) {
  if (const auto* object = value.if_object()) {
    json::object out;
    out.reserve(object->size());
    for (const auto& entry : *object) out.emplace(entry.key(), metadata_of(entry.value(), now));
    return out;
  }
  if (const auto* array = value.if_array()) {
    json::array out;
    out.reserve(array->size());
    for (const auto& element : *array) out.push_back(metadata_of(element, now));
    return out;
  }
  return json::object{{"timestamp", now}};
}

// Whether `meta` is what metadata_of would give `value` at some time: the same keys, the same
// array lengths, an integer timestamp for each scalar.
bool mirrors(const json::value& value, const json::value& meta) {
  if (const auto* object = value.if_object()) {
    const auto* fields = meta.if_object();
    if (fields == nullptr || fields->size() != object->size()) return false;
    for (const auto& entry : *object) {
      const auto* child = fields->if_contains(entry.key());
      if (child == nullptr || !mirrors(entry.value(), *child)) return false;
    }
    return true;
  }
  if (const auto* array = value.if_array()) {
    const auto* elements = meta.if_array();
    if (elements == nullptr || elements->size() != array->size()) return false;
    for (std::size_t i = 0; i < array->size(); ++i)
      if (!mirrors((*array)[i], (*elements)[i])) return false;
    return true;
  }
  const auto* leaf = meta.if_object();
  if (leaf == nullptr || leaf->size() != 1) return false;
  const auto* timestamp = leaf->if_contains("timestamp");
  return timestamp != nullptr && timestamp->is_int64();
}

// Merges one object of a request into the stored object `target`, keeping `meta`, the target's
// metadata, its mirror: null deletes a key, an object merges key by key, anything else (arrays
// included) replaces the value whole.
void merge(json::object& target, json::object& meta, const json::object& patch, std::int64_t now) {
  for (const auto& entry : patch) {
    const auto key = entry.key();
    const json::value& value = entry.value();
    if (value.is_null()) {
      target.stable_erase(key);
      meta.stable_erase(key);
      continue;
    }
    const auto* fields = value.if_object();
    if (fields == nullptr) {
      target.insert_or_assign(key, value);
      meta.insert_or_assign(key, metadata_of(value, now));
      continue;
    }
    auto* existing = target.if_contains(key);
    if (existing != nullptr && existing->is_object()) {
      json::value& existing_meta = meta[key];
      if (!existing_meta.is_object()) existing_meta = json::object();
      merge(existing->get_object(), existing_meta.get_object(), *fields, now);
      continue;
    }
    // A new object, or one replacing a value, holds the patch's non-null content. A patch of
    // nothing but nulls has nothing to put there and leaves the key as it was; `{}` itself is a
    // value and is stored.
    json::object built;
    json::object built_meta;
    merge(built, built_meta, *fields, now);
    if (built.empty() && !fields->empty()) continue;
    target.insert_or_assign(key, std::move(built));
    meta.insert_or_assign(key, std::move(built_meta));
  }
}

// Applies a request's desired or reported (`patch`, an object or null) to the stored state. A
// section left empty is removed, as AWS does: a shadow shows only the sections it has.
void update_section(json::object& state, json::object& metadata, std::string_view name,
                    const json::value& patch, std::int64_t now) {
  if (patch.is_null()) {
    state.stable_erase(name);
    metadata.stable_erase(name);
    return;
  }
  json::value& section = state[name];
  if (!section.is_object()) section = json::object();
  json::value& section_meta = metadata[name];
  if (!section_meta.is_object()) section_meta = json::object();
  merge(section.get_object(), section_meta.get_object(), patch.get_object(), now);
  if (section.get_object().empty()) {
    state.stable_erase(name);
    metadata.stable_erase(name);
  }
}

// Whether `value` nests more than `levels` objects and arrays, itself included.
bool deeper_than(const json::value& value, int levels) {
  if (!value.is_structured()) return false;
  if (levels <= 0) return true;
  if (const auto* object = value.if_object()) {
    for (const auto& entry : *object)
      if (deeper_than(entry.value(), levels - 1)) return true;
    return false;
  }
  for (const auto& element : value.get_array())
    if (deeper_than(element, levels - 1)) return true;
  return false;
}

// Whether a null sits anywhere inside an array of `value` (in an object in an array too): AWS
// refuses those, since a null there could neither be stored nor mean a deletion.
bool has_null_in_array(const json::value& value, bool in_array) {
  if (value.is_null()) return in_array;
  if (const auto* object = value.if_object()) {
    for (const auto& entry : *object)
      if (has_null_in_array(entry.value(), in_array)) return true;
  } else if (const auto* array = value.if_array()) {
    for (const auto& element : *array)
      if (has_null_in_array(element, true)) return true;
  }
  return false;
}

// Equality for the delta: numbers by value (1 and 1.0 agree), objects whatever their key order.
bool same_value(const json::value& a, const json::value& b) {
  if (a.is_number() && b.is_number()) {
    if (!a.is_double() && !b.is_double()) return a == b;  // int64 and uint64, exactly
    json::error_code ec;
    return a.to_number<double>(ec) == b.to_number<double>(ec);
  }
  if (a.kind() != b.kind()) return false;
  if (const auto* x = a.if_array()) {
    const auto& y = b.get_array();
    if (x->size() != y.size()) return false;
    for (std::size_t i = 0; i < x->size(); ++i)
      if (!same_value((*x)[i], y[i])) return false;
    return true;
  }
  if (const auto* x = a.if_object()) {
    const auto& y = b.get_object();
    if (x->size() != y.size()) return false;
    for (const auto& entry : *x) {
      const auto* other = y.if_contains(entry.key());
      if (other == nullptr || !same_value(entry.value(), *other)) return false;
    }
    return true;
  }
  return a == b;
}

// AWS's delta: walk desired; a key reported lacks, or holds differently, is copied whole, except
// that two objects are compared key by key, keeping the path from the root. Keys only in
// reported never appear.
json::object delta_of(const json::object& desired, const json::object* reported) {
  json::object out;
  for (const auto& entry : desired) {
    const json::value& want = entry.value();
    const json::value* have = reported != nullptr ? reported->if_contains(entry.key()) : nullptr;
    if (have != nullptr && want.is_object() && have->is_object()) {
      auto inner = delta_of(want.get_object(), &have->get_object());
      if (!inner.empty()) out.emplace(entry.key(), std::move(inner));
    } else if (have == nullptr || !same_value(want, *have)) {
      out.emplace(entry.key(), want);
    }
  }
  return out;
}

// Desired's metadata for the keys of a delta (its timestamps are desired's, per AWS).
json::object metadata_for(const json::object& delta, const json::object& desired_meta) {
  json::object out;
  for (const auto& entry : delta) {
    const auto* meta = desired_meta.if_contains(entry.key());
    if (meta == nullptr) continue;  // only with metadata that does not mirror the state
    if (entry.value().is_object() && meta->is_object())
      out.emplace(entry.key(), metadata_for(entry.value().get_object(), meta->get_object()));
    else
      out.emplace(entry.key(), *meta);
  }
  return out;
}

// What counts against limits::max_state_bytes: desired and reported as stored (compact JSON),
// metadata excluded, as AWS counts.
std::size_t state_size(const json::object& state) {
  std::size_t size = 0;
  for (const auto& entry : state) size += json::serialize(entry.value()).size();
  return size;
}

// The {state, metadata, version} of /update/documents' "previous" and "current".
json::object snapshot(const document& doc) {
  json::object out;
  out.emplace("state", doc.state());
  out.emplace("metadata", doc.metadata());
  out.emplace("version", doc.version());
  return out;
}

// A get or delete payload is ignored but for a clientToken to echo: bytes that are not a JSON
// object, or a token that is not a short enough string, change nothing.
std::optional<std::string> client_token_of(std::string_view payload, std::size_t max_size) {
  if (payload.empty()) return std::nullopt;
  json::error_code ec;
  json::value request = parse(payload, ec);
  if (ec || !request.is_object()) return std::nullopt;
  const auto* token = request.get_object().if_contains("clientToken");
  if (token == nullptr || !token->is_string() || token->get_string().size() > max_size)
    return std::nullopt;
  return std::string(token->get_string().data(), token->get_string().size());
}

rejection not_found(std::string_view name, std::optional<std::string> token) {
  return rejection{404, "No shadow exists with name: '" + std::string(name) + "'", std::move(token),
                   std::nullopt};
}

}  // namespace

json::object document::delta() const {
  const auto* desired = state_.if_contains("desired");
  if (desired == nullptr || !desired->is_object()) return {};
  const auto* reported = state_.if_contains("reported");
  return delta_of(desired->get_object(),
                  reported != nullptr && reported->is_object() ? &reported->get_object() : nullptr);
}

std::string document::to_json() const {
  json::object out;
  out.emplace("state", state_);
  out.emplace("metadata", metadata_);
  out.emplace("version", version_);
  if (!exists_) out.emplace("deleted", true);
  return json::serialize(out);
}

std::optional<document> document::from_json(std::string_view text) {
  json::error_code ec;
  json::value root = parse(text, ec);
  if (ec || !root.is_object() || has_non_finite(root)) return std::nullopt;
  const auto& fields = root.get_object();
  const auto* stored_state = fields.if_contains("state");
  const auto* stored_metadata = fields.if_contains("metadata");
  const auto* stored_version = fields.if_contains("version");
  const auto* deleted = fields.if_contains("deleted");
  if (stored_state == nullptr || !stored_state->is_object() || stored_metadata == nullptr ||
      stored_version == nullptr)
    return std::nullopt;
  if (!stored_version->is_int64() || stored_version->get_int64() < 0 ||
      stored_version->get_int64() > max_version)
    return std::nullopt;
  for (const auto& entry : stored_state->get_object()) {
    if ((entry.key() != "desired" && entry.key() != "reported") || !entry.value().is_object())
      return std::nullopt;
  }
  if (!mirrors(*stored_state, *stored_metadata)) return std::nullopt;
  bool is_deleted = false;
  if (deleted != nullptr) {
    if (!deleted->is_bool()) return std::nullopt;
    is_deleted = deleted->get_bool();
  }
  // to_json writes no state for a deleted shadow, and no existing shadow at version 0.
  if (is_deleted ? !stored_state->get_object().empty() : stored_version->get_int64() == 0)
    return std::nullopt;

  document doc;
  doc.state_ = stored_state->get_object();
  doc.metadata_ = stored_metadata->get_object();
  doc.version_ = stored_version->get_int64();
  doc.exists_ = !is_deleted;
  return doc;
}

std::variant<update_result, rejection> apply_update(document& doc, std::string_view payload,
                                                    std::int64_t now, const limits& bounds) {
  auto refuse = [now](int code, std::string_view message,
                      std::optional<std::string> token = std::nullopt) {
    return rejection{code, std::string(message), std::move(token), now};
  };
  if (!is_valid_utf8(payload)) return refuse(415, unsupported_encoding);
  json::error_code ec;
  json::value request = parse(payload, ec);
  if (ec == json::error::too_deep) return refuse(400, too_deep_message(bounds.max_depth));
  if (ec || !request.is_object() || has_non_finite(request)) return refuse(400, invalid_json);
  const auto& fields = request.get_object();

  // The token first, so that every later refusal can carry it back.
  std::optional<std::string> token;
  if (const auto* value = fields.if_contains("clientToken")) {
    const auto* text = value->if_string();
    if (text == nullptr || text->size() > bounds.max_client_token)
      return refuse(400, invalid_client_token);
    token.emplace(text->data(), text->size());
  }
  auto fail = [&](int code, std::string_view message) { return refuse(code, message, token); };

  bool version_matches = true;  // no version: no check
  if (const auto* value = fields.if_contains("version")) {
    if (value->is_int64() && value->get_int64() >= 0)
      version_matches = value->get_int64() == doc.version_;
    else if (value->is_uint64())
      version_matches = false;  // past any version a shadow can reach
    else
      return fail(400, invalid_version);
  }

  const auto* state = fields.if_contains("state");
  if (state == nullptr) return fail(400, missing_state);
  if (!state->is_object() && !state->is_null()) return fail(400, state_not_object);
  static constexpr std::string_view section_names[] = {"desired", "reported"};
  const json::value* sections[] = {nullptr, nullptr};  // as section_names; null state: neither
  if (const auto* object = state->if_object()) {
    for (const auto& entry : *object)
      if (entry.key() != section_names[0] && entry.key() != section_names[1])
        return fail(400, invalid_node);
    sections[0] = object->if_contains(section_names[0]);
    sections[1] = object->if_contains(section_names[1]);
  }
  if (sections[0] != nullptr && !sections[0]->is_object() && !sections[0]->is_null())
    return fail(400, desired_not_object);
  if (sections[1] != nullptr && !sections[1]->is_object() && !sections[1]->is_null())
    return fail(400, reported_not_object);
  for (const auto* section : sections)
    if (section != nullptr && deeper_than(*section, bounds.max_depth))
      return fail(400, too_deep_message(bounds.max_depth));
  for (const auto* section : sections)
    if (section != nullptr && has_null_in_array(*section, false)) return fail(400, invalid_node);
  if (!version_matches) return fail(409, version_conflict);
  if (doc.version_ >= max_version) return fail(500, internal_failure);

  // Merged into copies: the document changes only once the result is known to fit.
  json::object state_after = doc.state_;
  json::object metadata_after = doc.metadata_;
  if (state->is_null()) {
    state_after.clear();
    metadata_after.clear();
  }
  for (std::size_t i = 0; i < 2; ++i) {
    if (sections[i] != nullptr)
      update_section(state_after, metadata_after, section_names[i], *sections[i], now);
  }
  auto size = state_size(state_after);
  if (size > bounds.max_state_bytes)
    return fail(413, too_large_message(size, bounds.max_state_bytes));

  update_result result;
  if (doc.exists_) result.documents.emplace("previous", snapshot(doc));
  doc.state_ = std::move(state_after);
  doc.metadata_ = std::move(metadata_after);
  doc.version_ += 1;
  doc.exists_ = true;
  result.documents.emplace("current", snapshot(doc));
  result.documents.emplace("timestamp", now);
  add_client_token(result.documents, token);

  result.accepted.emplace("state", *state);
  result.accepted.emplace("metadata", metadata_of(*state, now));
  result.accepted.emplace("version", doc.version_);
  result.accepted.emplace("timestamp", now);
  add_client_token(result.accepted, token);

  // Published after every accepted update that leaves desired and reported apart, whichever
  // section the request touched (a reported-only update that breaks agreement publishes too).
  auto delta = doc.delta();
  if (!delta.empty()) {
    const auto* desired_meta = doc.metadata_.if_contains("desired");
    json::object delta_meta = desired_meta != nullptr && desired_meta->is_object()
                                  ? metadata_for(delta, desired_meta->get_object())
                                  : json::object();
    json::object published;
    published.emplace("state", std::move(delta));
    published.emplace("metadata", std::move(delta_meta));
    published.emplace("version", doc.version_);
    published.emplace("timestamp", now);
    add_client_token(published, token);
    result.delta = std::move(published);
  }
  return result;
}

std::variant<json::object, rejection> get_response(const document& doc, std::string_view name,
                                                   std::string_view payload, std::int64_t now,
                                                   const limits& bounds) {
  auto token = client_token_of(payload, bounds.max_client_token);
  if (!doc.exists()) return not_found(name, std::move(token));
  json::object state = doc.state();
  auto delta = doc.delta();
  if (!delta.empty()) state.emplace("delta", std::move(delta));
  json::object body;
  body.emplace("state", std::move(state));
  body.emplace("metadata", doc.metadata());
  body.emplace("version", doc.version());
  body.emplace("timestamp", now);
  add_client_token(body, token);
  return body;
}

std::variant<json::object, rejection> delete_response(document& doc, std::string_view name,
                                                      std::string_view payload, std::int64_t now,
                                                      const limits& bounds) {
  auto token = client_token_of(payload, bounds.max_client_token);
  if (!doc.exists_) return not_found(name, std::move(token));
  json::object body;
  body.emplace("version", doc.version_);
  body.emplace("timestamp", now);
  add_client_token(body, token);
  // The version stays: an update after this continues the count (AWS keeps it for 48 hours;
  // forgetting it later is the store's decision, not the document's).
  doc.state_.clear();
  doc.metadata_.clear();
  doc.exists_ = false;
  return body;
}

json::object rejected_payload(const rejection& r) {
  json::object out;
  out.emplace("code", r.code);
  out.emplace("message", json::string_view(r.message.data(), r.message.size()));
  if (r.timestamp) out.emplace("timestamp", *r.timestamp);
  add_client_token(out, r.client_token);
  return out;
}

std::string qualified_name(std::string_view thing_name, std::string_view shadow_name) {
  std::string name(thing_name);
  if (!shadow_name.empty()) {
    name += '~';
    name += shadow_name;
  }
  return name;
}

bool is_valid_shadow_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '$' || c == ':' || c == '_' || c == '-';
    if (!allowed) return false;
  }
  return true;
}

}  // namespace nimbus::shadow
