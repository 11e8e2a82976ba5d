#include "registry/registry.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <future>
#include <string>
#include <vector>

#include "registry/certificate_authority.hpp"
#include "storage/database.hpp"
#include "storage/write_queue.hpp"

namespace nimbus::registry {
namespace {

constexpr const char* prefix = "arn:aws:iot:us-east-1:000000000000:";

const char* allow_all = R"({"Version":"2012-10-17","Statement":[
  {"Effect":"Allow","Action":"iot:*","Resource":"*"}]})";

class registry_fixture : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("nimbus-registry-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    ca_ = std::make_unique<certificate_authority>(
        certificate_authority::open_or_create((dir_ / "ca").string()));
    reg_ = open();
  }
  void TearDown() override {
    if (writer_) writer_->drain();
    writer_.reset();
    std::filesystem::remove_all(dir_);
  }

  // A registry over the database file, loaded from it and writing through a write queue.
  std::unique_ptr<registry> open() {
    if (writer_) writer_->drain();
    writer_.reset();
    auto path = (dir_ / "nimbus.db").string();
    auto r = std::make_unique<registry>(prefix, "000000000000", *ca_, clock_);
    {
      storage::database db(path);
      registry::migrate(db);
      r->load(db);
    }
    writer_ = std::make_unique<storage::write_queue>(path, "normal", std::chrono::milliseconds(1));
    r->attach_store(*writer_);
    return r;
  }

  template <class F>
  error refusal(F&& f) {
    try {
      f();
    } catch (const error& e) {
      return e;
    }
    ADD_FAILURE() << "expected a registry::error";
    return error(errc::invalid_request, "(nothing was thrown)");
  }

  // Waits until every write so far is durable and its callbacks have run: readers, which see
  // only what is durable, then see every change made so far.
  void settle() { writer_->drain(); }

  // Holds the write queue's thread in a write of its own until release() (at the latest when
  // it goes out of scope, so that a failed test does not hang): nothing submitted after it
  // becomes durable before that.
  class writer_hold {
   public:
    explicit writer_hold(storage::write_queue& writer) {
      writer.submit([held = promise_.get_future().share()](storage::database&) { held.wait(); });
    }
    ~writer_hold() { release(); }
    writer_hold(const writer_hold&) = delete;
    writer_hold& operator=(const writer_hold&) = delete;
    void release() {
      if (released_) return;
      released_ = true;
      promise_.set_value();
    }

   private:
    std::promise<void> promise_;
    bool released_ = false;
  };

  std::filesystem::path dir_;
  core::system_clock clock_;  // certificates are issued for the real time
  std::unique_ptr<certificate_authority> ca_;
  std::unique_ptr<storage::write_queue> writer_;
  std::unique_ptr<registry> reg_;
};

TEST_F(registry_fixture, things_version_merge_and_conflicts) {
  registry::thing_request create;
  create.attributes = attribute_map{{"color", "red"}, {"size", "s"}};
  auto [t, ticket] = reg_->create_thing("pi-001", create);
  EXPECT_FALSE(ticket.is_none());
  EXPECT_EQ(t.version, 1);
  // Same configuration again: the same thing; a different one: already exists.
  EXPECT_EQ(reg_->create_thing("pi-001", create).first.id, t.id);
  registry::thing_request other;
  other.attributes = attribute_map{{"color", "blue"}};
  auto exists = refusal([&] { reg_->create_thing("pi-001", other); });
  EXPECT_EQ(exists.code, errc::already_exists);
  EXPECT_EQ(exists.message, "Thing pi-001 already exists in account with different attributes");
  EXPECT_EQ(exists.resource_id, t.id);
  EXPECT_EQ(exists.resource_arn, std::string(prefix) + "thing/pi-001");

  registry::thing_request merge;
  merge.attributes = attribute_map{{"color", ""}, {"room", "7"}};
  merge.merge = true;
  reg_->update_thing("pi-001", merge);
  settle();
  auto updated = reg_->find_thing("pi-001");
  ASSERT_TRUE(updated);
  EXPECT_EQ(updated->attributes, (attribute_map{{"room", "7"}, {"size", "s"}}));
  EXPECT_EQ(updated->version, 2);

  registry::thing_request stale;
  stale.expected_version = 1;
  auto conflict = refusal([&] { reg_->update_thing("pi-001", stale); });
  EXPECT_EQ(conflict.code, errc::version_conflict);
  EXPECT_EQ(conflict.message, "The version for thing pi-001 does not match the expected version.");
  EXPECT_EQ(refusal([&] { reg_->create_thing("bad name!", {}); }).code, errc::invalid_request);
  registry::thing_request too_many;
  too_many.attributes = attribute_map{{"a", "1"}, {"b", "2"}, {"c", "3"}, {"d", "4"}};
  auto limited = refusal([&] { reg_->create_thing("t4", too_many); });
  EXPECT_EQ(limited.code, errc::invalid_request);
  EXPECT_EQ(limited.message, "A thing without a thing type can have at most 3 attributes");
  // Deleting nothing succeeds, acknowledged with the newest write (it may have made the state).
  auto newest = reg_->update_thing("pi-001", {});
  EXPECT_EQ(reg_->delete_thing("missing", no_version), newest);
}

