#pragma once
// The MQTT 5 properties (section 2.2.2.2) as one table: for each, its identifier, wire type, the
// packets that may carry it, the checks on its value and the `properties` field it fills. The
// codec's decoding, sizing and encoding are generic over this table (codec.cpp), so a property
// is described here and nowhere else; the checks at the end make a table that disagrees with
// `properties` fail to compile.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mqtt/packet.hpp"

namespace nimbus::mqtt {

// How a value is laid out on the wire (MQTT 5 section 1.5).
enum class property_kind : std::uint8_t {
  byte,    // one byte
  two,     // two-byte integer
  four,    // four-byte integer
  varint,  // variable byte integer
  utf8,    // UTF-8 string, validated when decoded
  binary,  // binary data
  pair,    // UTF-8 string pair
};

// Where a property may appear: one bit per packet that carries properties (and the will).
enum property_scope : std::uint16_t {
  in_connect = 1 << 0,
  in_connack = 1 << 1,
  in_publish = 1 << 2,
  in_will = 1 << 3,
  in_ack = 1 << 4,  // PUBACK, PUBREC, PUBREL, PUBCOMP
  in_subscribe = 1 << 5,
  in_suback = 1 << 6,
  in_unsubscribe = 1 << 7,
  in_unsuback = 1 << 8,
  in_disconnect = 1 << 9,
  in_auth = 1 << 10,
};
// Every bit above: where user properties go, and what a stored blob may hold.
inline constexpr std::uint16_t in_any_packet = 0x7FF;

// A check on a decoded value beyond its wire type; a value that fails it is a protocol error
// described by `what`.
enum class property_rule : std::uint8_t { none, zero_or_one, not_zero };
struct property_check {
  property_rule rule = property_rule::none;
  std::string_view what = {};
};
inline constexpr property_check must_be_0_or_1{property_rule::zero_or_one,
                                               "property value must be 0 or 1"};
constexpr property_check refuse_zero(std::string_view what) {
  return {property_rule::not_zero, what};
}

// A row of the table, less the field it fills (which gives each row its own type).
struct property_info {
  std::uint8_t id = 0;
  std::string_view name = {};  // as the specification spells it, for test traces and docs
  property_kind kind = property_kind::byte;
  std::uint16_t allowed_in = 0;  // property_scope bits
  // Where it may appear more than once (list fields only); a repeat elsewhere is a protocol error.
  std::uint16_t repeatable_in = 0;
  property_check check = {};
};

template <class Field>
struct property_descriptor : property_info {
  Field properties::*member = nullptr;
};

template <class Field>
constexpr property_descriptor<Field> describe(Field properties::*member, property_info info) {
  return {info, member};
}

// Fields that collect every occurrence of their property rather than holding one.
template <class Field>
inline constexpr bool is_list_field = false;
template <class Value>
inline constexpr bool is_list_field<std::vector<Value>> = true;

// Ordered by identifier, which is also the order properties are encoded in: recorded exchanges,
// tests and stored blobs (`encode_properties`) compare bytes, so the order is part of the format.
// Laid out by hand, two or three lines a row (clang-format's layout of designated initializers
// varies from row to row).
// clang-format off
inline constexpr std::tuple property_table{
    describe(&properties::payload_format_indicator,
             {.id = 0x01, .name = "payload format indicator", .kind = property_kind::byte,
              .allowed_in = in_publish | in_will, .check = must_be_0_or_1}),
    describe(&properties::message_expiry_interval,
             {.id = 0x02, .name = "message expiry interval", .kind = property_kind::four,
              .allowed_in = in_publish | in_will}),
    describe(&properties::content_type,
             {.id = 0x03, .name = "content type", .kind = property_kind::utf8,
              .allowed_in = in_publish | in_will}),
    describe(&properties::response_topic,
             {.id = 0x08, .name = "response topic", .kind = property_kind::utf8,
              .allowed_in = in_publish | in_will}),
    describe(&properties::correlation_data,
             {.id = 0x09, .name = "correlation data", .kind = property_kind::binary,
              .allowed_in = in_publish | in_will}),
    // A PUBLISH forwarded to a subscriber carries one per matching subscription (3.3.2.3.8); a
    // SUBSCRIBE names at most one (3.8.2.1.2).
    describe(&properties::subscription_identifiers,
             {.id = 0x0B, .name = "subscription identifier", .kind = property_kind::varint,
              .allowed_in = in_publish | in_subscribe, .repeatable_in = in_publish,
              .check = refuse_zero("subscription identifier 0")}),
    describe(&properties::session_expiry_interval,
             {.id = 0x11, .name = "session expiry interval", .kind = property_kind::four,
              .allowed_in = in_connect | in_connack | in_disconnect}),
    describe(&properties::assigned_client_identifier,
             {.id = 0x12, .name = "assigned client identifier", .kind = property_kind::utf8,
              .allowed_in = in_connack}),
    describe(&properties::server_keep_alive,
             {.id = 0x13, .name = "server keep alive", .kind = property_kind::two,
              .allowed_in = in_connack}),
    describe(&properties::authentication_method,
             {.id = 0x15, .name = "authentication method", .kind = property_kind::utf8,
              .allowed_in = in_connect | in_connack | in_auth}),
    describe(&properties::authentication_data,
             {.id = 0x16, .name = "authentication data", .kind = property_kind::binary,
              .allowed_in = in_connect | in_connack | in_auth}),
    describe(&properties::request_problem_information,
             {.id = 0x17, .name = "request problem information", .kind = property_kind::byte,
              .allowed_in = in_connect, .check = must_be_0_or_1}),
    describe(&properties::will_delay_interval,
             {.id = 0x18, .name = "will delay interval", .kind = property_kind::four,
              .allowed_in = in_will}),
    describe(&properties::request_response_information,
             {.id = 0x19, .name = "request response information", .kind = property_kind::byte,
              .allowed_in = in_connect, .check = must_be_0_or_1}),
    describe(&properties::response_information,
             {.id = 0x1A, .name = "response information", .kind = property_kind::utf8,
              .allowed_in = in_connack}),
    describe(&properties::server_reference,
             {.id = 0x1C, .name = "server reference", .kind = property_kind::utf8,
              .allowed_in = in_connack | in_disconnect}),
    describe(&properties::reason_string,
             {.id = 0x1F, .name = "reason string", .kind = property_kind::utf8,
              .allowed_in = in_connack | in_ack | in_suback | in_unsuback | in_disconnect |
                            in_auth}),
    describe(&properties::receive_maximum,
             {.id = 0x21, .name = "receive maximum", .kind = property_kind::two,
              .allowed_in = in_connect | in_connack, .check = refuse_zero("receive maximum 0")}),
    describe(&properties::topic_alias_maximum,
             {.id = 0x22, .name = "topic alias maximum", .kind = property_kind::two,
              .allowed_in = in_connect | in_connack}),
    // Alias 0, or one past the negotiated maximum, is the connection's to refuse: the codec
    // does not know the maximum.
    describe(&properties::topic_alias,
             {.id = 0x23, .name = "topic alias", .kind = property_kind::two,
              .allowed_in = in_publish}),
    describe(&properties::maximum_qos,
             {.id = 0x24, .name = "maximum QoS", .kind = property_kind::byte,
              .allowed_in = in_connack, .check = must_be_0_or_1}),
    describe(&properties::retain_available,
             {.id = 0x25, .name = "retain available", .kind = property_kind::byte,
              .allowed_in = in_connack, .check = must_be_0_or_1}),
    describe(&properties::user,
             {.id = 0x26, .name = "user property", .kind = property_kind::pair,
              .allowed_in = in_any_packet, .repeatable_in = in_any_packet}),
    describe(&properties::maximum_packet_size,
             {.id = 0x27, .name = "maximum packet size", .kind = property_kind::four,
              .allowed_in = in_connect | in_connack,
              .check = refuse_zero("maximum packet size 0")}),
    describe(&properties::wildcard_subscription_available,
             {.id = 0x28, .name = "wildcard subscription available", .kind = property_kind::byte,
              .allowed_in = in_connack, .check = must_be_0_or_1}),
    describe(&properties::subscription_identifier_available,
             {.id = 0x29, .name = "subscription identifier available",
              .kind = property_kind::byte, .allowed_in = in_connack, .check = must_be_0_or_1}),
    describe(&properties::shared_subscription_available,
             {.id = 0x2A, .name = "shared subscription available", .kind = property_kind::byte,
              .allowed_in = in_connack, .check = must_be_0_or_1}),
};
// clang-format on

inline constexpr std::size_t property_count =
    std::tuple_size_v<std::remove_cvref_t<decltype(property_table)>>;

// --- checks on the table, at compile time ---------------------------------------------------

// MQTT 5 defines 27 properties and every one is modelled.
static_assert(property_count == 27, "one row per MQTT 5 property");

// Compiles only while `properties` has exactly 27 fields; with `rows_fill_distinct_fields` below,
// every field then has exactly one row. A field added to packet.hpp stops the build here until
// the table has its row.
[[maybe_unused]] inline void properties_has_one_field_per_row(const properties& props) {
  [[maybe_unused]] const auto& [f01, f02, f03, f04, f05, f06, f07, f08, f09, f10, f11, f12, f13,
                                f14, f15, f16, f17, f18, f19, f20, f21, f22, f23, f24, f25, f26,
                                f27] = props;
}

namespace property_table_checks {

template <class Field>
constexpr bool kind_fits(property_kind kind) {
  switch (kind) {
    case property_kind::byte:
      return std::is_same_v<Field, std::optional<std::uint8_t>>;
    case property_kind::two:
      return std::is_same_v<Field, std::optional<std::uint16_t>>;
    case property_kind::four:
      return std::is_same_v<Field, std::optional<std::uint32_t>>;
    case property_kind::varint:
      return std::is_same_v<Field, std::vector<std::uint32_t>>;
    case property_kind::utf8:
    case property_kind::binary:
      return std::is_same_v<Field, std::optional<std::string>>;
    case property_kind::pair:
      return std::is_same_v<Field, user_properties>;
  }
  return false;
}

template <class Field>
constexpr bool row_is_consistent(const property_descriptor<Field>& row) {
  // Written as one byte, which is also its variable byte integer form.
  const bool id_fits = row.id != 0 && row.id < 0x80;
  // Allowed somewhere; repeatable only where allowed, and only into a list.
  const bool scopes_fit = row.allowed_in != 0 && (row.allowed_in & ~in_any_packet) == 0 &&
                          (row.repeatable_in & ~row.allowed_in) == 0 &&
                          (is_list_field<Field> || row.repeatable_in == 0);
  // A check says what failed it, and fits the value it checks.
  const bool is_integer = row.kind == property_kind::byte || row.kind == property_kind::two ||
                          row.kind == property_kind::four || row.kind == property_kind::varint;
  const bool check_fits =
      (row.check.rule == property_rule::none) == row.check.what.empty() &&
      (row.check.rule != property_rule::zero_or_one || row.kind == property_kind::byte) &&
      (row.check.rule != property_rule::not_zero || is_integer);
  return kind_fits<Field>(row.kind) && row.member != nullptr && !row.name.empty() && id_fits &&
         scopes_fit && check_fits;
}

template <class A, class B>
constexpr bool same_field([[maybe_unused]] A properties::*a, [[maybe_unused]] B properties::*b) {
  if constexpr (std::is_same_v<A, B>) {
    return a == b;
  } else {
    return false;
  }
}

template <std::size_t I, std::size_t... J>
constexpr bool field_has_one_row(std::index_sequence<J...>) {
  constexpr auto member = std::get<I>(property_table).member;
  const int rows = (int{same_field(member, std::get<J>(property_table).member)} + ...);
  return rows == 1;
}

template <std::size_t... I>
constexpr bool rows_are_consistent(std::index_sequence<I...>) {
  return (row_is_consistent(std::get<I>(property_table)) && ...);
}

template <std::size_t... I>
constexpr bool rows_fill_distinct_fields(std::index_sequence<I...> rows) {
  return (field_has_one_row<I>(rows) && ...);
}

template <std::size_t... I>
constexpr bool ids_ascend(std::index_sequence<I...>) {
  const std::uint8_t ids[] = {std::get<I>(property_table).id...};
  for (std::size_t i = 1; i < sizeof...(I); ++i) {
    if (ids[i - 1] >= ids[i]) return false;
  }
  return true;
}

}  // namespace property_table_checks

static_assert(
    property_table_checks::rows_are_consistent(std::make_index_sequence<property_count>{}),
    "a row's kind, field type, scopes and check must agree");
static_assert(
    property_table_checks::rows_fill_distinct_fields(std::make_index_sequence<property_count>{}),
    "each field of `properties` fills exactly one row");
static_assert(property_table_checks::ids_ascend(std::make_index_sequence<property_count>{}),
              "rows are ordered by identifier, each identifier once (it is the encoding order)");

}  // namespace nimbus::mqtt
