#include "mqtt/codec.hpp"

#include <array>
#include <cstddef>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "core/assert.hpp"
#include "mqtt/property_table.hpp"

namespace nimbus::mqtt {

namespace {

// MQTT 5 properties are described once, in `property_table` (mqtt/property_table.hpp): their
// decoding (`read_properties`), sizing (`properties_size`) and encoding (`put_properties`) below
// are generic over its rows.

// --- reading ------------------------------------------------------------------------------

// A cursor over untrusted bytes. The first failure sticks; callers check `ok()` at the end.
class reader {
 public:
  explicit reader(std::string_view bytes) : bytes_(bytes) {}

  bool ok() const { return !error_; }
  const decode_error& error() const { return *error_; }
  std::size_t remaining() const { return bytes_.size() - pos_; }
  bool at_end() const { return pos_ == bytes_.size(); }

  void fail(reason_code reason, std::string_view what) {
    if (!error_) error_ = decode_error{reason, what};
    pos_ = bytes_.size();
  }
  void malformed(std::string_view what) { fail(reason_code::malformed_packet, what); }

  std::uint8_t u8() {
    if (remaining() < 1) return malformed("truncated byte"), 0;
    return static_cast<std::uint8_t>(bytes_[pos_++]);
  }
  std::uint16_t u16() {
    if (remaining() < 2) return malformed("truncated two-byte integer"), 0;
    auto v = static_cast<std::uint16_t>((byte_at(pos_) << 8) | byte_at(pos_ + 1));
    pos_ += 2;
    return v;
  }
  std::uint32_t u32() {
    if (remaining() < 4) return malformed("truncated four-byte integer"), 0;
    std::uint32_t v = (std::uint32_t{byte_at(pos_)} << 24) |
                      (std::uint32_t{byte_at(pos_ + 1)} << 16) |
                      (std::uint32_t{byte_at(pos_ + 2)} << 8) | std::uint32_t{byte_at(pos_ + 3)};
    pos_ += 4;
    return v;
  }
  std::uint32_t varint() {
    std::uint32_t value = 0;
    for (int shift = 0; shift < 28; shift += 7) {
      if (remaining() < 1) return malformed("truncated variable byte integer"), 0;
      std::uint8_t b = byte_at(pos_++);
      value |= std::uint32_t{static_cast<std::uint8_t>(b & 0x7F)} << shift;
      if ((b & 0x80) == 0) return value;
    }
    return malformed("variable byte integer longer than four bytes"), 0;
  }
  std::string_view binary() {
    std::uint16_t len = u16();
    if (remaining() < len) return malformed("truncated string or binary data"), std::string_view{};
    auto v = bytes_.substr(pos_, len);
    pos_ += len;
    return v;
  }
  std::string utf8() {
    auto v = binary();
    if (ok() && !is_valid_mqtt_utf8(v)) malformed("invalid UTF-8 string");
    return std::string(v);
  }
  std::string_view rest() {
    auto v = bytes_.substr(pos_);
    pos_ = bytes_.size();
    return v;
  }
  // A sub-reader over the next `n` bytes (for the property block).
  std::string_view take(std::size_t n) {
    if (remaining() < n) return malformed("length exceeds packet"), std::string_view{};
    auto v = bytes_.substr(pos_, n);
    pos_ += n;
    return v;
  }

 private:
  std::uint8_t byte_at(std::size_t i) const { return static_cast<std::uint8_t>(bytes_[i]); }

