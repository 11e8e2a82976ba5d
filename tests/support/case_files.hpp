#pragma once
// Data-driven tests (STYLE.md: a folder of plain-text cases, one ctest per file). A suite's
// TEST_P runs one case file; INSTANTIATE_TEST_SUITE_P(cases, SUITE, case_files(), case_name)
// names each test after its file, the name CMake's nimbus_add_case_tests filters on to register
// one ctest per file. NIMBUS_CASES_DIR is the folder, set by that function.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

namespace nimbus::test {

// The *.txt files of NIMBUS_CASES_DIR, in name order.
inline std::vector<std::string> case_files() {
  std::vector<std::string> files;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(NIMBUS_CASES_DIR, ec))
    if (entry.path().extension() == ".txt") files.push_back(entry.path().string());
  std::sort(files.begin(), files.end());
  return files;
}

// The file's name without .txt, anything but letters and digits as _ (as CMake derives it).
inline std::string case_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = std::filesystem::path(info.param).stem().string();
  for (char& c : name)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return name;
}

}  // namespace nimbus::test
