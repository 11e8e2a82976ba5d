// The bridge's MQTT client session against a scripted remote (Boost.MQTT5's test_broker idea):
// the fake reads what the session wrote with the same codec and answers with packets each test
// names, on a clock the test moves. No sockets, no waiting.
#include "bridge/client_session.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "mqtt/codec.hpp"

namespace nimbus::bridge {
namespace {

using mqtt::packet_type;
using mqtt::protocol_version;
using mqtt::reason_code;
using namespace std::chrono_literals;

// The remote broker's side of the wire.
class fake_remote {
 public:
  explicit fake_remote(protocol_version version) : version_(version) {}

  // Every packet in `bytes`, which must be whole, well-formed packets.
  std::vector<mqtt::packet> read(std::string_view bytes) const {
    std::vector<mqtt::packet> packets;
    while (!bytes.empty()) {
      const auto header = mqtt::read_frame_header(bytes);
      const auto* frame = std::get_if<mqtt::frame_header>(&header);
      if (frame == nullptr || bytes.size() < frame->total_size()) {
        ADD_FAILURE() << "the session wrote a partial or bad frame";
        break;
      }
      auto decoded = mqtt::decode_packet(
          *frame, bytes.substr(frame->header_size, frame->remaining_length), version_);
      if (auto* error = std::get_if<mqtt::decode_error>(&decoded)) {
        ADD_FAILURE() << "the session wrote an undecodable packet: " << error->what;
        break;
      }
      packets.push_back(std::move(std::get<mqtt::packet>(decoded)));
      bytes.remove_prefix(frame->total_size());
    }
    return packets;
  }

  std::string bytes(const mqtt::packet& packet) const {
    std::string out;
    mqtt::encode(packet, version_, out);
    return out;
  }

 private:
  protocol_version version_;
};

// One session, its remote and the time.
struct bridge_link {
  explicit bridge_link(protocol_version version, session_options options = {})
      : remote(version), session([&] {
          options.version = version;
          return options;
        }()) {}

  std::vector<mqtt::packet> written() { return remote.read(session.take_output()); }
  std::vector<session_event> receive(const mqtt::packet& packet) {
    return session.feed(remote.bytes(packet), now);
  }

  // CONNECT, then an accepting CONNACK carrying `props`.
  connack_received establish(mqtt::properties props = {}, bool session_present = false,
                             connect_params params = {}) {
    if (params.client_id.empty()) params.client_id = "edge-1";
    session.connect(params, now);
    written();
    auto events =
        receive(mqtt::connack_packet{session_present, reason_code::success, std::move(props)});
    EXPECT_EQ(session.state(), session_state::connected);
    if (events.empty() || !std::holds_alternative<connack_received>(events[0])) {
      ADD_FAILURE() << "no CONNACK event";
      return {};
    }
    return std::get<connack_received>(events[0]);
  }