  std::string_view bytes_;
  std::size_t pos_ = 0;
  std::optional<decode_error> error_;
};

// --- properties: decoding, generic over the table ------------------------------------------

template <property_kind Kind>
auto read_value(reader& r) {
  if constexpr (Kind == property_kind::byte) {
    return r.u8();
  } else if constexpr (Kind == property_kind::two) {
    return r.u16();
  } else if constexpr (Kind == property_kind::four) {
    return r.u32();
  } else if constexpr (Kind == property_kind::varint) {
    return r.varint();
  } else if constexpr (Kind == property_kind::utf8) {
    return r.utf8();
  } else if constexpr (Kind == property_kind::binary) {
    return std::string(r.binary());
  } else {
    static_assert(Kind == property_kind::pair);
    std::string key = r.utf8();
    std::string value = r.utf8();
    return std::pair<std::string, std::string>{std::move(key), std::move(value)};
  }
}

// Decodes the value of row `I`, its identifier already read. The first failure sticks, so the
// order of the checks decides which error a bad property reports: packet, wire value (UTF-8
// included), the row's own check, repetition.
template <std::size_t I>
void read_property(reader& r, properties& props, std::uint16_t scope) {
  constexpr auto row = std::get<I>(property_table);
  if ((scope & row.allowed_in) == 0)
    return r.fail(reason_code::protocol_error, "property not allowed in this packet");
  auto value = read_value<row.kind>(r);
  if (!r.ok()) return;
  if constexpr (row.check.rule == property_rule::zero_or_one) {
    if (value > 1) return r.fail(reason_code::protocol_error, row.check.what);
  } else if constexpr (row.check.rule == property_rule::not_zero) {
    if (value == 0) return r.fail(reason_code::protocol_error, row.check.what);
  }
  auto& field = props.*row.member;
  if constexpr (is_list_field<std::remove_cvref_t<decltype(field)>>) {
    if (!field.empty() && (scope & row.repeatable_in) == 0)
      return r.fail(reason_code::protocol_error, "property included more than once");
    field.push_back(std::move(value));
  } else {
    if (field) return r.fail(reason_code::protocol_error, "property included more than once");
    field = std::move(value);
  }
}

using property_reader = void (*)(reader&, properties&, std::uint16_t);

template <std::size_t... I>
constexpr std::array<property_reader, 256> make_property_readers(std::index_sequence<I...>) {
  std::array<property_reader, 256> readers{};
  ((readers[std::get<I>(property_table).id] = &read_property<I>), ...);
  return readers;
}

// Indexed by identifier, null where MQTT 5 defines no property, built at compile time: finding
// a property's decoder costs one load, as a per-PUBLISH path should.
constexpr auto property_readers = make_property_readers(std::make_index_sequence<property_count>{});

void read_properties(reader& r, std::uint16_t scope, properties& props) {
  std::uint32_t length = r.varint();
  if (!r.ok()) return;
  reader p(r.take(length));
  if (!r.ok()) return;
  while (p.ok() && !p.at_end()) {
    std::uint32_t id = p.varint();
    if (!p.ok()) break;
    property_reader read_row = id < property_readers.size() ? property_readers[id] : nullptr;
    if (read_row == nullptr) {
      p.malformed("unknown property identifier");
      break;
    }
    read_row(p, props, scope);
  }
  if (!p.ok()) r.fail(p.error().reason, p.error().what);
}

bool is_v5(protocol_version v) {
  return v == protocol_version::v5;
}

// --- decoders per packet type ------------------------------------------------------------

std::variant<packet, decode_error> decode_connect(std::uint8_t flags, reader& r) {
  if (flags != 0) return decode_error{reason_code::malformed_packet, "CONNECT reserved flags set"};
  connect_packet c;
  auto name = r.binary();
  std::uint8_t level = r.u8();
  if (!r.ok()) return r.error();
  if ((level & 0x80) != 0) {
    c.bridge = true;
    level &= 0x7F;
  }
  if (name == "MQTT" && (level == 4 || level == 5)) {
    c.version = static_cast<protocol_version>(level);
  } else if (name == "MQIsdp" && level == 3) {
    c.version = protocol_version::v31;
  } else if (name == "MQTT" || name == "MQIsdp") {
    return decode_error{reason_code::unsupported_protocol_version, "unsupported protocol level"};
  } else {
    return decode_error{reason_code::malformed_packet, "bad protocol name"};
  }
  std::uint8_t connect_flags = r.u8();
  c.keep_alive = r.u16();
  if (!r.ok()) return r.error();
  if (connect_flags & 0x01)
    return decode_error{reason_code::malformed_packet, "CONNECT reserved bit set"};
  c.clean_start = (connect_flags & 0x02) != 0;
  bool has_will = (connect_flags & 0x04) != 0;
  auto will_qos = static_cast<std::uint8_t>((connect_flags >> 3) & 0x03);
  bool will_retain = (connect_flags & 0x20) != 0;
  bool has_password = (connect_flags & 0x40) != 0;
  bool has_username = (connect_flags & 0x80) != 0;
  if (!has_will && (will_qos != 0 || will_retain))
    return decode_error{reason_code::malformed_packet, "will QoS or retain without will flag"};
  if (will_qos == 3) return decode_error{reason_code::malformed_packet, "will QoS 3"};
  if (!is_v5(c.version) && has_password && !has_username)
    return decode_error{reason_code::malformed_packet, "password without user name"};
  if (is_v5(c.version)) read_properties(r, in_connect, c.props);
  c.client_id = r.utf8();
  if (has_will) {
    will_message w;
    if (is_v5(c.version)) read_properties(r, in_will, w.props);
    w.topic = r.utf8();
    w.payload = std::string(r.binary());
    w.qos = will_qos;
    w.retain = will_retain;
    c.will = std::move(w);
  }
  if (has_username) c.username = r.utf8();
  if (has_password) c.password = std::string(r.binary());
  if (!r.ok()) return r.error();
  if (!r.at_end()) return decode_error{reason_code::malformed_packet, "trailing bytes in CONNECT"};
  return packet{std::move(c)};
}

std::variant<packet, decode_error> decode_connack(std::uint8_t flags, reader& r,
                                                  protocol_version v) {
  if (flags != 0) return decode_error{reason_code::malformed_packet, "CONNACK reserved flags set"};
  connack_packet c;
  std::uint8_t ack_flags = r.u8();
  std::uint8_t code = r.u8();
  if (ack_flags > 1) r.malformed("CONNACK reserved flags set");
  c.session_present = (ack_flags & 1) != 0;
  if (is_v5(v)) {
    c.reason = static_cast<reason_code>(code);
    read_properties(r, in_connack, c.props);
  } else {
    static constexpr reason_code from_v311[] = {reason_code::success,
                                                reason_code::unsupported_protocol_version,
                                                reason_code::client_identifier_not_valid,
                                                reason_code::server_unavailable,
                                                reason_code::bad_username_or_password,
                                                reason_code::not_authorized};
    if (code > 5)
      r.malformed("bad CONNACK return code");
    else
      c.reason = from_v311[code];
  }
  if (!r.ok()) return r.error();
  if (!r.at_end()) return decode_error{reason_code::malformed_packet, "trailing bytes in CONNACK"};
  return packet{std::move(c)};
}

std::variant<packet, decode_error> decode_publish(std::uint8_t flags, reader& r,
                                                  protocol_version v) {
  publish_packet p;
  p.dup = (flags & 0x08) != 0;
  p.qos = static_cast<std::uint8_t>((flags >> 1) & 0x03);
  p.retain = (flags & 0x01) != 0;
  if (p.qos == 3) return decode_error{reason_code::malformed_packet, "PUBLISH QoS 3"};
  if (p.qos == 0 && p.dup) return decode_error{reason_code::malformed_packet, "DUP set on QoS 0"};
  p.topic = r.utf8();
  if (p.qos > 0) {
    p.packet_id = r.u16();
    if (r.ok() && p.packet_id == 0)
      return decode_error{reason_code::malformed_packet, "packet identifier 0"};
  }
  if (is_v5(v)) read_properties(r, in_publish, p.props);
  if (!r.ok()) return r.error();
  p.payload = std::string(r.rest());
  if (p.props.payload_format_indicator == 1 && !is_valid_mqtt_utf8(p.payload))
    return decode_error{reason_code::payload_format_invalid, "payload is not UTF-8"};
  return packet{std::move(p)};
}

std::variant<packet, decode_error> decode_ack(packet_type type, std::uint8_t flags, reader& r,
                                              protocol_version v) {
  std::uint8_t expected_flags = type == packet_type::pubrel ? 0x02 : 0x00;
  if (flags != expected_flags)
    return decode_error{reason_code::malformed_packet, "bad fixed header flags"};
  ack_packet a;
  a.type = type;
  a.packet_id = r.u16();
  if (r.ok() && a.packet_id == 0)
    return decode_error{reason_code::malformed_packet, "packet identifier 0"};
  if (is_v5(v) && !r.at_end()) {
    a.reason = static_cast<reason_code>(r.u8());
    if (!r.at_end()) read_properties(r, in_ack, a.props);
  }
  if (!r.ok()) return r.error();
  if (!r.at_end())
    return decode_error{reason_code::malformed_packet, "trailing bytes in acknowledgement"};
  return packet{std::move(a)};
}

std::variant<packet, decode_error> decode_subscribe(std::uint8_t flags, reader& r,
                                                    protocol_version v) {
  if (flags != 0x02)
    return decode_error{reason_code::malformed_packet, "SUBSCRIBE flags must be 0010"};
  subscribe_packet s;
  s.packet_id = r.u16();
  if (r.ok() && s.packet_id == 0)
    return decode_error{reason_code::malformed_packet, "packet identifier 0"};
  if (is_v5(v)) read_properties(r, in_subscribe, s.props);
  while (r.ok() && !r.at_end()) {
    subscribe_entry e;
    e.filter = r.utf8();
    if (r.ok() && e.filter.empty()) r.malformed("empty topic filter");
    std::uint8_t options = r.u8();
    if (!r.ok()) break;
    e.options.qos = options & 0x03;
    if (e.options.qos == 3)
      return decode_error{reason_code::malformed_packet, "subscription QoS 3"};
    if (is_v5(v)) {
      e.options.no_local = (options & 0x04) != 0;
      e.options.retain_as_published = (options & 0x08) != 0;
      e.options.retain_handling = static_cast<std::uint8_t>((options >> 4) & 0x03);
      if (e.options.retain_handling == 3)
        return decode_error{reason_code::protocol_error, "retain handling 3"};
      if (options & 0xC0)
        return decode_error{reason_code::malformed_packet, "reserved subscription option bits set"};
    } else if (options & 0xFC) {
      return decode_error{reason_code::malformed_packet, "reserved subscription option bits set"};
    }
    s.entries.push_back(std::move(e));
  }
  if (!r.ok()) return r.error();
  if (s.entries.empty())
    return decode_error{reason_code::protocol_error, "SUBSCRIBE without topic filters"};
  return packet{std::move(s)};
}

std::variant<packet, decode_error> decode_suback(std::uint8_t flags, reader& r,
                                                 protocol_version v) {
  if (flags != 0) return decode_error{reason_code::malformed_packet, "bad fixed header flags"};
  suback_packet s;
  s.packet_id = r.u16();
  if (is_v5(v)) read_properties(r, in_suback, s.props);
  while (r.ok() && !r.at_end()) {
    auto code = r.u8();
    if (!is_v5(v) && code > 2 && code != 0x80) r.malformed("bad SUBACK return code");
    s.reasons.push_back(static_cast<reason_code>(code));
  }
  if (!r.ok()) return r.error();
  return packet{std::move(s)};
}

std::variant<packet, decode_error> decode_unsubscribe(std::uint8_t flags, reader& r,
                                                      protocol_version v) {
  if (flags != 0x02)
    return decode_error{reason_code::malformed_packet, "UNSUBSCRIBE flags must be 0010"};
  unsubscribe_packet u;
  u.packet_id = r.u16();
  if (r.ok() && u.packet_id == 0)
    return decode_error{reason_code::malformed_packet, "packet identifier 0"};
  if (is_v5(v)) read_properties(r, in_unsubscribe, u.props);
  while (r.ok() && !r.at_end()) {
    u.filters.push_back(r.utf8());
    if (r.ok() && u.filters.back().empty()) r.malformed("empty topic filter");
  }
  if (!r.ok()) return r.error();
  if (u.filters.empty())
    return decode_error{reason_code::protocol_error, "UNSUBSCRIBE without topic filters"};
  return packet{std::move(u)};
}

std::variant<packet, decode_error> decode_unsuback(std::uint8_t flags, reader& r,
                                                   protocol_version v) {
  if (flags != 0) return decode_error{reason_code::malformed_packet, "bad fixed header flags"};
  unsuback_packet u;
  u.packet_id = r.u16();
  if (is_v5(v)) {
    read_properties(r, in_unsuback, u.props);
    while (r.ok() && !r.at_end()) u.reasons.push_back(static_cast<reason_code>(r.u8()));
  }
  if (!r.ok()) return r.error();
  if (!r.at_end()) return decode_error{reason_code::malformed_packet, "trailing bytes in UNSUBACK"};
  return packet{std::move(u)};
}

std::variant<packet, decode_error> decode_disconnect_or_auth(packet_type type, std::uint8_t flags,
                                                             reader& r, protocol_version v) {
  if (flags != 0) return decode_error{reason_code::malformed_packet, "bad fixed header flags"};
  if (type == packet_type::auth && !is_v5(v))
    return decode_error{reason_code::malformed_packet, "AUTH before MQTT 5"};
  reason_code reason = reason_code::success;
  properties props;
  if (is_v5(v) && !r.at_end()) {
    reason = static_cast<reason_code>(r.u8());
    if (!r.at_end()) read_properties(r, type == packet_type::auth ? in_auth : in_disconnect, props);
  }
  if (!r.ok()) return r.error();
  if (!r.at_end()) return decode_error{reason_code::malformed_packet, "trailing bytes"};
  if (type == packet_type::auth) return packet{auth_packet{reason, std::move(props)}};
  return packet{disconnect_packet{reason, std::move(props)}};
}

// --- writing ------------------------------------------------------------------------------

void put_u8(std::string& out, std::uint8_t v) {
  out.push_back(static_cast<char>(v));
}
void put_u16(std::string& out, std::uint16_t v) {
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v & 0xFF));
}
void put_u32(std::string& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((v >> shift) & 0xFF));
}
void put_varint(std::string& out, std::uint32_t v) {
  do {
    auto b = static_cast<std::uint8_t>(v & 0x7F);
    v >>= 7;
    if (v > 0) b |= 0x80;
    out.push_back(static_cast<char>(b));
  } while (v > 0);
}
void put_binary(std::string& out, std::string_view s) {
  put_u16(out, static_cast<std::uint16_t>(s.size()));
  out.append(s);
}

