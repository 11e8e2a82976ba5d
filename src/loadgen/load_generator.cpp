#include "loadgen/load_generator.hpp"
#include "core/json_string.hpp"

#include <fmt/format.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <vector>

#include "loadgen/histogram.hpp"
#include "mqtt/codec.hpp"
#include "net/streams.hpp"

namespace nimbus::loadgen {

namespace asio = boost::asio;
using clock_type = std::chrono::steady_clock;
constexpr auto as_value = asio::as_tuple(asio::use_awaitable);

namespace {

std::uint64_t now_ns() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now().time_since_epoch())
          .count());
}

// Per event-loop counters. Atomics only so the progress line can read them; each is written by
// its own loop thread alone.
struct loop_stats {
  std::atomic<std::uint64_t> sent{0};      // PUBLISH written
  std::atomic<std::uint64_t> acked{0};     // PUBACK/PUBCOMP received (QoS >= 1)
  std::atomic<std::uint64_t> received{0};  // PUBLISH received by subscribers (shadow: accepted)
  std::atomic<std::uint64_t> rejected{0};  // shadow: /update/rejected replies
  std::atomic<std::uint64_t> sent_in_window{0};
  std::atomic<std::uint64_t> received_in_window{0};
  std::atomic<std::uint64_t> errors{0};
  histogram latency;  // ns, for messages received inside the measurement window
};

struct run_state {
  explicit run_state(const options& o)
      : opts(o),
        version(o.version == 5 ? mqtt::protocol_version::v5 : mqtt::protocol_version::v311) {}
  const options& opts;
  mqtt::protocol_version version;
  asio::ssl::context* tls = nullptr;
  std::vector<std::unique_ptr<loop_stats>> stats;
  std::atomic<int> subscribers_ready{0};
  std::atomic<int> publishers_ready{0};
  std::atomic<int> connected{0};
  std::atomic<int> connect_failures{0};
  std::atomic<bool> started{false};
  std::atomic<bool> stop_publishing{false};
  std::atomic<bool> shutting_down{false};
  std::atomic<std::uint64_t> measure_from{~std::uint64_t{0}};
  std::atomic<std::uint64_t> measure_until{~std::uint64_t{0}};
  std::mutex error_mutex;
  std::string first_error;
  std::string first_rejection;  // shadow: the first /update/rejected payload

  void error(std::size_t loop, const std::string& what) {
    stats[loop]->errors.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard lock(error_mutex);
    if (first_error.empty()) first_error = what;
  }
  void rejection(std::string_view payload) {
    std::lock_guard lock(error_mutex);
    if (first_rejection.empty()) first_rejection = payload;
  }
  bool in_window(std::uint64_t t) const {
    return t >= measure_from.load(std::memory_order_relaxed) &&
           t < measure_until.load(std::memory_order_relaxed);
  }
};

// A client connection: a stream, a single write pump, and a frame reader.
class client : public std::enable_shared_from_this<client> {
 public:
  client(run_state& state, std::size_t loop, asio::io_context& ctx)
      : state_(state), loop_(loop), ctx_(ctx), wake_(ctx) {}

  asio::awaitable<bool> open(const std::string& client_id, bool clean_start, int port = 0) {
    asio::ip::tcp::resolver resolver(ctx_);
    auto [rec, results] = co_await resolver.async_resolve(
        state_.opts.host, std::to_string(port != 0 ? port : state_.opts.port), as_value);
    if (rec) co_return fail("resolve: " + rec.message());
    asio::ip::tcp::socket socket(ctx_);
    auto [cec, endpoint] = co_await asio::async_connect(socket, results, as_value);
    if (cec) co_return fail("connect: " + cec.message());
    if (state_.tls) {
      auto tls = std::make_unique<net::tls_socket>(std::move(socket), *state_.tls);
      SSL_set_tlsext_host_name(tls->native_handle(), state_.opts.host.c_str());
      auto [hec] = co_await tls->async_handshake(asio::ssl::stream_base::client, as_value);
      if (hec) co_return fail("TLS handshake: " + hec.message());
      stream_ = net::make_tls_stream(std::move(tls));
    } else {
      stream_ = net::make_tcp_stream(std::move(socket));
    }
    mqtt::connect_packet c;
    c.version = state_.version;
    c.client_id = client_id;
    c.clean_start = clean_start;
    c.keep_alive = 600;
    if (c.version == mqtt::protocol_version::v5) {
      c.props.receive_maximum = 65535;
      if (!clean_start) c.props.session_expiry_interval = 3600;
    }
    send(c);
    auto ack = co_await next_packet();
    auto* connack = ack ? std::get_if<mqtt::connack_packet>(&*ack) : nullptr;
    if (connack == nullptr) co_return fail("no CONNACK");
    if (connack->reason != mqtt::reason_code::success)
      co_return fail(
          fmt::format("CONNACK refused: 0x{:02x}", static_cast<unsigned>(connack->reason)));
    co_return true;
  }

  template <class Packet>
  void send(const Packet& p) {
    mqtt::encode(mqtt::packet{p}, state_.version, out_);
    pump();
  }
  void send_raw(std::string_view bytes) {
    out_.append(bytes);
    pump();
  }
  std::size_t pending_output() const { return out_.size() + writing_.size(); }

