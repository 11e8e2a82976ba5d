#pragma once
// The device registry: things, thing types, thing groups, certificates (own and CA-registered),
// policies with versions, and what is attached to what. It is AWS IoT's data model, with its
// names, limits and preconditions, so the control plane above it is a thin JSON mapping.
//
// The model lives in memory behind a reader/writer lock (device authorization reads it on every
// CONNECT, PUBLISH, SUBSCRIBE and delivery); every change is also written through the write
// queue as one JSON row per object, and callers acknowledge a change only once that write is
// durable (`change::ticket`).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/clock.hpp"
#include "policy/policy.hpp"
#include "registry/x509.hpp"
#include "storage/ticket.hpp"

namespace nimbus::storage {
class database;
class write_queue;
}  // namespace nimbus::storage

namespace nimbus::registry {

class certificate_authority;

// A refused request, in AWS's terms: HTTP status, error type (x-amzn-ErrorType) and message.
struct api_error {
  unsigned status;
  std::string type;
  std::string message;
  std::string resource_id;  // ResourceAlreadyExists only
  std::string resource_arn;
};

// Sentinel for optional numeric fields.
inline constexpr std::int64_t no_version = -1;

using attribute_map = std::map<std::string, std::string>;
// Tags as a request sends them ({Key, Value} in order; a later key wins).
using tag_list = std::vector<std::pair<std::string, std::string>>;

struct thing {
  std::string name;
  std::string id;
  std::string type_name;
  attribute_map attributes;
  std::int64_t version = 1;
  std::string billing_group;
  std::set<std::string> principals;  // certificate ARNs
  std::set<std::string> groups;      // thing group names
  double created = 0;
};

struct thing_type {
  std::string name;
  std::string id;
  std::string description;
  std::vector<std::string> searchable_attributes;
  bool deprecated = false;
  double deprecation_date = 0;
  double created = 0;
};

struct thing_group {
  std::string name;
  std::string id;
  std::string parent;
  std::string description;
  attribute_map attributes;
  std::int64_t version = 1;
  double created = 0;
};

struct certificate {
  std::string id;
  std::string status;  // ACTIVE, INACTIVE, REVOKED, PENDING_TRANSFER, REGISTER_INACTIVE, ...
  std::string ca_id;   // registered with a CA: its id
  std::string mode = "DEFAULT";
  std::string generation_id;
  std::int64_t customer_version = 1;
  double created = 0;
  double modified = 0;
  certificate_info info;
};

struct ca_certificate {
  std::string id;
  std::string status;             // ACTIVE, INACTIVE
  std::string auto_registration;  // ENABLE, DISABLE
  std::string generation_id;
  std::int64_t customer_version = 1;
  double created = 0;
  double modified = 0;
  certificate_info info;
};

struct policy_version {
  std::string document;
  double created = 0;
  std::shared_ptr<const policy::document> compiled;
};

struct policy_entry {
  std::string name;
  std::int64_t default_version = 1;
  std::int64_t next_version = 2;
  std::map<std::int64_t, policy_version> versions;
  std::set<std::string> targets;  // certificate and thing-group ARNs
  std::string generation_id;
  double created = 0;
  double modified = 0;
};

// One page of a listing: items and the token for the next page ("" when it was the last).
template <class T>
struct page {
  std::vector<T> items;
  std::string next_token;
};

struct thing_filter {
  std::string attribute_name;
  std::string attribute_value;
  bool prefix_value = false;
  std::string type_name;
};

// What a device connection presents for authorization.
// What a device connection presents for authorization (views valid for the call).
struct device_facts {
  std::string_view client_id;
  std::string_view certificate_id;  // empty: anonymous
  std::string_view source_ip;
  bool persistent_connect = false;
  bool last_will = false;
};

class registry {
 public:
  // `arn_prefix` is "arn:aws:iot:{region}:{account}:". `ca` issues device certificates.
  registry(std::string arn_prefix, std::string account, const certificate_authority& ca,
           core::clock& clock);
  ~registry();

  // Creates the table (migration) and loads every object. Start-up only.
  static void migrate(storage::database& db);
  void load(storage::database& db);
  // From now on every change is written through `writer`.
  void attach_store(storage::write_queue& writer) { writer_ = &writer; }

  // Every mutator returns the ticket to wait for before acknowledging (0: nothing written) and
  // throws api_error when the request is refused (then nothing changed).
  using ticket = storage::ticket;

