#pragma once
// The AWS-style API credentials in `<data>/credentials` (INI, profile `default`, mode 0600),
// created with random keys on first start so the aws CLI and boto3 can sign requests.
#include <string>

namespace nimbus::registry {

struct api_credentials {
  std::string access_key_id;
  std::string secret_access_key;
};

// Reads the default profile from `path`, creating the file first if it does not exist.
api_credentials open_or_create_credentials(const std::string& path);

}  // namespace nimbus::registry