// --- properties: sizing and encoding, generic over the table -------------------------------

template <property_kind Kind, class Value>
std::size_t value_size([[maybe_unused]] const Value& value) {
  if constexpr (Kind == property_kind::byte) {
    return 1;
  } else if constexpr (Kind == property_kind::two) {
    return 2;
  } else if constexpr (Kind == property_kind::four) {
    return 4;
  } else if constexpr (Kind == property_kind::varint) {
    return varint_size(value);
  } else if constexpr (Kind == property_kind::utf8 || Kind == property_kind::binary) {
    return 2 + value.size();
  } else {
    static_assert(Kind == property_kind::pair);
    return 4 + value.first.size() + value.second.size();
  }
}

template <property_kind Kind, class Value>
void put_value(std::string& out, const Value& value) {
  if constexpr (Kind == property_kind::byte) {
    put_u8(out, value);
  } else if constexpr (Kind == property_kind::two) {
    put_u16(out, value);
  } else if constexpr (Kind == property_kind::four) {
    put_u32(out, value);
  } else if constexpr (Kind == property_kind::varint) {
    put_varint(out, value);
  } else if constexpr (Kind == property_kind::utf8 || Kind == property_kind::binary) {
    put_binary(out, value);
  } else {
    static_assert(Kind == property_kind::pair);
    put_binary(out, value.first);
    put_binary(out, value.second);
  }
}

