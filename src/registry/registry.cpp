#include "registry/registry.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cctype>
#include <mutex>

#include "core/random.hpp"
#include "registry/certificate_authority.hpp"
#include "storage/database.hpp"
#include "storage/write_queue.hpp"

namespace nimbus::registry {

namespace json = boost::json;

namespace {

constexpr std::size_t max_policy_versions = 5;
constexpr std::size_t max_policies_per_target = 10;
constexpr std::size_t max_attributes_untyped = 3;
constexpr std::size_t max_attributes_typed = 50;
constexpr std::size_t max_group_depth = 7;
// AWS IoT device certificates are valid until the end of 2049.
constexpr int device_certificate_days = 365 * 23;

const std::set<std::string> certificate_statuses = {
    "ACTIVE", "INACTIVE", "REVOKED", "PENDING_TRANSFER", "REGISTER_INACTIVE", "PENDING_ACTIVATION"};

[[noreturn]] void refuse(unsigned status, std::string type, std::string message) {
  throw api_error{status, std::move(type), std::move(message), {}, {}};
}
[[noreturn]] void invalid(std::string message) {
  refuse(400, "InvalidRequestException", std::move(message));
}
[[noreturn]] void not_found(std::string message) {
  refuse(404, "ResourceNotFoundException", std::move(message));
}
[[noreturn]] void conflict(std::string type, std::string message) {
  refuse(409, std::move(type), std::move(message));
}
[[noreturn]] void already_exists(std::string message, std::string id, std::string arn) {
  throw api_error{409, "ResourceAlreadyExistsException", std::move(message), std::move(id),
                  std::move(arn)};
}

// A random (version 4) UUID, the form AWS uses for thing, type and group ids.
std::string new_uuid() {
  auto h = core::random_hex(16);
  h[12] = '4';
  h[16] = "89ab"[h[16] % 4];
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) +
         "-" + h.substr(20);
}

bool all_of_chars(std::string_view s, std::string_view extra) {
  return std::all_of(s.begin(), s.end(), [extra](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || extra.find(c) != std::string_view::npos;
  });
}

bool is_valid_attribute_name(std::string_view s) {
  return !s.empty() && s.size() <= 128 && all_of_chars(s, "_.,@/:#-");
}

bool is_valid_attribute_value(std::string_view s) {
  return s.size() <= 800 && std::all_of(s.begin(), s.end(), [](char c) {
           return static_cast<unsigned char>(c) >= 0x20 && c != 0x7f;
         });
}

// Page tokens are opaque to clients; a token that we did not issue is refused.
std::string encode_token(const std::string& key) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out = "nb1";
  for (unsigned char c : key) {
    out.push_back(hex[c >> 4]);
    out.push_back(hex[c & 15]);
  }
  return out;
}

std::string decode_token(const std::string& token) {
  if (token.empty()) return {};
  auto bad = [] { invalid("The pagination token is invalid."); };
  if (token.size() < 3 || token.compare(0, 3, "nb1") != 0 || (token.size() - 3) % 2 != 0) bad();
  std::string out;
  for (std::size_t i = 3; i < token.size(); i += 2) {
    auto nibble = [&](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      bad();
      return 0;
    };
    out.push_back(static_cast<char>(nibble(token[i]) * 16 + nibble(token[i + 1])));
  }
  return out;
}

// Pages through `keyed`, in listing order, which is ascending key order (or descending with
// `descending`). The token names the last key returned; the next page starts at the first key
// past it, so deleting the items of a page while paging skips nothing.
// Items may be given by pointer (into the registry's maps, under its lock): only the page's
// items are then copied, not every object the listing considered.
template <class T>
const T& item_of(const T& item) {
  return item;
}
template <class T>
const T& item_of(const T* item) {
  return *item;
}

template <class T>
auto paginate(std::vector<std::pair<std::string, T>> keyed, const std::string& token,
              std::size_t max, bool descending = false) {
  std::string after = decode_token(token);
  page<std::remove_cvref_t<decltype(item_of(keyed.front().second))>> out;
  std::size_t i = 0;
  if (!token.empty())
    while (i < keyed.size() && (descending ? keyed[i].first >= after : keyed[i].first <= after))
      ++i;
  for (; i < keyed.size() && out.items.size() < max; ++i)
    out.items.push_back(item_of(keyed[i].second));
  if (i < keyed.size() && !out.items.empty()) out.next_token = encode_token(keyed[i - 1].first);
  return out;
}

// The resource part of an ARN ("cert/abc" of "arn:aws:iot:r:a:cert/abc"); "" if not an ARN.
std::string arn_resource(std::string_view arn) {
  if (!arn.starts_with("arn:")) return {};
  std::size_t pos = 0;
  for (int colons = 0; colons < 5; ++colons) {
    pos = arn.find(':', pos);
    if (pos == std::string_view::npos) return {};
    ++pos;
  }
  return std::string(arn.substr(pos));
}

// Attachments are keyed by the resource part of an ARN ("cert/{id}", "thinggroup/{name}"), so
// they survive a change of the configured region or account.
std::string cert_key(std::string_view id) {
  return "cert/" + std::string(id);
}
std::string group_key(std::string_view name) {
  return "thinggroup/" + std::string(name);
}
std::string type_key(std::string_view name) {
  return "thingtype/" + std::string(name);
}
std::string policy_key(std::string_view name) {
  return "policy/" + std::string(name);
}
std::string ca_key(std::string_view id) {
  return "cacert/" + std::string(id);
}
std::string key_of(std::string stored) {
  return stored.starts_with("arn:") ? arn_resource(stored) : stored;
}

