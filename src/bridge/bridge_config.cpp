#include "bridge/bridge_config.hpp"

#include <boost/json.hpp>

#include <charconv>
#include <initializer_list>
#include <limits>
#include <optional>
#include <string>
#include <utility>

#include "mqtt/topic.hpp"

namespace nimbus::bridge {

namespace json = boost::json;

namespace {

// Reads one bridge's fields, keeping the first error with the bridge and field it names.
class reader {
 public:
  explicit reader(std::string bridge) { error_.bridge = std::move(bridge); }

  bool fail(std::string field, std::string message) {
    error_.field = std::move(field);
    error_.message = std::move(message);
    return false;
  }
  config_error error() const { return error_; }

  // A string (a path or a name when not `may_be_empty`), never with a NUL character.
  bool text(const json::value& value, std::string field, std::string& out,
            bool may_be_empty = false) {
    if (!value.is_string() || (!may_be_empty && value.get_string().empty()))
      return fail(std::move(field),
                  may_be_empty ? "must be a string" : "must be a non-empty string");
    out = std::string(value.get_string());
    if (out.find('\0') != std::string::npos)
      return fail(std::move(field), "must not contain the NUL character");
    return true;
  }
  bool flag(const json::value& value, std::string field, bool& out) {
    if (!value.is_bool()) return fail(std::move(field), "must be true or false");
    out = value.get_bool();
    return true;
  }
  template <class Integer>
  bool number(const json::value& value, std::string field, Integer& out, std::uint64_t min,
              std::uint64_t max) {
    const bool is_whole = value.is_uint64() || (value.is_int64() && value.get_int64() >= 0);
    const std::uint64_t n = value.is_uint64() ? value.get_uint64()
                            : is_whole        ? static_cast<std::uint64_t>(value.get_int64())
                                              : 0;
    if (!is_whole || n < min || n > max)
      return fail(std::move(field), "must be a whole number within " + std::to_string(min) + ".." +
                                        std::to_string(max));
    out = static_cast<Integer>(n);
    return true;
  }
  // One string, or a list of them, each non-empty; `check` says what is wrong with one.
  template <class Check>
  bool texts(const json::value& value, const std::string& field, std::vector<std::string>& out,
             bool allow_single, Check check) {
    out.clear();
    if (allow_single && value.is_string()) {
      out.emplace_back();
      if (!text(value, field, out.back())) return false;
      if (auto problem = check(out.back()); !problem.empty()) return fail(field, problem);
      return true;
    }
    if (!value.is_array())
      return fail(field, allow_single ? "must be a string or a list of strings"
                                      : "must be a list of strings");
    for (std::size_t i = 0; i < value.get_array().size(); ++i) {
      const std::string item = field + "[" + std::to_string(i) + "]";
      out.emplace_back();
      if (!text(value.get_array()[i], item, out.back())) return false;
      if (auto problem = check(out.back()); !problem.empty()) return fail(item, problem);
    }
    return true;
  }
  template <class Choice, std::size_t N>
  bool choice(const json::value& value, std::string field,
              const std::pair<std::string_view, Choice> (&choices)[N], Choice& out) {
    std::string names;
    for (const auto& [name, chosen] : choices) {
      if (value.is_string() && value.get_string() == name) {
        out = chosen;
        return true;
      }
      names += (names.empty() ? "\"" : ", \"") + std::string(name) + "\"";
    }
    return fail(std::move(field), "must be one of " + names);
  }