TEST_F(registry_fixture, pagination_visits_every_thing_once) {
  for (int i = 0; i < 7; ++i) reg_->create_thing("thing-" + std::to_string(i), {});
  settle();
  std::vector<std::string> seen;
  std::string token;
  do {
    auto page = reg_->list_things({}, token, 3);
    for (const auto& t : page.items) seen.push_back(t.name);
    token = page.next_token;
  } while (!token.empty());
  EXPECT_EQ(seen.size(), 7U);
  auto garbage = refusal([&] { reg_->list_things({}, "garbage", 3); });
  EXPECT_EQ(garbage.code, errc::invalid_request);
  EXPECT_EQ(garbage.message, "The pagination token is invalid.");
}

TEST_F(registry_fixture, policy_versions_limits_and_delete_preconditions) {
  reg_->create_policy("p", allow_all);
  EXPECT_EQ(refusal([&] { reg_->create_policy("p", allow_all); }).code, errc::already_exists);
  EXPECT_EQ(refusal([&] { reg_->create_policy("q", "{not json"); }).code, errc::malformed_policy);
  for (int i = 0; i < 4; ++i) reg_->create_policy_version("p", allow_all, false);
  auto limit = refusal([&] { reg_->create_policy_version("p", allow_all, true); });
  EXPECT_EQ(limit.code, errc::versions_limit_exceeded);
  EXPECT_EQ(limit.message, "The policy p already has the maximum number of versions (5)");
  auto in_use = refusal([&] { reg_->delete_policy_version("p", 1); });
  EXPECT_EQ(in_use.code, errc::delete_conflict);
  EXPECT_EQ(in_use.message, "Cannot delete the default version of a policy");
  EXPECT_EQ(refusal([&] { reg_->delete_policy("p"); }).code, errc::delete_conflict);
  reg_->set_default_policy_version("p", 5);
  settle();
  EXPECT_EQ(reg_->find_policy("p")->default_version, 5);
}

