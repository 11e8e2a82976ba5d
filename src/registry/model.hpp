#pragma once
// The registry's data model as plain values: things, thing types and groups, certificates, CA
// certificates, policies, and the pages listings return. AWS IoT's names and fields; callers get
// copies, so nothing here refers back into the registry.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "policy/policy.hpp"
#include "registry/x509.hpp"

namespace nimbus::registry {

// Sentinel for optional numeric fields.
inline constexpr std::int64_t no_version = -1;

using attribute_map = std::map<std::string, std::string>;
// Tags as a request sends them ({Key, Value} in order; a later key wins).
using tag_list = std::vector<std::pair<std::string, std::string>>;

enum class certificate_status {
  active,
  inactive,
  revoked,  // final: no status change leads out of it
  pending_transfer,
  register_inactive,
  pending_activation,
};
enum class ca_status { active, inactive };
// AWS reports a certificate registered without a CA as SNI_ONLY, every other one as DEFAULT.
enum class certificate_mode { default_mode, sni_only };

// AWS's spelling ("ACTIVE", "PENDING_TRANSFER", "SNI_ONLY" ...), which the API and the stored
// rows use; parsing is exact (case-sensitive), as AWS's enum validation is.
std::string_view to_string(certificate_status status);
std::optional<certificate_status> parse_certificate_status(std::string_view text);
std::string_view to_string(ca_status status);
std::optional<ca_status> parse_ca_status(std::string_view text);
std::string_view to_string(certificate_mode mode);
std::optional<certificate_mode> parse_certificate_mode(std::string_view text);

struct thing {
  std::string name;
  std::string id;
  std::string type_name;
  attribute_map attributes;
  std::int64_t version = 1;
  std::string billing_group;
  std::set<std::string> principals;  // attached certificates, as "cert/{id}"
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
  certificate_status status = certificate_status::inactive;
  std::string ca_id;  // registered with a CA: its id
  certificate_mode mode = certificate_mode::default_mode;
  std::string generation_id;
  std::int64_t customer_version = 1;
  double created = 0;
  double modified = 0;
  // Shared, never null: the registry holds each certificate twice (its pending and committed
  // views) and listings copy it, while the PEM and parsed fields never change.
  std::shared_ptr<const certificate_info> info;
};

struct ca_certificate {
  std::string id;
  ca_status status = ca_status::inactive;
  bool auto_registration = false;  // ENABLE / DISABLE in the API and the stored row
  std::string generation_id;
  std::int64_t customer_version = 1;
  double created = 0;
  double modified = 0;
  std::shared_ptr<const certificate_info> info;  // shared, never null (as certificate::info)
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
  std::set<std::string> targets;  // "cert/{id}" and "thinggroup/{name}"
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

// What a device connection presents for authorization (views valid for the call).
struct device_facts {
  std::string_view client_id;
  std::string_view certificate_id;  // empty: anonymous
  std::string_view source_ip;
  bool persistent_connect = false;
  bool last_will = false;
};

}  // namespace nimbus::registry