 private:
  config_error error_;
};

// The words of the fields that choose among a few, for the parser and for to_json (which
// writes a value's first word).
constexpr std::pair<std::string_view, mqtt_protocol> protocol_words[] = {
    {"mqttv311", mqtt_protocol::mqttv311},
    {"mqttv5", mqtt_protocol::mqttv5},
    {"mqttv50", mqtt_protocol::mqttv5}};
constexpr std::pair<std::string_view, full_policy> full_policy_words[] = {
    {"drop-oldest", full_policy::drop_oldest},
    {"drop-new", full_policy::drop_new},
    {"block", full_policy::block}};
constexpr std::pair<std::string_view, envelope_kind> envelope_words[] = {
    {"source_topic", envelope_kind::source_topic},
    {"topic_payload", envelope_kind::topic_payload},
    {"raw", envelope_kind::raw}};
constexpr std::pair<std::string_view, bool> ordering_key_words[] = {{"none", false},
                                                                    {"topic", true}};

// A field of a bridge's table: its key and how it is read into the parse state.
template <class State>
struct field {
  std::string_view key;
  bool (*read)(reader&, const json::value&, State&);
};

template <class State, std::size_t N>
bool read_fields(reader& in, const json::object& table, const field<State> (&fields)[N],
                 State& state) {
  for (const auto& [key, value] : table) {
    const field<State>* found = nullptr;
    for (const auto& f : fields)
      if (f.key == key) found = &f;
    if (found == nullptr) {
      std::string keys;
      for (const auto& f : fields) keys += (keys.empty() ? "" : ", ") + std::string(f.key);
      return in.fail(std::string(key), "unknown key (" + keys + ")");
    }
    if (!found->read(in, value, state)) return false;
  }
  return true;
}

std::string check_subscription_filter(const std::string& filter) {
  if (!mqtt::is_valid_topic_filter(filter)) return "'" + filter + "' is not a valid topic filter";
  if (mqtt::parse_shared_filter(filter))
    return "'" + filter + "' is a shared subscription, which a bridge cannot use";
  return {};
}

std::string check_alpn(const std::string& protocol) {
  return protocol.size() <= 255 ? std::string() : "an ALPN protocol is at most 255 bytes";
}

// "host:port", "[v6]:port", or a host alone (port 0: the default, set once TLS is known).
std::variant<host_port, std::string> parse_host_port(std::string_view text, bool port_required) {
  host_port out;
  std::string_view port;
  if (text.starts_with('[')) {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close == 1)
      return std::string("has no IPv6 address in [ ]");
    out.host = std::string(text.substr(1, close - 1));
    const auto rest = text.substr(close + 1);
    if (!rest.empty() && !rest.starts_with(':')) return std::string("must be [address]:port");
    port = rest.empty() ? rest : rest.substr(1);
    if (rest == ":") return std::string("has an empty port");
  } else {
    const auto colon = text.find(':');
    if (colon != std::string_view::npos && text.find(':', colon + 1) != std::string_view::npos)
      return std::string("an IPv6 address is written [address]:port");
    out.host = std::string(text.substr(0, colon));
    if (colon != std::string_view::npos) {
      port = text.substr(colon + 1);
      if (port.empty()) return std::string("has an empty port");
    }
  }
  if (out.host.empty() || out.host.find_first_of(" \t/") != std::string::npos)
    return std::string("must be host:port");
  if (port.empty()) {
    if (port_required) return std::string("needs a port (host:port)");
    return out;
  }
  unsigned value = 0;
  const auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (error != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535)
    return "port '" + std::string(port) + "' must be within 1..65535";
  out.port = static_cast<std::uint16_t>(value);
  return out;
}

// Pub/Sub's resource ids (pubsub/names.hpp, whose target this library does not link):
// ^[A-Za-z][A-Za-z0-9._~+%-]{2,254}$, not starting with "goog".
std::string check_resource_id(const std::string& id) {
  const auto is_letter = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  bool ok = id.size() >= 3 && id.size() <= 255 && is_letter(id[0]) && !id.starts_with("goog");
  for (const char c : id)
    ok = ok && (is_letter(c) || (c >= '0' && c <= '9') ||
                std::string_view("._~+%-").find(c) != std::string_view::npos);
  return ok ? std::string()
            : "'" + id +
                  "' is not a Pub/Sub id (3 to 255 of letters, digits, ._~+%-, "
                  "starting with a letter, not with goog)";
}

// A client certificate needs its key, and a key its certificate: name the one missing.
bool check_key_pair(reader& in, const tls_files& files) {
  if (!files.certfile.empty() && files.keyfile.empty())
    return in.fail("keyfile", "is required with certfile");
  if (files.certfile.empty() && !files.keyfile.empty())
    return in.fail("certfile", "is required with keyfile");
  return true;
}

// ---- topic mappings ([bridges.<name>] topic) ----

bool read_mapping_table(reader& in, const json::object& table, const std::string& field,
                        topic_mapping& out) {
  std::string pattern, local_prefix, remote_prefix, direction_text = "out";
  std::uint8_t qos = 0;
  bool has_pattern = false;
  for (const auto& [key, value] : table) {
    const std::string name = field + "." + std::string(key);
    bool ok = true;
    if (key == "pattern") {
      ok = in.text(value, name, pattern, true);
      has_pattern = true;
    } else if (key == "direction") {
      ok = in.text(value, name, direction_text);
    } else if (key == "qos") {
      ok = in.number(value, name, qos, 0, 2);
    } else if (key == "local_prefix") {
      ok = in.text(value, name, local_prefix, true);
    } else if (key == "remote_prefix") {
      ok = in.text(value, name, remote_prefix, true);
    } else {
      return in.fail(name, "unknown key (pattern, direction, qos, local_prefix, remote_prefix)");
    }
    if (!ok) return false;
  }
  if (!has_pattern) return in.fail(field + ".pattern", "is required");
  const auto direction = parse_direction(direction_text);
  if (!direction) return in.fail(field + ".direction", "must be out, in or both");
  auto made = make_topic_mapping(std::move(pattern), *direction, qos, std::move(local_prefix),
                                 std::move(remote_prefix));
  if (auto* problem = std::get_if<std::string>(&made)) return in.fail(field, *problem);
  out = std::get<topic_mapping>(std::move(made));
  return true;
}

bool read_mapping(reader& in, const json::value& value, const std::string& field,
                  std::vector<topic_mapping>& out) {
  topic_mapping mapping;
  if (value.is_string()) {
    auto parsed = parse_topic_mapping(value.get_string());
    if (auto* problem = std::get_if<std::string>(&parsed)) return in.fail(field, *problem);
    mapping = std::get<topic_mapping>(std::move(parsed));
  } else if (value.is_object()) {
    if (!read_mapping_table(in, value.get_object(), field, mapping)) return false;
  } else {
    return in.fail(field, "must be a topic line or a table {pattern, direction, qos, ...}");
  }
  for (const auto& known : out)
    if (known == mapping) return true;  // a repeated mapping is skipped, as Mosquitto does
  out.push_back(std::move(mapping));
  return true;
}

bool read_topics(reader& in, const json::value& value, std::vector<topic_mapping>& out) {
  out.clear();
  if (!value.is_array()) return read_mapping(in, value, "topic", out);
  if (value.get_array().empty()) return in.fail("topic", "must list at least one mapping");
  for (std::size_t i = 0; i < value.get_array().size(); ++i)
    if (!read_mapping(in, value.get_array()[i], "topic[" + std::to_string(i) + "]", out))
      return false;
  return true;
}

bool read_queue_field(reader& in, std::string_view key, const json::value& value,
                      queue_settings& queue) {
  if (key == "queue_max_bytes")
    return in.number(value, std::string(key), queue.max_bytes, 1,
                     static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()));
  return in.choice(value, std::string(key), full_policy_words, queue.when_full);
}