  fake_remote remote;
  client_session session;
  steady_time now{};
};

outbound_message message(std::string topic, std::string payload, std::uint8_t qos,
                         std::uint64_t cookie = 0) {
  return outbound_message{.topic = std::move(topic),
                          .payload = std::move(payload),
                          .qos = qos,
                          .retain = false,
                          .props = {},
                          .cookie = cookie};
}

mqtt::publish_packet remote_publish(std::string topic, std::string payload, std::uint8_t qos,
                                    std::uint16_t packet_id, bool dup = false) {
  return mqtt::publish_packet{.dup = dup,
                              .qos = qos,
                              .retain = false,
                              .topic = std::move(topic),
                              .packet_id = packet_id,
                              .props = {},
                              .payload = std::move(payload)};
}

mqtt::ack_packet ack(packet_type type, std::uint16_t packet_id,
                     reason_code reason = reason_code::success) {
  return mqtt::ack_packet{.type = type, .packet_id = packet_id, .reason = reason, .props = {}};
}

// One line per event, so a sequence compares and prints as text.
std::string describe(const session_event& event) {
  struct visitor {
    std::string operator()(const connack_received& e) const {
      return "connack accepted=" + std::to_string(e.is_accepted) +
             " present=" + std::to_string(e.session_present) + " " + std::string(e.reason_text());
    }
    std::string operator()(const suback_received& e) const {
      std::string s = "suback " + std::to_string(e.packet_id);
      for (const auto& r : e.results)
        s += " " + r.filter + "=" + std::to_string(static_cast<int>(r.reason));
      return s;
    }
    std::string operator()(const publish_received& e) const {
      return "publish " + e.packet.topic + " " + e.packet.payload + " qos" +
             std::to_string(e.packet.qos) + " id" + std::to_string(e.packet.packet_id);
    }
    std::string operator()(const publish_completed& e) const {
      return "completed id" + std::to_string(e.packet_id) + " cookie" + std::to_string(e.cookie) +
             " " + std::string(mqtt::to_string(e.reason));
    }
    std::string operator()(const messages_returned& e) const {
      std::string s = "returned";
      for (const auto& m : e.messages) s += " " + std::to_string(m.cookie);
      return s;
    }
    std::string operator()(const server_disconnected& e) const {
      return "server disconnected " + std::string(mqtt::to_string(e.reason));
    }
    std::string operator()(const link_failed& e) const {
      return "link failed " + std::string(mqtt::to_string(e.reason)) + ": " + std::string(e.what);
    }
  };
  return std::visit(visitor{}, event);
}

std::vector<std::string> describe(const std::vector<session_event>& events) {
  std::vector<std::string> lines;
  lines.reserve(events.size());
  for (const auto& e : events) lines.push_back(describe(e));
  return lines;
}

template <class Packet>
const Packet& as(const mqtt::packet& packet) {
  EXPECT_TRUE(std::holds_alternative<Packet>(packet));
  return std::get<Packet>(packet);
}

// --- CONNECT and CONNACK ----------------------------------------------------------------

TEST(ClientSession, ConnectV311CarriesCredentialsWillAndTheBridgeFlag) {
  bridge_link link(protocol_version::v311);
  connect_params params{.client_id = "edge-1",
                        .clean_start = false,
                        .session_expiry = 3600,
                        .keep_alive = 30,
                        .username = "bridge",
                        .password = "s3cret",
                        .will = notification_will(notification_topic("edge-1")),
                        .bridge_flag = true};
  link.session.connect(params, link.now);
  EXPECT_EQ(link.session.state(), session_state::connecting);
  const std::string bytes = link.session.take_output();
  ASSERT_GT(bytes.size(), 9u);
  EXPECT_EQ(static_cast<std::uint8_t>(bytes[8]), 0x84);  // protocol level 4 | 0x80
  const auto packets = link.remote.read(bytes);
  ASSERT_EQ(packets.size(), 1u);
  const auto& connect = as<mqtt::connect_packet>(packets[0]);
  EXPECT_EQ(connect.version, protocol_version::v311);
  EXPECT_TRUE(connect.bridge);
  EXPECT_EQ(connect.client_id, "edge-1");
  EXPECT_FALSE(connect.clean_start);
  EXPECT_EQ(connect.keep_alive, 30);
  EXPECT_EQ(connect.username, "bridge");
  EXPECT_EQ(connect.password, "s3cret");
  ASSERT_TRUE(connect.will.has_value());
  EXPECT_EQ(connect.will->topic, "$SYS/broker/connection/edge-1/state");
  EXPECT_EQ(connect.will->payload, "0");
  EXPECT_EQ(connect.will->qos, 1);
  EXPECT_TRUE(connect.will->retain);
}

TEST(ClientSession, ConnectV5AnnouncesSessionExpiryAndOurLimitsButNoBridgeFlag) {
  bridge_link link(protocol_version::v5,
                   {.max_in_flight = 20, .receive_maximum = 100, .maximum_packet_size = 65536});
  link.session.connect({.client_id = "edge-1",
                        .clean_start = false,
                        .session_expiry = 3600,
                        .keep_alive = 60,
                        .bridge_flag = true},
                       link.now);
  const auto packets = link.written();
  ASSERT_EQ(packets.size(), 1u);
  const auto& connect = as<mqtt::connect_packet>(packets[0]);
  EXPECT_EQ(connect.version, protocol_version::v5);
  EXPECT_FALSE(connect.bridge);
  EXPECT_EQ(connect.props.session_expiry_interval, 3600u);
  EXPECT_EQ(connect.props.receive_maximum, 100);
  EXPECT_EQ(connect.props.maximum_packet_size, 65536u);
  EXPECT_FALSE(connect.will.has_value());
}

TEST(ClientSession, ConnackV5GivesTheServersLimits) {
  bridge_link link(protocol_version::v5);
  mqtt::properties props;
  props.receive_maximum = 10;
  props.maximum_packet_size = 4096;
  props.maximum_qos = 1;
  props.retain_available = 0;
  props.server_keep_alive = 20;
  props.assigned_client_identifier = "auto-7";
  const auto connack = link.establish(props);
  EXPECT_TRUE(connack.is_accepted);
  EXPECT_FALSE(connack.session_present);
  EXPECT_EQ(connack.assigned_client_id, "auto-7");
  EXPECT_EQ(connack.limits.receive_maximum, 10);
  EXPECT_EQ(connack.limits.maximum_packet_size, 4096u);
  EXPECT_EQ(connack.limits.maximum_qos, 1);
  EXPECT_FALSE(connack.limits.is_retain_available);
  EXPECT_EQ(connack.limits.keep_alive, 20);
  EXPECT_EQ(link.session.window(), 10u);
}

TEST(ClientSession, ConnackV311RefusalsNameTheirReason) {
  const std::pair<std::uint8_t, std::string_view> refusals[] = {{1, "unsupported protocol version"},
                                                                {2, "client identifier not valid"},
                                                                {3, "server unavailable"},
                                                                {4, "bad user name or password"},
                                                                {5, "not authorized"}};
  for (const auto& [code, text] : refusals) {
    bridge_link link(protocol_version::v311);
    link.session.connect({.client_id = "edge-1"}, link.now);
    link.session.take_output();
    const char connack[] = {0x20, 0x02, 0x00, static_cast<char>(code)};
    const auto events = link.session.feed({connack, sizeof connack}, link.now);
    ASSERT_EQ(events.size(), 1u);
    const auto& refused = std::get<connack_received>(events[0]);
    EXPECT_FALSE(refused.is_accepted);
    EXPECT_EQ(refused.reason_text(), text);
    EXPECT_EQ(link.session.state(), session_state::disconnected);
    // Whatever follows on that link is not read.
    EXPECT_TRUE(link.receive(remote_publish("a", "x", 0, 0)).empty());
  }
}

TEST(ClientSession, ConnackV5RefusalCarriesReasonString) {
  bridge_link link(protocol_version::v5);
  link.session.connect({.client_id = "edge-1"}, link.now);
  link.session.take_output();
  mqtt::connack_packet connack{false, reason_code::not_authorized, {}};
  connack.props.reason_string = "no bridges here";
  const auto events = link.receive(connack);
  ASSERT_EQ(events.size(), 1u);
  const auto& refused = std::get<connack_received>(events[0]);
  EXPECT_FALSE(refused.is_accepted);
  EXPECT_EQ(refused.reason, reason_code::not_authorized);
  EXPECT_EQ(refused.reason_string, "no bridges here");
  EXPECT_EQ(link.session.state(), session_state::disconnected);
}

TEST(ClientSession, SessionPresentAfterCleanStartIsAProtocolError) {
  bridge_link link(protocol_version::v311);
  link.session.connect({.client_id = "edge-1", .clean_start = true}, link.now);
  link.session.take_output();
  const auto events = link.receive(mqtt::connack_packet{true, reason_code::success, {}});
  EXPECT_EQ(describe(events),
            std::vector<std::string>{"link failed protocol error: session present after a clean "
                                     "start"});
}

// --- SUBSCRIBE --------------------------------------------------------------------------

TEST(ClientSession, SubscribeV5WithNoLocalAndSubackPerFilter) {
  bridge_link link(protocol_version::v5);
  link.establish();
  const mqtt::subscribe_entry entries[] = {
      {"remote/#", {.qos = 1, .no_local = true, .retain_as_published = true}},
      {"secret/#", {.qos = 2, .no_local = true, .retain_as_published = true}}};
  const auto packet_id = link.session.subscribe(entries, link.now);
  ASSERT_NE(packet_id, 0);
  const auto packets = link.written();
  ASSERT_EQ(packets.size(), 1u);
  const auto& subscribe = as<mqtt::subscribe_packet>(packets[0]);
  ASSERT_EQ(subscribe.entries.size(), 2u);
  EXPECT_TRUE(subscribe.entries[0].options.no_local);
  EXPECT_TRUE(subscribe.entries[0].options.retain_as_published);
  EXPECT_EQ(subscribe.entries[1].options.qos, 2);

  const auto events = link.receive(mqtt::suback_packet{
      packet_id, {}, {reason_code::granted_qos_1, reason_code::not_authorized}});
  ASSERT_EQ(events.size(), 1u);
  const auto& suback = std::get<suback_received>(events[0]);
  ASSERT_EQ(suback.results.size(), 2u);
  EXPECT_EQ(suback.results[0].filter, "remote/#");
  EXPECT_TRUE(suback.results[0].is_granted());
  EXPECT_EQ(suback.results[0].reason, reason_code::granted_qos_1);
  EXPECT_FALSE(suback.results[1].is_granted());
}

TEST(ClientSession, SubscribeV311RefusalAndMismatchedSuback) {
  bridge_link link(protocol_version::v311);
  link.establish();
  const mqtt::subscribe_entry entries[] = {{"a/#", {.qos = 2}}, {"b/#", {.qos = 0}}};
  const auto first = link.session.subscribe(entries, link.now);
  link.written();
  EXPECT_EQ(describe(link.receive(mqtt::suback_packet{
                first, {}, {reason_code::granted_qos_1, reason_code::unspecified_error}})),
            std::vector<std::string>{"suback 1 a/#=1 b/#=128"});
  const auto second = link.session.subscribe(entries, link.now);
  link.written();
  EXPECT_EQ(
      describe(link.receive(mqtt::suback_packet{second, {}, {reason_code::success}})),
      std::vector<std::string>{"link failed protocol error: SUBACK without one code per filter"});
}

TEST(ClientSession, NothingIsWrittenBeforeTheConnack) {
  bridge_link link(protocol_version::v311);
  link.session.connect({.client_id = "edge-1"}, link.now);
  link.session.take_output();
  const mqtt::subscribe_entry entries[] = {{"a/#", {.qos = 1}}};
  EXPECT_EQ(link.session.subscribe(entries, link.now), 0);
  EXPECT_EQ(link.session.publish(message("t", "x", 1), link.now).status,
            publish_status::not_connected);
  EXPECT_FALSE(link.session.has_output());
}

// --- PUBLISH out ------------------------------------------------------------------------

TEST(ClientSession, Qos0OutNeedsNoAnswer) {
  bridge_link link(protocol_version::v311);
  link.establish();
  const auto result = link.session.publish(message("up/t", "hello", 0, 7), link.now);
  EXPECT_EQ(result.status, publish_status::sent);
  EXPECT_EQ(result.packet_id, 0);
  EXPECT_EQ(link.session.in_flight(), 0u);
  const auto packets = link.written();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(as<mqtt::publish_packet>(packets[0]), remote_publish("up/t", "hello", 0, 0));
}

TEST(ClientSession, Qos1OutCompletesAtPubackWithItsCookie) {
  bridge_link link(protocol_version::v5);
  link.establish();
  auto out = message("up/t", "hello", 1, 42);
  out.retain = true;
  out.props.user.emplace_back("origin", "edge");
  out.props.content_type = "text/plain";
  out.props.message_expiry_interval = 30;
  out.props.subscription_identifiers = {5};  // the local subscription's: not for the remote
  const auto result = link.session.publish(out, link.now);
  ASSERT_EQ(result.status, publish_status::sent);
  const auto packets = link.written();
  ASSERT_EQ(packets.size(), 1u);
  const auto& publish = as<mqtt::publish_packet>(packets[0]);
  EXPECT_EQ(publish.packet_id, result.packet_id);
  EXPECT_EQ(publish.qos, 1);
  EXPECT_TRUE(publish.retain);
  EXPECT_FALSE(publish.dup);
  EXPECT_EQ(publish.props.user, out.props.user);
  EXPECT_EQ(publish.props.content_type, "text/plain");
  EXPECT_EQ(publish.props.message_expiry_interval, 30u);
  EXPECT_TRUE(publish.props.subscription_identifiers.empty());
  EXPECT_EQ(link.session.in_flight_cookies(), std::vector<std::uint64_t>{42});

  EXPECT_EQ(describe(link.receive(ack(packet_type::puback, result.packet_id))),
            std::vector<std::string>{"completed id1 cookie42 success"});
  EXPECT_EQ(link.session.in_flight(), 0u);
  // A late second PUBACK is nobody's.
  EXPECT_TRUE(link.receive(ack(packet_type::puback, result.packet_id)).empty());
}

TEST(ClientSession, Qos1OutRefusedByTheRemoteIsCompleteAndCounted) {
  bridge_link link(protocol_version::v5);
  link.establish();
  const auto result = link.session.publish(message("up/t", "x", 1, 9), link.now);
  link.written();
  const auto events =
      link.receive(ack(packet_type::puback, result.packet_id, reason_code::not_authorized));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_TRUE(std::get<publish_completed>(events[0]).is_refused());
  EXPECT_EQ(link.session.counters().refused, 1u);
}

TEST(ClientSession, Qos2OutReleasesAtPubrecAndCompletesAtPubcomp) {
  bridge_link link(protocol_version::v311);
  link.establish();
  const auto result = link.session.publish(message("up/t", "x", 2, 3), link.now);
  link.written();
  EXPECT_TRUE(link.receive(ack(packet_type::pubrec, result.packet_id)).empty());
  auto packets = link.written();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(as<mqtt::ack_packet>(packets[0]), ack(packet_type::pubrel, result.packet_id));
  // The server's PUBREC again (ours lost): released again.
  EXPECT_TRUE(link.receive(ack(packet_type::pubrec, result.packet_id)).empty());
  EXPECT_EQ(link.written().size(), 1u);
  EXPECT_EQ(describe(link.receive(ack(packet_type::pubcomp, result.packet_id))),
            std::vector<std::string>{"completed id1 cookie3 success"});
}

TEST(ClientSession, Qos2OutRefusedAtPubrecEndsThere) {
  bridge_link link(protocol_version::v5);
  link.establish();
  const auto result = link.session.publish(message("up/t", "x", 2, 3), link.now);
  link.written();
  EXPECT_EQ(describe(link.receive(
                ack(packet_type::pubrec, result.packet_id, reason_code::quota_exceeded))),
            std::vector<std::string>{"completed id1 cookie3 quota exceeded"});
  EXPECT_FALSE(link.session.has_output());
}

TEST(ClientSession, WrongKindOfAcknowledgementFailsTheLink) {
  bridge_link link(protocol_version::v5);
  link.establish();
  const auto result = link.session.publish(message("up/t", "x", 2), link.now);
  link.written();
  EXPECT_EQ(describe(link.receive(ack(packet_type::puback, result.packet_id))),
            std::vector<std::string>{
                "link failed protocol error: acknowledgement of the wrong kind for its QoS"});
  // MQTT 5: the session names the fault before the owner closes.
  const auto packets = link.written();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(as<mqtt::disconnect_packet>(packets[0]).reason, reason_code::protocol_error);
}

TEST(ClientSession, ReceiveMaximumBlocksAndACompletionUnblocks) {
  bridge_link link(protocol_version::v5);
  mqtt::properties props;
  props.receive_maximum = 2;
  link.establish(props);
  const auto first = link.session.publish(message("t", "1", 1, 1), link.now);
  const auto second = link.session.publish(message("t", "2", 2, 2), link.now);
  EXPECT_EQ(second.status, publish_status::sent);
  EXPECT_EQ(link.session.publish(message("t", "3", 1, 3), link.now).status,
            publish_status::would_block);
  // QoS 0 does not count against the window.
  EXPECT_EQ(link.session.publish(message("t", "0", 0), link.now).status, publish_status::sent);
  EXPECT_EQ(link.written().size(), 3u);

  link.receive(ack(packet_type::puback, first.packet_id));
  EXPECT_EQ(link.session.publish(message("t", "3", 1, 3), link.now).status, publish_status::sent);
  EXPECT_EQ(link.session.in_flight_cookies(), (std::vector<std::uint64_t>{2, 3}));
}

TEST(ClientSession, V311WindowIsTheConfiguredOne) {
  bridge_link link(protocol_version::v311, {.max_in_flight = 3});
  link.establish();
  EXPECT_EQ(link.session.window(), 3u);
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(link.session.publish(message("t", "x", 1), link.now).status, publish_status::sent);
  EXPECT_EQ(link.session.publish(message("t", "x", 2), link.now).status,
            publish_status::would_block);
}

TEST(ClientSession, MaximumPacketSizeRefusesAndCounts) {
  bridge_link link(protocol_version::v5);
  mqtt::properties props;
  props.maximum_packet_size = 100;
  link.establish(props);
  EXPECT_EQ(link.session.publish(message("t", std::string(200, 'x'), 1), link.now).status,
            publish_status::too_large);
  EXPECT_EQ(link.session.counters().too_large, 1u);
  EXPECT_FALSE(link.session.has_output());
  EXPECT_EQ(link.session.in_flight(), 0u);
  // 2 + 1 (topic) + 2 (id) + 1 (properties) + 90 payload = 96 body bytes, 98 in all: fits.
  EXPECT_EQ(link.session.publish(message("t", std::string(90, 'x'), 1), link.now).status,
            publish_status::sent);
}

TEST(ClientSession, MaximumQosDowngradesAndCounts) {
  bridge_link link(protocol_version::v5);
  mqtt::properties props;
  props.maximum_qos = 1;
  props.retain_available = 0;
  link.establish(props);
  auto out = message("t", "x", 2, 5);
  out.retain = true;
  const auto result = link.session.publish(out, link.now);
  EXPECT_TRUE(result.is_downgraded);
  EXPECT_EQ(link.session.counters().qos_downgraded, 1u);
  const auto packets = link.written();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(as<mqtt::publish_packet>(packets[0]).qos, 1);
  EXPECT_FALSE(as<mqtt::publish_packet>(packets[0]).retain);
  EXPECT_EQ(describe(link.receive(ack(packet_type::puback, result.packet_id))),
            std::vector<std::string>{"completed id1 cookie5 success"});
}

TEST(ClientSession, InvalidTopicsAreNotSent) {
  bridge_link link(protocol_version::v311);
  link.establish();
  for (const std::string& topic :
       std::vector<std::string>{"", "a/+", "a/#", "a\xff", std::string(70000, 'a')})
    EXPECT_EQ(link.session.publish(message(topic, "x", 1), link.now).status,
              publish_status::invalid_topic);
  EXPECT_FALSE(link.session.has_output());
}

TEST(ClientSession, PacketIdsWrapAndSkipThoseInUse) {
  bridge_link link(protocol_version::v311, {.max_in_flight = 2});
  link.establish();
  const auto held = link.session.publish(message("t", "held", 1), link.now);
  EXPECT_EQ(held.packet_id, 1);
  for (std::uint32_t expected = 2; expected <= 65535; ++expected) {
    const auto result = link.session.publish(message("t", "x", 1), link.now);
    ASSERT_EQ(result.packet_id, expected);
    link.session.take_output();
    link.receive(ack(packet_type::puback, result.packet_id));
  }
  EXPECT_EQ(link.session.publish(message("t", "x", 1), link.now).packet_id, 2);
}

// --- PUBLISH in -------------------------------------------------------------------------

TEST(ClientSession, Qos0InIsHandedOver) {
  bridge_link link(protocol_version::v5);
  link.establish();
  auto in = remote_publish("down/t", "cmd", 0, 0);
  in.props.message_expiry_interval = 60;
  in.retain = true;
  const auto events = link.receive(in);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(std::get<publish_received>(events[0]).packet, in);
  EXPECT_FALSE(link.session.has_output());
}

TEST(ClientSession, Qos1InIsAcknowledgedOnlyByTheOwner) {
  bridge_link link(protocol_version::v311);
  link.establish();
  EXPECT_EQ(describe(link.receive(remote_publish("down/t", "a", 1, 10))),
            std::vector<std::string>{"publish down/t a qos1 id10"});
  EXPECT_FALSE(link.session.has_output());
  // The server's resend before the local broker took it: not handed over twice.
  EXPECT_TRUE(link.receive(remote_publish("down/t", "a", 1, 10, true)).empty());
  EXPECT_EQ(link.session.counters().duplicates_received, 1u);
  link.session.acknowledge(10);
  const auto packets = link.written();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(as<mqtt::ack_packet>(packets[0]), ack(packet_type::puback, 10));
  // Acknowledged twice: answered once.
  link.session.acknowledge(10);
  EXPECT_FALSE(link.session.has_output());
}

TEST(ClientSession, Qos1InRefusedLocallyCarriesTheReasonOnV5) {
  bridge_link link(protocol_version::v5);
  link.establish();
  link.receive(remote_publish("down/t", "a", 1, 10));
  link.session.acknowledge(10, reason_code::not_authorized);
  const auto packets = link.written();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(as<mqtt::ack_packet>(packets[0]).reason, reason_code::not_authorized);
}

TEST(ClientSession, Qos2InDeliveredOnceThroughDuplicatesUntilPubrel) {
  bridge_link link(protocol_version::v5);
  link.establish();
  EXPECT_EQ(describe(link.receive(remote_publish("down/t", "a", 2, 7))),
            std::vector<std::string>{"publish down/t a qos2 id7"});
  EXPECT_TRUE(link.receive(remote_publish("down/t", "a", 2, 7, true)).empty());
  EXPECT_FALSE(link.session.has_output());  // no PUBREC before the owner's acknowledgement

  link.session.acknowledge(7);
  auto packets = link.written();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(as<mqtt::ack_packet>(packets[0]), ack(packet_type::pubrec, 7));
  // Again before PUBREL (our PUBREC lost): PUBREC again, no second delivery.
  EXPECT_TRUE(link.receive(remote_publish("down/t", "a", 2, 7, true)).empty());
  packets = link.written();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(as<mqtt::ack_packet>(packets[0]), ack(packet_type::pubrec, 7));
  EXPECT_EQ(link.session.counters().duplicates_received, 2u);

  EXPECT_TRUE(link.receive(ack(packet_type::pubrel, 7)).empty());
  packets = link.written();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(as<mqtt::ack_packet>(packets[0]), ack(packet_type::pubcomp, 7));
  // After the release the id is free: a new message with it is a new message.
  EXPECT_EQ(link.receive(remote_publish("down/t", "b", 2, 7)).size(), 1u);
  // A PUBREL again for a message already released is answered "not found".
  link.session.acknowledge(7);
  link.receive(ack(packet_type::pubrel, 7));
  link.written();
  link.receive(ack(packet_type::pubrel, 7));
  packets = link.written();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(as<mqtt::ack_packet>(packets[0]).reason, reason_code::packet_identifier_not_found);
}

TEST(ClientSession, PubrelBeforeOurPubrecFailsTheLink) {
  bridge_link link(protocol_version::v311);
  link.establish();
  link.receive(remote_publish("down/t", "a", 2, 7));
  EXPECT_EQ(describe(link.receive(ack(packet_type::pubrel, 7))),
            std::vector<std::string>{"link failed protocol error: PUBREL before our PUBREC"});
}

TEST(ClientSession, OurReceiveMaximumIsEnforcedOnV5) {
  bridge_link link(protocol_version::v5, {.receive_maximum = 2});
  link.establish();
  link.receive(remote_publish("d", "1", 1, 1));
  link.receive(remote_publish("d", "2", 2, 2));
  EXPECT_EQ(describe(link.receive(remote_publish("d", "3", 1, 3))),
            std::vector<std::string>{"link failed receive maximum exceeded: unacknowledged "
                                     "messages over our receive maximum"});
}

TEST(ClientSession, TopicAliasFromTheServerFailsTheLink) {
  bridge_link link(protocol_version::v5);
  link.establish();
  auto in = remote_publish("d", "x", 0, 0);
  in.props.topic_alias = 1;
  EXPECT_EQ(describe(link.receive(in)),
            std::vector<std::string>{"link failed topic alias invalid: topic alias (we allow "
                                     "none)"});
}

// --- reconnecting -----------------------------------------------------------------------

// Three messages in flight: QoS 1 unanswered, QoS 2 unanswered, QoS 2 received (PUBREC).
std::vector<std::uint16_t> three_in_flight(bridge_link& link) {
  std::vector<std::uint16_t> ids;
  ids.push_back(link.session.publish(message("t", "q1", 1, 100), link.now).packet_id);
  ids.push_back(link.session.publish(message("t", "q2", 2, 101), link.now).packet_id);
  ids.push_back(link.session.publish(message("t", "q2-received", 2, 102), link.now).packet_id);
  link.receive(ack(packet_type::pubrec, ids[2]));
  link.written();
  link.session.link_closed();
  EXPECT_EQ(link.session.state(), session_state::disconnected);
  return ids;
}

TEST(ClientSession, ResumedSessionResendsWithDupAndPendingPubrels) {
  bridge_link link(protocol_version::v311);
  link.establish({}, false, {.client_id = "edge-1", .clean_start = false});
  const auto ids = three_in_flight(link);

  link.session.connect({.client_id = "edge-1", .clean_start = false}, link.now);
  EXPECT_EQ(link.written().size(), 1u);  // CONNECT only: the resends wait for the CONNACK
  const auto events = link.receive(mqtt::connack_packet{true, reason_code::success, {}});
  EXPECT_EQ(describe(events), std::vector<std::string>{"connack accepted=1 present=1 success"});
  const auto packets = link.written();
  ASSERT_EQ(packets.size(), 3u);
  auto expected = remote_publish("t", "q1", 1, ids[0], true);
  EXPECT_EQ(as<mqtt::publish_packet>(packets[0]), expected);
  expected = remote_publish("t", "q2", 2, ids[1], true);
  EXPECT_EQ(as<mqtt::publish_packet>(packets[1]), expected);
  EXPECT_EQ(as<mqtt::ack_packet>(packets[2]), ack(packet_type::pubrel, ids[2]));

  EXPECT_EQ(describe(link.receive(ack(packet_type::pubcomp, ids[2]))),
            std::vector<std::string>{"completed id3 cookie102 success"});
  EXPECT_EQ(link.session.in_flight_cookies(), (std::vector<std::uint64_t>{100, 101}));
}

TEST(ClientSession, LostSessionReturnsUnreceivedMessagesInOrder) {
  bridge_link link(protocol_version::v5);
  link.establish({}, false, {.client_id = "edge-1", .clean_start = false, .session_expiry = 60});
  const auto ids = three_in_flight(link);

  link.session.connect({.client_id = "edge-1", .clean_start = false, .session_expiry = 60},
                       link.now);
  link.written();
  const auto events = link.receive(mqtt::connack_packet{false, reason_code::success, {}});
  EXPECT_EQ(describe(events),
            (std::vector<std::string>{"connack accepted=1 present=0 success",
                                      "completed id3 cookie102 success", "returned 100 101"}));
  const auto& returned = std::get<messages_returned>(events[2]);
  EXPECT_EQ(returned.messages[1].qos, 2);  // as given, for the owner to publish again
  EXPECT_EQ(returned.messages[1].payload, "q2");
  EXPECT_FALSE(link.session.has_output());
  EXPECT_EQ(link.session.in_flight(), 0u);
}

TEST(ClientSession, ResumeSendsOnlyTheNewWindowAndTheRestAsItDrains) {
  bridge_link link(protocol_version::v5);
  link.establish({}, false, {.client_id = "edge-1", .clean_start = false, .session_expiry = 60});
  for (std::uint64_t cookie = 1; cookie <= 3; ++cookie)
    link.session.publish(message("t", "x", 1, cookie), link.now);
  link.written();
  link.session.link_closed();

  link.session.connect({.client_id = "edge-1", .clean_start = false, .session_expiry = 60},
                       link.now);
  link.written();
  mqtt::properties props;
  props.receive_maximum = 1;
  link.receive(mqtt::connack_packet{true, reason_code::success, props});
  auto packets = link.written();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(as<mqtt::publish_packet>(packets[0]).packet_id, 1);
  link.receive(ack(packet_type::puback, 1));
  packets = link.written();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(as<mqtt::publish_packet>(packets[0]).packet_id, 2);
  EXPECT_TRUE(as<mqtt::publish_packet>(packets[0]).dup);
  EXPECT_EQ(link.session.publish(message("t", "x", 1), link.now).status,
            publish_status::would_block);
}

TEST(ClientSession, ResendCountsTheMessageExpiryDown) {
  bridge_link link(protocol_version::v5);
  link.establish({}, false, {.client_id = "edge-1", .clean_start = false, .session_expiry = 600});
  auto out = message("t", "x", 1);
  out.props.message_expiry_interval = 100;
  auto second = out;
  second.props.message_expiry_interval = 10;
  link.session.publish(out, link.now);
  link.session.publish(second, link.now);
  link.written();
  link.session.link_closed();
  link.now += 30s;
  link.session.connect({.client_id = "edge-1", .clean_start = false, .session_expiry = 600},
                       link.now);
  link.written();
  link.receive(mqtt::connack_packet{true, reason_code::success, {}});
  const auto packets = link.written();
  ASSERT_EQ(packets.size(), 2u);
  EXPECT_EQ(as<mqtt::publish_packet>(packets[0]).props.message_expiry_interval, 70u);
  EXPECT_EQ(as<mqtt::publish_packet>(packets[1]).props.message_expiry_interval, 1u);

  // Counted from the first send again, not from the last resend.
  link.session.link_closed();
  link.now += 20s;
  link.session.connect({.client_id = "edge-1", .clean_start = false, .session_expiry = 600},
                       link.now);
  link.written();
  link.receive(mqtt::connack_packet{true, reason_code::success, {}});
  EXPECT_EQ(as<mqtt::publish_packet>(link.written().at(0)).props.message_expiry_interval, 50u);
}

TEST(ClientSession, InboundStateAcrossReconnects) {
  bridge_link link(protocol_version::v311);
  const connect_params persistent{.client_id = "edge-1", .clean_start = false};
  link.establish({}, false, persistent);
  link.receive(remote_publish("d", "q1", 1, 5));
  link.receive(remote_publish("d", "q2", 2, 6));
  link.session.link_closed();
  // The local broker takes both while the link is down: the answers wait for the resends.
  link.session.acknowledge(5);
  link.session.acknowledge(6);
  EXPECT_FALSE(link.session.has_output());

  link.establish({}, true, persistent);
  EXPECT_FALSE(link.session.has_output());
  EXPECT_TRUE(link.receive(remote_publish("d", "q1", 1, 5, true)).empty());
  EXPECT_TRUE(link.receive(remote_publish("d", "q2", 2, 6, true)).empty());
  const auto packets = link.written();
  ASSERT_EQ(packets.size(), 2u);
  EXPECT_EQ(as<mqtt::ack_packet>(packets[0]), ack(packet_type::puback, 5));
  EXPECT_EQ(as<mqtt::ack_packet>(packets[1]), ack(packet_type::pubrec, 6));
}

TEST(ClientSession, AcknowledgementFromALostSessionDoesNotAnswerANewMessage) {
  bridge_link link(protocol_version::v311);
  const connect_params persistent{.client_id = "edge-1", .clean_start = false};
  link.establish({}, false, persistent);
  link.receive(remote_publish("d", "old", 1, 5));
  link.session.link_closed();
  link.establish({}, false, persistent);  // the server lost the session
  link.receive(remote_publish("d", "new", 1, 5));
  link.session.acknowledge(5);  // the old message's
  EXPECT_FALSE(link.session.has_output());
  link.session.acknowledge(5);  // the new one's
  const auto packets = link.written();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(as<mqtt::ack_packet>(packets[0]), ack(packet_type::puback, 5));
}

// --- keep-alive -------------------------------------------------------------------------

TEST(ClientSession, PingAfterKeepAliveAndDeadLinkAfterOneAndAHalf) {
  bridge_link link(protocol_version::v311);
  link.establish({}, false, {.client_id = "edge-1", .keep_alive = 10});
  const auto start = link.now;
  EXPECT_EQ(link.session.next_deadline(), start + 10s);
  EXPECT_TRUE(link.session.tick(start + 9s).empty());
  EXPECT_FALSE(link.session.has_output());

  link.now = start + 10s;
  EXPECT_TRUE(link.session.tick(link.now).empty());
  auto packets = link.written();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<mqtt::pingreq_packet>(packets[0]));
  link.now = start + 11s;
  EXPECT_TRUE(link.receive(mqtt::pingresp_packet{}).empty());
  EXPECT_EQ(link.session.next_deadline(), start + 20s);

