#include "rules/actions/s3.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "core/random.hpp"
#include "rules/actions/runtime.hpp"

namespace nimbus::rules::actions {

namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

constexpr std::size_t max_key_bytes = 1024;  // S3's limit

std::string errno_text(const char* what, int error) {
  return std::string(what) + ": " + std::strerror(error);
}

// Writes `data` to `path` so a reader (or a crash) sees the old object or the new one, whole.
// Empty on success, else why not.
std::string write_atomically(const fs::path& path, std::string_view data) {
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  if (ec) return "Failed to create the bucket's folder: " + ec.message();
  const fs::path temporary =
      path.parent_path() / (".nimbus-upload-" + core::random_hex(8) + ".tmp");
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return errno_text("Failed to put the object", errno);
  std::string failed;
  for (std::size_t written = 0; written < data.size() && failed.empty();) {
    const ssize_t n = ::write(fd, data.data() + written, data.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      failed = errno_text("Failed to put the object", errno);
    else
      written += static_cast<std::size_t>(n);
  }
  if (failed.empty() && ::fsync(fd) != 0) failed = errno_text("Failed to put the object", errno);
  ::close(fd);
  if (failed.empty() && ::rename(temporary.c_str(), path.c_str()) != 0)
    failed = errno_text("Failed to put the object", errno);
  if (!failed.empty()) {
    ::unlink(temporary.c_str());
    return failed;
  }
  // The rename itself survives a crash once the folder is synced.
  const int dir = ::open(path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
  return {};
}

}  // namespace

bool is_valid_bucket_name(std::string_view name) {
  if (name.size() < 3 || name.size() > 63) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(name.front()) || !alnum(name.back())) return false;
  for (char c : name)
    if (!alnum(c) && c != '.' && c != '-') return false;
  return name.find("..") == std::string_view::npos;
}

std::string check_object_key(std::string_view key) {
  if (key.empty()) return "The object key is empty";
  if (key.size() > max_key_bytes) return "The object key is longer than 1024 bytes";
  if (key.find('\0') != std::string_view::npos) return "The object key contains NUL";
  if (key.front() == '/' || key.back() == '/')
    return "The object key starts or ends with '/': " + std::string(key);
  std::size_t start = 0;
  while (start <= key.size()) {
    auto end = key.find('/', start);
    if (end == std::string_view::npos) end = key.size();
    const auto segment = key.substr(start, end - start);
    if (segment.empty() || segment == "." || segment == "..")
      return "The object key has an empty, '.' or '..' segment: " + std::string(key);
    start = end + 1;
  }
  return {};
}

std::variant<std::unique_ptr<const action>, rule_error> s3::parse(const json::object& fields,
                                                                  const template_scope& scope,
                                                                  const std::string& where) {
  std::unique_ptr<s3> out(new s3());
  if (auto refused = required_string(fields, "bucketName", where, out->bucket_))
    return std::move(*refused);
  if (!is_valid_bucket_name(out->bucket_))
    return invalid(where +
                   ".bucketName is not a valid bucket name (3 to 63 of a-z, 0-9, '.' "
                   "and '-', starting and ending with a letter or digit): " +
                   out->bucket_);
  std::optional<substitution_template> key;
  if (auto refused = template_field(fields, "key", scope, where, key)) return std::move(*refused);
  if (!key || key->text().empty())
    return invalid(validation_error("null", where + ".key", "not be null"));
  out->key_ = std::move(*key);
  std::optional<std::string> acl;
  if (auto refused = string_field(fields, "cannedAcl", where, acl)) return std::move(*refused);
  return std::unique_ptr<const action>(std::move(out));
}

const std::string& s3::type() const {
  static const std::string name = "s3";
  return name;
}

bool s3::executable(const runtime& rt) const {
  return !rt.settings().objects_dir.empty();
}

void s3::fire(const firing& f, runtime& rt, completion done) const {
  std::string key;
  std::string error;
  if (!key_.expand(f.original.payload, f.context, key, error))
    return done(failure{"S3Action", bucket_, std::move(error)});
  if (auto why = check_object_key(key); !why.empty())
    return done(failure{"S3Action", bucket_, std::move(why)});
  const fs::path path = rt.settings().objects_dir / bucket_ / key;
  rt.run_blocking([path, data = std::string(f.output), bucket = bucket_, done = std::move(done)] {
    auto failed = write_atomically(path, data);
    if (failed.empty()) return done(std::nullopt);
    done(failure{"S3Action", bucket, std::move(failed)});
  });
}

}  // namespace nimbus::rules::actions