// ---- [bridges.<name>] ----

struct mqtt_state {
  mqtt_bridge bridge;
  std::optional<bool> tls;
  std::optional<std::uint32_t> session_expiry;
  bool has_client_id = false;
  bool has_notification_topic = false;
  bool has_topic = false;
};

const field<mqtt_state> mqtt_fields[] = {
    {"addresses",
     [](reader& in, const json::value& v, mqtt_state& s) {
       if (!v.is_array() || v.get_array().empty())
         return in.fail("addresses", "must be a list of \"host:port\", at least one");
       s.bridge.addresses.clear();
       for (std::size_t i = 0; i < v.get_array().size(); ++i) {
         const std::string item = "addresses[" + std::to_string(i) + "]";
         std::string text;
         if (!in.text(v.get_array()[i], item, text)) return false;
         auto parsed = parse_host_port(text, false);
         if (auto* problem = std::get_if<std::string>(&parsed))
           return in.fail(item, "'" + text + "': " + *problem);
         s.bridge.addresses.push_back(std::get<host_port>(std::move(parsed)));
       }
       return true;
     }},
    {"protocol",
     [](reader& in, const json::value& v, mqtt_state& s) {
       return in.choice(v, "protocol", protocol_words, s.bridge.protocol);
     }},
    {"tls",
     [](reader& in, const json::value& v, mqtt_state& s) {
       bool on = false;
       if (!in.flag(v, "tls", on)) return false;
       s.tls = on;
       return true;
     }},
    {"cafile", [](reader& in, const json::value& v,
                  mqtt_state& s) { return in.text(v, "cafile", s.bridge.files.cafile); }},
    {"certfile", [](reader& in, const json::value& v,
                    mqtt_state& s) { return in.text(v, "certfile", s.bridge.files.certfile); }},
    {"keyfile", [](reader& in, const json::value& v,
                   mqtt_state& s) { return in.text(v, "keyfile", s.bridge.files.keyfile); }},
    {"alpn", [](reader& in, const json::value& v,
                mqtt_state& s) { return in.texts(v, "alpn", s.bridge.alpn, true, check_alpn); }},
    {"client_id",
     [](reader& in, const json::value& v, mqtt_state& s) {
       s.has_client_id = true;
       if (!in.text(v, "client_id", s.bridge.client_id)) return false;
       return s.bridge.client_id.size() <= 65535 ||
              in.fail("client_id", "must be at most 65535 bytes");
     }},
    {"username", [](reader& in, const json::value& v,
                    mqtt_state& s) { return in.text(v, "username", s.bridge.username, true); }},
    {"password_file",
     [](reader& in, const json::value& v, mqtt_state& s) {
       return in.text(v, "password_file", s.bridge.password_file);
     }},
    {"clean_start", [](reader& in, const json::value& v,
                       mqtt_state& s) { return in.flag(v, "clean_start", s.bridge.clean_start); }},
    {"session_expiry",
     [](reader& in, const json::value& v, mqtt_state& s) {
       std::uint32_t seconds = 0;
       if (!in.number(v, "session_expiry", seconds, 0, 4'294'967'295U)) return false;
       s.session_expiry = seconds;
       return true;
     }},
    {"keep_alive",
     [](reader& in, const json::value& v, mqtt_state& s) {
       return in.number(v, "keep_alive", s.bridge.keep_alive, 5, 65535);
     }},
    {"topic",
     [](reader& in, const json::value& v, mqtt_state& s) {
       s.has_topic = true;
       return read_topics(in, v, s.bridge.topics);
     }},
    {"queue_max_bytes",
     [](reader& in, const json::value& v, mqtt_state& s) {
       return read_queue_field(in, "queue_max_bytes", v, s.bridge.queue);
     }},
    {"full_policy",
     [](reader& in, const json::value& v, mqtt_state& s) {
       return read_queue_field(in, "full_policy", v, s.bridge.queue);
     }},
    {"notifications",
     [](reader& in, const json::value& v, mqtt_state& s) {
       return in.flag(v, "notifications", s.bridge.notifications);
     }},
    {"notification_topic",
     [](reader& in, const json::value& v, mqtt_state& s) {
       s.has_notification_topic = true;
       if (!in.text(v, "notification_topic", s.bridge.notification_topic)) return false;
       return mqtt::is_valid_topic_name(s.bridge.notification_topic) ||
              in.fail("notification_topic", "must be a topic name, without + or #");
     }},
};

// The checks across fields, and the defaults that depend on other fields.
bool finish(reader& in, mqtt_state& s, const parse_context& context) {
  auto& b = s.bridge;
  if (b.addresses.empty()) return in.fail("addresses", "is required");
  if (!s.has_topic) return in.fail("topic", "is required (pattern [in|out|both] [qos] ...)");
  if (!check_key_pair(in, b.files)) return false;
  const bool has_files = !b.files.cafile.empty() || !b.files.certfile.empty();
  if (s.tls == false && has_files) return in.fail("tls", "is false but cafile or certfile is set");
  b.tls = s.tls.value_or(has_files);
  if (!b.alpn.empty() && !b.tls) return in.fail("alpn", "needs TLS (tls = true or a cafile)");
  for (auto& address : b.addresses)
    if (address.port == 0) address.port = b.tls ? 8883 : 1883;
  if (!b.password_file.empty() && b.username.empty() && b.protocol == mqtt_protocol::mqttv311)
    return in.fail("password_file", "needs a username with MQTT 3.1.1");
  if (s.session_expiry && b.protocol != mqtt_protocol::mqttv5)
    return in.fail("session_expiry", "needs protocol = \"mqttv5\" (3.1.1 has no expiry)");
  b.session_expiry = s.session_expiry.value_or(b.clean_start ? 0 : 3600);
  if (!s.has_client_id)
    b.client_id =
        (context.hostname.empty() ? std::string("nimbus") : context.hostname) + "." + b.name;
  if (!s.has_notification_topic) {
    b.notification_topic = "$SYS/broker/connection/" + b.client_id + "/state";
    if (b.notifications && !mqtt::is_valid_topic_name(b.notification_topic))
      return in.fail(s.has_client_id ? "client_id" : "notification_topic",
                     "'" + b.notification_topic + "' is not a topic name: set notification_topic");
  }
  return true;
}

// ---- [pubsub_bridges.<name>] ----

struct pubsub_state {
  pubsub_bridge bridge;
  bool has_project = false;
  bool has_filters = false;
};

bool read_target(reader& in, const json::value& v, pubsub_state& s) {
  std::string target;
  if (!in.text(v, "target", target)) return false;
  auto& b = s.bridge;
  b.is_local = target == "local";
  if (b.is_local) return true;
  b.tls = target.starts_with("grpcs://");
  if (!b.tls && !target.starts_with("grpc://"))
    return in.fail("target", "must be \"local\", \"grpc://host:port\" or \"grpcs://host:port\"");
  auto parsed = parse_host_port(std::string_view(target).substr(b.tls ? 8 : 7), true);
  if (auto* problem = std::get_if<std::string>(&parsed))
    return in.fail("target", "'" + target + "': " + *problem);
  b.remote = std::get<host_port>(std::move(parsed));
  return true;
}

const field<pubsub_state> pubsub_fields[] = {
    {"target", read_target},
    {"cafile", [](reader& in, const json::value& v,
                  pubsub_state& s) { return in.text(v, "cafile", s.bridge.files.cafile); }},
    {"certfile", [](reader& in, const json::value& v,
                    pubsub_state& s) { return in.text(v, "certfile", s.bridge.files.certfile); }},
    {"keyfile", [](reader& in, const json::value& v,
                   pubsub_state& s) { return in.text(v, "keyfile", s.bridge.files.keyfile); }},
    {"token_file", [](reader& in, const json::value& v,
                      pubsub_state& s) { return in.text(v, "token_file", s.bridge.token_file); }},
    {"project",
     [](reader& in, const json::value& v, pubsub_state& s) {
       s.has_project = true;
       if (!in.text(v, "project", s.bridge.project)) return false;
       return (s.bridge.project.size() <= 255 && s.bridge.project.find('/') == std::string::npos) ||
              in.fail("project", "must be at most 255 bytes, without '/'");
     }},
    {"filters",
     [](reader& in, const json::value& v, pubsub_state& s) {
       s.has_filters = true;
       return in.texts(v, "filters", s.bridge.filters, false, check_subscription_filter);
     }},
    {"topic",
     [](reader& in, const json::value& v, pubsub_state& s) {
       if (!in.text(v, "topic", s.bridge.topic)) return false;
       auto problem = check_resource_id(s.bridge.topic);
       return problem.empty() || in.fail("topic", problem);
     }},
    {"envelope",
     [](reader& in, const json::value& v, pubsub_state& s) {
       return in.choice(v, "envelope", envelope_words, s.bridge.envelope);
     }},
    {"ordering_key",
     [](reader& in, const json::value& v, pubsub_state& s) {
       return in.choice(v, "ordering_key", ordering_key_words, s.bridge.order_by_topic);
     }},
    {"queue_max_bytes",
     [](reader& in, const json::value& v, pubsub_state& s) {
       return read_queue_field(in, "queue_max_bytes", v, s.bridge.queue);
     }},
    {"full_policy",
     [](reader& in, const json::value& v, pubsub_state& s) {
       return read_queue_field(in, "full_policy", v, s.bridge.queue);
     }},
    {"subscription",
     [](reader& in, const json::value& v, pubsub_state& s) {
       if (!in.text(v, "subscription", s.bridge.subscription)) return false;
       auto problem = check_resource_id(s.bridge.subscription);
       return problem.empty() || in.fail("subscription", problem);
     }},
    {"allowed_topics",
     [](reader& in, const json::value& v, pubsub_state& s) {
       if (!in.texts(v, "allowed_topics", s.bridge.allowed_topics, false,
                     check_subscription_filter))
         return false;
       return !s.bridge.allowed_topics.empty() ||
              in.fail("allowed_topics", "must list at least one topic filter");
     }},
    {"max_outstanding",
     [](reader& in, const json::value& v, pubsub_state& s) {
       return in.number(v, "max_outstanding", s.bridge.max_outstanding, 1, 1'000'000);
     }},
    {"command_qos",
     [](reader& in, const json::value& v, pubsub_state& s) {
       return in.number(v, "command_qos", s.bridge.command_qos, 0, 2);
     }},
};

bool finish(reader& in, pubsub_state& s) {
  auto& b = s.bridge;
  if (!s.has_project) return in.fail("project", "is required");
  if (b.topic.empty() && b.subscription.empty())
    return in.fail("", "needs a topic (upstream), a subscription (downstream) or both");
  if (!b.topic.empty() && b.filters.empty())
    return in.fail("filters", "must list the MQTT topic filters to forward to topic");
  if (b.topic.empty() && s.has_filters) return in.fail("filters", "needs a topic to forward to");
  if (!check_key_pair(in, b.files)) return false;
  const bool has_files = !b.files.cafile.empty() || !b.files.certfile.empty();
  if (has_files && !b.tls)
    return in.fail(b.files.cafile.empty() ? "certfile" : "cafile",
                   "needs target = \"grpcs://host:port\"");
  if (b.is_local && !b.token_file.empty())
    return in.fail("token_file", "needs a remote target (grpc:// or grpcs://)");
  return true;
}

template <class Bridge, class State, std::size_t N, class Finish>
std::variant<Bridge, config_error> parse_bridge(std::string_view section, std::string_view name,
                                                std::string_view json_text,
                                                const field<State> (&fields)[N],
                                                Finish finish_state) {
  reader in(std::string(section) + "." + std::string(name));
  if (!is_valid_bridge_name(name)) {
    in.fail("",
            "a bridge name is 1 to 64 of letters, digits, '-', '_' and '.', not starting "
            "with '.'");
    return in.error();
  }
  json::error_code ec;
  const json::value parsed = json::parse(json_text, ec);
  if (ec || !parsed.is_object()) {
    in.fail("", "must be a table");
    return in.error();
  }
  State state;
  state.bridge.name = std::string(name);
  if (!read_fields(in, parsed.get_object(), fields, state) || !finish_state(in, state))
    return in.error();
  return std::move(state.bridge);
}

std::optional<config_error> probe_files(
    std::string bridge,
    std::initializer_list<std::pair<std::string_view, const std::string*>> files,
    const file_probe& probe) {
  for (const auto& [field_name, path] : files) {
    if (path->empty()) continue;
    if (auto why = probe(*path))
      return config_error{bridge, std::string(field_name), "cannot read '" + *path + "': " + *why};
  }
  return std::nullopt;
}

// ---- back to JSON ----

template <class Choice, std::size_t N>
std::string_view word(const std::pair<std::string_view, Choice> (&words)[N], Choice value) {
  for (const auto& [name, chosen] : words)
    if (chosen == value) return name;
  return words[0].first;
}

// As parse_host_port reads it back: an IPv6 address in brackets, and a host starting with one
// too (from "[[x]:1"; bare, "[x:1" would not read).
std::string address_text(const host_port& address) {
  const bool needs_brackets =
      address.host.find(':') != std::string::npos || address.host.starts_with('[');
  return (needs_brackets ? "[" + address.host + "]" : address.host) + ":" +
         std::to_string(address.port);
}

json::array string_array(const std::vector<std::string>& items) {
  json::array out;
  for (const auto& item : items) out.emplace_back(item);
  return out;
}

void put_files(json::object& out, const tls_files& files) {
  if (!files.cafile.empty()) out["cafile"] = files.cafile;
  if (!files.certfile.empty()) out["certfile"] = files.certfile;
  if (!files.keyfile.empty()) out["keyfile"] = files.keyfile;
}

}  // namespace

std::string config_error::text() const {
  return bridge + (field.empty() ? "" : "." + field) + ": " + message;
}

bool is_valid_bridge_name(std::string_view name) {
  if (name.empty() || name.size() > 64 || name[0] == '.') return false;
  for (const char c : name)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
          c == '_' || c == '.'))
      return false;
  return true;
}

