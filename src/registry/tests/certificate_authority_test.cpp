#include "registry/certificate_authority.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "registry/credentials.hpp"

namespace nimbus::registry {
namespace {

std::string fresh_dir(const char* name) {
  auto dir = std::filesystem::temp_directory_path() /
             (std::string(name) + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  return dir.string();
}

TEST(certificate_authority, created_once_then_reloaded) {
  auto dir = fresh_dir("nimbus-ca");
  auto ca = certificate_authority::open_or_create(dir);
  EXPECT_NE(ca.certificate_pem().find("BEGIN CERTIFICATE"), std::string::npos);
  struct stat st {};
  ASSERT_EQ(::stat((dir + "/root-CA.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600U);
  auto again = certificate_authority::open_or_create(dir);
  EXPECT_EQ(again.certificate_pem(), ca.certificate_pem());
  auto server = again.issue_server("localhost", {"localhost", "127.0.0.1", "::1"}, 365);
  EXPECT_NE(server.certificate_pem.find("BEGIN CERTIFICATE"), std::string::npos);
  EXPECT_NE(server.private_key_pem.find("PRIVATE KEY"), std::string::npos);
}

TEST(credentials, created_with_random_keys_and_read_back) {
  auto dir = fresh_dir("nimbus-cred");
  std::filesystem::create_directories(dir);
  auto created = open_or_create_credentials(dir + "/credentials");
  EXPECT_EQ(created.access_key_id.size(), 20U);
  EXPECT_EQ(created.secret_access_key.size(), 40U);
  auto read = open_or_create_credentials(dir + "/credentials");
  EXPECT_EQ(read.access_key_id, created.access_key_id);
  EXPECT_EQ(read.secret_access_key, created.secret_access_key);
  struct stat st {};
  ASSERT_EQ(::stat((dir + "/credentials").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600U);
}

}  // namespace
}  // namespace nimbus::registry