  // The server falls silent: a ping at 20 s, the link declared dead at 11 + 15 = 26 s.
  link.session.tick(start + 20s);
  EXPECT_EQ(link.written().size(), 1u);
  EXPECT_EQ(link.session.next_deadline(), start + 26s);
  EXPECT_TRUE(link.session.tick(start + 25s).empty());
  EXPECT_EQ(describe(link.session.tick(start + 26s)),
            std::vector<std::string>{
                "link failed keep alive timeout: nothing from the server for 1.5 x keep alive"});
  EXPECT_EQ(link.session.state(), session_state::disconnected);
  EXPECT_FALSE(link.session.next_deadline().has_value());
}

TEST(ClientSession, ServerSilenceIsPingedEvenWhileWeKeepWriting) {
  bridge_link link(protocol_version::v5);
  link.establish({}, false, {.client_id = "edge-1", .keep_alive = 10});
  const auto start = link.now;
  for (int second = 1; second <= 9; ++second) {
    link.now = start + std::chrono::seconds(second);
    link.session.publish(message("t", "x", 0), link.now);
  }
  link.written();
  link.session.tick(start + 10s);
  const auto packets = link.written();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<mqtt::pingreq_packet>(packets[0]));
}

TEST(ClientSession, ServerKeepAliveReplacesOurs) {
  bridge_link link(protocol_version::v5);
  mqtt::properties props;
  props.server_keep_alive = 4;
  link.establish(props, false, {.client_id = "edge-1", .keep_alive = 60});
  EXPECT_EQ(link.session.next_deadline(), link.now + 4s);
}