TEST_F(registry_fixture, certificate_lifecycle_and_device_authorization) {
  auto [keys, ticket] = reg_->create_keys_and_certificate(true);
  const auto& cert = keys.cert;
  EXPECT_EQ(cert.id, sha256_hex(cert.info->der));
  EXPECT_NE(keys.private_key_pem.find("PRIVATE KEY"), std::string::npos);
  settle();
  EXPECT_EQ(reg_->certificate_refusal(cert.id), "");

  device_facts device{"pi-001", cert.id, "127.0.0.1", false, false};
  std::string topic = std::string(prefix) + "topic/sensor/data";
  // Default deny until a policy is attached.
  EXPECT_EQ(reg_->evaluate_device(device, "iot:Publish", topic), policy::decision::not_applicable);
  reg_->create_policy("device", R"({"Version":"2012-10-17","Statement":[
    {"Effect":"Allow","Action":"iot:Publish",
     "Resource":"arn:aws:iot:us-east-1:000000000000:topic/sensor/${iot:Connection.Thing.ThingName}"}]})");
  reg_->attach_policy("device", reg_->certificate_arn(cert.id));
  reg_->create_thing("pi-001", {});
  settle();
  std::string own = std::string(prefix) + "topic/sensor/pi-001";
  // The thing variable resolves only once the thing is attached to the certificate.
  EXPECT_EQ(reg_->evaluate_device(device, "iot:Publish", own), policy::decision::not_applicable);
  reg_->attach_thing_principal("pi-001", reg_->certificate_arn(cert.id));
  settle();
  EXPECT_EQ(reg_->evaluate_device(device, "iot:Publish", own), policy::decision::allow);

  std::vector<std::string> disabled;  // appended on the writer thread, read after settle()
  reg_->on_certificate_disabled([&](const std::string& id) { disabled.push_back(id); });
  auto active = refusal([&] { reg_->delete_certificate(cert.id, false); });
  EXPECT_EQ(active.code, errc::certificate_state);
  EXPECT_EQ(active.message, "Certificate must be deactivated (not ACTIVE) before deletion.");
  reg_->update_certificate(cert.id, certificate_status::revoked);
  settle();
  EXPECT_EQ(disabled, std::vector<std::string>{cert.id});
  EXPECT_EQ(reg_->certificate_refusal(cert.id), "certificate is REVOKED");
  EXPECT_EQ(reg_->evaluate_device(device, "iot:Publish", own), policy::decision::deny);
  EXPECT_EQ(refusal([&] { reg_->update_certificate(cert.id, certificate_status::active); }).code,
            errc::certificate_state);
  EXPECT_EQ(refusal([&] { reg_->delete_certificate(cert.id, false); }).code,
            errc::delete_conflict);  // the thing is still attached
  reg_->detach_thing_principal("pi-001", reg_->certificate_arn(cert.id));
  EXPECT_EQ(refusal([&] { reg_->delete_certificate(cert.id, false); }).code,
            errc::delete_conflict);  // the policy is still attached
  reg_->delete_certificate(cert.id, true);
  settle();
  EXPECT_FALSE(reg_->find_certificate(cert.id));
  EXPECT_TRUE(reg_->find_policy("device")->targets.empty());
}

TEST_F(registry_fixture, everything_acknowledged_is_reloaded) {
  auto [keys, t1] = reg_->create_keys_and_certificate(false);
  reg_->create_policy("p", allow_all);
  reg_->create_policy_version("p", allow_all, true);
  reg_->attach_policy("p", reg_->certificate_arn(keys.cert.id));
  registry::thing_request create;
  create.attributes = attribute_map{{"room", "7"}};
  reg_->create_thing("pi", create);
  reg_->attach_thing_principal("pi", reg_->certificate_arn(keys.cert.id));
  reg_->create_thing_group("floor", "", "first floor", {});
  reg_->add_thing_to_group("floor", "pi");

  auto reloaded = open();
  auto cert = reloaded->find_certificate(keys.cert.id);
  ASSERT_TRUE(cert);
  EXPECT_EQ(cert->status, certificate_status::inactive);
  EXPECT_EQ(cert->info->pem, keys.cert.info->pem);
  EXPECT_EQ(reloaded->find_policy("p")->default_version, 2);
  EXPECT_EQ(reloaded->find_thing("pi")->attributes.at("room"), "7");
  EXPECT_EQ(reloaded->list_principal_things(reloaded->certificate_arn(keys.cert.id), "", 10).items,
            std::vector<std::string>{"pi"});
  EXPECT_EQ(reloaded->list_attached_policies(reloaded->certificate_arn(keys.cert.id), false, "", 10)
                .items.size(),
            1U);
  EXPECT_EQ(reloaded->list_things_in_group("floor", false, "", 10).items,
            std::vector<std::string>{"pi"});
}

TEST_F(registry_fixture, a_change_is_read_only_once_it_is_durable) {
  writer_hold hold(*writer_);
  auto [keys, ticket] = reg_->create_keys_and_certificate(true);
  const std::string id = keys.cert.id;
  reg_->create_policy("p", allow_all);
  reg_->attach_policy("p", reg_->certificate_arn(id));
  // Mutators validate against every accepted change ...
  EXPECT_EQ(refusal([&] { reg_->create_policy("p", allow_all); }).code, errc::already_exists);
  // ... while readers, device authorization among them, see none of them yet.
  device_facts device{"pi", id, "127.0.0.1", false, false};
  const std::string topic = std::string(prefix) + "topic/t";
  EXPECT_LT(writer_->committed(), ticket);
  EXPECT_FALSE(reg_->find_certificate(id));
  EXPECT_FALSE(reg_->find_policy("p"));
  EXPECT_EQ(reg_->certificate_refusal(id), "certificate not registered");
  EXPECT_EQ(reg_->evaluate_device(device, "iot:Publish", topic), policy::decision::not_applicable);
  EXPECT_EQ(reg_->count().certificates, 0U);

  hold.release();
  settle();
  EXPECT_TRUE(reg_->find_certificate(id));
  EXPECT_EQ(reg_->certificate_refusal(id), "");
  EXPECT_EQ(reg_->evaluate_device(device, "iot:Publish", topic), policy::decision::allow);
  EXPECT_EQ(reg_->count().certificates, 1U);
}