  // ---- things
  struct thing_request {
    std::string type_name;
    std::optional<attribute_map> attributes;
    bool merge = false;
    std::string billing_group;
    std::int64_t expected_version = no_version;
    bool remove_type = false;
  };
  std::pair<thing, ticket> create_thing(const std::string& name, const thing_request& r);
  ticket update_thing(const std::string& name, const thing_request& r);
  ticket delete_thing(const std::string& name, std::int64_t expected_version);
  std::optional<thing> find_thing(const std::string& name) const;
  page<thing> list_things(const thing_filter& filter, const std::string& token,
                          std::size_t max) const;

  // ---- thing types
  std::pair<thing_type, ticket> create_thing_type(const std::string& name,
                                                  const std::string& description,
                                                  const std::vector<std::string>& searchable,
                                                  const tag_list& tags = {});
  ticket deprecate_thing_type(const std::string& name, bool undo);
  ticket delete_thing_type(const std::string& name);
  std::optional<thing_type> find_thing_type(const std::string& name) const;
  page<thing_type> list_thing_types(const std::string& name_filter, const std::string& token,
                                    std::size_t max) const;

  // ---- thing groups
  std::pair<thing_group, ticket> create_thing_group(const std::string& name,
                                                    const std::string& parent,
                                                    const std::string& description,
                                                    const attribute_map& attributes,
                                                    const tag_list& tags = {});
  ticket update_thing_group(const std::string& name, const std::optional<std::string>& description,
                            const std::optional<attribute_map>& attributes, bool merge,
                            std::int64_t expected_version);
  ticket delete_thing_group(const std::string& name, std::int64_t expected_version);
  std::optional<thing_group> find_thing_group(const std::string& name) const;
  // Ancestors of a group, root first.
  std::vector<thing_group> ancestors(const thing_group& g) const;
  page<thing_group> list_thing_groups(const std::string& parent, const std::string& prefix,
                                      bool recursive, const std::string& token,
                                      std::size_t max) const;
  ticket add_thing_to_group(const std::string& group, const std::string& thing_name);
  ticket remove_thing_from_group(const std::string& group, const std::string& thing_name);
  page<std::string> list_things_in_group(const std::string& group, bool recursive,
                                         const std::string& token, std::size_t max) const;
  page<thing_group> list_groups_for_thing(const std::string& thing_name, const std::string& token,
                                          std::size_t max) const;

  // ---- certificates
  struct created_keys {
    certificate cert;
    std::string private_key_pem;
    std::string public_key_pem;
  };
  std::pair<created_keys, ticket> create_keys_and_certificate(bool active);
  std::pair<certificate, ticket> create_certificate_from_csr(std::string_view csr, bool active);
  // `with_ca`: RegisterCertificate (the issuing CA must be registered and ACTIVE); otherwise
  // RegisterCertificateWithoutCA.
  std::pair<certificate, ticket> register_certificate(std::string_view pem, std::string_view ca_pem,
                                                      const std::string& status, bool with_ca);
  ticket update_certificate(const std::string& id, const std::string& status);
  ticket delete_certificate(const std::string& id, bool force);
  std::optional<certificate> find_certificate(const std::string& id) const;
  page<certificate> list_certificates(const std::string& ca_id, bool ascending,
                                      const std::string& marker, std::size_t max) const;

  std::pair<ca_certificate, ticket> register_ca_certificate(std::string_view pem, bool active,
                                                            bool auto_registration,
                                                            const tag_list& tags = {});
  ticket update_ca_certificate(const std::string& id, const std::string& status,
                               const std::string& auto_registration);
  ticket delete_ca_certificate(const std::string& id);
  std::optional<ca_certificate> find_ca_certificate(const std::string& id) const;
  page<ca_certificate> list_ca_certificates(bool ascending, const std::string& marker,
                                            std::size_t max) const;