// Each occurrence is its identifier (one byte: the table checks every id is below 0x80) and
// its value.
template <std::size_t I>
std::size_t property_size(const properties& props) {
  constexpr auto row = std::get<I>(property_table);
  const auto& field = props.*row.member;
  if constexpr (is_list_field<std::remove_cvref_t<decltype(field)>>) {
    std::size_t n = 0;
    for (const auto& value : field) n += 1 + value_size<row.kind>(value);
    return n;
  } else {
    return field ? 1 + value_size<row.kind>(*field) : std::size_t{0};
  }
}

template <std::size_t I>
void put_property(std::string& out, const properties& props) {
  constexpr auto row = std::get<I>(property_table);
  const auto& field = props.*row.member;
  if constexpr (is_list_field<std::remove_cvref_t<decltype(field)>>) {
    for (const auto& value : field) {
      put_u8(out, row.id);
      put_value<row.kind>(out, value);
    }
  } else if (field) {
    put_u8(out, row.id);
    put_value<row.kind>(out, *field);
  }
}

template <std::size_t... I>
std::size_t sum_property_sizes(const properties& p, std::index_sequence<I...>) {
  return (std::size_t{0} + ... + property_size<I>(p));
}

template <std::size_t... I>
void put_each_property(std::string& out, const properties& p, std::index_sequence<I...>) {
  (put_property<I>(out, p), ...);
}