std::variant<mqtt_bridge, config_error> parse_mqtt_bridge(std::string_view name,
                                                          std::string_view json_text,
                                                          const parse_context& context) {
  return parse_bridge<mqtt_bridge>(
      "bridges", name, json_text, mqtt_fields,
      [&context](reader& in, mqtt_state& s) { return finish(in, s, context); });
}

std::variant<pubsub_bridge, config_error> parse_pubsub_bridge(std::string_view name,
                                                              std::string_view json_text) {
  return parse_bridge<pubsub_bridge>("pubsub_bridges", name, json_text, pubsub_fields,
                                     [](reader& in, pubsub_state& s) { return finish(in, s); });
}

std::string to_json(const mqtt_bridge& b) {
  json::object out;
  json::array addresses;
  for (const auto& address : b.addresses) addresses.emplace_back(address_text(address));
  out["addresses"] = std::move(addresses);
  out["protocol"] = word(protocol_words, b.protocol);
  out["tls"] = b.tls;
  put_files(out, b.files);
  if (!b.alpn.empty()) out["alpn"] = string_array(b.alpn);
  out["client_id"] = b.client_id;
  if (!b.username.empty()) out["username"] = b.username;
  if (!b.password_file.empty()) out["password_file"] = b.password_file;
  out["clean_start"] = b.clean_start;
  // 3.1.1 has no expiry: the parser refuses the field there, so it is left out.
  if (b.protocol == mqtt_protocol::mqttv5) out["session_expiry"] = b.session_expiry;
  out["keep_alive"] = b.keep_alive;
  json::array topics;
  for (const auto& mapping : b.topics) {
    json::object t;
    t["pattern"] = mapping.pattern;
    t["direction"] = to_string(mapping.direction);
    t["qos"] = mapping.qos;
    t["local_prefix"] = mapping.local_prefix;
    t["remote_prefix"] = mapping.remote_prefix;
    topics.emplace_back(std::move(t));
  }
  out["topic"] = std::move(topics);
  out["queue_max_bytes"] = b.queue.max_bytes;
  out["full_policy"] = word(full_policy_words, b.queue.when_full);
  out["notifications"] = b.notifications;
  // Without notifications the default topic is not checked (it may not even be a topic name).
  if (b.notifications) out["notification_topic"] = b.notification_topic;
  return json::serialize(out);
}

