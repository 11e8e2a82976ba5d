#include "registry/registry.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

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
  api_error refusal(F&& f) {
    try {
      f();
    } catch (const api_error& e) {
      return e;
    }
    ADD_FAILURE() << "expected an api_error";
    return {};
  }

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
  EXPECT_EQ(refusal([&] { reg_->create_thing("pi-001", other); }).type,
            "ResourceAlreadyExistsException");

  registry::thing_request merge;
  merge.attributes = attribute_map{{"color", ""}, {"room", "7"}};
  merge.merge = true;
  reg_->update_thing("pi-001", merge);
  auto updated = reg_->find_thing("pi-001");
  ASSERT_TRUE(updated);
  EXPECT_EQ(updated->attributes, (attribute_map{{"room", "7"}, {"size", "s"}}));
  EXPECT_EQ(updated->version, 2);

  registry::thing_request stale;
  stale.expected_version = 1;
  EXPECT_EQ(refusal([&] { reg_->update_thing("pi-001", stale); }).type, "VersionConflictException");
  EXPECT_EQ(refusal([&] { reg_->create_thing("bad name!", {}); }).status, 400U);
  registry::thing_request too_many;
  too_many.attributes = attribute_map{{"a", "1"}, {"b", "2"}, {"c", "3"}, {"d", "4"}};
  EXPECT_EQ(refusal([&] { reg_->create_thing("t4", too_many); }).type, "InvalidRequestException");
  // Deleting nothing succeeds, acknowledged with the newest write (it may have made the state).
  auto newest = reg_->update_thing("pi-001", {});
  EXPECT_EQ(reg_->delete_thing("missing", no_version), newest);
}

TEST_F(registry_fixture, pagination_visits_every_thing_once) {
  for (int i = 0; i < 7; ++i) reg_->create_thing("thing-" + std::to_string(i), {});
  std::vector<std::string> seen;
  std::string token;
  do {
    auto page = reg_->list_things({}, token, 3);
    for (const auto& t : page.items) seen.push_back(t.name);
    token = page.next_token;
  } while (!token.empty());
  EXPECT_EQ(seen.size(), 7U);
  EXPECT_EQ(refusal([&] { reg_->list_things({}, "garbage", 3); }).type, "InvalidRequestException");
}

TEST_F(registry_fixture, policy_versions_limits_and_delete_preconditions) {
  reg_->create_policy("p", allow_all);
  EXPECT_EQ(refusal([&] { reg_->create_policy("p", allow_all); }).type,
            "ResourceAlreadyExistsException");
  EXPECT_EQ(refusal([&] { reg_->create_policy("q", "{not json"); }).type,
            "MalformedPolicyException");
  for (int i = 0; i < 4; ++i) reg_->create_policy_version("p", allow_all, false);
  EXPECT_EQ(refusal([&] { reg_->create_policy_version("p", allow_all, true); }).type,
            "VersionsLimitExceededException");
  EXPECT_EQ(refusal([&] { reg_->delete_policy_version("p", 1); }).type, "DeleteConflictException");
  EXPECT_EQ(refusal([&] { reg_->delete_policy("p"); }).type, "DeleteConflictException");
  reg_->set_default_policy_version("p", 5);
  EXPECT_EQ(reg_->find_policy("p")->default_version, 5);
}

TEST_F(registry_fixture, certificate_lifecycle_and_device_authorization) {
  auto [keys, ticket] = reg_->create_keys_and_certificate(true);
  const auto& cert = keys.cert;
  EXPECT_EQ(cert.id, sha256_hex(cert.info.der));
  EXPECT_NE(keys.private_key_pem.find("PRIVATE KEY"), std::string::npos);
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
  std::string own = std::string(prefix) + "topic/sensor/pi-001";
  // The thing variable resolves only once the thing is attached to the certificate.
  EXPECT_EQ(reg_->evaluate_device(device, "iot:Publish", own), policy::decision::not_applicable);
  reg_->attach_thing_principal("pi-001", reg_->certificate_arn(cert.id));
  EXPECT_EQ(reg_->evaluate_device(device, "iot:Publish", own), policy::decision::allow);

  std::vector<std::string> disabled;
  reg_->on_certificate_disabled([&](const std::string& id) { disabled.push_back(id); });
  EXPECT_EQ(refusal([&] { reg_->delete_certificate(cert.id, false); }).type,
            "CertificateStateException");
  reg_->update_certificate(cert.id, "REVOKED");
  EXPECT_EQ(disabled, std::vector<std::string>{cert.id});
  EXPECT_EQ(reg_->certificate_refusal(cert.id), "certificate is REVOKED");
  EXPECT_EQ(refusal([&] { reg_->update_certificate(cert.id, "ACTIVE"); }).type,
            "CertificateStateException");
  EXPECT_EQ(refusal([&] { reg_->delete_certificate(cert.id, false); }).type,
            "DeleteConflictException");  // the thing is still attached
  reg_->detach_thing_principal("pi-001", reg_->certificate_arn(cert.id));
  EXPECT_EQ(refusal([&] { reg_->delete_certificate(cert.id, false); }).type,
            "DeleteConflictException");  // the policy is still attached
  reg_->delete_certificate(cert.id, true);
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
  EXPECT_EQ(cert->status, "INACTIVE");
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

}  // namespace
}  // namespace nimbus::registry