// The property block's length, less its own length prefix.
std::size_t properties_size(const properties& p) {
  return sum_property_sizes(p, std::make_index_sequence<property_count>{});
}

// Writes the block in table order, which is identifier order.
void put_properties(std::string& out, const properties& p) {
  const std::size_t size = properties_size(p);
  put_varint(out, static_cast<std::uint32_t>(size));
  [[maybe_unused]] const std::size_t start = out.size();
  put_each_property(out, p, std::make_index_sequence<property_count>{});
  NIMBUS_ASSERT(out.size() - start == size);
}

std::size_t properties_block_size(const properties& p) {
  auto n = properties_size(p);
  return varint_size(static_cast<std::uint32_t>(n)) + n;
}

// Writes the fixed header for a body of `body_size` bytes, then lets `body` append it.
template <class Body>
void put_packet(std::string& out, std::uint8_t first_byte, std::size_t body_size, Body&& body) {
  put_u8(out, first_byte);
  put_varint(out, static_cast<std::uint32_t>(body_size));
  [[maybe_unused]] const std::size_t start = out.size();
  body();
  NIMBUS_ASSERT(out.size() - start == body_size);
}

struct encoder {
  std::string& out;
  protocol_version v;

  void operator()(const connect_packet& c) const {
    bool v5 = is_v5(c.version);
    std::string_view name = c.version == protocol_version::v31 ? "MQIsdp" : "MQTT";
    std::size_t size = 2 + name.size() + 1 + 1 + 2 + 2 + c.client_id.size();
    if (v5) size += properties_block_size(c.props);
    if (c.will) {
      size += 4 + c.will->topic.size() + c.will->payload.size();
      if (v5) size += properties_block_size(c.will->props);
    }
    if (c.username) size += 2 + c.username->size();
    if (c.password) size += 2 + c.password->size();
    put_packet(out, 0x10, size, [&] {
      put_binary(out, name);
      put_u8(out, static_cast<std::uint8_t>(static_cast<std::uint8_t>(c.version) |
                                            (c.bridge ? 0x80 : 0)));
      std::uint8_t flags = 0;
      if (c.clean_start) flags |= 0x02;
      if (c.will) {
        flags |= 0x04;
        flags |= static_cast<std::uint8_t>(c.will->qos << 3);
        if (c.will->retain) flags |= 0x20;
      }
      if (c.password) flags |= 0x40;
      if (c.username) flags |= 0x80;
      put_u8(out, flags);
      put_u16(out, c.keep_alive);
      if (v5) put_properties(out, c.props);
      put_binary(out, c.client_id);
      if (c.will) {
        if (v5) put_properties(out, c.will->props);
        put_binary(out, c.will->topic);
        put_binary(out, c.will->payload);
      }
      if (c.username) put_binary(out, *c.username);
      if (c.password) put_binary(out, *c.password);
    });
  }