std::string lowercase(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// ---- tags -----------------------------------------------------------------------------------

using tag_map = std::map<std::string, std::map<std::string, std::string>>;
constexpr std::size_t max_tags = 50;  // per resource, as in AWS

// UTF-8 characters in `s` (continuation bytes not counted).
std::size_t characters(std::string_view s) {
  return static_cast<std::size_t>(std::count_if(
      s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

// Tag keys: 1-128 characters of letters, digits, spaces and _.:/=+-@ (non-ASCII letters are
// accepted as letters); the aws: prefix is reserved. Values: up to 256 characters.
void check_tag_key(const std::string& key) {
  bool allowed = std::all_of(key.begin(), key.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u >= 0x80 || std::isalnum(u) ||
           std::string_view(" _.:/=+-@").find(c) != std::string_view::npos;
  });
  auto n = characters(key);
  if (n < 1 || n > 128 || !allowed)
    invalid("1 validation error detected: Value '" + key +
            "' at 'tags.member.key' failed to satisfy constraint: Member must satisfy regular "
            "expression pattern: ^([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)$ and have length between 1 "
            "and 128");
  if (lowercase(key).starts_with("aws:"))
    invalid("Tag keys starting with aws: are reserved for AWS use: " + key);
}

void check_tags(const tag_list& tags) {
  for (const auto& [key, value] : tags) {
    check_tag_key(key);
    if (characters(value) > 256)
      invalid("The value of tag " + key + " is longer than 256 characters");
  }
}

// Adds or replaces `tags` on `resource`; refused (nothing changed) beyond 50 tags.
void add_tags(tag_map& all, const std::string& resource, const tag_list& tags) {
  if (tags.empty()) return;
  std::map<std::string, std::string> updated;
  if (auto it = all.find(resource); it != all.end()) updated = it->second;
  for (const auto& [key, value] : tags) updated[key] = value;
  if (updated.size() > max_tags)
    refuse(410, "LimitExceededException",
           "A resource can have at most " + std::to_string(max_tags) + " tags");
  all[resource] = std::move(updated);
}

// ---- JSON rows ------------------------------------------------------------------------------

json::object attributes_json(const attribute_map& m) {
  json::object o;
  for (const auto& [k, v] : m) o[k] = v;
  return o;
}
attribute_map attributes_of(const json::value& v) {
  attribute_map m;
  if (const auto* o = v.if_object())
    for (const auto& [k, val] : *o)
      if (val.is_string()) m[std::string(k)] = std::string(val.get_string());
  return m;
}
json::array strings_json(const auto& container) {
  json::array a;
  for (const auto& s : container) a.emplace_back(s);
  return a;
}
template <class Container>
Container strings_of(const json::value& v) {
  Container out;
  if (const auto* a = v.if_array())
    for (const auto& s : *a)
      if (s.is_string()) out.insert(out.end(), std::string(s.get_string()));
  return out;
}
std::string str(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->get_string()) : std::string();
}
double num(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v && v->is_number() ? v->to_number<double>() : 0.0;
}
std::int64_t integer(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v && v->is_number() ? v->to_number<std::int64_t>() : 0;
}
bool boolean(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v && v->is_bool() && v->get_bool();
}

}  // namespace

bool is_valid_thing_name(std::string_view name) {
  return !name.empty() && name.size() <= 128 && all_of_chars(name, ":_-");
}

bool is_valid_policy_name(std::string_view name) {
  return !name.empty() && name.size() <= 128 && all_of_chars(name, "_+=,.@-");
}

// ---- state and change batches -----------------------------------------------------------------

struct registry::state {
  std::map<std::string, thing> things;
  std::map<std::string, thing_type> thing_types;
  std::map<std::string, thing_group> thing_groups;
  std::map<std::string, certificate> certificates;
  std::map<std::string, ca_certificate> ca_certificates;
  std::map<std::string, policy_entry> policies;
  // Tags by resource key ("thinggroup/{name}", "thingtype/{name}", "policy/{name}",
  // "cacert/{id}"), each a map of key to value. Present only while a resource has tags.
  tag_map tags;
  // Reverse indexes, rebuilt from the rows above.
  std::map<std::string, std::set<std::string>> principal_things;  // cert ARN -> thing names
  std::map<std::string, std::set<std::string>> target_policies;   // target ARN -> policy names
};

// The objects one change touched; each is written (or deleted) as a whole afterwards.
class registry::batch {
 public:
  explicit batch(state& st) : s(st) {}
  state& s;
  void touch(std::string kind, std::string name) {
    touched.emplace(std::move(kind), std::move(name));
  }
  void disable_certificate(std::string id) { disabled.push_back(std::move(id)); }
  // Adds or replaces tags on `resource` (refused beyond 50, nothing changed); drops them all.
  void tag(const std::string& resource, const tag_list& tags) {
    if (tags.empty()) return;
    add_tags(s.tags, resource, tags);
    touch("tags", resource);
  }
  void drop_tags(const std::string& resource) {
    if (s.tags.erase(resource) > 0) touch("tags", resource);
  }
  std::set<std::pair<std::string, std::string>> touched;
  std::vector<std::string> disabled;
};

namespace {

json::object to_json(const thing& t) {
  return {{"name", t.name},
          {"id", t.id},
          {"type", t.type_name},
          {"attributes", attributes_json(t.attributes)},
          {"version", t.version},
          {"billing_group", t.billing_group},
          {"principals", strings_json(t.principals)},
          {"groups", strings_json(t.groups)},
          {"created", t.created}};
}
json::object to_json(const thing_type& t) {
  return {{"name", t.name},
          {"id", t.id},
          {"description", t.description},
          {"searchable", strings_json(t.searchable_attributes)},
          {"deprecated", t.deprecated},
          {"deprecation_date", t.deprecation_date},
          {"created", t.created}};
}
json::object to_json(const thing_group& g) {
  return {{"name", g.name},
          {"id", g.id},
          {"parent", g.parent},
          {"description", g.description},
          {"attributes", attributes_json(g.attributes)},
          {"version", g.version},
          {"created", g.created}};
}
json::object to_json(const certificate& c) {
  return {{"id", c.id},
          {"pem", c.info.pem},
          {"status", c.status},
          {"ca_id", c.ca_id},
          {"mode", c.mode},
          {"generation_id", c.generation_id},
          {"customer_version", c.customer_version},
          {"created", c.created},
          {"modified", c.modified}};
}
json::object to_json(const ca_certificate& c) {
  return {{"id", c.id},
          {"pem", c.info.pem},
          {"status", c.status},
          {"auto_registration", c.auto_registration},
          {"generation_id", c.generation_id},
          {"customer_version", c.customer_version},
          {"created", c.created},
          {"modified", c.modified}};
}
json::object to_json(const policy_entry& p) {
  json::array versions;
  for (const auto& [id, v] : p.versions)
    versions.push_back(json::object{{"id", id}, {"document", v.document}, {"created", v.created}});
  return {{"name", p.name},
          {"default_version", p.default_version},
          {"next_version", p.next_version},
          {"versions", versions},
          {"targets", strings_json(p.targets)},
          {"generation_id", p.generation_id},
          {"created", p.created},
          {"modified", p.modified}};
}

std::shared_ptr<const policy::document> compile(const std::string& text) {
  // AWS counts 2048 characters without whitespace (the parser checks that); the raw text is
  // capped too, so whitespace cannot make a stored document arbitrarily large.
  if (text.size() > 20 * 1024)
    refuse(400, "MalformedPolicyException", "The policy document exceeds 20480 bytes");
  auto parsed = policy::document::parse(text);
  if (auto* error = std::get_if<policy::parse_error>(&parsed))
    refuse(400, "MalformedPolicyException", error->message);
  return std::make_shared<const policy::document>(std::move(std::get<policy::document>(parsed)));
}

// The request-time facts of a device connection, by IAM key, for policy evaluation.
class device_context final : public policy::request_context {
 public:
  device_context(const device_facts& device, const certificate* cert, const thing* attached)
      : device_(device), cert_(cert), thing_(attached) {}

  std::optional<std::vector<std::string>> lookup(std::string_view key) const override {
    using values = std::vector<std::string>;
    const std::string k = lowercase(key);
    if (k == "iot:clientid") return values{std::string(device_.client_id)};
    if (k == "aws:sourceip") {
      if (device_.source_ip.empty()) return std::nullopt;
      return values{std::string(device_.source_ip)};
    }
    if (k == "iot:connectattributes") {
      values v;
      if (device_.persistent_connect) v.push_back("PersistentConnect");
      if (device_.last_will) v.push_back("LastWill");
      if (v.empty()) return std::nullopt;
      return v;
    }
    if (k == "aws:securetransport") return values{cert_ != nullptr ? "true" : "false"};
    if (k == "iot:connection.thing.isattached") return values{thing_ ? "true" : "false"};
    if (k.starts_with("iot:connection.thing.")) {
      if (thing_ == nullptr) return std::nullopt;
      std::string_view rest = std::string_view(key).substr(21);
      if (lowercase(rest) == "thingname") return values{thing_->name};
      if (lowercase(rest) == "thingtypename") {
        if (thing_->type_name.empty()) return std::nullopt;
        return values{thing_->type_name};
      }
      if (lowercase(rest.substr(0, 11)) == "attributes[" && rest.ends_with("]")) {
        auto it = thing_->attributes.find(std::string(rest.substr(11, rest.size() - 12)));
        if (it == thing_->attributes.end()) return std::nullopt;
        return values{it->second};
      }
      return std::nullopt;
    }
    if (k.starts_with("iot:certificate.") && cert_ != nullptr)
      return certificate_key(key.substr(16));
    return std::nullopt;
  }

 private:
  std::optional<std::vector<std::string>> certificate_key(std::string_view rest) const {
    using values = std::vector<std::string>;
    const auto& info = cert_->info;
    std::string k = lowercase(rest);
    bool list = k.ends_with(".list");
    if (list) k.resize(k.size() - 5);
    auto answer = [list](values v) -> std::optional<values> {
      if (v.empty()) return std::nullopt;
      if (!list) v.resize(1);
      return v;
    };
    for (auto [prefix, fields] :
         {std::pair{"subject.", &info.subject}, std::pair{"issuer.", &info.issuer}}) {
      if (!k.starts_with(prefix)) continue;
      std::string field = k.substr(std::string_view(prefix).size());
      values v;
      for (const auto& [name, value] : *fields)
        if (lowercase(name) == field) v.push_back(value);
      return answer(std::move(v));
    }
    if (k == "subjectalternativename.dns") return answer(info.dns_names);
    if (k == "subjectalternativename.ipaddress") return answer(info.ip_addresses);
    if (k == "subjectalternativename.rfc822name") return answer(info.email_addresses);
    if (k == "subjectalternativename.uniformresourceidentifier") return answer(info.uris);
    if (k == "serialnumber") return values{info.serial_hex};
    if (k == "validity.notbefore") return values{std::to_string(info.not_before * 1000)};
    if (k == "validity.notafter") return values{std::to_string(info.not_after * 1000)};
    return std::nullopt;
  }

  const device_facts& device_;
  const certificate* cert_;
  const thing* thing_;
};

}  // namespace

// ---- lifecycle ----------------------------------------------------------------------------------

registry::registry(std::string arn_prefix, std::string account, const certificate_authority& ca,
                   core::clock& clock)
    : arn_prefix_(std::move(arn_prefix)),
      account_(std::move(account)),
      ca_(ca),
      clock_(clock),
      state_(std::make_unique<state>()) {}

registry::~registry() = default;

void registry::migrate(storage::database& db) {
  db.migrate("registry", {R"(CREATE TABLE registry_objects (
        kind TEXT NOT NULL, name TEXT NOT NULL, body TEXT NOT NULL,
        PRIMARY KEY (kind, name)) WITHOUT ROWID)"});
}

void registry::load(storage::database& db) {
  std::unique_lock lock(mutex_);
  auto& s = *state_;
  auto rows = db.prepare("SELECT kind, body, name FROM registry_objects");
  std::size_t loaded = 0;
  while (rows.step()) {
    std::string kind = rows.column_text(0);
    json::value parsed = json::parse(rows.column_text(1));
    const json::object& o = parsed.as_object();
    ++loaded;
    if (kind == "thing") {
      thing t{str(o, "name"),
              str(o, "id"),
              str(o, "type"),
              attributes_of(o.at("attributes")),
              integer(o, "version"),
              str(o, "billing_group"),
              strings_of<std::set<std::string>>(o.at("principals")),
              strings_of<std::set<std::string>>(o.at("groups")),
              num(o, "created")};
      std::set<std::string> principals;
      for (const auto& p : t.principals) principals.insert(key_of(p));
      t.principals = std::move(principals);
      for (const auto& p : t.principals) s.principal_things[p].insert(t.name);
      s.things[t.name] = std::move(t);
    } else if (kind == "thing_type") {
      thing_type t{
          str(o, "name"),           str(o, "id"),
          str(o, "description"),    strings_of<std::vector<std::string>>(o.at("searchable")),
          boolean(o, "deprecated"), num(o, "deprecation_date"),
          num(o, "created")};
      s.thing_types[t.name] = std::move(t);
    } else if (kind == "thing_group") {
      thing_group g{str(o, "name"),
                    str(o, "id"),
                    str(o, "parent"),
                    str(o, "description"),
                    attributes_of(o.at("attributes")),
                    integer(o, "version"),
                    num(o, "created")};
      s.thing_groups[g.name] = std::move(g);
    } else if (kind == "certificate") {
      auto info = parse_certificate_pem(str(o, "pem"));
      if (!info) throw std::runtime_error("registry: stored certificate does not parse");
      certificate c{str(o, "id"),      str(o, "status"),        str(o, "ca_id"),
                    str(o, "mode"),    str(o, "generation_id"), integer(o, "customer_version"),
                    num(o, "created"), num(o, "modified"),      std::move(*info)};
      s.certificates[c.id] = std::move(c);
    } else if (kind == "ca_certificate") {
      auto info = parse_certificate_pem(str(o, "pem"));
      if (!info) throw std::runtime_error("registry: stored CA certificate does not parse");
      ca_certificate c{str(o, "id"),
                       str(o, "status"),
                       str(o, "auto_registration"),
                       str(o, "generation_id"),
                       integer(o, "customer_version"),
                       num(o, "created"),
                       num(o, "modified"),
                       std::move(*info)};
      s.ca_certificates[c.id] = std::move(c);
    } else if (kind == "policy") {
      policy_entry p;
      p.name = str(o, "name");
      p.default_version = integer(o, "default_version");
      p.next_version = integer(o, "next_version");
      for (const auto& v : o.at("versions").as_array()) {
        const auto& vo = v.as_object();
        auto text = str(vo, "document");
        std::shared_ptr<const policy::document> compiled;
        try {
          compiled = compile(text);
        } catch (const api_error& e) {
          throw std::runtime_error("registry: stored policy " + p.name +
                                   " no longer parses: " + e.message);
        }
        p.versions[integer(vo, "id")] = policy_version{text, num(vo, "created"), compiled};
      }
      for (auto& t : strings_of<std::vector<std::string>>(o.at("targets")))
        p.targets.insert(key_of(std::move(t)));
      p.generation_id = str(o, "generation_id");
      p.created = num(o, "created");
      p.modified = num(o, "modified");
      for (const auto& t : p.targets) s.target_policies[t].insert(p.name);
      s.policies[p.name] = std::move(p);
    } else if (kind == "tags") {
      s.tags[rows.column_text(2)] = attributes_of(o.at("tags"));
    }
  }
  spdlog::info("registry_loaded objects={} things={} certificates={} policies={}", loaded,
               s.things.size(), s.certificates.size(), s.policies.size());
}

double registry::now() const {
  return static_cast<double>(clock_.unix_seconds());
}

registry::ticket registry::mutate(const std::function<void(batch&)>& change) {
  std::vector<std::string> disabled;
  ticket t;
  {
    std::unique_lock lock(mutex_);
    // A failed write left memory ahead of the database; acknowledging more would be a lie.
    if (store_failed_->load())
      refuse(503, "ServiceUnavailableException",
             "The registry could not store an earlier change; restart the server");
    batch b(*state_);
    change(b);  // validates before it modifies: a refusal throws with nothing changed
    struct row {
      std::string kind, name;
      std::optional<std::string> body;
    };
    std::vector<row> rows;
    const auto& s = *state_;
    for (const auto& [kind, name] : b.touched) {
      std::optional<std::string> body;
      auto dump = [&](const auto& map) {
        auto it = map.find(name);
        if (it != map.end()) body = json::serialize(to_json(it->second));
      };
      if (kind == "thing") dump(s.things);
      if (kind == "thing_type") dump(s.thing_types);
      if (kind == "thing_group") dump(s.thing_groups);
      if (kind == "certificate") dump(s.certificates);
      if (kind == "ca_certificate") dump(s.ca_certificates);
      if (kind == "policy") dump(s.policies);
      if (kind == "tags") {
        if (auto it = s.tags.find(name); it != s.tags.end())
          body = json::serialize(json::object{{"tags", attributes_json(it->second)}});
      }
      rows.push_back({kind, name, std::move(body)});
    }
    if (writer_ != nullptr && !rows.empty()) {
      last_ticket_ =
          writer_->submit([rows = std::move(rows), failed = store_failed_](storage::database& db) {
            // Any failure is rethrown to the writer (the savepoint rolls back, nobody is answered
            // 200), and remembered: memory already holds the change.
            struct on_failure {
              const std::shared_ptr<std::atomic<bool>>& failed;
              ~on_failure() {
                if (std::uncaught_exceptions() > 0) failed->store(true);
              }
            } guard{failed};
            for (const auto& r : rows) {
              if (r.body) {
                db.cached(
                      "INSERT INTO registry_objects (kind, name, body) VALUES (?, ?, ?) "
                      "ON CONFLICT (kind, name) DO UPDATE SET body = excluded.body")
                    .bind(1, r.kind)
                    .bind(2, r.name)
                    .bind(3, *r.body)
                    .run();
              } else {
                db.cached("DELETE FROM registry_objects WHERE kind = ? AND name = ?")
                    .bind(1, r.kind)
                    .bind(2, r.name)
                    .run();
              }
            }
          });
    }
    // A change that wrote nothing (an idempotent repeat) is acknowledged once the last write,
    // which may have made its state, is durable.
    t = last_ticket_;
    disabled = std::move(b.disabled);
  }
  if (certificate_disabled_)
    for (const auto& id : disabled) certificate_disabled_(id);
  return t;
}

// ---- things -------------------------------------------------------------------------------------

namespace {

void check_attributes(const attribute_map& attributes) {
  for (const auto& [k, v] : attributes) {
    if (!is_valid_attribute_name(k))
      invalid("Attribute name '" + k + "' is invalid: it must match [a-zA-Z0-9_.,@/:#-]{1,128}");
    if (!is_valid_attribute_value(v))
      invalid("Attribute value for '" + k + "' is invalid: at most 800 printable characters");
  }
}

void check_description(const std::string& description) {
  if (description.size() > 2028) invalid("The description is longer than 2028 characters");
}

void check_thing_name(const std::string& name, const char* what = "thingName") {
  if (!is_valid_thing_name(name))
    invalid(std::string("1 validation error detected: Value '") + name + "' at '" + what +
            "' failed to satisfy constraint: Member must satisfy regular expression pattern: "
            "[a-zA-Z0-9:_-]+ and have length between 1 and 128");
}

void check_attribute_count(const attribute_map& attributes, bool typed) {
  std::size_t limit = typed ? max_attributes_typed : max_attributes_untyped;
  if (attributes.size() > limit)
    invalid("A thing " + std::string(typed ? "with" : "without") +
            " a thing type can have at most " + std::to_string(limit) + " attributes");
}

// Applies an attribute payload: merged (an empty value deletes) or replacing the whole set.
attribute_map apply_attributes(const attribute_map& current, const attribute_map& given,
                               bool merge) {
  attribute_map out = merge ? current : attribute_map{};
  for (const auto& [k, v] : given) {
    if (v.empty())
      out.erase(k);
    else
      out[k] = v;
  }
  return out;
}

const thing_type& usable_type(const std::map<std::string, thing_type>& types,
                              const std::string& name) {
  auto it = types.find(name);
  if (it == types.end()) not_found("Thing type " + name + " not found");
  if (it->second.deprecated) invalid("Can not create new thing with deprecated thing type:" + name);
  return it->second;
}

}  // namespace

std::pair<thing, registry::ticket> registry::create_thing(const std::string& name,
                                                          const thing_request& r) {
  check_thing_name(name);
  if (!r.billing_group.empty()) check_thing_name(r.billing_group, "billingGroupName");
  attribute_map attributes = r.attributes ? *r.attributes : attribute_map{};
  check_attributes(attributes);
  std::erase_if(attributes, [](const auto& kv) { return kv.second.empty(); });
  thing result;
  auto t = mutate([&](batch& b) {
    if (auto it = b.s.things.find(name); it != b.s.things.end()) {
      // Creating again with the same configuration succeeds and changes nothing.
      if (it->second.type_name == r.type_name && it->second.attributes == attributes) {
        result = it->second;
        return;
      }
      already_exists("Thing " + name + " already exists in account with different attributes",
                     it->second.id, thing_arn(name));
    }
    if (!r.type_name.empty()) usable_type(b.s.thing_types, r.type_name);
    check_attribute_count(attributes, !r.type_name.empty());
    thing created{name, new_uuid(), r.type_name, attributes, 1, r.billing_group, {}, {}, now()};
    b.s.things[name] = created;
    b.touch("thing", name);
    result = std::move(created);
  });
  return {result, t};
}

registry::ticket registry::update_thing(const std::string& name, const thing_request& r) {
  check_thing_name(name);
  if (r.attributes) check_attributes(*r.attributes);
  return mutate([&](batch& b) {
    auto it = b.s.things.find(name);
    if (it == b.s.things.end()) not_found("Thing " + name + " cannot be found.");
    thing updated = it->second;
    if (r.expected_version != no_version && r.expected_version != updated.version)
      conflict("VersionConflictException",
               "The version for thing " + name + " does not match the expected version.");
    if (r.remove_type && !r.type_name.empty())
      invalid("Cannot remove the thing type and set a new one in the same request");
    if (r.remove_type) updated.type_name.clear();
    if (!r.type_name.empty() && r.type_name != updated.type_name) {
      usable_type(b.s.thing_types, r.type_name);
      updated.type_name = r.type_name;
    }
    if (r.attributes)
      updated.attributes = apply_attributes(updated.attributes, *r.attributes, r.merge);
    check_attribute_count(updated.attributes, !updated.type_name.empty());
    updated.version += 1;
    it->second = std::move(updated);
    b.touch("thing", name);
  });
}

registry::ticket registry::delete_thing(const std::string& name, std::int64_t expected_version) {
  return mutate([&](batch& b) {
    auto it = b.s.things.find(name);
    if (it == b.s.things.end()) return;  // AWS: deleting a missing thing succeeds
    if (expected_version != no_version && expected_version != it->second.version)
      conflict("VersionConflictException",
               "The version for thing " + name + " does not match the expected version.");
    if (!it->second.principals.empty())
      invalid("Cannot delete thing " + name +
              " because it is still attached to one or more "
              "principals");
    b.s.things.erase(it);
    b.touch("thing", name);
  });
}

std::optional<thing> registry::find_thing(const std::string& name) const {
  std::shared_lock lock(mutex_);
  auto it = state_->things.find(name);
  if (it == state_->things.end()) return std::nullopt;
  return it->second;
}

page<thing> registry::list_things(const thing_filter& f, const std::string& token,
                                  std::size_t max) const {
  std::shared_lock lock(mutex_);
  const auto& things = state_->things;
  // Walks the name-ordered map from the token, copying one page: a fleet of 10^5 things is
  // listed without copying it per request or holding the lock for long.
  auto it = token.empty() ? things.begin() : things.upper_bound(decode_token(token));
  page<thing> out;
  for (; it != things.end(); ++it) {
    const auto& t = it->second;
    if (!f.type_name.empty() && t.type_name != f.type_name) continue;
    if (!f.attribute_name.empty()) {
      auto a = t.attributes.find(f.attribute_name);
      if (a == t.attributes.end()) continue;
      if (!f.attribute_value.empty()) {
        bool match = f.prefix_value ? a->second.starts_with(f.attribute_value)
                                    : a->second == f.attribute_value;
        if (!match) continue;
      }
    }
    if (out.items.size() == max) {
      out.next_token = encode_token(out.items.back().name);
      break;
    }
    out.items.push_back(t);
  }
  return out;
}

// ---- thing types ----------------------------------------------------------------------------

std::pair<thing_type, registry::ticket> registry::create_thing_type(
    const std::string& name, const std::string& description,
    const std::vector<std::string>& searchable, const tag_list& tags) {
  check_thing_name(name, "thingTypeName");
  check_tags(tags);
  check_description(description);
  if (searchable.size() > 3) invalid("A thing type can have at most 3 searchable attributes");
  for (const auto& a : searchable)
    if (!is_valid_attribute_name(a)) invalid("Searchable attribute '" + a + "' is invalid");
  thing_type result;
  auto t = mutate([&](batch& b) {
    if (auto it = b.s.thing_types.find(name); it != b.s.thing_types.end()) {
      if (it->second.description == description && it->second.searchable_attributes == searchable) {
        result = it->second;
        return;
      }
      already_exists("Thing Type " + name + " already exists in account with different properties",
                     it->second.id, thing_type_arn(name));
    }
    thing_type created{name, new_uuid(), description, searchable, false, 0, now()};
    b.tag(type_key(name), tags);
    b.s.thing_types[name] = created;
    b.touch("thing_type", name);
    result = std::move(created);
  });
  return {result, t};
}

registry::ticket registry::deprecate_thing_type(const std::string& name, bool undo) {
  return mutate([&](batch& b) {
    auto it = b.s.thing_types.find(name);
    if (it == b.s.thing_types.end()) not_found("Thing Type " + name + " cannot be found.");
    it->second.deprecated = !undo;
    it->second.deprecation_date = undo ? 0 : now();
    b.touch("thing_type", name);
  });
}

registry::ticket registry::delete_thing_type(const std::string& name) {
  return mutate([&](batch& b) {
    auto it = b.s.thing_types.find(name);
    if (it == b.s.thing_types.end()) not_found("Thing Type " + name + " cannot be found.");
    if (!it->second.deprecated)
      invalid("Thing type " + name + " must be deprecated before it can be deleted.");
    for (const auto& [thing_name, t] : b.s.things)
      if (t.type_name == name)
        invalid("Thing type " + name + " is still associated with thing " + thing_name + ".");
    b.s.thing_types.erase(it);
    b.touch("thing_type", name);
    b.drop_tags(type_key(name));
  });
}

std::optional<thing_type> registry::find_thing_type(const std::string& name) const {
  std::shared_lock lock(mutex_);
  auto it = state_->thing_types.find(name);
  if (it == state_->thing_types.end()) return std::nullopt;
  return it->second;
}

page<thing_type> registry::list_thing_types(const std::string& name_filter,
                                            const std::string& token, std::size_t max) const {
  std::shared_lock lock(mutex_);
  std::vector<std::pair<std::string, const thing_type*>> keyed;
  for (const auto& [name, t] : state_->thing_types)
    if (name_filter.empty() || name == name_filter) keyed.emplace_back(name, &t);
  return paginate(std::move(keyed), token, max);
}

// ---- thing groups ---------------------------------------------------------------------------

std::pair<thing_group, registry::ticket> registry::create_thing_group(
    const std::string& name, const std::string& parent, const std::string& description,
    const attribute_map& attributes, const tag_list& tags) {
  check_thing_name(name, "thingGroupName");
  check_tags(tags);
  check_description(description);
  check_attributes(attributes);
  check_attribute_count(attributes, true);
  thing_group result;
  auto t = mutate([&](batch& b) {
    if (auto it = b.s.thing_groups.find(name); it != b.s.thing_groups.end()) {
      const auto& g = it->second;
      if (g.parent == parent && g.description == description && g.attributes == attributes) {
        result = g;
        return;
      }
      already_exists("Thing Group " + name + " already exists in account with different properties",
                     g.id, thing_group_arn(name));
    }
    if (!parent.empty()) {
      auto p = b.s.thing_groups.find(parent);
      if (p == b.s.thing_groups.end()) not_found("Thing Group " + parent + " cannot be found.");
      std::size_t depth = 1;
      for (const thing_group* g = &p->second; !g->parent.empty();
           g = &b.s.thing_groups.at(g->parent))
        ++depth;
      if (depth >= max_group_depth)
        invalid("Thing group hierarchy cannot be deeper than " + std::to_string(max_group_depth));
    }
    attribute_map kept = attributes;
    std::erase_if(kept, [](const auto& kv) { return kv.second.empty(); });
    thing_group created{name, new_uuid(), parent, description, kept, 1, now()};
    b.tag(group_key(name), tags);
    b.s.thing_groups[name] = created;
    b.touch("thing_group", name);
    result = std::move(created);
  });
  return {result, t};
}

registry::ticket registry::update_thing_group(const std::string& name,
                                              const std::optional<std::string>& description,
                                              const std::optional<attribute_map>& attributes,
                                              bool merge, std::int64_t expected_version) {
  if (attributes) check_attributes(*attributes);
  if (description) check_description(*description);
  return mutate([&](batch& b) {
    auto it = b.s.thing_groups.find(name);
    if (it == b.s.thing_groups.end()) not_found("Thing Group " + name + " cannot be found.");
    auto& g = it->second;
    if (expected_version != no_version && expected_version != g.version)
      conflict("VersionConflictException",
               "The version for thing group " + name + " does not match the expected version.");
    if (description) g.description = *description;
    if (attributes) {
      auto updated = apply_attributes(g.attributes, *attributes, merge);
      check_attribute_count(updated, true);
      g.attributes = std::move(updated);
    }
    g.version += 1;
    b.touch("thing_group", name);
  });
}

registry::ticket registry::delete_thing_group(const std::string& name,
                                              std::int64_t expected_version) {
  return mutate([&](batch& b) {
    auto it = b.s.thing_groups.find(name);
    if (it == b.s.thing_groups.end()) return;  // like DeleteThing: idempotent
    if (expected_version != no_version && expected_version != it->second.version)
      conflict("VersionConflictException",
               "The version for thing group " + name + " does not match the expected version.");
    for (const auto& [child, g] : b.s.thing_groups)
      if (g.parent == name)
        invalid("Cannot delete thing group : " + name +
                " when there are still child groups attached to it");
    for (auto& [thing_name, t] : b.s.things)
      if (t.groups.erase(name) > 0) b.touch("thing", thing_name);
    const std::string key = group_key(name);
    if (auto tp = b.s.target_policies.find(key); tp != b.s.target_policies.end()) {
      for (const auto& policy_name : tp->second) {
        b.s.policies.at(policy_name).targets.erase(key);
        b.touch("policy", policy_name);
      }
      b.s.target_policies.erase(tp);
    }
    b.s.thing_groups.erase(it);
    b.touch("thing_group", name);
    b.drop_tags(key);
  });
}

std::optional<thing_group> registry::find_thing_group(const std::string& name) const {
  std::shared_lock lock(mutex_);
  auto it = state_->thing_groups.find(name);
  if (it == state_->thing_groups.end()) return std::nullopt;
  return it->second;
}

std::vector<thing_group> registry::ancestors(const thing_group& g) const {
  std::shared_lock lock(mutex_);
  std::vector<thing_group> out;
  for (std::string p = g.parent; !p.empty();) {
    auto it = state_->thing_groups.find(p);
    if (it == state_->thing_groups.end()) break;
    out.insert(out.begin(), it->second);
    p = it->second.parent;
  }
  return out;
}

page<thing_group> registry::list_thing_groups(const std::string& parent, const std::string& prefix,
                                              bool recursive, const std::string& token,
                                              std::size_t max) const {
  std::shared_lock lock(mutex_);
  const auto& groups = state_->thing_groups;
  auto descends_from = [&](const thing_group& g, const std::string& ancestor) {
    for (std::string p = g.parent; !p.empty();) {
      if (p == ancestor) return true;
      auto it = groups.find(p);
      if (it == groups.end()) return false;
      p = it->second.parent;
    }
    return false;
  };
  std::vector<std::pair<std::string, const thing_group*>> keyed;
  for (const auto& [name, g] : groups) {
    if (!prefix.empty() && !name.starts_with(prefix)) continue;
    // With a parent: its children (all descendants when recursive). Without: every group.
    if (!parent.empty() && (recursive ? !descends_from(g, parent) : g.parent != parent)) continue;
    keyed.emplace_back(name, &g);
  }
  return paginate(std::move(keyed), token, max);
}

registry::ticket registry::add_thing_to_group(const std::string& group,
                                              const std::string& thing_name) {
  return mutate([&](batch& b) {
    if (!b.s.thing_groups.contains(group)) not_found("Thing Group " + group + " cannot be found.");
    auto it = b.s.things.find(thing_name);
    if (it == b.s.things.end()) not_found("Thing " + thing_name + " cannot be found.");
    if (it->second.groups.size() >= 10 && !it->second.groups.contains(group))
      refuse(410, "LimitExceededException", "A thing can belong to at most 10 thing groups");
    if (it->second.groups.insert(group).second) b.touch("thing", thing_name);
  });
}

registry::ticket registry::remove_thing_from_group(const std::string& group,
                                                   const std::string& thing_name) {
  return mutate([&](batch& b) {
    if (!b.s.thing_groups.contains(group)) not_found("Thing Group " + group + " cannot be found.");
    auto it = b.s.things.find(thing_name);
    if (it == b.s.things.end()) not_found("Thing " + thing_name + " cannot be found.");
    if (it->second.groups.erase(group) > 0) b.touch("thing", thing_name);
  });
}

page<std::string> registry::list_things_in_group(const std::string& group, bool recursive,
                                                 const std::string& token, std::size_t max) const {
  std::shared_lock lock(mutex_);
  const auto& groups = state_->thing_groups;
  if (!groups.contains(group)) not_found("Thing Group " + group + " cannot be found.");
  std::set<std::string> wanted{group};
  if (recursive) {
    for (bool grew = true; grew;) {
      grew = false;
      for (const auto& [name, g] : groups)
        if (wanted.contains(g.parent) && wanted.insert(name).second) grew = true;
    }
  }
  std::vector<std::pair<std::string, std::string>> keyed;
  for (const auto& [name, t] : state_->things)
    for (const auto& g : t.groups)
      if (wanted.contains(g)) {
        keyed.emplace_back(name, name);
        break;
      }
  return paginate(std::move(keyed), token, max);
}

page<thing_group> registry::list_groups_for_thing(const std::string& thing_name,
                                                  const std::string& token, std::size_t max) const {
  std::shared_lock lock(mutex_);
  auto it = state_->things.find(thing_name);
  if (it == state_->things.end()) not_found("Thing " + thing_name + " cannot be found.");
  std::vector<std::pair<std::string, const thing_group*>> keyed;
  for (const auto& g : it->second.groups)
    if (auto gi = state_->thing_groups.find(g); gi != state_->thing_groups.end())
      keyed.emplace_back(g, &gi->second);
  return paginate(std::move(keyed), token, max);
}

// ---- certificates ---------------------------------------------------------------------------

namespace {

certificate new_certificate_record(certificate_info info, std::string status, double now) {
  certificate c;
  c.id = info.id;
  c.status = std::move(status);
  c.generation_id = new_uuid();
  c.created = now;
  c.modified = now;
  c.info = std::move(info);
  return c;
}

}  // namespace

std::pair<registry::created_keys, registry::ticket> registry::create_keys_and_certificate(
    bool active) {
  auto issued = ca_.issue_device("AWS IoT Certificate", device_certificate_days);
  auto info = parse_certificate_pem(issued.certificate_pem);
  if (!info) throw std::runtime_error("registry: issued certificate does not parse");
  created_keys result{
      new_certificate_record(std::move(*info), active ? "ACTIVE" : "INACTIVE", now()),
      issued.private_key_pem, issued.public_key_pem};
  auto t = mutate([&](batch& b) {
    b.s.certificates[result.cert.id] = result.cert;
    b.touch("certificate", result.cert.id);
  });
  return {result, t};
}

std::pair<certificate, registry::ticket> registry::create_certificate_from_csr(std::string_view csr,
                                                                               bool active) {
  auto pem = ca_.sign_request(csr, device_certificate_days);
  if (!pem) invalid("The certificate signing request is not a valid PEM-encoded, signed CSR");
  auto info = parse_certificate_pem(*pem);
  if (!info) throw std::runtime_error("registry: issued certificate does not parse");
  auto cert = new_certificate_record(std::move(*info), active ? "ACTIVE" : "INACTIVE", now());
  auto t = mutate([&](batch& b) {
    b.s.certificates[cert.id] = cert;
    b.touch("certificate", cert.id);
  });
  return {cert, t};
}

std::pair<certificate, registry::ticket> registry::register_certificate(std::string_view pem,
                                                                        std::string_view ca_pem,
                                                                        const std::string& status,
                                                                        bool with_ca) {
  auto info = parse_certificate_pem(pem);
  if (!info) refuse(400, "CertificateValidationException", "The certificate is not a valid PEM");
  if (!certificate_statuses.contains(status)) invalid("Invalid certificate status: " + status);
  std::optional<certificate_info> ca_info;
  if (!ca_pem.empty()) {
    ca_info = parse_certificate_pem(ca_pem);
    if (!ca_info)
      refuse(400, "CertificateValidationException", "The CA certificate is not a valid PEM");
  }
  if (info->not_after < clock_.unix_seconds())
    refuse(400, "CertificateValidationException", "The certificate has expired");
  certificate result;
  auto t = mutate([&](batch& b) {
    if (b.s.certificates.contains(info->id))
      already_exists("The certificate is already provisioned or registered", info->id,
                     certificate_arn(info->id));
    std::string ca_id;
    if (with_ca) {
      if (ca_info) {
        if (!b.s.ca_certificates.contains(ca_info->id))
          refuse(400, "CertificateValidationException",
                 "The CA certificate " + ca_info->id + " is not registered");
        ca_id = ca_info->id;
      } else {
        // Without caCertificatePem the issuer is looked up among the registered CAs.
        for (const auto& [id, ca] : b.s.ca_certificates)
          if (ca.info.subject_der == info->issuer_der && is_signed_by(info->pem, ca.info.pem))
            ca_id = id;
        if (ca_id.empty())
          refuse(400, "CertificateValidationException",
                 "The certificate's CA is not registered; register the CA certificate first or "
                 "use RegisterCertificateWithoutCA");
      }
      const auto& ca = b.s.ca_certificates.at(ca_id);
      if (!is_signed_by(info->pem, ca.info.pem))
        refuse(400, "CertificateValidationException",
               "The certificate is not signed by the given CA certificate");
      if (ca.status != "ACTIVE")
        refuse(406, "CertificateStateException", "The CA certificate " + ca_id + " is not ACTIVE");
    }
    result = new_certificate_record(*info, status, now());
    result.ca_id = ca_id;
    if (!with_ca) result.mode = "SNI_ONLY";  // as AWS reports certificates without a CA
    b.s.certificates[result.id] = result;
    b.touch("certificate", result.id);
  });
  return {result, t};
}

registry::ticket registry::update_certificate(const std::string& id, const std::string& status) {
  if (!certificate_statuses.contains(status))
    invalid("1 validation error detected: Value '" + status +
            "' at 'newStatus' failed to satisfy constraint: Member must satisfy enum value set: "
            "[ACTIVE, INACTIVE, REVOKED, PENDING_TRANSFER, REGISTER_INACTIVE, PENDING_ACTIVATION]");
  return mutate([&](batch& b) {
    auto it = b.s.certificates.find(id);
    if (it == b.s.certificates.end()) not_found("The certificate " + id + " does not exist");
    auto& c = it->second;
    // AWS refuses the transfer and activation states through UpdateCertificate.
    if (status == "PENDING_TRANSFER" || status == "PENDING_ACTIVATION")
      invalid("The certificate status cannot be set to " + status + " with UpdateCertificate");
    if (c.status == status) return;  // idempotent
    // REVOKED is final (AWS): no path leads out of it, not even through INACTIVE.
    if (c.status == "REVOKED")
      refuse(406, "CertificateStateException",
             "The certificate " + id + " is REVOKED; a revoked certificate cannot change status");
    if (c.status == "ACTIVE") b.disable_certificate(id);
    c.status = status;
    c.modified = now();
    c.customer_version += 1;
    c.generation_id = new_uuid();
    b.touch("certificate", id);
  });
}

registry::ticket registry::delete_certificate(const std::string& id, bool force) {
  return mutate([&](batch& b) {
    auto it = b.s.certificates.find(id);
    if (it == b.s.certificates.end()) not_found("The certificate " + id + " does not exist");
    if (it->second.status == "ACTIVE")
      refuse(406, "CertificateStateException",
             "Certificate must be deactivated (not ACTIVE) before deletion.");
    const std::string arn = certificate_arn(id);
    const std::string key = cert_key(id);
    if (auto pt = b.s.principal_things.find(key);
        pt != b.s.principal_things.end() && !pt->second.empty())
      conflict("DeleteConflictException",
               "Things must be detached before deletion (arn: " + arn + ")");
    auto tp = b.s.target_policies.find(key);
    if (tp != b.s.target_policies.end() && !tp->second.empty()) {
      if (!force)
        conflict("DeleteConflictException",
                 "Certificate policies must be detached before deletion (arn: " + arn + ")");
      for (const auto& policy_name : tp->second) {
        b.s.policies.at(policy_name).targets.erase(key);
        b.touch("policy", policy_name);
      }
    }
    if (tp != b.s.target_policies.end()) b.s.target_policies.erase(tp);
    b.s.certificates.erase(it);
    b.touch("certificate", id);
    b.disable_certificate(id);
  });
}

std::optional<certificate> registry::find_certificate(const std::string& id) const {
  std::shared_lock lock(mutex_);
  auto it = state_->certificates.find(id);
  if (it == state_->certificates.end()) return std::nullopt;
  return it->second;
}

namespace {

// Newest first unless ascending; ties broken by id (a policy's: its name) so the order is
// total.
template <class T>
std::vector<std::pair<std::string, const T*>> by_creation(std::vector<const T*> items,
                                                          bool ascending) {
  auto id_of = [](const T* item) -> const std::string& {
    if constexpr (requires { item->id; })
      return item->id;
    else
      return item->name;
  };
  std::sort(items.begin(), items.end(), [ascending, &id_of](const T* a, const T* b) {
    if (a->created != b->created)
      return ascending ? a->created < b->created : a->created > b->created;
    return ascending ? id_of(a) < id_of(b) : id_of(a) > id_of(b);
  });
  // Keys that sort like the listing: fixed-width creation time, then id.
  std::vector<std::pair<std::string, const T*>> keyed;
  for (const T* item : items)
    keyed.emplace_back(fmt::format("{:020.3f}|{}", item->created, id_of(item)), item);
  return keyed;
}

}  // namespace

page<certificate> registry::list_certificates(const std::string& ca_id, bool ascending,
                                              const std::string& marker, std::size_t max) const {
  std::shared_lock lock(mutex_);
  std::vector<const certificate*> items;
  for (const auto& [id, c] : state_->certificates)
    if (ca_id.empty() || c.ca_id == ca_id) items.push_back(&c);
  return paginate(by_creation(std::move(items), ascending), marker, max, !ascending);
}

std::pair<ca_certificate, registry::ticket> registry::register_ca_certificate(
    std::string_view pem, bool active, bool auto_registration, const tag_list& tags) {
  check_tags(tags);
  auto info = parse_certificate_pem(pem);
  if (!info) refuse(400, "CertificateValidationException", "The CA certificate is not a valid PEM");
  if (!info->is_ca)
    refuse(400, "CertificateValidationException", "The certificate is not a CA certificate");
  ca_certificate result;
  auto t = mutate([&](batch& b) {
    if (b.s.ca_certificates.contains(info->id))
      already_exists("The CA certificate is already registered", info->id,
                     ca_certificate_arn(info->id));
    result.id = info->id;
    result.status = active ? "ACTIVE" : "INACTIVE";
    result.auto_registration = auto_registration ? "ENABLE" : "DISABLE";
    result.generation_id = new_uuid();
    result.created = result.modified = now();
    result.info = *info;
    b.tag(ca_key(result.id), tags);
    b.s.ca_certificates[result.id] = result;
    b.touch("ca_certificate", result.id);
  });
  return {result, t};
}

registry::ticket registry::update_ca_certificate(const std::string& id, const std::string& status,
                                                 const std::string& auto_registration) {
  if (!status.empty() && status != "ACTIVE" && status != "INACTIVE")
    invalid("newStatus must be ACTIVE or INACTIVE");
  if (!auto_registration.empty() && auto_registration != "ENABLE" && auto_registration != "DISABLE")
    invalid("newAutoRegistrationStatus must be ENABLE or DISABLE");
  return mutate([&](batch& b) {
    auto it = b.s.ca_certificates.find(id);
    if (it == b.s.ca_certificates.end()) not_found("The CA certificate " + id + " does not exist");
    auto& ca = it->second;
    if (!status.empty()) {
      // Devices registered under a CA that stops being ACTIVE can no longer connect.
      if (ca.status == "ACTIVE" && status != "ACTIVE")
        for (const auto& [cert_id, c] : b.s.certificates)
          if (c.ca_id == id && c.status == "ACTIVE") b.disable_certificate(cert_id);
      ca.status = status;
    }
    if (!auto_registration.empty()) ca.auto_registration = auto_registration;
    ca.modified = now();
    ca.customer_version += 1;
    b.touch("ca_certificate", id);
  });
}

registry::ticket registry::delete_ca_certificate(const std::string& id) {
  return mutate([&](batch& b) {
    auto it = b.s.ca_certificates.find(id);
    if (it == b.s.ca_certificates.end()) not_found("The CA certificate " + id + " does not exist");
    if (it->second.status == "ACTIVE")
      refuse(406, "CertificateStateException",
             "The CA certificate must be deactivated (not ACTIVE) before deletion.");
    for (const auto& [cert_id, c] : b.s.certificates)
      if (c.ca_id == id)
        conflict("DeleteConflictException",
                 "The CA certificate still has registered certificates (" + cert_id + ")");
    b.s.ca_certificates.erase(it);
    b.touch("ca_certificate", id);
    b.drop_tags(ca_key(id));
  });
}

std::optional<ca_certificate> registry::find_ca_certificate(const std::string& id) const {
  std::shared_lock lock(mutex_);
  auto it = state_->ca_certificates.find(id);
  if (it == state_->ca_certificates.end()) return std::nullopt;
  return it->second;
}

page<ca_certificate> registry::list_ca_certificates(bool ascending, const std::string& marker,
                                                    std::size_t max) const {
  std::shared_lock lock(mutex_);
  std::vector<const ca_certificate*> items;
  for (const auto& [id, c] : state_->ca_certificates) items.push_back(&c);
  return paginate(by_creation(std::move(items), ascending), marker, max, !ascending);
}

// ---- policies -------------------------------------------------------------------------------

namespace {

void check_policy_name(const std::string& name) {
  if (!is_valid_policy_name(name))
    invalid("1 validation error detected: Value '" + name +
            "' at 'policyName' failed to satisfy constraint: Member must satisfy regular "
            "expression pattern: [\\w+=,.@-]+ and have length between 1 and 128");
}

}  // namespace

std::pair<policy_entry, registry::ticket> registry::create_policy(const std::string& name,
                                                                  const std::string& document,
                                                                  const tag_list& tags) {
  check_policy_name(name);
  check_tags(tags);
  auto compiled = compile(document);
  policy_entry result;
  auto t = mutate([&](batch& b) {
    if (auto it = b.s.policies.find(name); it != b.s.policies.end())
      already_exists("Policy cannot be created - name already exists (name=" + name + ")", name,
                     policy_arn(name));
    result.name = name;
    result.default_version = 1;
    result.next_version = 2;
    result.generation_id = new_uuid();
    result.created = result.modified = now();
    result.versions[1] = policy_version{document, result.created, compiled};
    b.tag(policy_key(name), tags);
    b.s.policies[name] = result;
    b.touch("policy", name);
  });
  return {result, t};
}

registry::ticket registry::delete_policy(const std::string& name) {
  return mutate([&](batch& b) {
    auto it = b.s.policies.find(name);
    if (it == b.s.policies.end()) not_found("Policy not found (name=" + name + ")");
    if (!it->second.targets.empty())
      conflict("DeleteConflictException",
               "The policy cannot be deleted as the policy is attached to one or more principals "
               "(name=" +
                   name + ")");
    if (it->second.versions.size() > 1)
      conflict("DeleteConflictException",
               "Cannot delete the policy because it has one or more non-default versions (name=" +
                   name + ")");
    b.s.policies.erase(it);
    b.touch("policy", name);
    b.drop_tags(policy_key(name));
  });
}

std::optional<policy_entry> registry::find_policy(const std::string& name) const {
  std::shared_lock lock(mutex_);
  auto it = state_->policies.find(name);
  if (it == state_->policies.end()) return std::nullopt;
  return it->second;
}

page<policy_entry> registry::list_policies(bool ascending, const std::string& marker,
                                           std::size_t max) const {
  std::shared_lock lock(mutex_);
  std::vector<const policy_entry*> items;
  for (const auto& [name, p] : state_->policies) items.push_back(&p);
  // In creation order, as AWS lists them (ascendingOrder; newest first by default).
  return paginate(by_creation(std::move(items), ascending), marker, max, !ascending);
}

std::pair<std::int64_t, registry::ticket> registry::create_policy_version(
    const std::string& name, const std::string& document, bool set_as_default) {
  std::int64_t version = 0;
  auto t = mutate([&](batch& b) {
    auto it = b.s.policies.find(name);
    if (it == b.s.policies.end()) not_found("Policy not found (name=" + name + ")");
    auto compiled = compile(document);
    auto& p = it->second;
    if (p.versions.size() >= max_policy_versions)
      conflict("VersionsLimitExceededException",
               "The policy " + name + " already has the maximum number of versions (5)");
    version = p.next_version++;
    p.versions[version] = policy_version{document, now(), compiled};
    if (set_as_default) p.default_version = version;
    p.modified = now();
    p.generation_id = new_uuid();
    b.touch("policy", name);
  });
  return {version, t};
}

registry::ticket registry::set_default_policy_version(const std::string& name,
                                                      std::int64_t version) {
  return mutate([&](batch& b) {
    auto it = b.s.policies.find(name);
    if (it == b.s.policies.end()) not_found("Policy not found (name=" + name + ")");
    if (!it->second.versions.contains(version))
      not_found("Policy version not found (name=" + name + ", version=" + std::to_string(version) +
                ")");
    it->second.default_version = version;
    it->second.modified = now();
    it->second.generation_id = new_uuid();
    b.touch("policy", name);
  });
}

registry::ticket registry::delete_policy_version(const std::string& name, std::int64_t version) {
  return mutate([&](batch& b) {
    auto it = b.s.policies.find(name);
    if (it == b.s.policies.end()) not_found("Policy not found (name=" + name + ")");
    auto& p = it->second;
    if (!p.versions.contains(version))
      not_found("Policy version not found (name=" + name + ", version=" + std::to_string(version) +
                ")");
    if (p.default_version == version)
      conflict("DeleteConflictException", "Cannot delete the default version of a policy");
    p.versions.erase(version);
    p.modified = now();
    b.touch("policy", name);
  });
}

registry::ticket registry::attach_policy(const std::string& name, const std::string& target) {
  return mutate([&](batch& b) {
    auto it = b.s.policies.find(name);
    if (it == b.s.policies.end()) not_found("Policy not found (name=" + name + ")");
    std::string resource = arn_resource(target);
    if (resource.starts_with("cert/")) {
      if (!b.s.certificates.contains(resource.substr(5)))
        not_found("The certificate " + resource.substr(5) + " does not exist");
    } else if (resource.starts_with("thinggroup/")) {
      if (!b.s.thing_groups.contains(resource.substr(11)))
        not_found("Thing Group " + resource.substr(11) + " cannot be found.");
    } else {
      invalid("Invalid target: " + target + " (expected a certificate ARN or a thing group ARN)");
    }
    const std::string& canonical = resource;
    auto& attached = b.s.target_policies[canonical];
    if (attached.contains(name)) return;
    if (attached.size() >= max_policies_per_target)
      refuse(410, "LimitExceededException",
             "A target can have at most " + std::to_string(max_policies_per_target) +
                 " policies attached");
    attached.insert(name);
    it->second.targets.insert(canonical);
    b.touch("policy", name);
  });
}

registry::ticket registry::detach_policy(const std::string& name, const std::string& target) {
  return mutate([&](batch& b) {
    auto it = b.s.policies.find(name);
    if (it == b.s.policies.end()) not_found("Policy not found (name=" + name + ")");
    std::string resource = arn_resource(target);
    if (resource.empty()) invalid("Invalid target: " + target);
    const std::string& canonical = resource;
    if (it->second.targets.erase(canonical) == 0) return;
    if (auto tp = b.s.target_policies.find(canonical); tp != b.s.target_policies.end()) {
      tp->second.erase(name);
      if (tp->second.empty()) b.s.target_policies.erase(tp);
    }
    b.touch("policy", name);
  });
}

page<policy_entry> registry::list_attached_policies(const std::string& target, bool recursive,
                                                    const std::string& marker,
                                                    std::size_t max) const {
  std::shared_lock lock(mutex_);
  const auto& s = *state_;
  std::string resource = arn_resource(target);
  if (resource.empty()) invalid("Invalid target: " + target);
  std::vector<std::string> targets{resource};
  if (resource.starts_with("cert/")) {
    if (!s.certificates.contains(resource.substr(5)))
      not_found("The certificate " + resource.substr(5) + " does not exist");
  } else if (resource.starts_with("thinggroup/")) {
    auto g = s.thing_groups.find(resource.substr(11));
    if (g == s.thing_groups.end())
      not_found("Thing Group " + resource.substr(11) + " cannot be found.");
    if (recursive)
      for (std::string p = g->second.parent; !p.empty(); p = s.thing_groups.at(p).parent)
        targets.push_back(group_key(p));
  }
  std::set<std::string> names;
  for (const auto& t : targets)
    if (auto tp = s.target_policies.find(t); tp != s.target_policies.end())
      names.insert(tp->second.begin(), tp->second.end());
  std::vector<std::pair<std::string, const policy_entry*>> keyed;
  for (const auto& n : names) keyed.emplace_back(n, &s.policies.at(n));
  return paginate(std::move(keyed), marker, max);
}

page<std::string> registry::list_targets_for_policy(const std::string& name,
                                                    const std::string& marker, std::size_t max,
                                                    bool certificates_only) const {
  std::shared_lock lock(mutex_);
  auto it = state_->policies.find(name);
  if (it == state_->policies.end()) not_found("Policy not found (name=" + name + ")");
  std::vector<std::pair<std::string, std::string>> keyed;
  for (const auto& t : it->second.targets)
    if (!certificates_only || t.starts_with("cert/")) keyed.emplace_back(t, arn_prefix_ + t);
  return paginate(std::move(keyed), marker, max);
}

// ---- tags -----------------------------------------------------------------------------------

namespace {

// The key under which the tags of the resource `arn` names are kept ("thinggroup/{name}"),
// after checking that it can carry tags and exists in `s` (the registry's state, locked).
std::string tagged_resource(const auto& s, const std::string& arn) {
  auto resource = arn_resource(arn);
  auto slash = resource.find('/');
  if (resource.empty() || slash == std::string::npos || slash + 1 == resource.size())
    invalid("Invalid resource ARN: " + arn);
  auto type = resource.substr(0, slash);
  auto name = resource.substr(slash + 1);
  if (type == "thing" || type == "cert")
    invalid("Resources of type " + type + " cannot be tagged: " + arn);
  bool exists = (type == "thinggroup" && s.thing_groups.contains(name)) ||
                (type == "thingtype" && s.thing_types.contains(name)) ||
                (type == "policy" && s.policies.contains(name)) ||
                (type == "cacert" && s.ca_certificates.contains(name));
  // Billing groups, rules, jobs ... are not modelled, so they are never found.
  if (!exists) not_found("Resource " + arn + " cannot be found.");
  return resource;
}

}  // namespace

registry::ticket registry::tag_resource(const std::string& arn, const tag_list& tags) {
  check_tags(tags);
  return mutate([&](batch& b) {
    auto key = tagged_resource(b.s, arn);
    b.tag(key, tags);
  });
}

registry::ticket registry::untag_resource(const std::string& arn,
                                          const std::vector<std::string>& keys) {
  return mutate([&](batch& b) {
    auto key = tagged_resource(b.s, arn);
    auto it = b.s.tags.find(key);
    if (it == b.s.tags.end()) return;
    std::size_t removed = 0;
    for (const auto& k : keys) removed += it->second.erase(k);
    if (it->second.empty()) b.s.tags.erase(it);
    if (removed > 0) b.touch("tags", key);
  });
}

page<std::pair<std::string, std::string>> registry::list_tags(const std::string& arn,
                                                              const std::string& token,
                                                              std::size_t max) const {
  std::shared_lock lock(mutex_);
  const auto& s = *state_;
  auto key = tagged_resource(s, arn);
  std::vector<std::pair<std::string, std::pair<std::string, std::string>>> keyed;
  if (auto it = s.tags.find(key); it != s.tags.end())
    for (const auto& [k, v] : it->second) keyed.emplace_back(k, std::pair{k, v});
  return paginate(std::move(keyed), token, max);
}

// ---- principals -----------------------------------------------------------------------------

registry::ticket registry::attach_thing_principal(const std::string& thing_name,
                                                  const std::string& principal) {
  return mutate([&](batch& b) {
    auto it = b.s.things.find(thing_name);
    if (it == b.s.things.end()) not_found("Thing " + thing_name + " cannot be found.");
    std::string resource = arn_resource(principal);
    if (!resource.starts_with("cert/"))
      invalid("Invalid principal: " + principal + " (expected a certificate ARN)");
    std::string id = resource.substr(5);
    if (!b.s.certificates.contains(id)) not_found("The certificate " + id + " does not exist");
    const std::string canonical = cert_key(id);
    if (it->second.principals.insert(canonical).second) {
      b.s.principal_things[canonical].insert(thing_name);
      b.touch("thing", thing_name);
    }
  });
}

registry::ticket registry::detach_thing_principal(const std::string& thing_name,
                                                  const std::string& principal) {
  return mutate([&](batch& b) {
    auto it = b.s.things.find(thing_name);
    if (it == b.s.things.end()) not_found("Thing " + thing_name + " cannot be found.");
    std::string resource = arn_resource(principal);
    if (!resource.starts_with("cert/")) invalid("Invalid principal: " + principal);
    const std::string& canonical = resource;
    if (it->second.principals.erase(canonical) == 0) return;
    if (auto pt = b.s.principal_things.find(canonical); pt != b.s.principal_things.end()) {
      pt->second.erase(thing_name);
      if (pt->second.empty()) b.s.principal_things.erase(pt);
    }
    b.touch("thing", thing_name);
  });
}

page<std::string> registry::list_thing_principals(const std::string& thing_name,
                                                  const std::string& token, std::size_t max) const {
  std::shared_lock lock(mutex_);
  auto it = state_->things.find(thing_name);
  if (it == state_->things.end()) not_found("Thing " + thing_name + " cannot be found.");
  std::vector<std::pair<std::string, std::string>> keyed;
  for (const auto& p : it->second.principals) keyed.emplace_back(p, arn_prefix_ + p);
  return paginate(std::move(keyed), token, max);
}

page<std::string> registry::list_principal_things(const std::string& principal,
                                                  const std::string& token, std::size_t max) const {
  std::shared_lock lock(mutex_);
  std::string resource = arn_resource(principal);
  if (!resource.starts_with("cert/")) invalid("Invalid principal: " + principal);
  std::string id = resource.substr(5);
  if (!state_->certificates.contains(id)) not_found("The certificate " + id + " does not exist");
  std::vector<std::pair<std::string, std::string>> keyed;
  if (auto pt = state_->principal_things.find(resource); pt != state_->principal_things.end())
    for (const auto& n : pt->second) keyed.emplace_back(n, n);
  return paginate(std::move(keyed), token, max);
}

// ---- device authorization -------------------------------------------------------------------

std::string registry::certificate_refusal(const std::string& certificate_id) const {
  std::shared_lock lock(mutex_);
  auto it = state_->certificates.find(certificate_id);
  if (it == state_->certificates.end()) return "certificate not registered";
  return refusal_locked(it->second);
}

std::string registry::refusal_locked(const certificate& c) const {
  if (c.status != "ACTIVE") return "certificate is " + c.status;
  std::int64_t now_s = clock_.unix_seconds();
  if (now_s > c.info.not_after) return "certificate expired";
  if (now_s < c.info.not_before) return "certificate not yet valid";
  if (!c.ca_id.empty()) {
    auto ca = state_->ca_certificates.find(c.ca_id);
    if (ca == state_->ca_certificates.end() || ca->second.status != "ACTIVE")
      return "CA certificate is not ACTIVE";
  }
  return {};
}

policy::decision registry::evaluate_device(const device_facts& device, std::string_view action,
                                           std::string_view resource) const {
  std::shared_lock lock(mutex_);
  const auto& s = *state_;
  auto cert = s.certificates.find(std::string(device.certificate_id));
  if (cert == s.certificates.end()) return policy::decision::not_applicable;
  // Checked on every action, not only at CONNECT: a certificate revoked (or expired, or its CA
  // deactivated) while a connection was being set up must not keep working on it.
  if (!refusal_locked(cert->second).empty()) return policy::decision::deny;
  const std::string arn = cert_key(device.certificate_id);
  std::vector<const policy::document*> documents;
  auto collect = [&](const std::string& target) {
    auto tp = s.target_policies.find(target);
    if (tp == s.target_policies.end()) return;
    for (const auto& name : tp->second) {
      const auto& p = s.policies.at(name);
      documents.push_back(p.versions.at(p.default_version).compiled.get());
    }
  };
  collect(arn);
  // The thing is "attached" when the client id names a thing this certificate is attached to;
  // then its groups' policies (and their ancestors') apply too.
  const thing* attached = nullptr;
  if (auto t = s.things.find(std::string(device.client_id));
      t != s.things.end() && t->second.principals.contains(arn)) {
    attached = &t->second;
    std::set<std::string> seen;
    for (const auto& g : attached->groups)
      for (std::string p = g; !p.empty() && seen.insert(p).second;) {
        collect(group_key(p));
        auto gi = s.thing_groups.find(p);
        p = gi == s.thing_groups.end() ? std::string() : gi->second.parent;
      }
  }
  device_context context(device, &cert->second, attached);
  return policy::evaluate_all(documents, action, resource, context);
}

policy::decision registry::evaluate_policy(const std::string& name, const device_facts& device,
                                           std::string_view action,
                                           std::string_view resource) const {
  std::shared_lock lock(mutex_);
  auto it = state_->policies.find(name);
  if (it == state_->policies.end()) return policy::decision::not_applicable;
  const auto& p = it->second;
  device_context context(device, nullptr, nullptr);
  return p.versions.at(p.default_version).compiled->evaluate(action, resource, context);
}

registry::counts registry::count() const {
  std::shared_lock lock(mutex_);
  return {state_->things.size(), state_->certificates.size(), state_->policies.size()};
}

}  // namespace nimbus::registry