TEST(ClientSession, NoConnackWithinOneAndAHalfKeepAliveFails) {
  bridge_link link(protocol_version::v311);
  link.session.connect({.client_id = "edge-1", .keep_alive = 20}, link.now);
  EXPECT_EQ(link.session.next_deadline(), link.now + 30s);
  const auto events = link.session.tick(link.now + 30s);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(std::get<link_failed>(events[0]).reason, reason_code::keep_alive_timeout);
}

TEST(ClientSession, KeepAliveZeroMeansNoTimers) {
  bridge_link link(protocol_version::v311);
  link.establish({}, false, {.client_id = "edge-1", .keep_alive = 0});
  EXPECT_FALSE(link.session.next_deadline().has_value());
  EXPECT_TRUE(link.session.tick(link.now + 1000h).empty());
}

// --- bad input and framing --------------------------------------------------------------

TEST(ClientSession, MalformedPacketsFailTheLinkAndStopReading) {
  struct bad_input {
    std::string bytes;
    std::string expected;
  };
  const bad_input cases[] = {
      {std::string("\x36\x05\x00\x01t\x00\x01", 7), "link failed malformed packet: PUBLISH QoS 3"},
      {std::string("\x30\xff\xff\xff\xff\x01", 6),
       "link failed malformed packet: remaining length longer than four bytes"},
      {std::string("\x00\x00", 2), "link failed malformed packet: reserved packet type 0"},
      {std::string("\x40\x02\x00\x00", 4), "link failed malformed packet: packet identifier 0"},
      {std::string("\xd0\x01\x00", 3), "link failed malformed packet: bad PING packet"},
      {std::string("\x82\x06\x00\x01\x00\x01t\x00", 8),
       "link failed protocol error: packet type a server does not send this client"},
      {std::string("\x20\x03\x00\x00\x00", 5), "link failed protocol error: a second CONNACK"},
  };
  for (const auto& bad : cases) {
    bridge_link link(protocol_version::v5);
    link.establish();
    EXPECT_EQ(describe(link.session.feed(bad.bytes, link.now)),
              std::vector<std::string>{bad.expected});
    EXPECT_EQ(link.session.state(), session_state::disconnected);
    EXPECT_TRUE(link.receive(remote_publish("t", "x", 0, 0)).empty());
  }
}

