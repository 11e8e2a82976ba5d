#pragma once
// The device registry: things, thing types, thing groups, certificates (own and CA-registered),
// policies with versions, and what is attached to what. It is AWS IoT's data model, with its
// names, limits and preconditions, so the control plane above it is a thin JSON mapping. The
// plain types are in model.hpp, refusals in error.hpp.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/clock.hpp"
#include "policy/policy.hpp"
#include "registry/error.hpp"
#include "registry/model.hpp"
#include "storage/ticket.hpp"

namespace nimbus::storage {
class database;
class write_queue;
}  // namespace nimbus::storage

namespace nimbus::registry {

class certificate_authority;

// The model is kept in memory twice, so that nothing acts on a change the database may still
// lose:
// - the pending view holds every change accepted so far, stored or not. Only mutators read and
//   change it, one at a time (write_mutex_), so each validates against every change before it.
// - the committed view holds what is durable. Every reader reads it under a shared lock: the
//   find_ and list_ calls, count, and device authorization (certificate_refusal, evaluate_*),
//   which runs on every CONNECT, PUBLISH, SUBSCRIBE and delivery.
// A mutator changes the pending view, writes each object it touched as one JSON row through the
// write queue, and returns that write's ticket; the objects reach the committed view once the
// ticket is durable, before the caller, waiting on the same ticket, acknowledges the change (the
// registry registers its callback first, and callbacks keep their order). A write that fails
// never reaches it, and every later change is refused. So a reader never
// acts on a change the database may lose, and a caller reads its own change only once it may
// acknowledge it: what a response reports of a change comes from the mutator's return value.
// Both views copy every object (a certificate's parsed X.509 facts and a policy's compiled
// documents are shared). Without a store (attach_store not called: tests) a change reaches the
// committed view before its mutator returns. Mutators and readers may be called from any
// thread.
class registry {
 public:
  // `arn_prefix` is "arn:aws:iot:{region}:{account}:". `ca` issues device certificates.
  registry(std::string arn_prefix, std::string account, const certificate_authority& ca,
           core::clock& clock);
  ~registry();

  // Creates the table (migration) and loads every object into both views. Start-up only.
  static void migrate(storage::database& db);
  void load(storage::database& db);
  // From now on every change is written through `writer`, which must outlive the registry's
  // use (start-up only, before any change).
  void attach_store(storage::write_queue& writer) { writer_ = &writer; }

  // Every mutator returns the ticket to wait for before acknowledging: its own write's, or for
  // a change that wrote nothing (an idempotent repeat) the newest registry write's, which may
  // have made the state it found (none without a store, or before any write). It throws `error`
  // when the request is refused, with nothing changed (errc::unavailable once a write failed).
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
  // Returns the group's new version: readers see it only once the ticket is durable.
  std::pair<std::int64_t, ticket> update_thing_group(const std::string& name,
                                                     const std::optional<std::string>& description,
                                                     const std::optional<attribute_map>& attributes,
                                                     bool merge, std::int64_t expected_version);
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
                                                      certificate_status status, bool with_ca);
  ticket update_certificate(const std::string& id, certificate_status status);
  ticket delete_certificate(const std::string& id, bool force);
  std::optional<certificate> find_certificate(const std::string& id) const;
  page<certificate> list_certificates(const std::string& ca_id, bool ascending,
                                      const std::string& marker, std::size_t max) const;

  std::pair<ca_certificate, ticket> register_ca_certificate(std::string_view pem, bool active,
                                                            bool auto_registration,
                                                            const tag_list& tags = {});
  // An empty optional leaves that field as it is.
  ticket update_ca_certificate(const std::string& id, std::optional<ca_status> status,
                               std::optional<bool> auto_registration);
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
  // Why a certificate may not connect ("" when it may: registered, ACTIVE, within validity, and
  // its CA, if registered with one, ACTIVE).
  std::string certificate_refusal(const std::string& certificate_id) const;
  // Evaluates the policies of the device's certificate (plus its thing's groups' policies when
  // the client id names a thing attached to it) for `action` on `resource` (a full ARN).
  policy::decision evaluate_device(const device_facts& device, std::string_view action,
                                   std::string_view resource) const;
  // Evaluates one named policy (the anonymous policy); a missing policy denies.
  policy::decision evaluate_policy(const std::string& name, const device_facts& device,
                                   std::string_view action, std::string_view resource) const;

  // Called when a certificate stops being usable (INACTIVE, REVOKED, deleted, its CA no longer
  // ACTIVE), once the committed view says so: a client it disconnects and that reconnects at
  // once is refused. It runs on the write queue's thread (or the mutator's, without a store),
  // under no registry lock, so it must only post work. Set it while no change is in flight.
  void on_certificate_disabled(std::function<void(const std::string& id)> callback) {
    certificate_disabled_ = std::move(callback);
  }
  // Called, like on_certificate_disabled's callback, once a thing's deletion is committed, with
  // the ticket of that write (none without a store): the shadow service deletes its shadows.
  void on_thing_deleted(std::function<void(const std::string& name, ticket deleted_by)> callback) {
    thing_deleted_ = std::move(callback);
  }
  // Called, like on_certificate_disabled's callback, once a change to which groups a thing is in
  // (directly or through a group's ancestors) is committed: a thing added to or removed from a
  // group, a group deleted, a thing in groups deleted. The alerts service asks again.
  void on_groups_changed(std::function<void()> callback) { groups_changed_ = std::move(callback); }

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
  struct delta;

  // Runs `change` on the pending view under write_mutex_, writes every object it touched, and
  // applies them to the committed view once the write is durable; returns the write's ticket.
  ticket mutate(const std::function<void(batch&)>& change);
  // Applies a durable change to the committed view.
  void apply(delta& d);
  std::shared_lock<std::shared_mutex> read_lock() const { return std::shared_lock(mutex_); }
  // Why `c` may not be used now ("" when it may). Caller holds read_lock().
  std::string refusal_locked(const certificate& c) const;
  void notify(const batch& b, ticket t) const;
  double now() const;

  std::string arn_prefix_;
  std::string account_;
  const certificate_authority& ca_;
  core::clock& clock_;
  storage::write_queue* writer_ = nullptr;
  std::function<void(const std::string&)> certificate_disabled_;
  std::function<void(const std::string&, ticket)> thing_deleted_;
  std::function<void()> groups_changed_;

  // The pending view and what goes with it, guarded by write_mutex_.
  std::mutex write_mutex_;
  std::unique_ptr<state> pending_;
  ticket last_ticket_;  // of the newest registry write
  // Set by a write that failed (on the writer thread): the pending view is then ahead of the
  // database for good.
  std::shared_ptr<std::atomic<bool>> store_failed_ = std::make_shared<std::atomic<bool>>(false);

  // The committed view, guarded by mutex_.
  mutable std::shared_mutex mutex_;
  std::unique_ptr<state> committed_;
};

// Name rules, shared with the API layer's validation messages.
bool is_valid_thing_name(std::string_view name);
bool is_valid_policy_name(std::string_view name);

}  // namespace nimbus::registry