  // The next packet, or nullopt when the stream ends. PUBLISH payloads are kept as sent.
  asio::awaitable<std::optional<mqtt::packet>> next_packet() {
    while (true) {
      std::string_view view(in_.data() + start_, used_ - start_);
      auto header = mqtt::read_frame_header(view);
      if (auto* h = std::get_if<mqtt::frame_header>(&header); h && view.size() >= h->total_size()) {
        auto decoded = mqtt::decode_packet(*h, view.substr(h->header_size, h->remaining_length),
                                           state_.version);
        start_ += h->total_size();
        if (auto* p = std::get_if<mqtt::packet>(&decoded)) co_return std::move(*p);
        fail("undecodable packet from the broker");
        co_return std::nullopt;
      }
      if (std::holds_alternative<mqtt::decode_error>(header)) co_return std::nullopt;
      if (start_ > 0) {
        std::memmove(in_.data(), in_.data() + start_, used_ - start_);
        used_ -= start_;
        start_ = 0;
      }
      if (used_ == in_.size()) in_.resize(in_.size() * 2);
      auto [ec, n] = co_await stream_->async_read_some(
          asio::buffer(in_.data() + used_, in_.size() - used_), as_value);
      if (ec) co_return std::nullopt;
      used_ += n;
    }
  }

  // Waits until `wake()` or `timeout`.
  asio::awaitable<void> wait(std::chrono::nanoseconds timeout) {
    wake_.expires_after(timeout);
    co_await wake_.async_wait(as_value);
  }
  void wake() { wake_.cancel(); }
  void close() {
    if (stream_) stream_->close();
  }
  std::size_t loop() const { return loop_; }

 private:
  bool fail(const std::string& what) {
    if (!state_.shutting_down.load()) state_.error(loop_, what);
    return false;
  }

  void pump() {
    if (writing_active_ || out_.empty() || !stream_) return;
    writing_active_ = true;
    // The write outlives whichever coroutine asked for it: it keeps the client alive.
    asio::co_spawn(
        ctx_, [self = shared_from_this()] { return self->write_loop(); }, asio::detached);
  }

  asio::awaitable<void> write_loop() {
    while (!out_.empty()) {
      writing_.clear();
      writing_.swap(out_);
      std::vector<asio::const_buffer> buffers{asio::buffer(writing_)};
      auto [ec, n] = co_await stream_->async_write(buffers, as_value);
      if (ec) {
        out_.clear();
        break;
      }
    }
    writing_.clear();
    writing_active_ = false;
    wake();
  }

  run_state& state_;
  std::size_t loop_;
  asio::io_context& ctx_;
  asio::steady_timer wake_;
  std::unique_ptr<net::byte_stream> stream_;
  std::string out_;
  std::string writing_;
  bool writing_active_ = false;
  std::vector<char> in_ = std::vector<char>(64 * 1024);
  std::size_t used_ = 0;
  std::size_t start_ = 0;
};

// Fills the first 16 payload bytes: send time (ns) and publisher index.
void stamp(std::string& payload, std::uint64_t t, std::uint32_t publisher) {
  std::memcpy(payload.data(), &t, sizeof(t));
  std::memcpy(payload.data() + 8, &publisher, sizeof(publisher));
}

// --json-payload: a sensor reading whose first member is the stamp, so it sits at a fixed offset
// the publisher rewrites in place and a receiver reads without a search, unless something (a
// rule's `SELECT *`) re-serialized the payload.
constexpr std::string_view json_stamp_key = R"("t":")";
constexpr std::size_t json_stamp_offset = 1 + json_stamp_key.size();  // after the '{'
constexpr std::size_t json_stamp_digits = 16;

// {"t":"<16 hex digits>","p":<publisher>,"temperature":31.5,"humidity":40,"pad":"xx..."}, the
// pad making it at least `size` bytes.
std::string json_payload(std::size_t size, int publisher) {
  std::string out =
      fmt::format(R"json({{"t":"{}","p":{},"temperature":31.5,"humidity":40,"pad":")json",
                  std::string(json_stamp_digits, '0'), publisher);
  constexpr std::string_view tail = R"json("})json";
  if (size > out.size() + tail.size()) out.append(size - out.size() - tail.size(), 'x');
  out.append(tail);
  return out;
}

// Writes the send time (ns) as the 16 hex digits of "t", in place.
void stamp_json(std::string& payload, std::uint64_t t) {
  static constexpr char hex_digits[] = "0123456789abcdef";
  char* digits = payload.data() + json_stamp_offset;
  for (std::size_t i = json_stamp_digits; i > 0; --i) {
    digits[i - 1] = hex_digits[t & 0xf];
    t >>= 4;
  }
}