std::string to_json(const pubsub_bridge& b) {
  json::object out;
  out["target"] = b.is_local ? std::string("local")
                             : std::string(b.tls ? "grpcs://" : "grpc://") + address_text(b.remote);
  put_files(out, b.files);
  if (!b.token_file.empty()) out["token_file"] = b.token_file;
  out["project"] = b.project;
  // Filters need a topic, and a topic needs filters.
  if (!b.filters.empty()) out["filters"] = string_array(b.filters);
  if (!b.topic.empty()) out["topic"] = b.topic;
  out["envelope"] = word(envelope_words, b.envelope);
  out["ordering_key"] = word(ordering_key_words, b.order_by_topic);
  out["queue_max_bytes"] = b.queue.max_bytes;
  out["full_policy"] = word(full_policy_words, b.queue.when_full);
  if (!b.subscription.empty()) out["subscription"] = b.subscription;
  out["allowed_topics"] = string_array(b.allowed_topics);
  out["max_outstanding"] = b.max_outstanding;
  out["command_qos"] = b.command_qos;
  return json::serialize(out);
}

std::optional<config_error> check_files(const mqtt_bridge& bridge, const file_probe& probe) {
  return probe_files("bridges." + bridge.name,
                     {{"cafile", &bridge.files.cafile},
                      {"certfile", &bridge.files.certfile},
                      {"keyfile", &bridge.files.keyfile},
                      {"password_file", &bridge.password_file}},
                     probe);
}

std::optional<config_error> check_files(const pubsub_bridge& bridge, const file_probe& probe) {
  return probe_files("pubsub_bridges." + bridge.name,
                     {{"cafile", &bridge.files.cafile},
                      {"certfile", &bridge.files.certfile},
                      {"keyfile", &bridge.files.keyfile},
                      {"token_file", &bridge.token_file}},
                     probe);
}

}  // namespace nimbus::bridge