TEST_F(registry_fixture, a_change_whose_write_fails_is_never_read) {
  registry::thing_request create;
  create.attributes = attribute_map{{"room", "7"}};
  reg_->create_thing("pi", create);
  settle();
  // From now on no registry row can be stored, as on a full disk.
  writer_->submit([](storage::database& db) {
    for (const char* event : {"INSERT", "UPDATE", "DELETE"})
      db.exec(std::string("CREATE TRIGGER refuse_") + event + " BEFORE " + event +
              " ON registry_objects BEGIN SELECT RAISE(ABORT, 'injected failure'); END");
  });
  registry::thing_request update;
  update.attributes = attribute_map{{"room", "8"}};
  auto ticket = reg_->update_thing("pi", update);
  settle();
  EXPECT_TRUE(writer_->failed(ticket));
  auto stored = reg_->find_thing("pi");
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->attributes.at("room"), "7");
  EXPECT_EQ(stored->version, 1);
  // The pending view holds the lost change: nothing more is accepted.
  auto refused = refusal([&] { reg_->create_thing("other", {}); });
  EXPECT_EQ(refused.code, errc::unavailable);
  EXPECT_EQ(refused.message, "The registry could not store an earlier change; restart the server");
  EXPECT_FALSE(reg_->find_thing("other"));
  // What was read is what the database holds.
  auto reloaded = open();
  EXPECT_EQ(reloaded->find_thing("pi")->attributes.at("room"), "7");
}

TEST_F(registry_fixture, clients_are_cut_only_once_the_committed_view_refuses_them) {
  auto [keys, created] = reg_->create_keys_and_certificate(true);
  const std::string id = keys.cert.id;
  settle();
  // What certificate_refusal answers inside the callback: a client disconnected there and
  // reconnecting at once is checked against that.
  std::vector<std::string> refusals;
  reg_->on_certificate_disabled([&](const std::string& disabled) {
    refusals.push_back(reg_->certificate_refusal(disabled));
  });
  writer_hold hold(*writer_);
  reg_->update_certificate(id, certificate_status::inactive);
  EXPECT_TRUE(refusals.empty());  // not durable yet: nobody is cut
  EXPECT_EQ(reg_->certificate_refusal(id), "");
  hold.release();
  settle();
  EXPECT_EQ(refusals, std::vector<std::string>{"certificate is INACTIVE"});
}

TEST_F(registry_fixture, without_a_store_a_change_is_read_at_once) {
  registry unstored(prefix, "000000000000", *ca_, clock_);
  std::vector<std::string> disabled;
  unstored.on_certificate_disabled([&](const std::string& id) { disabled.push_back(id); });
  auto [keys, ticket] = unstored.create_keys_and_certificate(true);
  EXPECT_TRUE(ticket.is_none());
  EXPECT_EQ(unstored.certificate_refusal(keys.cert.id), "");
  unstored.update_certificate(keys.cert.id, certificate_status::revoked);
  EXPECT_EQ(unstored.certificate_refusal(keys.cert.id), "certificate is REVOKED");
  EXPECT_EQ(disabled, std::vector<std::string>{keys.cert.id});
}

TEST(registry_model, statuses_are_spelled_as_aws_does) {
  for (auto status :
       {certificate_status::active, certificate_status::inactive, certificate_status::revoked,
        certificate_status::pending_transfer, certificate_status::register_inactive,
        certificate_status::pending_activation})
    EXPECT_EQ(parse_certificate_status(to_string(status)), status);
  EXPECT_EQ(to_string(certificate_status::pending_transfer), "PENDING_TRANSFER");
  EXPECT_EQ(to_string(ca_status::inactive), "INACTIVE");
  EXPECT_EQ(to_string(certificate_mode::sni_only), "SNI_ONLY");
  EXPECT_FALSE(parse_certificate_status("active"));  // AWS's enums are case-sensitive
  EXPECT_FALSE(parse_ca_status("REVOKED"));
}

}  // namespace
}  // namespace nimbus::registry