// The send time in a JSON payload's "t": at its fixed offset, else the first "t" member found
// (spacing around the ':' allowed); none when missing or not 16 hex digits.
std::optional<std::uint64_t> json_stamp_of(std::string_view payload) {
  std::size_t at = std::string_view::npos;
  if (payload.size() >= json_stamp_offset + json_stamp_digits &&
      payload.substr(1, json_stamp_key.size()) == json_stamp_key) {
    at = json_stamp_offset;
  } else {
    constexpr std::string_view key = R"("t")";
    auto is_space = [](char ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r'; };
    for (auto found = payload.find(key); found != std::string_view::npos;
         found = payload.find(key, found + 1)) {
      auto i = found + key.size();
      while (i < payload.size() && is_space(payload[i])) ++i;
      if (i == payload.size() || payload[i] != ':') continue;
      ++i;
      while (i < payload.size() && is_space(payload[i])) ++i;
      if (i == payload.size() || payload[i] != '"') continue;
      at = i + 1;
      break;
    }
    if (at == std::string_view::npos || payload.size() - at < json_stamp_digits)
      return std::nullopt;
  }
  std::uint64_t t = 0;
  for (std::size_t i = 0; i < json_stamp_digits; ++i) {
    const char ch = payload[at + i];
    std::uint64_t digit = 0;
    if (ch >= '0' && ch <= '9') {
      digit = static_cast<std::uint64_t>(ch - '0');
    } else if (ch >= 'a' && ch <= 'f') {
      digit = static_cast<std::uint64_t>(ch - 'a' + 10);
    } else if (ch >= 'A' && ch <= 'F') {
      digit = static_cast<std::uint64_t>(ch - 'A' + 10);
    } else {
      return std::nullopt;
    }
    t = (t << 4) | digit;
  }
  return t;
}

struct scenario_shape {
  int publishers;
  int subscribers;
  int fanout;  // deliveries expected per published message
};

scenario_shape shape_of(const options& o) {
  if (o.scenario == "fanout") return {o.publishers, o.subscribers, o.subscribers};
  if (o.scenario == "p2p") return {o.publishers, o.publishers, 1};
  if (o.scenario == "shared") return {o.publishers, o.subscribers, 1};
  return {o.publishers, o.subscribers, 1};  // fanin
}

std::string publish_topic(const options& o, int publisher) {
  if (o.scenario == "fanout") return o.topic_prefix + "/fanout";
  if (o.scenario == "p2p") return fmt::format("{}/p2p/{}", o.topic_prefix, publisher);
  return fmt::format("{}/{}", o.topic_prefix, publisher);
}

std::string subscribe_filter(const options& o, int subscriber) {
  if (o.scenario == "fanout") return o.topic_prefix + "/fanout";
  if (o.scenario == "p2p") return fmt::format("{}/p2p/{}", o.topic_prefix, subscriber);
  if (o.scenario == "shared") return fmt::format("$share/{}/{}/#", o.client_prefix, o.topic_prefix);
  return (o.subscribe_prefix.empty() ? o.topic_prefix : o.subscribe_prefix) + "/#";  // fanin
}

asio::awaitable<void> run_subscriber(run_state& st, asio::io_context& ctx, std::size_t loop,
                                     int index) {
  auto c = std::make_shared<client>(st, loop, ctx);
  // Persistent subscribers make the broker store every QoS 1/2 delivery before acknowledging it.
  if (!co_await c->open(fmt::format("{}-sub-{}", st.opts.client_prefix, index), !st.opts.persistent,
                        st.opts.subscribe_port))
    co_return;
  mqtt::subscribe_packet s;
  s.packet_id = 1;
  s.entries.push_back({subscribe_filter(st.opts, index), {static_cast<std::uint8_t>(st.opts.qos)}});
  c->send(s);
  auto ack = co_await c->next_packet();
  if (!ack || !std::holds_alternative<mqtt::suback_packet>(*ack)) co_return;
  st.subscribers_ready.fetch_add(1);
  auto& stats = *st.stats[loop];
  while (true) {
    auto p = co_await c->next_packet();
    if (!p) break;
    if (auto* pub = std::get_if<mqtt::publish_packet>(&*p)) {
      auto now = now_ns();
      stats.received.fetch_add(1, std::memory_order_relaxed);
      if (st.in_window(now)) {
        stats.received_in_window.fetch_add(1, std::memory_order_relaxed);
        if (st.opts.json_payload) {
          if (auto sent_at = json_stamp_of(pub->payload); sent_at && *sent_at <= now)
            stats.latency.record(now - *sent_at);
        } else if (pub->payload.size() >= 16) {
          std::uint64_t sent_at = 0;
          std::memcpy(&sent_at, pub->payload.data(), sizeof(sent_at));
          if (sent_at <= now) stats.latency.record(now - sent_at);
        }
      }
      if (pub->qos == 1)
        c->send(mqtt::ack_packet{
            mqtt::packet_type::puback, pub->packet_id, mqtt::reason_code::success, {}});
      if (pub->qos == 2)
        c->send(mqtt::ack_packet{
            mqtt::packet_type::pubrec, pub->packet_id, mqtt::reason_code::success, {}});
    } else if (auto* a = std::get_if<mqtt::ack_packet>(&*p);
               a && a->type == mqtt::packet_type::pubrel) {
      c->send(mqtt::ack_packet{
          mqtt::packet_type::pubcomp, a->packet_id, mqtt::reason_code::success, {}});
    }
  }
  if (!st.shutting_down.load()) st.error(loop, "subscriber connection lost");
}

asio::awaitable<void> run_publisher(run_state& st, asio::io_context& ctx, std::size_t loop,
                                    int index) {
  auto c = std::make_shared<client>(st, loop, ctx);
  if (!co_await c->open(fmt::format("{}-pub-{}", st.opts.client_prefix, index), true)) co_return;
  st.publishers_ready.fetch_add(1);
  auto& stats = *st.stats[loop];
  const auto& o = st.opts;
  const auto qos = static_cast<std::uint8_t>(o.qos);
  const std::string topic = publish_topic(o, index);
  std::string payload = o.json_payload
                            ? json_payload(o.payload_size, index)
                            : std::string(std::max<std::size_t>(o.payload_size, 16), 'x');
  std::size_t inflight = 0;
  std::uint16_t next_id = 1;

  // Acknowledgements (QoS 1/2) are read by a companion coroutine that opens the window.
  if (qos > 0) {
    asio::co_spawn(
        ctx,
        [c, &stats, &inflight]() -> asio::awaitable<void> {
          while (true) {
            auto p = co_await c->next_packet();
            if (!p) co_return;
            auto* a = std::get_if<mqtt::ack_packet>(&*p);
            if (a == nullptr) continue;
            if (a->type == mqtt::packet_type::pubrec) {
              c->send(mqtt::ack_packet{
                  mqtt::packet_type::pubrel, a->packet_id, mqtt::reason_code::success, {}});
              continue;
            }
            stats.acked.fetch_add(1, std::memory_order_relaxed);
            --inflight;
            c->wake();
          }
        },
        asio::detached);
  }

  while (!st.started.load(std::memory_order_acquire))
    co_await c->wait(std::chrono::milliseconds(5));
  const auto begin = now_ns();
  std::uint64_t sent = 0;
  std::string batch;
  while (!st.stop_publishing.load(std::memory_order_relaxed)) {
    std::uint64_t allowed;
    if (o.rate > 0) {
      auto elapsed = static_cast<double>(now_ns() - begin) / 1e9;
      allowed = static_cast<std::uint64_t>(elapsed * o.rate) + 1;
      if (allowed <= sent) {
        co_await c->wait(std::chrono::nanoseconds(static_cast<std::int64_t>(1e9 / o.rate)));
        continue;
      }
      allowed -= sent;
    } else {
      allowed = 64;
    }
    if (qos > 0) {
      auto room = static_cast<std::size_t>(o.inflight) > inflight
                      ? static_cast<std::size_t>(o.inflight) - inflight
                      : 0;
      allowed = std::min<std::uint64_t>(allowed, room);
    }
    // Keep the socket busy, not our memory: wait while a large batch is still being written.
    if (allowed == 0 || c->pending_output() > 256 * 1024) {
      co_await c->wait(std::chrono::milliseconds(50));
      continue;
    }
    batch.clear();
    auto t = now_ns();
    for (std::uint64_t i = 0; i < allowed; ++i) {
      if (o.json_payload)
        stamp_json(payload, t);
      else
        stamp(payload, t, static_cast<std::uint32_t>(index));
      std::uint16_t packet_id = 0;
      if (qos > 0) {
        packet_id = next_id++;
        if (next_id == 0) next_id = 1;
        ++inflight;
      }
      mqtt::encode_publish_head(batch, st.version, qos, false, false, topic, packet_id,
                                mqtt::properties{}, payload.size());
      batch.append(payload);
    }
    c->send_raw(batch);
    sent += allowed;
    stats.sent.fetch_add(allowed, std::memory_order_relaxed);
    if (st.in_window(t)) stats.sent_in_window.fetch_add(allowed, std::memory_order_relaxed);
    if (o.rate <= 0) co_await asio::post(ctx, asio::use_awaitable);  // let the loop read and write
  }
  // Wait for outstanding acknowledgements (bounded), then leave the connection open until the
  // run ends so the broker sees no disconnect during the drain.
  auto deadline = clock_type::now() + std::chrono::seconds(10);
  while (inflight > 0 && clock_type::now() < deadline)
    co_await c->wait(std::chrono::milliseconds(20));
  while (!st.shutting_down.load()) co_await c->wait(std::chrono::milliseconds(50));
  c->close();
}

asio::awaitable<void> run_idle_connection(run_state& st, asio::io_context& ctx, std::size_t loop,
                                          int index) {
  auto c = std::make_shared<client>(st, loop, ctx);
  if (!co_await c->open(fmt::format("{}-conn-{}", st.opts.client_prefix, index), true)) {
    st.connect_failures.fetch_add(1);
    co_return;
  }
  st.connected.fetch_add(1);
  while (!st.shutting_down.load()) co_await c->wait(std::chrono::milliseconds(200));
  c->close();
}

std::string shadow_thing_name(const options& o, int thing) {
  return fmt::format("{}-shadow-{}", o.client_prefix, thing);
}

// The "clientToken" of a shadow reply. Nimbus writes compact JSON and our tokens need no
// escaping, so a search is enough and keeps a JSON parser out of the hot loop.
std::string_view client_token_of(std::string_view payload) {
  constexpr std::string_view key = R"("clientToken":")";
  auto at = payload.find(key);
  if (at == std::string_view::npos) return {};
  auto begin = at + key.size();
  auto end = payload.find('"', begin);
  if (end == std::string_view::npos) return {};
  return payload.substr(begin, end - begin);
}

