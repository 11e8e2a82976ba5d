#pragma once
// For tests: a directory of the test's own under the system's temp dir, created empty and
// removed with its contents afterwards. Named after `name` (default: the running test's name)
// and the process id, so suites running in parallel never share one.
#include <unistd.h>

#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>

#include <gtest/gtest.h>

namespace nimbus::core::testing {

class temp_dir {
 public:
  explicit temp_dir(std::string_view name)
      : path_(std::filesystem::temp_directory_path() /
              ("nimbus-" + std::string(name) + "-" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  temp_dir() : temp_dir(::testing::UnitTest::GetInstance()->current_test_info()->name()) {}
  ~temp_dir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace nimbus::core::testing