  // ---- policies
  std::pair<policy_entry, ticket> create_policy(const std::string& name,
                                                const std::string& document,
                                                const tag_list& tags = {});
  ticket delete_policy(const std::string& name);
  std::optional<policy_entry> find_policy(const std::string& name) const;
  page<policy_entry> list_policies(bool ascending, const std::string& marker,
                                   std::size_t max) const;
  std::pair<std::int64_t, ticket> create_policy_version(const std::string& name,
                                                        const std::string& document,
                                                        bool set_as_default);
  ticket set_default_policy_version(const std::string& name, std::int64_t version);
  ticket delete_policy_version(const std::string& name, std::int64_t version);
  ticket attach_policy(const std::string& name, const std::string& target_arn);
  ticket detach_policy(const std::string& name, const std::string& target_arn);
  page<policy_entry> list_attached_policies(const std::string& target_arn, bool recursive,
                                            const std::string& marker, std::size_t max) const;
  // `certificates_only`: ListPolicyPrincipals, which lists certificates and not thing groups.
  page<std::string> list_targets_for_policy(const std::string& name, const std::string& marker,
                                            std::size_t max, bool certificates_only = false) const;

  // ---- tags: thing groups, thing types, policies and CA certificates carry them (as in AWS,
  // things and device certificates do not). Resources are named by ARN; the region and
  // account in it are not compared, as for attachments.
  ticket tag_resource(const std::string& arn, const tag_list& tags);
  ticket untag_resource(const std::string& arn, const std::vector<std::string>& keys);
  page<std::pair<std::string, std::string>> list_tags(const std::string& arn,
                                                      const std::string& token,
                                                      std::size_t max) const;

  // ---- principals
  ticket attach_thing_principal(const std::string& thing_name, const std::string& principal);
  ticket detach_thing_principal(const std::string& thing_name, const std::string& principal);
  page<std::string> list_thing_principals(const std::string& thing_name, const std::string& token,
                                          std::size_t max) const;
  page<std::string> list_principal_things(const std::string& principal, const std::string& token,
                                          std::size_t max) const;

  // ---- device authorization
  // Why a certificate may not connect ("" when it may: registered, ACTIVE, within validity).
  std::string certificate_refusal(const std::string& certificate_id) const;
  // Evaluates the policies of the device's certificate (plus its thing's groups' policies when
  // the client id names a thing attached to it) for `action` on `resource` (a full ARN).
  policy::decision evaluate_device(const device_facts& device, std::string_view action,
                                   std::string_view resource) const;
  // Evaluates one named policy (the anonymous policy); a missing policy denies.
  policy::decision evaluate_policy(const std::string& name, const device_facts& device,
                                   std::string_view action, std::string_view resource) const;

  // Called (outside the lock) when a certificate stops being usable: INACTIVE, REVOKED, deleted.
  void on_certificate_disabled(std::function<void(const std::string& id)> callback) {
    certificate_disabled_ = std::move(callback);
  }

  const std::string& arn_prefix() const { return arn_prefix_; }
  std::string certificate_arn(const std::string& id) const { return arn_prefix_ + "cert/" + id; }
  std::string thing_arn(const std::string& name) const { return arn_prefix_ + "thing/" + name; }
  std::string policy_arn(const std::string& name) const { return arn_prefix_ + "policy/" + name; }
  std::string thing_type_arn(const std::string& n) const { return arn_prefix_ + "thingtype/" + n; }
  std::string thing_group_arn(const std::string& n) const {
    return arn_prefix_ + "thinggroup/" + n;
  }
  std::string ca_certificate_arn(const std::string& id) const {
    return arn_prefix_ + "cacert/" + id;
  }
  const std::string& account() const { return account_; }

  struct counts {
    std::size_t things, certificates, policies;
  };
  counts count() const;

 private:
  struct state;
  class batch;

  // Runs `change` under the write lock; writes every object it touched; returns the ticket.
  ticket mutate(const std::function<void(batch&)>& change);
  // Why `c` may not be used now ("" when it may). Caller holds the lock.
  std::string refusal_locked(const certificate& c) const;
  double now() const;

  std::string arn_prefix_;
  std::string account_;
  const certificate_authority& ca_;
  core::clock& clock_;
  mutable std::shared_mutex mutex_;
  std::unique_ptr<state> state_;
  storage::write_queue* writer_ = nullptr;
  ticket last_ticket_;  // of the newest registry write (guarded by mutex_)
  std::shared_ptr<std::atomic<bool>> store_failed_ = std::make_shared<std::atomic<bool>>(false);
  std::function<void(const std::string&)> certificate_disabled_;
};

// Name rules, shared with the API layer's validation messages.
bool is_valid_thing_name(std::string_view name);
bool is_valid_policy_name(std::string_view name);

}  // namespace nimbus::registry