// A shadow scenario client: owns things index, index + C, index + 2C, ... (C clients) and runs a
// closed loop of up to shadow_inflight updates awaiting their reply, at most one per thing, as
// a device does; each reply sends the next update, to the next owned thing that is free.
asio::awaitable<void> run_shadow_client(run_state& st, asio::io_context& ctx, std::size_t loop,
                                        int index) {
  const auto& o = st.opts;
  auto c = std::make_shared<client>(st, loop, ctx);
  if (!co_await c->open(fmt::format("{}-shadow-client-{}", o.client_prefix, index), true))
    co_return;
  std::vector<std::string> update_topics;  // one per owned thing
  for (int thing = index; thing < o.things; thing += o.shadow_clients)
    update_topics.push_back(
        fmt::format("$aws/things/{}/shadow/update", shadow_thing_name(o, thing)));
  // Both reply topics of every owned thing, at QoS 1, at most 100 filters per SUBSCRIBE.
  std::vector<mqtt::subscribe_packet> subscribes;
  for (const auto& topic : update_topics) {
    for (const char* reply : {"/accepted", "/rejected"}) {
      if (subscribes.empty() || subscribes.back().entries.size() == 100) {
        subscribes.emplace_back();
        subscribes.back().packet_id = static_cast<std::uint16_t>(subscribes.size());
      }
      subscribes.back().entries.push_back({topic + reply, {1}});
    }
  }
  for (const auto& s : subscribes) c->send(s);
  for (std::size_t subacks = 0; subacks < subscribes.size();) {
    auto p = co_await c->next_packet();
    if (!p) co_return;
    auto* suback = std::get_if<mqtt::suback_packet>(&*p);
    if (suback == nullptr) continue;
    if (std::any_of(suback->reasons.begin(), suback->reasons.end(),
                    [](mqtt::reason_code r) { return mqtt::is_error(r); })) {
      st.error(loop, "SUBSCRIBE to shadow reply topics refused");
      co_return;
    }
    ++subacks;
  }
  st.publishers_ready.fetch_add(1);
  auto& stats = *st.stats[loop];

  struct pending_update {
    std::size_t thing = 0;  // index into update_topics
    std::string token;      // its clientToken; empty: the slot is free
    std::uint64_t sent_at = 0;
  };
  std::vector<pending_update> pending(
      std::min(static_cast<std::size_t>(o.shadow_inflight), update_topics.size()));
  std::vector<bool> is_busy(update_topics.size(), false);
  std::size_t next_thing = 0;
  std::uint64_t seq = 0;
  std::uint16_t next_id = 1;
  std::string frame;
  auto send_update = [&](pending_update& update) {
    while (is_busy[next_thing]) next_thing = (next_thing + 1) % update_topics.size();
    update.thing = next_thing;
    is_busy[next_thing] = true;
    next_thing = (next_thing + 1) % update_topics.size();
    ++seq;
    update.token = fmt::format("{}-{}", index, seq);
    auto payload =
        fmt::format(R"({{"state":{{"reported":{{"seq":{},"temp":{}}}}},"clientToken":"{}"}})", seq,
                    seq % 50, update.token);
    frame.clear();
    mqtt::encode_publish_head(frame, st.version, 1, false, false, update_topics[update.thing],
                              next_id, mqtt::properties{}, payload.size());
    frame.append(payload);
    if (++next_id == 0) next_id = 1;
    update.sent_at = now_ns();
    c->send_raw(frame);
    stats.sent.fetch_add(1, std::memory_order_relaxed);
    if (st.in_window(update.sent_at)) stats.sent_in_window.fetch_add(1, std::memory_order_relaxed);
  };

  while (!st.started.load(std::memory_order_acquire))
    co_await c->wait(std::chrono::milliseconds(5));
  for (auto& update : pending) send_update(update);
  while (true) {
    auto p = co_await c->next_packet();
    if (!p) break;
    if (auto* a = std::get_if<mqtt::ack_packet>(&*p); a && a->type == mqtt::packet_type::puback) {
      stats.acked.fetch_add(1, std::memory_order_relaxed);
      if (mqtt::is_error(a->reason))
        st.error(loop, fmt::format("shadow update refused: PUBACK 0x{:02x}",
                                   static_cast<unsigned>(a->reason)));
      continue;
    }
    auto* pub = std::get_if<mqtt::publish_packet>(&*p);
    if (pub == nullptr) continue;
    const auto now = now_ns();
    if (pub->qos == 1)
      c->send(mqtt::ack_packet{
          mqtt::packet_type::puback, pub->packet_id, mqtt::reason_code::success, {}});
    const bool is_accepted = pub->topic.ends_with("/update/accepted");
    if (is_accepted) {
      stats.received.fetch_add(1, std::memory_order_relaxed);
    } else if (pub->topic.ends_with("/update/rejected")) {
      stats.rejected.fetch_add(1, std::memory_order_relaxed);
      st.rejection(pub->payload);
    } else {
      continue;
    }
    auto token = client_token_of(pub->payload);
    auto slot = std::find_if(pending.begin(), pending.end(), [&](const pending_update& u) {
      return !u.token.empty() && u.token == token;
    });
    if (slot == pending.end()) {
      st.error(loop, "shadow reply without a pending clientToken on " + pub->topic);
      continue;
    }
    if (is_accepted && st.in_window(now)) {
      stats.received_in_window.fetch_add(1, std::memory_order_relaxed);
      if (slot->sent_at <= now) stats.latency.record(now - slot->sent_at);
    }
    is_busy[slot->thing] = false;
    slot->token.clear();
    if (!st.stop_publishing.load(std::memory_order_relaxed)) send_update(*slot);
  }
  if (!st.shutting_down.load()) st.error(loop, "shadow client connection lost");
}

