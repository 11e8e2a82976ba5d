// The registry's core: its two views, loading them, and the path of a change (mutate) from the
// pending view through the write queue to the committed view. The resources' operations are in
// things.cpp, certificates.cpp, policies.cpp, tags.cpp and authorization.cpp.
#include "registry/registry.hpp"

#include <spdlog/spdlog.h>

#include <array>
#include <boost/json.hpp>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <type_traits>

#include "registry/registry_state.hpp"
#include "storage/database.hpp"
#include "storage/write_queue.hpp"

namespace nimbus::registry {

using namespace detail;
namespace json = boost::json;

namespace {

// ---- the row format: (kind, name) -> JSON body -------------------------------------------------

constexpr std::array<std::pair<object_kind, std::string_view>, 7> kind_spellings{{
    {object_kind::thing, "thing"},
    {object_kind::thing_type, "thing_type"},
    {object_kind::thing_group, "thing_group"},
    {object_kind::certificate, "certificate"},
    {object_kind::ca_certificate, "ca_certificate"},
    {object_kind::policy, "policy"},
    {object_kind::tags, "tags"},
}};

std::string_view kind_name(object_kind kind) {
  for (const auto& [k, name] : kind_spellings)
    if (k == kind) return name;
  return "unknown";  // not reached: every kind has its spelling
}

std::optional<object_kind> parse_kind(std::string_view text) {
  for (const auto& [k, name] : kind_spellings)
    if (name == text) return k;
  return std::nullopt;
}

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
          {"pem", c.info->pem},
          {"status", to_string(c.status)},
          {"ca_id", c.ca_id},
          {"mode", to_string(c.mode)},
          {"generation_id", c.generation_id},
          {"customer_version", c.customer_version},
          {"created", c.created},
          {"modified", c.modified}};
}
json::object to_json(const ca_certificate& c) {
  return {{"id", c.id},
          {"pem", c.info->pem},
          {"status", to_string(c.status)},
          {"auto_registration", c.auto_registration ? "ENABLE" : "DISABLE"},
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

// The row body of `object`; nullopt when it was deleted (its row is deleted).
std::optional<std::string> row_body(const stored_object& object) {
  return std::visit(
      [](const auto& value) -> std::optional<std::string> {
        using T = std::decay_t<decltype(value)>;
        if constexpr (std::is_same_v<T, std::monostate>)
          return std::nullopt;
        else if constexpr (std::is_same_v<T, tag_set>)
          return json::serialize(json::object{{"tags", attributes_json(value)}});
        else
          return json::serialize(to_json(value));
      },
      object.value);
}

std::shared_ptr<const certificate_info> stored_pem(const json::object& o, const char* what) {
  auto info = parse_certificate_pem(str(o, "pem"));
  if (!info) throw std::runtime_error(std::string("registry: stored ") + what + " does not parse");
  return std::make_shared<const certificate_info>(std::move(*info));
}

// The object a row holds. Start-up only: a row this server wrote and can no longer read means
// a damaged database, so it throws rather than start without the object.
stored_object object_from_row(object_kind kind, const std::string& row_name,
                              const json::object& o) {
  switch (kind) {
    case object_kind::thing: {
      thing t{str(o, "name"),
              str(o, "id"),
              str(o, "type"),
              attributes_of(o.at("attributes")),
              integer(o, "version"),
              str(o, "billing_group"),
              {},
              strings_of<std::set<std::string>>(o.at("groups")),
              num(o, "created")};
      for (auto& p : strings_of<std::vector<std::string>>(o.at("principals")))
        t.principals.insert(key_of(std::move(p)));
      return {kind, t.name, std::move(t)};
    }
    case object_kind::thing_type: {
      thing_type t{
          str(o, "name"),           str(o, "id"),
          str(o, "description"),    strings_of<std::vector<std::string>>(o.at("searchable")),
          boolean(o, "deprecated"), num(o, "deprecation_date"),
          num(o, "created")};
      return {kind, t.name, std::move(t)};
    }
    case object_kind::thing_group: {
      thing_group g{str(o, "name"),
                    str(o, "id"),
                    str(o, "parent"),
                    str(o, "description"),
                    attributes_of(o.at("attributes")),
                    integer(o, "version"),
                    num(o, "created")};
      return {kind, g.name, std::move(g)};
    }
    case object_kind::certificate: {
      certificate c;
      c.info = stored_pem(o, "certificate");
      c.id = str(o, "id");
      auto status = parse_certificate_status(str(o, "status"));
      if (!status)
        throw std::runtime_error("registry: stored certificate " + c.id + " has unknown status " +
                                 str(o, "status"));
      c.status = *status;
      c.ca_id = str(o, "ca_id");
      c.mode = parse_certificate_mode(str(o, "mode")).value_or(certificate_mode::default_mode);
      c.generation_id = str(o, "generation_id");
      c.customer_version = integer(o, "customer_version");
      c.created = num(o, "created");
      c.modified = num(o, "modified");
      return {kind, c.id, std::move(c)};
    }
    case object_kind::ca_certificate: {
      ca_certificate c;
      c.info = stored_pem(o, "CA certificate");
      c.id = str(o, "id");
      auto status = parse_ca_status(str(o, "status"));
      if (!status)
        throw std::runtime_error("registry: stored CA certificate " + c.id +
                                 " has unknown status " + str(o, "status"));
      c.status = *status;
      c.auto_registration = str(o, "auto_registration") == "ENABLE";
      c.generation_id = str(o, "generation_id");
      c.customer_version = integer(o, "customer_version");
      c.created = num(o, "created");
      c.modified = num(o, "modified");
      return {kind, c.id, std::move(c)};
    }
    case object_kind::policy: {
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
        } catch (const error& e) {
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
      return {kind, p.name, std::move(p)};
    }
    case object_kind::tags:
      return {kind, row_name, attributes_of(o.at("tags"))};
  }
  return {kind, row_name, std::monostate{}};  // not reached: every kind is handled above
}

// ---- applying objects to a view --------------------------------------------------------------

template <class T>
void replace_object(std::map<std::string, T>& map, stored_object& object) {
  if (auto* value = std::get_if<T>(&object.value))
    map.insert_or_assign(object.name, std::move(*value));
  else
    map.erase(object.name);
}

void unindex(std::map<std::string, std::set<std::string>>& index, const std::string& key,
             const std::string& name) {
  auto it = index.find(key);
  if (it == index.end()) return;
  it->second.erase(name);
  if (it->second.empty()) index.erase(it);
}

}  // namespace

void registry::state::apply(stored_object object) {
  switch (object.kind) {
    case object_kind::thing:
      if (auto old = things.find(object.name); old != things.end())
        for (const auto& p : old->second.principals) unindex(principal_things, p, object.name);
      if (const auto* updated = std::get_if<thing>(&object.value))
        for (const auto& p : updated->principals) principal_things[p].insert(object.name);
      replace_object(things, object);
      break;
    case object_kind::policy:
      if (auto old = policies.find(object.name); old != policies.end())
        for (const auto& t : old->second.targets) unindex(target_policies, t, object.name);
      if (const auto* updated = std::get_if<policy_entry>(&object.value))
        for (const auto& t : updated->targets) target_policies[t].insert(object.name);
      replace_object(policies, object);
      break;
    case object_kind::thing_type:
      replace_object(thing_types, object);
      break;
    case object_kind::thing_group:
      replace_object(thing_groups, object);
      break;
    case object_kind::certificate:
      replace_object(certificates, object);
      break;
    case object_kind::ca_certificate:
      replace_object(ca_certificates, object);
      break;
    case object_kind::tags:
      replace_object(tags, object);
      break;
  }
}

stored_object registry::state::copy_out(object_kind kind, const std::string& name) const {
  stored_object out{kind, name, std::monostate{}};
  auto copy = [&](const auto& map) {
    if (auto it = map.find(name); it != map.end()) out.value = it->second;
  };
  switch (kind) {
    case object_kind::thing:
      copy(things);
      break;
    case object_kind::thing_type:
      copy(thing_types);
      break;
    case object_kind::thing_group:
      copy(thing_groups);
      break;
    case object_kind::certificate:
      copy(certificates);
      break;
    case object_kind::ca_certificate:
      copy(ca_certificates);
      break;
    case object_kind::policy:
      copy(policies);
      break;
    case object_kind::tags:
      copy(tags);
      break;
  }
  return out;
}

// ---- lifecycle ----------------------------------------------------------------------------------

registry::registry(std::string arn_prefix, std::string account, const certificate_authority& ca,
                   core::clock& clock)
    : arn_prefix_(std::move(arn_prefix)),
      account_(std::move(account)),
      ca_(ca),
      clock_(clock),
      pending_(std::make_unique<state>()),
      committed_(std::make_unique<state>()) {}

registry::~registry() = default;

void registry::migrate(storage::database& db) {
  db.migrate("registry", {R"(CREATE TABLE registry_objects (
        kind TEXT NOT NULL, name TEXT NOT NULL, body TEXT NOT NULL,
        PRIMARY KEY (kind, name)) WITHOUT ROWID)"});
}

void registry::load(storage::database& db) {
  std::scoped_lock lock(write_mutex_, mutex_);
  auto& s = *committed_;
  auto rows = db.prepare("SELECT kind, body, name FROM registry_objects");
  std::size_t loaded = 0;
  while (rows.step()) {
    const std::string kind_text = rows.column_text(0);
    auto kind = parse_kind(kind_text);
    if (!kind) {
      // Written by a newer server, or by hand: left alone, as this server cannot use it.
      spdlog::warn("registry_row_skipped kind=\"{}\" name=\"{}\" reason=\"unknown kind\"",
                   kind_text, rows.column_text(2));
      continue;
    }
    json::value parsed = json::parse(rows.column_text(1));
    s.apply(object_from_row(*kind, rows.column_text(2), parsed.as_object()));
    ++loaded;
  }
  *pending_ = s;
  spdlog::info("registry_loaded objects={} things={} certificates={} policies={}", loaded,
               s.things.size(), s.certificates.size(), s.policies.size());
}

double registry::now() const {
  return static_cast<double>(clock_.unix_seconds());
}

// ---- the path of a change ---------------------------------------------------------------------

registry::ticket registry::mutate(const std::function<void(batch&)>& change) {
  std::unique_lock write_lock(write_mutex_);
  // A failed write left the pending view ahead of the database: a change accepted now could
  // rest on one that was never stored.
  if (store_failed_->load())
    fail(errc::unavailable, "The registry could not store an earlier change; restart the server");
  batch b(*pending_);
  change(b);  // validates before it modifies: a refusal throws with nothing changed
  // A change that wrote nothing (an idempotent repeat) is acknowledged once the last write,
  // which may have made the state it found, is durable.
  if (b.touched.empty()) return last_ticket_;

  delta d;
  for (const auto& [kind, name] : b.touched) d.objects.push_back(pending_->copy_out(kind, name));
  if (writer_ == nullptr) {
    apply(d);
    write_lock.unlock();
    notify(b, ticket());
    return last_ticket_;
  }

  struct row {
    std::string kind, name;
    std::optional<std::string> body;
  };
  std::vector<row> rows;
  rows.reserve(d.objects.size());
  for (const auto& object : d.objects)
    rows.push_back({std::string(kind_name(object.kind)), object.name, row_body(object)});
  const ticket t =
      writer_->submit([rows = std::move(rows), failed = store_failed_](storage::database& db) {
        // Any failure is rethrown to the writer (the savepoint rolls back, nobody is answered
        // 200), and remembered: the pending view already holds the change.
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
  last_ticket_ = t;
  // Registered before write_mutex_ is released, so deltas reach the committed view in ticket
  // order; and before the caller registers its own callback for this ticket (the one that
  // acknowledges: iot/aws_http's respond_when_durable). The write queue runs callbacks in the
  // order they were registered, so the change is in the committed view before anyone is told
  // it was made. A failed write never reaches it: the committed view stays what the database
  // holds. The disabled certificates' clients are cut only now, when the committed view
  // refuses them, so that they cannot reconnect on the old state.
  auto notices = std::make_shared<batch>(std::move(b));
  writer_->when_durable(t, [this, t, d = std::move(d), notices]() mutable {
    if (writer_->failed(t)) return;
    apply(d);
    notify(*notices, t);
  });
  return t;
}

void registry::apply(delta& d) {
  std::unique_lock lock(mutex_);
  for (auto& object : d.objects) committed_->apply(std::move(object));
}

void registry::notify(const batch& b, ticket t) const {
  if (certificate_disabled_)
    for (const auto& id : b.disabled) certificate_disabled_(id);
  if (thing_deleted_)
    for (const auto& name : b.deleted_things) thing_deleted_(name, t);
  if (groups_changed_ && b.groups_changed) groups_changed_();
}

registry::counts registry::count() const {
  auto lock = read_lock();
  const auto& s = *committed_;
  return {s.things.size(), s.certificates.size(), s.policies.size()};
}

}  // namespace nimbus::registry