TEST(ClientSession, PacketBeforeConnackFailsTheLink) {
  bridge_link link(protocol_version::v311);
  link.session.connect({.client_id = "edge-1"}, link.now);
  link.session.take_output();
  EXPECT_EQ(describe(link.receive(remote_publish("t", "x", 0, 0))),
            std::vector<std::string>{"link failed protocol error: packet before CONNACK"});
  EXPECT_FALSE(link.session.has_output());  // no DISCONNECT without a connection
}

TEST(ClientSession, OversizedPacketFailsBeforeItsBodyArrives) {
  bridge_link link(protocol_version::v5, {.maximum_packet_size = 1024});
  link.establish();
  // A PUBLISH announcing 2,048 bytes: refused on its header.
  EXPECT_EQ(describe(link.session.feed(std::string("\x30\x80\x10", 3), link.now)),
            std::vector<std::string>{
                "link failed packet too large: packet over our maximum packet size"});
  const auto packets = link.written();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(as<mqtt::disconnect_packet>(packets[0]).reason, reason_code::packet_too_large);
}

TEST(ClientSession, ServerDisconnectV5) {
  bridge_link link(protocol_version::v5);
  link.establish();
  mqtt::disconnect_packet disconnect{reason_code::server_shutting_down, {}};
  disconnect.props.reason_string = "maintenance";
  const auto events = link.receive(disconnect);
  ASSERT_EQ(events.size(), 1u);
  const auto& gone = std::get<server_disconnected>(events[0]);
  EXPECT_EQ(gone.reason, reason_code::server_shutting_down);
  EXPECT_EQ(gone.reason_string, "maintenance");
  EXPECT_EQ(link.session.state(), session_state::disconnected);
}