std::uint64_t resident_kib(int pid) {
  if (pid <= 0) return 0;
  std::ifstream status(fmt::format("/proc/{}/status", pid));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6));
  }
  return 0;
}

double cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

template <class F>
std::uint64_t sum(const run_state& st, F field) {
  std::uint64_t total = 0;
  for (const auto& s : st.stats) total += field(*s).load(std::memory_order_relaxed);
  return total;
}

// [upper bound ns, count] per non-empty bucket: bench/run pools rounds from these.
std::string histogram_buckets_json(const histogram& h) {
  std::string out;
  h.for_each_bucket([&](std::uint64_t upper, std::uint64_t count) {
    if (!out.empty()) out += ',';
    out += fmt::format("[{},{}]", upper, count);
  });
  return out;
}

void wait_until(const std::function<bool()>& done, std::chrono::milliseconds limit) {
  auto deadline = clock_type::now() + limit;
  while (!done() && clock_type::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

}  // namespace

int run(const options& o) {
  static const std::vector<std::string> scenarios{"conn", "fanin",  "fanout",
                                                  "p2p",  "shared", "shadow"};
  if (std::find(scenarios.begin(), scenarios.end(), o.scenario) == scenarios.end()) {
    std::cerr << "nimbus bench: unknown scenario '" << o.scenario
              << "' (conn, fanin, fanout, p2p, shared, shadow)\n";
    return 2;
  }
  if (o.qos < 0 || o.qos > 2 || (o.version != 4 && o.version != 5) || o.duration <= 0) {
    std::cerr << "nimbus bench: --qos must be 0..2, --mqtt-version 4 or 5, --duration > 0\n";
    return 2;
  }
  if (o.scenario == "shadow" &&
      (o.shadow_clients < 1 || o.things < o.shadow_clients || o.shadow_inflight < 1)) {
    std::cerr << "nimbus bench: shadow needs --things >= --shadow-clients >= 1 and "
                 "--shadow-inflight >= 1\n";
    return 2;
  }
  if (!o.subscribe_prefix.empty() && o.scenario != "fanin") {
    std::cerr << "nimbus bench: --subscribe-prefix is for the fanin scenario only\n";
    return 2;
  }
  if (o.json_payload && (o.scenario == "conn" || o.scenario == "shadow")) {
    std::cerr << "nimbus bench: --json-payload is for fanin, fanout, p2p and shared\n";
    return 2;
  }
  std::unique_ptr<asio::ssl::context> tls;
  if (o.tls) {
    tls = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
    if (!o.ca_file.empty()) tls->load_verify_file(o.ca_file);
    tls->set_verify_mode(o.ca_file.empty() ? asio::ssl::verify_none : asio::ssl::verify_peer);
    if (!o.cert_file.empty()) tls->use_certificate_chain_file(o.cert_file);
    if (!o.key_file.empty()) tls->use_private_key_file(o.key_file, asio::ssl::context::pem);
  }
  run_state st(o);
  st.tls = tls.get();
  const std::size_t loops = o.threads > 0 ? static_cast<std::size_t>(o.threads)
                                          : std::max(1U, std::thread::hardware_concurrency());
  std::vector<std::unique_ptr<asio::io_context>> contexts;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  for (std::size_t i = 0; i < loops; ++i) {
    contexts.push_back(std::make_unique<asio::io_context>(1));
    guards.emplace_back(contexts.back()->get_executor());
    st.stats.push_back(std::make_unique<loop_stats>());
  }
  std::vector<std::thread> threads;
  for (auto& ctx : contexts) threads.emplace_back([&ctx] { ctx->run(); });
  auto spawn = [&](std::size_t i, auto&& coroutine) {
    asio::co_spawn(*contexts[i % loops], std::forward<decltype(coroutine)>(coroutine),
                   asio::detached);
  };

  auto progress = [&](const char* phase, double elapsed, std::uint64_t sent,
                      std::uint64_t received) {
    if (!o.progress) return;
    std::cerr << fmt::format("\r[{:6.1f}s] {:<8} sent {:>10} received {:>10} errors {:>4}   ",
                             elapsed, phase, sent, received,
                             sum(
                                 st, [](auto& s) -> auto& { return s.errors; }))
              << std::flush;
  };

  std::string report;
  bool ok = true;
  double cpu_used = 0;
  double window_seconds = o.duration;
  auto sent_total = [&] {
    return sum(
        st, [](auto& s) -> auto& { return s.sent; });
  };
  auto received_total = [&] {
    return sum(
        st, [](auto& s) -> auto& { return s.received; });
  };
  // Starts the publishers, shows progress through the warm-up and the measured window (whose
  // generator CPU time it keeps in cpu_used), then stops them.
  auto run_window = [&] {
    auto start = now_ns();
    st.measure_from = start + static_cast<std::uint64_t>(o.warmup * 1e9);
    st.measure_until = st.measure_from.load() + static_cast<std::uint64_t>(o.duration * 1e9);
    st.started.store(true, std::memory_order_release);
    double cpu_start = 0;
    bool cpu_started = false;
    while (now_ns() < st.measure_until.load()) {
      if (!cpu_started && now_ns() >= st.measure_from.load()) {
        cpu_start = cpu_seconds();
        cpu_started = true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
      progress("running", static_cast<double>(now_ns() - start) / 1e9, sent_total(),
               received_total());
    }
    cpu_used = cpu_seconds() - cpu_start;
    st.stop_publishing.store(true);
  };

  if (o.scenario == "conn") {
    auto rss_before = resident_kib(o.broker_pid);
    auto t0 = clock_type::now();
    for (int i = 0; i < o.connections; ++i) {
      if (o.connect_rate > 0) {
        auto due = t0 + std::chrono::duration_cast<clock_type::duration>(
                            std::chrono::duration<double>(i / o.connect_rate));
        std::this_thread::sleep_until(due);
      } else {
        // Bound the handshakes in progress so the listen backlog is not the measurement.
        while (i - st.connected.load() - st.connect_failures.load() > 256)
          std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
      std::size_t loop = static_cast<std::size_t>(i) % loops;
      spawn(loop, run_idle_connection(st, *contexts[loop], loop, i));
    }
    wait_until([&] { return st.connected.load() + st.connect_failures.load() >= o.connections; },
               std::chrono::seconds(120));
    double connect_seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
    auto cpu0 = cpu_seconds();
    for (double held = 0; held < o.duration; held += 0.5) {
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      progress("holding", held, 0, static_cast<std::uint64_t>(st.connected.load()));
    }
    auto rss_after = resident_kib(o.broker_pid);
    cpu_used = cpu_seconds() - cpu0;
    window_seconds = o.duration;
    int connected = st.connected.load();
    ok = connected == o.connections;
    double per_connection = connected > 0 && rss_after > rss_before
                                ? static_cast<double>(rss_after - rss_before) * 1024.0 / connected
                                : 0.0;
    if (o.json) {
      report = fmt::format(
          R"({{"scenario":"conn","connections":{},"connected":{},"failed":{},"connect_seconds":{:.3f},"connections_per_second":{:.1f},"broker_rss_kib_before":{},"broker_rss_kib_after":{},"broker_bytes_per_connection":{:.0f},"generator_cpu_cores":{:.3f},"first_error":{}}})",
          o.connections, connected, st.connect_failures.load(), connect_seconds,
          connected / connect_seconds, rss_before, rss_after, per_connection,
          cpu_used / window_seconds, core::json_string(st.first_error));
    } else {
      report = fmt::format(
          "scenario conn: {} of {} connected in {:.2f}s ({:.0f} connections/s), {} failed\n"
          "broker resident memory: {} KiB before, {} KiB after ({:.0f} bytes per connection)\n",
          connected, o.connections, connect_seconds, connected / connect_seconds,
          st.connect_failures.load(), rss_before, rss_after, per_connection);
      if (!st.first_error.empty()) report += "first error: " + st.first_error + "\n";
    }
  } else if (o.scenario == "shadow") {
    for (int i = 0; i < o.shadow_clients; ++i) {
      std::size_t loop = static_cast<std::size_t>(i) % loops;
      spawn(loop, run_shadow_client(st, *contexts[loop], loop, i));
    }
    wait_until([&] { return st.publishers_ready.load() >= o.shadow_clients; },
               std::chrono::seconds(60));
    if (st.publishers_ready.load() < o.shadow_clients) {
      std::cerr << "nimbus bench: only " << st.publishers_ready.load() << "/" << o.shadow_clients
                << " shadow clients subscribed"
                << (st.first_error.empty() ? "" : ": " + st.first_error) << "\n";
      ok = false;
    }
    run_window();
    // Drain: wait until every update has its reply, or none arrives for 2 s.
    auto rejected_total = [&] {
      return sum(
          st, [](auto& s) -> auto& { return s.rejected; });
    };
    auto answered = [&] { return received_total() + rejected_total(); };
    auto last = answered();
    auto last_change = clock_type::now();
    auto drain_deadline = last_change + std::chrono::seconds(20);
    while (answered() < sent_total() && clock_type::now() < drain_deadline &&
           clock_type::now() - last_change < std::chrono::seconds(2)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (auto now_answered = answered(); now_answered != last) {
        last = now_answered;
        last_change = clock_type::now();
      }
    }
    if (o.progress) std::cerr << "\n";
    histogram latency;
    for (auto& s : st.stats) latency.merge(s->latency);
    auto sent = sent_total();
    auto acked = sum(
        st, [](auto& s) -> auto& { return s.acked; });
    auto accepted = received_total();
    auto rejected = rejected_total();
    std::uint64_t unanswered = sent > accepted + rejected ? sent - accepted - rejected : 0;
    auto errors = sum(
        st, [](auto& s) -> auto& { return s.errors; });
    ok = ok && rejected == 0 && unanswered == 0 && errors == 0;
    auto accepted_rate = static_cast<double>(sum(
                             st, [](auto& s) -> auto& { return s.received_in_window; })) /
                         o.duration;
    double cores = cpu_used / o.duration;
    bool saturated = cores >= 0.9 * static_cast<double>(loops);
    auto ms = [](std::uint64_t ns) { return static_cast<double>(ns) / 1e6; };
    if (o.json) {
      report = fmt::format(
          R"({{"scenario":"shadow","qos":1,"mqtt_version":{},"things":{},"clients":{},"inflight_per_client":{},"duration_s":{},"sent":{},"acknowledged":{},"accepted":{},"rejected":{},"unanswered":{},"errors":{},"accepted_per_second":{:.1f},"latency_ms":{{"p50":{:.3f},"p90":{:.3f},"p99":{:.3f},"p999":{:.3f},"max":{:.3f},"mean":{:.3f},"samples":{}}},"latency_histogram_ns":[{}],"generator_cpu_cores":{:.3f},"generator_threads":{},"generator_saturated":{},"ok":{},"first_error":{},"first_rejection":{}}})",
          o.version, o.things, o.shadow_clients, o.shadow_inflight, o.duration, sent, acked,
          accepted, rejected, unanswered, errors, accepted_rate, ms(latency.quantile(0.5)),
          ms(latency.quantile(0.9)), ms(latency.quantile(0.99)), ms(latency.quantile(0.999)),
          ms(latency.max()), latency.mean() / 1e6, latency.count(), histogram_buckets_json(latency),
          cores, loops, saturated, ok, core::json_string(st.first_error),
          core::json_string(st.first_rejection));
    } else {
      report = fmt::format(
          "scenario shadow qos 1 mqtt {}: {} clients updating {} things, {} updates in flight "
          "per client\n"
          "throughput: {:.0f} accepted updates/s (over {:.1f}s after {:.1f}s warm-up)\n"
          "latency to /update/accepted ms: p50 {:.3f}  p90 {:.3f}  p99 {:.3f}  p99.9 {:.3f}  "
          "max {:.3f}  ({} samples)\n"
          "totals: sent {}, acknowledged {}, accepted {}, rejected {}, unanswered {}, errors {}\n"
          "generator: {:.2f} of {} cores busy{}\n",
          o.version == 5 ? "5" : "3.1.1", o.shadow_clients, o.things, o.shadow_inflight,
          accepted_rate, o.duration, o.warmup, ms(latency.quantile(0.5)), ms(latency.quantile(0.9)),
          ms(latency.quantile(0.99)), ms(latency.quantile(0.999)), ms(latency.max()),
          latency.count(), sent, acked, accepted, rejected, unanswered, errors, cores, loops,
          saturated ? " (SATURATED: the generator may be the bottleneck)" : "");
      if (!st.first_rejection.empty()) report += "first rejection: " + st.first_rejection + "\n";
      if (!st.first_error.empty()) report += "first error: " + st.first_error + "\n";
    }
  } else {
    auto shape = shape_of(o);
    for (int i = 0; i < shape.subscribers; ++i) {
      std::size_t loop = static_cast<std::size_t>(i) % loops;
      spawn(loop, run_subscriber(st, *contexts[loop], loop, i));
    }
    wait_until([&] { return st.subscribers_ready.load() >= shape.subscribers; },
               std::chrono::seconds(60));
    for (int i = 0; i < shape.publishers; ++i) {
      std::size_t loop = static_cast<std::size_t>(i + shape.subscribers) % loops;
      spawn(loop, run_publisher(st, *contexts[loop], loop, i));
    }
    wait_until([&] { return st.publishers_ready.load() >= shape.publishers; },
               std::chrono::seconds(60));
    if (st.subscribers_ready.load() < shape.subscribers ||
        st.publishers_ready.load() < shape.publishers) {
      std::cerr << "nimbus bench: only " << st.subscribers_ready.load() << "/" << shape.subscribers
                << " subscribers and " << st.publishers_ready.load() << "/" << shape.publishers
                << " publishers connected" << (st.first_error.empty() ? "" : ": " + st.first_error)
                << "\n";
      ok = false;
    }
    run_window();
    // Drain: wait until everything acknowledged has arrived, or nothing arrives for 2 s.
    auto expected = [&] {
      auto published = o.qos > 0 ? sum(
                                       st, [](auto& s) -> auto& { return s.acked; })
                                 : sent_total();
      return published * static_cast<std::uint64_t>(shape.fanout);
    };
    auto last = received_total();
    auto last_change = clock_type::now();
    auto drain_deadline = clock_type::now() + std::chrono::seconds(20);
    while (clock_type::now() < drain_deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      auto now_received = received_total();
      if (o.qos > 0 && now_received >= expected() &&
          sum(
              st, [](auto& s) -> auto& { return s.acked; }) >= sent_total())
        break;
      if (now_received != last) {
        last = now_received;
        last_change = clock_type::now();
      } else if (clock_type::now() - last_change > std::chrono::seconds(2)) {
        break;
      }
    }
    if (o.progress) std::cerr << "\n";
    histogram latency;
    for (auto& s : st.stats) latency.merge(s->latency);
    auto sent = sent_total();
    auto acked = sum(
        st, [](auto& s) -> auto& { return s.acked; });
    auto received = received_total();
    auto sent_rate = static_cast<double>(sum(
                         st, [](auto& s) -> auto& { return s.sent_in_window; })) /
                     o.duration;
    auto received_rate = static_cast<double>(sum(
                             st, [](auto& s) -> auto& { return s.received_in_window; })) /
                         o.duration;
    std::uint64_t lost = 0;
    if (o.qos > 0) {
      auto want = acked * static_cast<std::uint64_t>(shape.fanout);
      lost = want > received ? want - received : 0;
      ok = ok && lost == 0 && acked == sent;
    }
    auto errors = sum(
        st, [](auto& s) -> auto& { return s.errors; });
    ok = ok && errors == 0;
    double cores = cpu_used / o.duration;
    bool saturated = cores >= 0.9 * static_cast<double>(loops);
    auto ms = [](std::uint64_t ns) { return static_cast<double>(ns) / 1e6; };
    if (o.json) {
      report = fmt::format(
          R"({{"scenario":"{}","qos":{},"mqtt_version":{},"payload_bytes":{},"publishers":{},"subscribers":{},"rate_per_publisher":{},"duration_s":{},"sent":{},"acknowledged":{},"received":{},"lost":{},"errors":{},"sent_per_second":{:.1f},"received_per_second":{:.1f},"latency_ms":{{"p50":{:.3f},"p90":{:.3f},"p99":{:.3f},"p999":{:.3f},"max":{:.3f},"mean":{:.3f},"samples":{}}},"latency_histogram_ns":[{}],"generator_cpu_cores":{:.3f},"generator_threads":{},"generator_saturated":{},"ok":{},"first_error":{}}})",
          o.scenario, o.qos, o.version, o.payload_size, shape.publishers, shape.subscribers, o.rate,
          o.duration, sent, acked, received, lost, errors, sent_rate, received_rate,
          ms(latency.quantile(0.5)), ms(latency.quantile(0.9)), ms(latency.quantile(0.99)),
          ms(latency.quantile(0.999)), ms(latency.max()), latency.mean() / 1e6, latency.count(),
          histogram_buckets_json(latency), cores, loops, saturated, ok,
          core::json_string(st.first_error));
    } else {
      report = fmt::format(
          "scenario {} qos {} mqtt {} payload {} B: {} publishers -> {} subscribers{}\n"
          "throughput: sent {:.0f} msg/s, received {:.0f} msg/s (over {:.1f}s after {:.1f}s "
          "warm-up)\n"
          "latency ms: p50 {:.3f}  p90 {:.3f}  p99 {:.3f}  p99.9 {:.3f}  max {:.3f}  ({} samples)\n"
          "totals: sent {}, acknowledged {}, received {}, lost {}, errors {}\n"
          "generator: {:.2f} of {} cores busy{}\n",
          o.scenario, o.qos, o.version == 5 ? "5" : "3.1.1", o.payload_size, shape.publishers,
          shape.subscribers,
          o.rate > 0 ? fmt::format(" at {} msg/s each", o.rate) : std::string(" flat out"),
          sent_rate, received_rate, o.duration, o.warmup, ms(latency.quantile(0.5)),
          ms(latency.quantile(0.9)), ms(latency.quantile(0.99)), ms(latency.quantile(0.999)),
          ms(latency.max()), latency.count(), sent, acked, received, lost, errors, cores, loops,
          saturated ? " (SATURATED: the generator may be the bottleneck)" : "");
      if (o.qos > 0 && lost > 0)
        report += fmt::format("LOSS: {} acknowledged messages never arrived\n", lost);
      if (!st.first_error.empty()) report += "first error: " + st.first_error + "\n";
    }
  }

  st.shutting_down.store(true);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  guards.clear();
  for (auto& ctx : contexts) ctx->stop();
  for (auto& t : threads) t.join();
  std::cout << report << (o.json ? "\n" : "") << std::flush;
  return ok ? 0 : 1;
}

}  // namespace nimbus::loadgen
