#include "registry/credentials.hpp"

#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "core/random.hpp"
#include "registry/certificate_authority.hpp"

namespace nimbus::registry {

namespace {
std::string trim(std::string s) {
  auto b = s.find_first_not_of(" \t\r");
  auto e = s.find_last_not_of(" \t\r");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}
}  // namespace

api_credentials open_or_create_credentials(const std::string& path) {
  if (!std::filesystem::exists(path)) {
    api_credentials fresh{
        "AKIA" + core::random_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16),
        core::random_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 40)};
    write_file_atomically(path,
                          "[default]\naws_access_key_id = " + fresh.access_key_id +
                              "\naws_secret_access_key = " + fresh.secret_access_key + "\n",
                          0600);
    return fresh;
  }
  std::ifstream in(path);
  std::string line;
  std::string section;
  api_credentials out;
  while (std::getline(in, line)) {
    line = trim(line);
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line.front() == '[' && line.back() == ']') {
      section = trim(line.substr(1, line.size() - 2));
      continue;
    }
    auto eq = line.find('=');
    if (section != "default" || eq == std::string::npos) continue;
    auto key = trim(line.substr(0, eq));
    auto value = trim(line.substr(eq + 1));
    if (key == "aws_access_key_id") out.access_key_id = value;
    if (key == "aws_secret_access_key") out.secret_access_key = value;
  }
  if (out.access_key_id.empty() || out.secret_access_key.empty())
    throw std::runtime_error(path + ": no [default] aws_access_key_id / aws_secret_access_key");
  return out;
}

}  // namespace nimbus::registry