  void operator()(const connack_packet& c) const {
    std::size_t size = 2 + (is_v5(v) ? properties_block_size(c.props) : 0);
    put_packet(out, 0x20, size, [&] {
      put_u8(out, c.session_present ? 1 : 0);
      put_u8(out, is_v5(v) ? static_cast<std::uint8_t>(c.reason) : to_v311_connack_code(c.reason));
      if (is_v5(v)) put_properties(out, c.props);
    });
  }

  void operator()(const publish_packet& p) const {
    encode_publish_head(out, v, p.qos, p.retain, p.dup, p.topic, p.packet_id, p.props,
                        p.payload.size());
    out.append(p.payload);
  }

  void operator()(const ack_packet& a) const {
    std::uint8_t first = static_cast<std::uint8_t>(static_cast<std::uint8_t>(a.type) << 4);
    if (a.type == packet_type::pubrel) first |= 0x02;
    // MQTT 5 lets a success ack without properties end after the packet id (3.4.2.1).
    bool short_form = !is_v5(v) || (a.reason == reason_code::success && a.props == properties{});
    std::size_t size = short_form ? 2 : 3 + properties_block_size(a.props);
    put_packet(out, first, size, [&] {
      put_u16(out, a.packet_id);
      if (!short_form) {
        put_u8(out, static_cast<std::uint8_t>(a.reason));
        put_properties(out, a.props);
      }
    });
  }