TEST(ClientSession, OurDisconnectIsCleanAndKeepsTheInFlightState) {
  bridge_link link(protocol_version::v5);
  link.establish();
  link.session.publish(message("t", "x", 1, 1), link.now);
  link.written();
  link.session.disconnect(link.now);
  const auto packets = link.written();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(as<mqtt::disconnect_packet>(packets[0]).reason, reason_code::success);
  EXPECT_EQ(link.session.state(), session_state::disconnected);
  EXPECT_EQ(link.session.in_flight(), 1u);
}

// The same conversation fed whole and one byte at a time gives the same events and answers.
TEST(ClientSession, ByteByByteFeedingMatchesWholeFeeding) {
  for (const auto version : {protocol_version::v311, protocol_version::v5}) {
    std::vector<std::string> runs[2];
    std::string answers[2];
    for (int by_byte = 0; by_byte < 2; ++by_byte) {
      bridge_link link(version);
      link.session.connect({.client_id = "edge-1"}, link.now);
      link.session.take_output();
      auto feed = [&](const std::string& bytes) {
        std::vector<session_event> events;
        if (by_byte == 0) return link.session.feed(bytes, link.now);
        for (char c : bytes) {
          auto more = link.session.feed(std::string_view(&c, 1), link.now);
          for (auto& e : more) events.push_back(std::move(e));
        }
        return events;
      };
      mqtt::properties props;
      props.receive_maximum = 5;
      auto lines = describe(
          feed(link.remote.bytes(mqtt::connack_packet{false, reason_code::success, props})));
      const auto sent = link.session.publish(message("up", "x", 2, 1), link.now);
      std::string script;
      for (const mqtt::packet& p :
           {mqtt::packet{remote_publish("down/a", "1", 1, 1)},
            mqtt::packet{remote_publish("down/b", std::string(300, 'b'), 2, 2)},
            mqtt::packet{remote_publish("down/c", "3", 0, 0)},
            mqtt::packet{ack(packet_type::pubrec, sent.packet_id)},
            mqtt::packet{ack(packet_type::pubcomp, sent.packet_id)},
            mqtt::packet{mqtt::pingresp_packet{}}})
        script += link.remote.bytes(p);
      for (auto& line : describe(feed(script))) lines.push_back(std::move(line));
      runs[by_byte] = lines;
      answers[by_byte] = link.session.take_output();
    }
    EXPECT_EQ(runs[0], runs[1]);
    EXPECT_EQ(answers[0], answers[1]);
    EXPECT_EQ(runs[0], (std::vector<std::string>{
                           "connack accepted=1 present=0 success", "publish down/a 1 qos1 id1",
                           "publish down/b " + std::string(300, 'b') + " qos2 id2",
                           "publish down/c 3 qos0 id0", "completed id1 cookie1 success"}));
  }
}

// Random bytes after the CONNACK: whatever they are, the session ends in an event or waits for
// more, and never crashes (the sanitizer build checks the rest).
TEST(ClientSession, RandomBytesNeverCrash) {
  std::mt19937 random(14);
  int failures = 0;
  for (int round = 0; round < 2000; ++round) {
    bridge_link link(round % 2 == 0 ? protocol_version::v5 : protocol_version::v311,
                     {.maximum_packet_size = 512});
    link.establish();
    link.session.publish(message("t", "x", 2, 1), link.now);
    std::string bytes(random() % 64, '\0');
    for (auto& b : bytes) b = static_cast<char>(random() % 256);
    // A plausible first byte half of the time, so the decoders are reached.
    if (!bytes.empty() && round % 2 == 0) bytes[0] = static_cast<char>((random() % 15 + 1) << 4);
    for (const auto& event : link.session.feed(bytes, link.now)) {
      if (std::holds_alternative<link_failed>(event)) {
        ++failures;
        EXPECT_EQ(link.session.state(), session_state::disconnected);
      }
    }
    link.session.take_output();
  }
  EXPECT_GT(failures, 1000);  // most random input is refused, none crashes
}

}  // namespace
}  // namespace nimbus::bridge
