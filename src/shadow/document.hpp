#pragma once
// AWS IoT Device Shadow documents: the update, get and delete semantics of the Device Shadow
// service, as a sans-I/O core. Request bytes and the caller's clock value go in; the documents
// AWS publishes (/accepted, /delta, /documents) or AWS's refusal ({code, message}) come out.
// Nothing here reads a clock, touches storage or throws on input: the service around it owns
// persistence, topics and the one-writer-per-shadow ordering.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include <boost/json/object.hpp>

namespace nimbus::shadow {

// AWS's per-shadow limits; the defaults are AWS's (the size can be raised there on request).
struct limits {
  std::size_t max_state_bytes = 8 * 1024;  // desired + reported, serialized, after the merge
  int max_depth = 6;                       // levels of objects and arrays in desired or reported
  std::size_t max_client_token = 64;       // bytes
};

// A refused request, as AWS words it. `code` is the HTTP-like number AWS puts in the error
// document (400, 404, 409, 413, 415; 500 only for a version counter at its end); the REST
// surface maps it to a status and an error type.
struct rejection {
  int code = 400;
  std::string message;
  std::optional<std::string> client_token;  // echoed when the request carried a valid one
  std::optional<std::int64_t> timestamp;    // AWS leaves it out of 404s
};

// What an accepted update publishes. Each is the complete JSON payload of its topic.
struct update_result {
  // /update/accepted and the REST response: the request's state as sent (nulls included), the
  // metadata of the request's leaves, the new version, timestamp, clientToken.
  boost::json::object accepted;
  // /update/delta: every difference between desired and reported after the update (not only
  // the request's), with desired's metadata; absent when the two agree.
  std::optional<boost::json::object> delta;
  // /update/documents: {"previous"?, "current", "timestamp", "clientToken"?}; "previous" is left
  // out when the update created the shadow.
  boost::json::object documents;
};

// One shadow (classic or named): its state {"desired"?, "reported"?}, the metadata tree that
// mirrors it with {"timestamp": t} at each leaf (an array's metadata has one entry per element),
// and the version. A deleted shadow keeps its version so that re-creating it continues the
// count, as AWS does. Changed only by apply_update and delete_response; a value type, owned by
// the shadow service, used by one thread at a time.
class document {
 public:
  document() = default;  // a shadow that never existed: version 0

  bool exists() const { return exists_; }
  std::int64_t version() const { return version_; }
  const boost::json::object& state() const { return state_; }
  const boost::json::object& metadata() const { return metadata_; }
  // The keys of desired that reported lacks or holds differently (objects compared key by key,
  // everything else whole, numbers by value); empty when the two agree.
  boost::json::object delta() const;

  // Storage form: one JSON text {"state", "metadata", "version"} plus "deleted": true for a
  // deleted (or never created) shadow. from_json refuses anything to_json cannot have written:
  // metadata that does not mirror the state, numbers outside a double, versions past 2^53.
  std::string to_json() const;
  static std::optional<document> from_json(std::string_view text);

  friend std::variant<update_result, rejection> apply_update(document& doc,
                                                             std::string_view payload,
                                                             std::int64_t now,
                                                             const limits& bounds);
  friend std::variant<boost::json::object, rejection> delete_response(document& doc,
                                                                      std::string_view name,
                                                                      std::string_view payload,
                                                                      std::int64_t now,
                                                                      const limits& bounds);

 private:
  boost::json::object state_;
  boost::json::object metadata_;
  std::int64_t version_ = 0;
  bool exists_ = false;
};

// Parses and validates an update request (the /update payload or the REST body), and applies it
// to `doc`: a deep merge of desired and reported, null deleting a key (`"desired": null` the
// whole section, `"state": null` both), arrays replaced whole. A refused update leaves `doc` as
// it was. `now` is epoch seconds.
std::variant<update_result, rejection> apply_update(document& doc, std::string_view payload,
                                                    std::int64_t now, const limits& bounds = {});

// The /get/accepted document (also the REST GetThingShadow body): state with delta when
// non-empty, metadata, version, timestamp, and the clientToken of `payload` when it carries a
// valid one (the rest of a get payload is ignored). `name` is the shadow's qualified_name, for
// the 404 of a shadow that does not exist.
std::variant<boost::json::object, rejection> get_response(const document& doc,
                                                          std::string_view name,
                                                          std::string_view payload,
                                                          std::int64_t now,
                                                          const limits& bounds = {});

// Deletes the shadow and returns /delete/accepted: {"version", "timestamp", "clientToken"?},
// the version being the deleted shadow's. A shadow that does not exist is a 404.
std::variant<boost::json::object, rejection> delete_response(document& doc, std::string_view name,
                                                             std::string_view payload,
                                                             std::int64_t now,
                                                             const limits& bounds = {});

// The error document for /rejected topics and REST error bodies:
// {"code", "message", "timestamp"?, "clientToken"?}.
boost::json::object rejected_payload(const rejection& r);

// How AWS names a shadow in its messages: "thing" for the classic shadow, "thing~shadow" for a
// named one (an empty `shadow_name` is the classic shadow).
std::string qualified_name(std::string_view thing_name, std::string_view shadow_name);

// Named shadow names: 1 to 64 of [$a-zA-Z0-9:_-] (the iot-data API's ShadowName; `$` is there
// for AWS's reserved names such as `$package`). Thing names follow registry::is_valid_thing_name.
bool is_valid_shadow_name(std::string_view name);

}  // namespace nimbus::shadow