  void operator()(const subscribe_packet& s) const {
    std::size_t size = 2 + (is_v5(v) ? properties_block_size(s.props) : 0);
    for (const auto& e : s.entries) size += 3 + e.filter.size();
    put_packet(out, 0x82, size, [&] {
      put_u16(out, s.packet_id);
      if (is_v5(v)) put_properties(out, s.props);
      for (const auto& e : s.entries) {
        put_binary(out, e.filter);
        std::uint8_t options = e.options.qos;
        if (is_v5(v)) {
          if (e.options.no_local) options |= 0x04;
          if (e.options.retain_as_published) options |= 0x08;
          options |= static_cast<std::uint8_t>(e.options.retain_handling << 4);
        }
        put_u8(out, options);
      }
    });
  }

  void operator()(const suback_packet& s) const {
    std::size_t size = 2 + s.reasons.size() + (is_v5(v) ? properties_block_size(s.props) : 0);
    put_packet(out, 0x90, size, [&] {
      put_u16(out, s.packet_id);
      if (is_v5(v)) put_properties(out, s.props);
      for (auto r : s.reasons) {
        // 3.1.1 knows only granted QoS and 0x80 failure.
        auto code = static_cast<std::uint8_t>(r);
        put_u8(out, is_v5(v) || code <= 2 ? code : 0x80);
      }
    });
  }

  void operator()(const unsubscribe_packet& u) const {
    std::size_t size = 2 + (is_v5(v) ? properties_block_size(u.props) : 0);
    for (const auto& f : u.filters) size += 2 + f.size();
    put_packet(out, 0xA2, size, [&] {
      put_u16(out, u.packet_id);
      if (is_v5(v)) put_properties(out, u.props);
      for (const auto& f : u.filters) put_binary(out, f);
    });
  }

  void operator()(const unsuback_packet& u) const {
    std::size_t size = 2 + (is_v5(v) ? properties_block_size(u.props) + u.reasons.size() : 0);
    put_packet(out, 0xB0, size, [&] {
      put_u16(out, u.packet_id);
      if (is_v5(v)) {
        put_properties(out, u.props);
        for (auto r : u.reasons) put_u8(out, static_cast<std::uint8_t>(r));
      }
    });
  }

  void operator()(const pingreq_packet&) const { out.append("\xC0\x00", 2); }
  void operator()(const pingresp_packet&) const { out.append("\xD0\x00", 2); }

  void reason_and_props(std::uint8_t first, reason_code reason, const properties& props) const {
    if (!is_v5(v)) {
      put_u8(out, first);
      put_u8(out, 0);
      return;
    }
    bool empty_props = props == properties{};
    if (reason == reason_code::success && empty_props) {
      put_u8(out, first);
      put_u8(out, 0);
      return;
    }
    put_packet(out, first, 1 + properties_block_size(props), [&] {
      put_u8(out, static_cast<std::uint8_t>(reason));
      put_properties(out, props);
    });
  }

  void operator()(const disconnect_packet& d) const { reason_and_props(0xE0, d.reason, d.props); }
  void operator()(const auth_packet& a) const { reason_and_props(0xF0, a.reason, a.props); }
};

}  // namespace

std::size_t varint_size(std::uint32_t value) {
  if (value < 128) return 1;
  if (value < 16'384) return 2;
  if (value < 2'097'152) return 3;
  return 4;
}

bool is_valid_mqtt_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    unsigned char c = *p;
    if (c < 0x80) {
      if (c == 0) return false;
      ++p;
      continue;
    }
    std::size_t len;
    std::uint32_t cp;
    if ((c & 0xE0) == 0xC0)
      len = 2, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0)
      len = 3, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0)
      len = 4, cp = c & 0x07;
    else
      return false;
    if (static_cast<std::size_t>(end - p) < len) return false;
    for (std::size_t i = 1; i < len; ++i) {
      if ((p[i] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i] & 0x3F);
    }
    // Reject overlong forms, surrogates and code points past U+10FFFF.
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000))
      return false;
    if (cp >= 0xD800 && cp <= 0xDFFF) return false;
    if (cp > 0x10FFFF) return false;
    p += len;
  }
  return true;
}

