#include "mqtt/codec.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "mqtt/property_table.hpp"

namespace nimbus::mqtt {
namespace {

packet round_trip(const packet& p, protocol_version v) {
  std::string bytes;
  encode(p, v, bytes);
  auto header = read_frame_header(bytes);
  auto* h = std::get_if<frame_header>(&header);
  EXPECT_NE(h, nullptr);
  EXPECT_EQ(h->total_size(), bytes.size());
  auto decoded = decode_packet(*h, std::string_view(bytes).substr(h->header_size), v);
  auto* error = std::get_if<decode_error>(&decoded);
  EXPECT_EQ(error, nullptr) << (error ? error->what : "");
  return error ? packet{} : std::get<packet>(decoded);
}

std::variant<packet, decode_error> decode_bytes(std::string_view bytes, protocol_version v) {
  auto header = read_frame_header(bytes);
  if (auto* e = std::get_if<decode_error>(&header)) return *e;
  auto h = std::get<frame_header>(header);
  if (h.total_size() != bytes.size()) return decode_error{reason_code::malformed_packet, "size"};
  return decode_packet(h, bytes.substr(h.header_size), v);
}

reason_code decode_failure(std::string_view bytes, protocol_version v) {
  auto r = decode_bytes(bytes, v);
  if (auto* e = std::get_if<decode_error>(&r)) return e->reason;
  return reason_code::success;
}

// The whole refusal, `what` included; success if the bytes decode.
decode_error decode_refusal(std::string_view bytes, protocol_version v) {
  auto r = decode_bytes(bytes, v);
  if (auto* e = std::get_if<decode_error>(&r)) return *e;
  return decode_error{reason_code::success, "decoded"};
}

std::string encoded(const packet& p, protocol_version v) {
  std::string bytes;
  encode(p, v, bytes);
  return bytes;
}

properties all_publish_properties() {
  properties p;
  p.payload_format_indicator = 1;
  p.message_expiry_interval = 3600;
  p.content_type = "application/json";
  p.response_topic = "reply/here";
  p.correlation_data = std::string("\x00\x01\x02", 3);
  p.subscription_identifiers = {1, 268'435'455};
  p.topic_alias = 7;
  p.user = {{"k", "v"}, {"k", "v2"}, {"", ""}};
  return p;
}

const protocol_version both[] = {protocol_version::v311, protocol_version::v5};

TEST(codec, connect_round_trip_every_version) {
  for (auto v : {protocol_version::v31, protocol_version::v311, protocol_version::v5}) {
    connect_packet c;
    c.version = v;
    c.clean_start = false;
    c.keep_alive = 60;
    c.client_id = "device-1";
    c.username = "user";
    c.password = std::string("p\0ss", 4);
    c.will = will_message{"last/will", "gone", 2, true, {}};
    if (v == protocol_version::v5) {
      c.props.session_expiry_interval = 300;
      c.props.receive_maximum = 10;
      c.props.maximum_packet_size = 4096;
      c.props.topic_alias_maximum = 5;
      c.props.request_response_information = 1;
      c.props.request_problem_information = 0;
      c.props.user = {{"a", "b"}};
      c.props.authentication_method = "SCRAM";
      c.props.authentication_data = "xyz";
      c.will->props.will_delay_interval = 30;
      c.will->props.message_expiry_interval = 10;
      c.will->props.content_type = "text/plain";
      c.will->props.response_topic = "r";
      c.will->props.correlation_data = "c";
      c.will->props.payload_format_indicator = 1;
      c.will->props.user = {{"w", "x"}};
    }
    EXPECT_EQ(std::get<connect_packet>(round_trip(c, v)), c);
  }
}

TEST(codec, connack_round_trip) {
  connack_packet c{true, reason_code::success, {}};
  EXPECT_EQ(std::get<connack_packet>(round_trip(c, protocol_version::v311)), c);
  c.reason = reason_code::not_authorized;
  EXPECT_EQ(std::get<connack_packet>(round_trip(c, protocol_version::v311)).reason,
            reason_code::not_authorized);
  connack_packet v5{false, reason_code::success, {}};
  v5.props.session_expiry_interval = 10;
  v5.props.receive_maximum = 100;
  v5.props.maximum_qos = 1;
  v5.props.retain_available = 1;
  v5.props.maximum_packet_size = 1 << 20;
  v5.props.assigned_client_identifier = "auto-123";
  v5.props.topic_alias_maximum = 10;
  v5.props.reason_string = "ok";
  v5.props.wildcard_subscription_available = 1;
  v5.props.subscription_identifier_available = 1;
  v5.props.shared_subscription_available = 1;
  v5.props.server_keep_alive = 30;
  v5.props.response_information = "resp/";
  v5.props.server_reference = "other";
  v5.props.user = {{"x", "y"}};
  EXPECT_EQ(std::get<connack_packet>(round_trip(v5, protocol_version::v5)), v5);
}

TEST(codec, publish_round_trip) {
  for (auto v : both) {
    for (std::uint8_t qos = 0; qos <= 2; ++qos) {
      publish_packet p;
      p.qos = qos;
      p.dup = qos > 0;
      p.retain = true;
      p.topic = "a/b/c";
      p.packet_id = qos > 0 ? 42 : 0;
      p.payload = std::string(300, 'x');
      if (v == protocol_version::v5) p.props = all_publish_properties();
      EXPECT_EQ(std::get<publish_packet>(round_trip(p, v)), p);
      EXPECT_EQ(publish_size(v, qos, p.topic, p.props, p.payload.size()), [&] {
        std::string s;
        encode(p, v, s);
        return s.size();
      }());
    }
  }
}

TEST(codec, acks_round_trip) {
  for (auto v : both) {
    for (auto type :
         {packet_type::puback, packet_type::pubrec, packet_type::pubrel, packet_type::pubcomp}) {
      ack_packet a{type, 7, reason_code::success, {}};
      EXPECT_EQ(std::get<ack_packet>(round_trip(a, v)), a);
    }
  }
  ack_packet failed{packet_type::puback, 9, reason_code::not_authorized, {}};
  failed.props.reason_string = "denied";
  failed.props.user = {{"u", "v"}};
  EXPECT_EQ(std::get<ack_packet>(round_trip(failed, protocol_version::v5)), failed);
  // MQTT 5 short form: packet id only means success.
  auto r = decode_bytes(std::string("\x40\x02\x00\x05", 4), protocol_version::v5);
  EXPECT_EQ(std::get<ack_packet>(std::get<packet>(r)).reason, reason_code::success);
}

TEST(codec, subscribe_family_round_trip) {
  for (auto v : both) {
    subscribe_packet s;
    s.packet_id = 3;
    s.entries = {{"a/+", {1, false, false, 0}}, {"b/#", {2, false, false, 0}}};
    if (v == protocol_version::v5) {
      s.entries[0].options = {1, true, true, 2};
      s.props.subscription_identifiers = {99};
      s.props.user = {{"k", "v"}};
    }
    EXPECT_EQ(std::get<subscribe_packet>(round_trip(s, v)), s);

    suback_packet sa{3, {}, {reason_code::granted_qos_1, reason_code::unspecified_error}};
    EXPECT_EQ(std::get<suback_packet>(round_trip(sa, v)), sa);

    unsubscribe_packet u{4, {}, {"a/+", "b/#"}};
    EXPECT_EQ(std::get<unsubscribe_packet>(round_trip(u, v)), u);

    unsuback_packet ua{4, {}, {}};
    if (v == protocol_version::v5)
      ua.reasons = {reason_code::success, reason_code::no_subscription_existed};
    EXPECT_EQ(std::get<unsuback_packet>(round_trip(ua, v)), ua);
  }
}

TEST(codec, small_packets_round_trip) {
  for (auto v : both) {
    EXPECT_TRUE(std::holds_alternative<pingreq_packet>(round_trip(pingreq_packet{}, v)));
    EXPECT_TRUE(std::holds_alternative<pingresp_packet>(round_trip(pingresp_packet{}, v)));
    EXPECT_TRUE(std::holds_alternative<disconnect_packet>(round_trip(disconnect_packet{}, v)));
  }
  disconnect_packet d{reason_code::session_taken_over, {}};
  d.props.reason_string = "another connection";
  d.props.session_expiry_interval = 0;
  d.props.server_reference = "elsewhere";
  EXPECT_EQ(std::get<disconnect_packet>(round_trip(d, protocol_version::v5)), d);
  auth_packet a{reason_code::continue_authentication, {}};
  a.props.authentication_method = "SCRAM";
  a.props.authentication_data = "data";
  EXPECT_EQ(std::get<auth_packet>(round_trip(a, protocol_version::v5)), a);
}

TEST(codec, frame_header_edges) {
  EXPECT_TRUE(std::holds_alternative<need_more_bytes>(read_frame_header("\x30")));
  EXPECT_TRUE(std::holds_alternative<need_more_bytes>(read_frame_header("\x30\x80")));
  auto max = read_frame_header(std::string("\x30\xFF\xFF\xFF\x7F", 5));
  EXPECT_EQ(std::get<frame_header>(max).remaining_length, max_remaining_length);
  EXPECT_TRUE(std::holds_alternative<decode_error>(
      read_frame_header(std::string("\x30\xFF\xFF\xFF\xFF\x01", 6))));
  EXPECT_TRUE(std::holds_alternative<decode_error>(read_frame_header(std::string("\x00\x00", 2))));
}

TEST(codec, rejects_malformed_packets) {
  using std::string;
  auto v4 = protocol_version::v311;
  auto v5 = protocol_version::v5;
  // CONNECT with a bad protocol name, an unknown level, the reserved flag, will QoS without will.
  EXPECT_EQ(decode_failure(string("\x10\x0c\x00\x04MQTX\x04\x02\x00\x3c\x00\x00", 14), v4),
            reason_code::malformed_packet);
  EXPECT_EQ(decode_failure(string("\x10\x0c\x00\x04MQTT\x07\x02\x00\x3c\x00\x00", 14), v4),
            reason_code::unsupported_protocol_version);
  EXPECT_EQ(decode_failure(string("\x10\x0c\x00\x04MQTT\x04\x03\x00\x3c\x00\x00", 14), v4),
            reason_code::malformed_packet);
  EXPECT_EQ(decode_failure(string("\x10\x0c\x00\x04MQTT\x04\x0A\x00\x3c\x00\x00", 14), v4),
            reason_code::malformed_packet);
  // CONNECT with trailing bytes.
  EXPECT_EQ(decode_failure(string("\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x00\x00", 15), v4),
            reason_code::malformed_packet);
  // PUBLISH QoS 3, DUP on QoS 0, packet id 0, invalid UTF-8 and NUL in the topic.
  EXPECT_EQ(decode_failure(string("\x36\x05\x00\x01t\x00\x01", 7), v4),
            reason_code::malformed_packet);
  EXPECT_EQ(decode_failure(string("\x38\x03\x00\x01t", 5), v4), reason_code::malformed_packet);
  EXPECT_EQ(decode_failure(string("\x32\x05\x00\x01t\x00\x00", 7), v4),
            reason_code::malformed_packet);
  EXPECT_EQ(decode_failure(string("\x30\x04\x00\x02\xC3\x28", 6), v4),
            reason_code::malformed_packet);
  EXPECT_EQ(decode_failure(string("\x30\x04\x00\x02t\x00", 6), v4), reason_code::malformed_packet);
  // Topic length pointing past the packet.
  EXPECT_EQ(decode_failure(string("\x30\x03\x00\x09t", 5), v4), reason_code::malformed_packet);
  // SUBSCRIBE with wrong flags, no filters, QoS 3, reserved option bits.
  EXPECT_EQ(decode_failure(string("\x80\x06\x00\x01\x00\x01t\x00", 8), v4),
            reason_code::malformed_packet);
  EXPECT_EQ(decode_failure(string("\x82\x02\x00\x01", 4), v4), reason_code::protocol_error);
  EXPECT_EQ(decode_failure(string("\x82\x06\x00\x01\x00\x01t\x03", 8), v4),
            reason_code::malformed_packet);
  EXPECT_EQ(decode_failure(string("\x82\x06\x00\x01\x00\x01t\x04", 8), v4),
            reason_code::malformed_packet);
  EXPECT_EQ(decode_failure(string("\x82\x07\x00\x01\x00\x00\x01t\x30", 9), v5),
            reason_code::protocol_error);
  // PUBREL must carry flags 0010.
  EXPECT_EQ(decode_failure(string("\x60\x02\x00\x01", 4), v4), reason_code::malformed_packet);
  // PINGREQ with a body.
  EXPECT_EQ(decode_failure(string("\xC0\x01\x00", 3), v4), reason_code::malformed_packet);
  // v5 PUBLISH with a duplicate property, an unknown property, a property not allowed here.
  EXPECT_EQ(decode_failure(string("\x30\x09\x00\x01t\x04\x01\x01\x01\x01x", 11), v5),
            reason_code::protocol_error);
  EXPECT_EQ(decode_failure(string("\x30\x06\x00\x01t\x01\x7Fx", 8), v5),
            reason_code::malformed_packet);
  EXPECT_EQ(decode_failure(string("\x30\x0a\x00\x01t\x05\x11\x00\x00\x00\x01", 12), v5),
            reason_code::protocol_error);
  // Property length pointing past the packet.
  EXPECT_EQ(decode_failure(string("\x30\x05\x00\x01t\x09x", 7), v5), reason_code::malformed_packet);
  // Payload format indicator 1 with a non-UTF-8 payload.
  EXPECT_EQ(decode_failure(string("\x30\x07\x00\x01t\x02\x01\x01\xFF", 9), v5),
            reason_code::payload_format_invalid);
  // AUTH on 3.1.1.
  EXPECT_EQ(decode_failure(string("\xF0\x00", 2), v4), reason_code::malformed_packet);
}

TEST(codec, bridge_flag_and_empty_filters) {
  using std::string;
  // Mosquitto bridges send protocol level | 0x80 (try_private): accepted, and remembered.
  for (auto v : {protocol_version::v311, protocol_version::v5}) {
    connect_packet c;
    c.version = v;
    c.client_id = "bridge";
    c.bridge = true;
    EXPECT_EQ(std::get<connect_packet>(round_trip(c, v)), c);
  }
  // Topic filters are at least one character long (MQTT-4.7.3-1): an empty one is malformed.
  EXPECT_EQ(decode_failure(string("\x82\x05\x00\x01\x00\x00\x01", 7), protocol_version::v311),
            reason_code::malformed_packet);
  EXPECT_EQ(decode_failure(string("\xa2\x04\x00\x01\x00\x00", 6), protocol_version::v311),
            reason_code::malformed_packet);
}

TEST(codec, connect_version_is_known_before_the_connect_decodes) {
  using std::string;
  EXPECT_EQ(peek_connect_version(string("\x00\x04MQTT\x05", 7)), protocol_version::v5);
  EXPECT_EQ(peek_connect_version(string("\x00\x04MQTT\x84", 7)), protocol_version::v311);
  EXPECT_EQ(peek_connect_version(string("\x00\x06MQIsdp\x03", 9)), protocol_version::v31);
  EXPECT_EQ(peek_connect_version(string("\x00\x04MQTT", 6)), std::nullopt);  // not yet
  EXPECT_EQ(peek_connect_version(string("\x00\x04MQTX\x05", 7)), std::nullopt);
}

TEST(codec, utf8_validation) {
  EXPECT_TRUE(is_valid_mqtt_utf8("plain/ascii"));
  EXPECT_TRUE(is_valid_mqtt_utf8("\xED\x95\x9C\xEA\xB5\xAD"));  // 한국
  EXPECT_TRUE(is_valid_mqtt_utf8("\xF0\x9F\x98\x80"));          // emoji
  EXPECT_FALSE(is_valid_mqtt_utf8(std::string("a\0b", 3)));
  EXPECT_FALSE(is_valid_mqtt_utf8("\xC0\xAF"));          // overlong '/'
  EXPECT_FALSE(is_valid_mqtt_utf8("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(is_valid_mqtt_utf8("\xF4\x90\x80\x80"));  // past U+10FFFF
  EXPECT_FALSE(is_valid_mqtt_utf8("\xE2\x82"));          // truncated
  EXPECT_FALSE(is_valid_mqtt_utf8("\x80"));
}

TEST(codec, publish_head_leaves_payload_to_caller) {
  std::string head;
  properties props;
  encode_publish_head(head, protocol_version::v311, 1, false, false, "t", 5, props, 3);
  head += "abc";
  auto r = decode_bytes(head, protocol_version::v311);
  auto p = std::get<publish_packet>(std::get<packet>(r));
  EXPECT_EQ(p.payload, "abc");
  EXPECT_EQ(p.packet_id, 5);
}

// --- the property table: every row, generically -------------------------------------------

// Calls `check(row)` for every row of the property table.
template <class Check>
void for_each_property(Check check) {
  std::apply([&](const auto&... row) { (check(row), ...); }, property_table);
}

// A value of each field type that every check accepts and that uses the most of its encoding: a
// four-byte variable byte integer, multi-byte UTF-8, binary data with NUL and 0xFF.
void set_sample(std::optional<std::uint8_t>& field, property_kind) {
  field = std::uint8_t{1};
}
void set_sample(std::optional<std::uint16_t>& field, property_kind) {
  field = std::uint16_t{0xABCD};
}
void set_sample(std::optional<std::uint32_t>& field, property_kind) {
  field = std::uint32_t{0x89ABCDEF};
}
void set_sample(std::optional<std::string>& field, property_kind kind) {
  field = kind == property_kind::binary ? std::string("\x00\xFF\x01", 3)
                                        : std::string("caf\xC3\xA9/\xF0\x9F\x98\x80");
}
void set_sample(std::vector<std::uint32_t>& field, property_kind) {
  field = {std::uint32_t{268'435'455}};
}
void set_sample(user_properties& field, property_kind) {
  field = {{"r\xC3\xA9gion", "eu-west-1"}};
}

// A value the row's check refuses: 2 where only 0 or 1 may be, 0 where 0 is refused.
void set_refused(std::optional<std::uint8_t>& field) {
  field = std::uint8_t{2};
}
void set_refused(std::optional<std::uint16_t>& field) {
  field = std::uint16_t{0};
}
void set_refused(std::optional<std::uint32_t>& field) {
  field = std::uint32_t{0};
}
void set_refused(std::vector<std::uint32_t>& field) {
  field = {std::uint32_t{0}};
}
void set_refused(std::optional<std::string>&) {
  ADD_FAILURE() << "no check on strings";
}
void set_refused(user_properties&) {
  ADD_FAILURE() << "no check on user properties";
}

TEST(codec, every_property_round_trips_alone) {
  for_each_property([](const auto& row) {
    SCOPED_TRACE(std::string(row.name));
    properties props;
    set_sample(props.*row.member, row.kind);
    std::string blob = encode_properties(props);
    // A one-byte length (the computed size), then the identifier.
    ASSERT_GE(blob.size(), 3u);
    EXPECT_EQ(std::size_t{static_cast<std::uint8_t>(blob[0])}, blob.size() - 1);
    EXPECT_EQ(int{static_cast<std::uint8_t>(blob[1])}, int{row.id});
    EXPECT_EQ(decode_properties(blob), props);
    // The size computed for a PUBLISH against the bytes written for it.
    std::string head;
    encode_publish_head(head, protocol_version::v5, 1, false, false, "t", 1, props, 0);
    EXPECT_EQ(publish_size(protocol_version::v5, 1, "t", props, 0), head.size());
  });
}

TEST(codec, every_property_at_once_is_encoded_in_table_order) {
  properties all;
  std::string expected;  // each property's encoding alone, in table order
  for_each_property([&](const auto& row) {
    properties one;
    set_sample(one.*row.member, row.kind);
    set_sample(all.*row.member, row.kind);
    expected += encode_properties(one).substr(1);  // less its one-byte length
  });
  std::string blob = encode_properties(all);
  EXPECT_EQ(blob.size(),
            varint_size(static_cast<std::uint32_t>(expected.size())) + expected.size());
  EXPECT_TRUE(blob.ends_with(expected));
  EXPECT_EQ(decode_properties(blob), all);
  // A blob may hold every occurrence of the properties that repeat.
  all.subscription_identifiers.push_back(1);
  all.user.emplace_back("r\xC3\xA9gion", "again");
  EXPECT_EQ(decode_properties(encode_properties(all)), all);
}

// The identifiers as the specification assigns them (MQTT 5 section 2.2.2.2), written out apart
// from the table, so that a row pointing at the wrong field fails here.
TEST(codec, property_identifiers_follow_the_specification) {
  struct spec_row {
    std::uint8_t id;
    void (*set)(properties&);
  };
  const spec_row spec[] = {
      {0x01, [](properties& p) { p.payload_format_indicator = std::uint8_t{1}; }},
      {0x02, [](properties& p) { p.message_expiry_interval = std::uint32_t{1}; }},
      {0x03, [](properties& p) { p.content_type = "c"; }},
      {0x08, [](properties& p) { p.response_topic = "r"; }},
      {0x09, [](properties& p) { p.correlation_data = "c"; }},
      {0x0B, [](properties& p) { p.subscription_identifiers = {std::uint32_t{1}}; }},
      {0x11, [](properties& p) { p.session_expiry_interval = std::uint32_t{1}; }},
      {0x12, [](properties& p) { p.assigned_client_identifier = "a"; }},
      {0x13, [](properties& p) { p.server_keep_alive = std::uint16_t{1}; }},
      {0x15, [](properties& p) { p.authentication_method = "m"; }},
      {0x16, [](properties& p) { p.authentication_data = "d"; }},
      {0x17, [](properties& p) { p.request_problem_information = std::uint8_t{1}; }},
      {0x18, [](properties& p) { p.will_delay_interval = std::uint32_t{1}; }},
      {0x19, [](properties& p) { p.request_response_information = std::uint8_t{1}; }},
      {0x1A, [](properties& p) { p.response_information = "r"; }},
      {0x1C, [](properties& p) { p.server_reference = "s"; }},
      {0x1F, [](properties& p) { p.reason_string = "r"; }},
      {0x21, [](properties& p) { p.receive_maximum = std::uint16_t{1}; }},
      {0x22, [](properties& p) { p.topic_alias_maximum = std::uint16_t{1}; }},
      {0x23, [](properties& p) { p.topic_alias = std::uint16_t{1}; }},
      {0x24, [](properties& p) { p.maximum_qos = std::uint8_t{1}; }},
      {0x25, [](properties& p) { p.retain_available = std::uint8_t{1}; }},
      {0x26, [](properties& p) { p.user.emplace_back("k", "v"); }},
      {0x27, [](properties& p) { p.maximum_packet_size = std::uint32_t{1}; }},
      {0x28, [](properties& p) { p.wildcard_subscription_available = std::uint8_t{1}; }},
      {0x29, [](properties& p) { p.subscription_identifier_available = std::uint8_t{1}; }},
      {0x2A, [](properties& p) { p.shared_subscription_available = std::uint8_t{1}; }},
  };
  EXPECT_EQ(std::size(spec), property_count);
  for (const auto& expected : spec) {
    properties props;
    expected.set(props);
    std::string blob = encode_properties(props);
    ASSERT_GE(blob.size(), 2u);
    EXPECT_EQ(int{static_cast<std::uint8_t>(blob[1])}, int{expected.id});
  }
}

// Adds each property in turn to `sample` (a v5 packet of one type, whose scope bit is `scope`):
// the ones the table allows there must decode, every other one must be refused.
template <class Packet>
void check_properties_allowed_in(const Packet& sample, std::uint16_t scope) {
  int allowed = 0;
  int refused = 0;
  for_each_property([&](const auto& row) {
    SCOPED_TRACE(std::string(row.name));
    Packet p = sample;
    set_sample(p.props.*row.member, row.kind);
    auto refusal = decode_refusal(encoded(p, protocol_version::v5), protocol_version::v5);
    if ((row.allowed_in & scope) != 0) {
      ++allowed;
      EXPECT_EQ(refusal.reason, reason_code::success) << refusal.what;
    } else {
      ++refused;
      EXPECT_EQ(refusal.reason, reason_code::protocol_error);
      EXPECT_EQ(refusal.what, "property not allowed in this packet");
    }
  });
  EXPECT_GT(allowed, 0);
  EXPECT_GT(refused, 0);
}

TEST(codec, properties_not_allowed_in_a_packet_are_refused) {
  publish_packet publish;
  publish.topic = "t";
  publish.payload = "hello";  // UTF-8, as the payload format indicator may claim
  check_properties_allowed_in(publish, in_publish);

  subscribe_packet subscribe;
  subscribe.packet_id = 1;
  subscribe.entries = {{"a/b", {}}};
  check_properties_allowed_in(subscribe, in_subscribe);

  check_properties_allowed_in(connack_packet{}, in_connack);
  check_properties_allowed_in(disconnect_packet{}, in_disconnect);
}

// `props` in a v5 packet of the first of CONNACK, PUBLISH and CONNECT that may carry them.
std::string encoded_where_allowed(const properties& props, std::uint16_t allowed_in) {
  if ((allowed_in & in_connack) != 0) {
    return encoded(connack_packet{false, reason_code::success, props}, protocol_version::v5);
  }
  if ((allowed_in & in_publish) != 0) {
    publish_packet p;
    p.topic = "t";
    p.props = props;
    return encoded(p, protocol_version::v5);
  }
  connect_packet c;
  c.version = protocol_version::v5;
  c.client_id = "c";
  c.props = props;
  return encoded(c, protocol_version::v5);
}

TEST(codec, property_checks_refuse_their_values) {
  int checked = 0;
  for_each_property([&](const auto& row) {
    if (row.check.rule == property_rule::none) return;
    SCOPED_TRACE(std::string(row.name));
    ++checked;
    properties props;
    set_refused(props.*row.member);
    auto refusal =
        decode_refusal(encoded_where_allowed(props, row.allowed_in), protocol_version::v5);
    EXPECT_EQ(refusal.reason, reason_code::protocol_error);
    switch (row.id) {
      case 0x0B:
        EXPECT_EQ(refusal.what, "subscription identifier 0");
        break;
      case 0x21:
        EXPECT_EQ(refusal.what, "receive maximum 0");
        break;
      case 0x27:
        EXPECT_EQ(refusal.what, "maximum packet size 0");
        break;
      default:
        EXPECT_EQ(refusal.what, "property value must be 0 or 1");
        break;
    }
  });
  // The eight 0-or-1 bytes, and subscription identifier, receive maximum, maximum packet size.
  EXPECT_EQ(checked, 11);
}

TEST(codec, property_repeats_follow_the_table) {
  // A PUBLISH carries one subscription identifier per matching subscription; a SUBSCRIBE one.
  publish_packet publish;
  publish.topic = "t";
  publish.props.subscription_identifiers = {1, 2};
  EXPECT_EQ(std::get<publish_packet>(round_trip(publish, protocol_version::v5)), publish);
  subscribe_packet subscribe;
  subscribe.packet_id = 1;
  subscribe.entries = {{"a/b", {}}};
  subscribe.props.subscription_identifiers = {1, 2};
  auto refusal = decode_refusal(encoded(subscribe, protocol_version::v5), protocol_version::v5);
  EXPECT_EQ(refusal.reason, reason_code::protocol_error);
  EXPECT_EQ(refusal.what, "property included more than once");
  // Any other property but user properties, at most once: payload format indicator twice.
  refusal = decode_refusal(std::string("\x30\x09\x00\x01t\x04\x01\x01\x01\x01x", 11),
                           protocol_version::v5);
  EXPECT_EQ(refusal.reason, reason_code::protocol_error);
  EXPECT_EQ(refusal.what, "property included more than once");
  // User properties repeat anywhere, the same name included.
  connack_packet connack;
  connack.props.user = {{"k", "1"}, {"k", "2"}};
  EXPECT_EQ(std::get<connack_packet>(round_trip(connack, protocol_version::v5)), connack);
}

}  // namespace
}  // namespace nimbus::mqtt

namespace nimbus::mqtt {
namespace {
TEST(codec, property_blobs_round_trip) {
  properties p;
  p.message_expiry_interval = 5;
  p.user = {{"a", "b"}};
  p.subscription_identifiers = {3, 4};
  EXPECT_EQ(decode_properties(encode_properties(p)), p);
  EXPECT_EQ(decode_properties(encode_properties(properties{})), properties{});
  EXPECT_FALSE(decode_properties(std::string("\x05\x02", 2)));
}
}  // namespace
}  // namespace nimbus::mqtt
