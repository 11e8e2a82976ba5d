#include "registry/model.hpp"

#include <array>
#include <cstddef>

namespace nimbus::registry {

namespace {

// Each enum's spellings, once: both directions read the same table.
template <class Enum, std::size_t N>
using spellings = std::array<std::pair<Enum, std::string_view>, N>;

constexpr spellings<certificate_status, 6> certificate_statuses{{
    {certificate_status::active, "ACTIVE"},
    {certificate_status::inactive, "INACTIVE"},
    {certificate_status::revoked, "REVOKED"},
    {certificate_status::pending_transfer, "PENDING_TRANSFER"},
    {certificate_status::register_inactive, "REGISTER_INACTIVE"},
    {certificate_status::pending_activation, "PENDING_ACTIVATION"},
}};

constexpr spellings<ca_status, 2> ca_statuses{{
    {ca_status::active, "ACTIVE"},
    {ca_status::inactive, "INACTIVE"},
}};

constexpr spellings<certificate_mode, 2> certificate_modes{{
    {certificate_mode::default_mode, "DEFAULT"},
    {certificate_mode::sni_only, "SNI_ONLY"},
}};

template <class Enum, std::size_t N>
std::string_view spelling_of(const spellings<Enum, N>& table, Enum value) {
  for (const auto& [v, text] : table)
    if (v == value) return text;
  return "UNKNOWN";  // not reached: every enumerator has its spelling
}

template <class Enum, std::size_t N>
std::optional<Enum> parse_spelling(const spellings<Enum, N>& table, std::string_view text) {
  for (const auto& [v, spelled] : table)
    if (spelled == text) return v;
  return std::nullopt;
}

}  // namespace

std::string_view to_string(certificate_status status) {
  return spelling_of(certificate_statuses, status);
}
std::optional<certificate_status> parse_certificate_status(std::string_view text) {
  return parse_spelling(certificate_statuses, text);
}

std::string_view to_string(ca_status status) {
  return spelling_of(ca_statuses, status);
}
std::optional<ca_status> parse_ca_status(std::string_view text) {
  return parse_spelling(ca_statuses, text);
}

std::string_view to_string(certificate_mode mode) {
  return spelling_of(certificate_modes, mode);
}
std::optional<certificate_mode> parse_certificate_mode(std::string_view text) {
  return parse_spelling(certificate_modes, text);
}

}  // namespace nimbus::registry