std::variant<frame_header, need_more_bytes, decode_error> read_frame_header(
    std::string_view bytes) {
  if (bytes.size() < 2) return need_more_bytes{};
  frame_header h;
  h.first_byte = static_cast<std::uint8_t>(bytes[0]);
  if ((h.first_byte >> 4) == 0)
    return decode_error{reason_code::malformed_packet, "reserved packet type 0"};
  std::uint32_t value = 0;
  for (std::size_t i = 1; i <= 4; ++i) {
    if (i >= bytes.size()) return need_more_bytes{};
    auto b = static_cast<std::uint8_t>(bytes[i]);
    value |= std::uint32_t{static_cast<std::uint8_t>(b & 0x7F)} << (7 * (i - 1));
    if ((b & 0x80) == 0) {
      h.remaining_length = value;
      h.header_size = i + 1;
      return h;
    }
  }
  return decode_error{reason_code::malformed_packet, "remaining length longer than four bytes"};
}

std::variant<packet, decode_error> decode_packet(const frame_header& header, std::string_view body,
                                                 protocol_version version) {
  reader r(body);
  auto flags = static_cast<std::uint8_t>(header.first_byte & 0x0F);
  switch (header.type()) {
    case packet_type::connect:
      return decode_connect(flags, r);
    case packet_type::connack:
      return decode_connack(flags, r, version);
    case packet_type::publish:
      return decode_publish(flags, r, version);
    case packet_type::puback:
    case packet_type::pubrec:
    case packet_type::pubrel:
    case packet_type::pubcomp:
      return decode_ack(header.type(), flags, r, version);
    case packet_type::subscribe:
      return decode_subscribe(flags, r, version);
    case packet_type::suback:
      return decode_suback(flags, r, version);
    case packet_type::unsubscribe:
      return decode_unsubscribe(flags, r, version);
    case packet_type::unsuback:
      return decode_unsuback(flags, r, version);
    case packet_type::pingreq:
    case packet_type::pingresp:
      if (flags != 0 || !body.empty())
        return decode_error{reason_code::malformed_packet, "bad PING packet"};
      if (header.type() == packet_type::pingreq) return packet{pingreq_packet{}};
      return packet{pingresp_packet{}};
    case packet_type::disconnect:
    case packet_type::auth:
      return decode_disconnect_or_auth(header.type(), flags, r, version);
  }
  return decode_error{reason_code::malformed_packet, "unknown packet type"};
}

std::string encode_properties(const properties& props) {
  std::string out;
  put_properties(out, props);
  return out;
}

std::optional<properties> decode_properties(std::string_view blob) {
  reader r(blob);
  properties props;
  read_properties(r, in_any_packet, props);
  if (!r.ok() || !r.at_end()) return std::nullopt;
  return props;
}

void encode(const packet& p, protocol_version version, std::string& out) {
  std::visit(encoder{out, version}, p);
}

std::size_t publish_size(protocol_version version, std::uint8_t qos, std::string_view topic,
                         const properties& props, std::size_t payload_size) {
  std::size_t body = 2 + topic.size() + (qos > 0 ? 2 : 0) + payload_size;
  if (is_v5(version)) body += properties_block_size(props);
  return 1 + varint_size(static_cast<std::uint32_t>(body)) + body;
}

void encode_publish_head(std::string& out, protocol_version version, std::uint8_t qos, bool retain,
                         bool dup, std::string_view topic, std::uint16_t packet_id,
                         const properties& props, std::size_t payload_size) {
  std::size_t body = 2 + topic.size() + (qos > 0 ? 2 : 0) + payload_size;
  if (is_v5(version)) body += properties_block_size(props);
  auto first = static_cast<std::uint8_t>(0x30 | (qos << 1));
  if (dup) first |= 0x08;
  if (retain) first |= 0x01;
  put_u8(out, first);
  put_varint(out, static_cast<std::uint32_t>(body));
  [[maybe_unused]] const std::size_t start = out.size();
  put_binary(out, topic);
  if (qos > 0) put_u16(out, packet_id);
  if (is_v5(version)) put_properties(out, props);
  // The caller writes the payload.
  NIMBUS_ASSERT(out.size() - start == body - payload_size);
}

std::optional<protocol_version> peek_connect_version(std::string_view body) {
  reader r(body);
  auto name = r.binary();
  std::uint8_t level = r.u8();
  if (!r.ok()) return std::nullopt;
  level &= 0x7F;  // a bridge's flag
  if (name == "MQTT" && (level == 4 || level == 5)) return static_cast<protocol_version>(level);
  if (name == "MQIsdp" && level == 3) return protocol_version::v31;
  return std::nullopt;
}

}  // namespace nimbus::mqtt
