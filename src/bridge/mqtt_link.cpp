#include "bridge/mqtt_link.hpp"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <utility>

#include <openssl/ssl.h>
#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "bridge/queued_message.hpp"
#include "core/log.hpp"
#include "core/random.hpp"
#include "mqtt/codec.hpp"
#include "mqtt/topic.hpp"
#include "net/streams.hpp"
#include "net/tls_context.hpp"

namespace nimbus::bridge {

namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

constexpr auto as_value = asio::as_tuple(asio::use_awaitable);
constexpr auto connect_timeout = 10s;
// The cookie of the bridge's own state message on the remote: not a queue record.
constexpr std::uint64_t state_cookie = ~std::uint64_t{0};
// A QoS 0 message that took the direct path: not a queue record either.
constexpr std::uint64_t direct_cookie = ~std::uint64_t{0} - 1;
constexpr std::size_t read_batch_records = 64;
constexpr std::size_t read_batch_bytes = 256 * 1024;

std::string read_password(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::system_error(errno, std::generic_category(), "cannot read " + path);
  std::stringstream text;
  text << in.rdbuf();
  std::string password = text.str();
  while (!password.empty() && (password.back() == '\n' || password.back() == '\r'))
    password.pop_back();
  return password;
}

std::string address_text(const host_port& address) {
  const bool is_ipv6 = address.host.find(':') != std::string::npos;
  return (is_ipv6 ? "[" + address.host + "]" : address.host) + ":" + std::to_string(address.port);
}

}  // namespace

std::string_view to_string(link_state state) {
  switch (state) {
    case link_state::connecting:
      return "connecting";
    case link_state::connected:
      return "connected";
    case link_state::backing_off:
      return "backing_off";
    case link_state::stopped:
      return "stopped";
  }
  return "unknown";
}

// One connection attempt's stream and its writer, shared by the link's coroutines.
struct mqtt_link::connection {
  explicit connection(asio::io_context& loop) : ticker(loop) {}
  std::unique_ptr<net::byte_stream> stream;
  asio::steady_timer ticker;  // keep-alive
  std::string writing;        // the bytes being written
  bool is_writing = false;
  bool is_closed = false;
  bool is_connected = false;  // CONNACK accepted
};

mqtt_link::mqtt_link(mqtt_bridge config, broker::broker& broker, asio::io_context& loop,
                     seglog::committer& committer, core::clock& clock, std::filesystem::path dir)
    : config_(std::move(config)),
      broker_(broker),
      loop_(loop),
      clock_(clock),
      publisher_id_("$bridge/" + config_.name),
      session_(session_options{config_.protocol == mqtt_protocol::mqttv5
                                   ? mqtt::protocol_version::v5
                                   : mqtt::protocol_version::v311}),
      backoff_([] { return core::random_u64(); }) {
  if (config_.tls)
    tls_ = net::make_client_tls_context(config_.files.cafile, config_.files.certfile,
                                        config_.files.keyfile, config_.alpn);
  if (!config_.password_file.empty()) static_cast<void>(read_password(config_.password_file));
  forward_queue_options options;
  options.dir = std::move(dir);
  options.bound = config_.queue;
  queue_ = forward_queue::open(std::move(options), committer, clock);
  intake_ = std::make_unique<queue_intake>(*queue_, [this](bool is_durable) {
    if (!is_durable) counters_.count_error();
    wake();
  });
  retry_timer_ = std::make_unique<asio::steady_timer>(loop_);
}

mqtt_link::~mqtt_link() {
  // The queue first: its last durability callbacks still read this link's members.
  queue_.reset();
}

void mqtt_link::start() {
  // One bus subscription per distinct local filter of the out mappings.
  std::set<std::string> filters;
  for (const auto& mapping : config_.topics)
    if (mapping.is_out()) filters.insert(mapping.local_subscription_filter());
  for (const auto& filter : filters)
    subscriptions_.push_back(broker_.subscribe_service(
        filter, [this, filter](const broker::message_ptr& msg, const broker::client_identity*) {
          on_local_message(filter, msg);
        }));
  queue_->set_space_listener([this] {
    intake_->on_space();
    wake();
  });
  asio::co_spawn(loop_, run(), asio::detached);
}

void mqtt_link::stop() {
  subscriptions_.clear();
  is_stopped_ = true;
  asio::post(loop_, [this] {
    stopping_ = true;
    retry_timer_->cancel();
    if (current_) {
      session_.disconnect(std::chrono::steady_clock::now());
      auto link = current_;
      flush(link);
      // The DISCONNECT goes out with what is being written; the close follows it.
      asio::post(loop_, [link] {
        link->is_closed = true;
        link->ticker.cancel();
        if (link->stream) link->stream->close();
      });
    }
  });
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!is_run_done_.load() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  set_local_state(false);
}

link_status mqtt_link::status() const {
  link_status s;
  s.name = config_.name;
  s.state = state_.load();
  {
    std::lock_guard lock(text_mutex_);
    s.remote = remote_;
    s.last_error = last_error_;
  }
  counters_.copy_to(s);
  s.queue = queue_->stats();
  return s;
}

// ---- local side (the broker's threads)

void mqtt_link::on_local_message(const std::string& filter, const broker::message_ptr& msg) {
  if (msg->publisher == publisher_id_) return;  // brought in by this bridge
  const auto mapped = map_out(config_.topics, msg->topic);
  // Several filters may match one topic: the mapping map_out chose handles it, once.
  if (!mapped || mapped->mapping->local_subscription_filter() != filter) return;
  if (!mqtt::is_valid_topic_name(mapped->topic)) {
    counters_.count_error();
    core::warn_limited(drops_log_,
                       "bridge_topic_unmappable bridge={} topic=\"{}\" remote_topic=\"{}\" "
                       "similar_lines_suppressed={}",
                       config_.name, msg->topic, mapped->topic);
    return;
  }
  const std::uint8_t qos = effective_qos(msg->qos, *mapped->mapping);
  if (qos == 0 && is_direct_open_.load(std::memory_order_acquire)) {
    outbound_message out;
    out.topic = mapped->topic;
    out.payload = msg->payload;
    out.retain = msg->retain;
    if (config_.protocol == mqtt_protocol::mqttv5) out.props = msg->props;
    out.props.message_expiry_interval.reset();
    out.cookie = direct_cookie;
    bool is_taken = false;
    {
      std::lock_guard lock(direct_mutex_);
      if (direct_.size() < max_direct) {
        direct_.push_back(std::move(out));
        is_taken = true;
      }
    }
    if (is_taken) return wake();
  }
  queued_message record;
  record.topic = mapped->topic;
  record.payload = msg->payload;
  record.qos = qos;
  record.retain = msg->retain;
  if (config_.protocol == mqtt_protocol::mqttv5)
    record.properties = mqtt::encode_properties(msg->props);
  record.expires_at_ms = msg->expires_at * 1000;
  record.enqueued_ms = clock_.unix_millis();
  intake_->submit(encode_queued_message(record), broker_.hold_publisher());
}

void mqtt_link::set_local_state(bool is_up) {
  if (!config_.notifications) return;
  auto msg = std::make_shared<broker::message>();
  msg->topic = config_.notification_topic;
  msg->payload = is_up ? "1" : "0";
  msg->qos = 1;
  msg->retain = true;
  msg->publisher = publisher_id_;
  broker_.publish(std::move(msg));
}

void mqtt_link::wake() {
  if (is_stopped_.load() || is_wake_posted_.exchange(true)) return;
  asio::post(loop_, [this] {
    is_wake_posted_ = false;
    if (!current_) return;
    pump(*current_);
    flush(current_);
  });
}

// ---- the link (its loop)

asio::awaitable<void> mqtt_link::run() {
  while (!stopping_) {
    const host_port& address = config_.addresses[next_address_ % config_.addresses.size()];
    {
      std::lock_guard lock(text_mutex_);
      remote_ = address_text(address);
    }
    state_ = link_state::connecting;
    auto stream = co_await open_stream(address);
    bool was_connected = false;
    if (stream && !stopping_) {
      auto link = std::make_shared<connection>(loop_);
      link->stream = std::move(stream);
      current_ = link;
      connect_params params;
      params.client_id = config_.client_id;
      params.clean_start = config_.clean_start;
      params.session_expiry = config_.session_expiry;
      params.keep_alive = config_.keep_alive;
      if (!config_.username.empty()) params.username = config_.username;
      if (!config_.password_file.empty()) {
        try {
          params.password = read_password(config_.password_file);
        } catch (const std::system_error& error) {
          std::lock_guard lock(text_mutex_);
          last_error_ = error.what();
        }
      }
      if (config_.notifications) params.will = notification_will(config_.notification_topic);
      params.bridge_flag = config_.protocol == mqtt_protocol::mqttv311 && try_bridge_flag_;
      session_.connect(params, std::chrono::steady_clock::now());
      flush(link);
      co_await serve(link);
      current_.reset();
      was_connected = link->is_connected;
      if (was_connected) set_local_state(false);
      // A remote that drops the connection before any CONNACK may not know the bridge flag
      // (AWS IoT): the next attempt goes without it, as Mosquitto's try_private does.
      if (!was_connected && params.bridge_flag) try_bridge_flag_ = false;
    }
    if (stopping_) break;
    if (!was_connected) ++next_address_;  // the next address; after a connection, the same
    counters_.reconnects.fetch_add(1, std::memory_order_relaxed);
    state_ = link_state::backing_off;
    retry_timer_->expires_after(was_connected ? 0ms : backoff_.next_delay());
    co_await retry_timer_->async_wait(as_value);
  }
  state_ = link_state::stopped;
  is_run_done_ = true;
}

asio::awaitable<std::unique_ptr<net::byte_stream>> mqtt_link::open_stream(
    const host_port& address) {
  const auto note = [this](std::string why) {
    spdlog::warn("bridge_connect_failed bridge={} remote={} error=\"{}\"", config_.name, remote_,
                 why);
    std::lock_guard lock(text_mutex_);
    last_error_ = std::move(why);
  };
  asio::ip::tcp::resolver resolver(loop_);
  auto [resolve_error, endpoints] =
      co_await resolver.async_resolve(address.host, std::to_string(address.port), as_value);
  if (resolve_error) {
    note("resolve: " + resolve_error.message());
    co_return nullptr;
  }
  asio::ip::tcp::socket socket(loop_);
  asio::steady_timer deadline(loop_);
  deadline.expires_after(connect_timeout);
  deadline.async_wait([&socket](boost::system::error_code error) {
    if (!error) socket.close();  // cancelled (error set) once the attempt is over
  });
  auto [connect_error, endpoint] = co_await asio::async_connect(socket, endpoints, as_value);
  if (connect_error) {
    deadline.cancel();
    note("connect: " + connect_error.message());
    co_return nullptr;
  }
  socket.set_option(asio::ip::tcp::no_delay(true));
  if (!tls_) {
    deadline.cancel();
    co_return net::make_tcp_stream(std::move(socket));
  }
  auto tls = std::make_unique<net::tls_socket>(std::move(socket), *tls_);
  SSL_set_tlsext_host_name(tls->native_handle(), address.host.c_str());
  tls->set_verify_callback(asio::ssl::host_name_verification(address.host));
  deadline.cancel();
  asio::steady_timer handshake_deadline(loop_);
  handshake_deadline.expires_after(connect_timeout);
  auto* raw = tls.get();
  handshake_deadline.async_wait([raw](boost::system::error_code error) {
    if (!error) raw->lowest_layer().close();
  });
  auto [handshake_error] = co_await tls->async_handshake(asio::ssl::stream_base::client, as_value);
  handshake_deadline.cancel();
  if (handshake_error) {
    note("TLS handshake: " + handshake_error.message());
    co_return nullptr;
  }
  co_return net::make_tls_stream(std::move(tls));
}

asio::awaitable<void> mqtt_link::serve(std::shared_ptr<connection> link) {
  // Keep-alive: PINGREQ when due, and the dead-link check.
  asio::co_spawn(
      loop_,
      [this, link]() -> asio::awaitable<void> {
        while (!link->is_closed) {
          const auto due = session_.next_deadline();
          link->ticker.expires_at(due ? *due : std::chrono::steady_clock::now() + 1s);
          co_await link->ticker.async_wait(as_value);
          if (link->is_closed) break;
          handle(session_.tick(std::chrono::steady_clock::now()), *link);
          flush(link);
        }
      },
      asio::detached);
  std::string buffer(16 * 1024, '\0');
  while (!link->is_closed) {
    auto [error, bytes] = co_await link->stream->async_read_some(asio::buffer(buffer), as_value);
    if (link->is_closed) break;
    if (error) {
      fail(*link, "connection lost: " + error.message());
      break;
    }
    handle(session_.feed(std::string_view(buffer.data(), bytes), std::chrono::steady_clock::now()),
           *link);
    flush(link);
  }
  session_.link_closed();
}

void mqtt_link::handle(std::vector<session_event> events, connection& link) {
  for (auto& event : events) {
    if (auto* connack = std::get_if<connack_received>(&event)) {
      if (!connack->is_accepted) {
        fail(link, "CONNACK refused: " + std::string(connack->reason_text()));
        continue;
      }
      link.is_connected = true;
      state_ = link_state::connected;
      backoff_.reset();
      {
        std::lock_guard lock(text_mutex_);
        last_error_.clear();
      }
      spdlog::info("bridge_connected bridge={} remote={} session_present={}", config_.name, remote_,
                   connack->session_present);
      std::vector<mqtt::subscribe_entry> entries;
      std::set<std::string> seen;
      for (const auto& mapping : config_.topics) {
        if (!mapping.is_in() || !seen.insert(mapping.remote_subscription_filter()).second) continue;
        mqtt::subscribe_entry entry;
        entry.filter = mapping.remote_subscription_filter();
        entry.options.qos = mapping.qos;
        entry.options.no_local = config_.protocol == mqtt_protocol::mqttv5;
        entry.options.retain_as_published = true;
        entries.push_back(std::move(entry));
      }
      if (!entries.empty()) session_.subscribe(entries, std::chrono::steady_clock::now());
      if (config_.notifications) {
        outbound_message up;
        up.topic = config_.notification_topic;
        up.payload = "1";
        up.qos = 1;
        up.retain = true;
        up.cookie = state_cookie;
        session_.publish(up, std::chrono::steady_clock::now());
      }
      set_local_state(true);
      pump(link);
    } else if (auto* suback = std::get_if<suback_received>(&event)) {
      for (const auto& result : suback->results) {
        if (result.is_granted()) continue;
        counters_.count_error();
        spdlog::warn("bridge_subscription_refused bridge={} filter=\"{}\" reason={}", config_.name,
                     result.filter, mqtt::to_string(result.reason));
      }
    } else if (auto* received = std::get_if<publish_received>(&event)) {
      on_remote_message(std::move(received->packet));
    } else if (auto* completed = std::get_if<publish_completed>(&event)) {
      if (completed->cookie == state_cookie) continue;
      if (completed->is_refused()) {
        counters_.count_error();
        queue_->settle(completed->cookie, settle_reason::undeliverable);
      } else {
        counters_.forwarded.fetch_add(1, std::memory_order_relaxed);
        queue_->acknowledge(completed->cookie);
      }
      pump(link);
    } else if (auto* returned = std::get_if<messages_returned>(&event)) {
      // The remote lost our session: they go again, first, as new messages.
      for (auto it = returned->messages.rbegin(); it != returned->messages.rend(); ++it)
        if (it->cookie != state_cookie) pending_.push_front(std::move(*it));
    } else if (auto* disconnected = std::get_if<server_disconnected>(&event)) {
      fail(link,
           "disconnected by the remote: " + std::string(mqtt::to_string(disconnected->reason)));
    } else if (auto* failed = std::get_if<link_failed>(&event)) {
      // What the remote sent broke the protocol: an error (a silent remote is only a lost link).
      if (failed->reason != mqtt::reason_code::keep_alive_timeout) counters_.count_error();
      fail(link, std::string(failed->what));
    }
  }
}

void mqtt_link::on_remote_message(mqtt::publish_packet packet) {
  const std::uint16_t packet_id = packet.packet_id;
  const std::uint8_t qos = packet.qos;
  const auto mapped = map_in(config_.topics, packet.topic);
  if (!mapped || !mqtt::is_valid_topic_name(mapped->topic)) {
    counters_.count_error();
    core::warn_limited(drops_log_,
                       "bridge_topic_unmappable bridge={} remote_topic=\"{}\" "
                       "similar_lines_suppressed={}",
                       config_.name, packet.topic);
    if (qos > 0) session_.acknowledge(packet_id);
    return;
  }
  auto msg = std::make_shared<broker::message>();
  msg->topic = mapped->topic;
  msg->payload = std::move(packet.payload);
  msg->qos = effective_qos(qos, *mapped->mapping);
  msg->retain = packet.retain;
  msg->expires_at = broker_.expiry_for(packet.props);
  msg->props = std::move(packet.props);
  msg->props.message_expiry_interval.reset();
  msg->props.topic_alias.reset();
  msg->props.subscription_identifiers.clear();
  msg->publisher = publisher_id_;
  counters_.received.fetch_add(1, std::memory_order_relaxed);
  if (qos == 0) {
    broker_.publish(std::move(msg));
    return;
  }
  // Acknowledged to the remote once the broker took it: its subscribers' queues, or their
  // congestion cleared.
  auto gate = std::make_shared<broker::congestion_gate>();
  gate->on_clear = [this, packet_id] {
    asio::post(loop_, [this, packet_id] {
      session_.acknowledge(packet_id);
      if (current_) flush(current_);
    });
  };
  broker_.publish(std::move(msg), gate);
  gate->release();
}

void mqtt_link::pump(connection& link) {
  if (link.is_closed || session_.state() != session_state::connected) {
    is_direct_open_ = false;
    return;
  }
  std::vector<outbound_message> direct;
  {
    std::lock_guard lock(direct_mutex_);
    direct.swap(direct_);
  }
  for (auto& message : direct) {
    const auto status = session_.publish(message, std::chrono::steady_clock::now()).status;
    if (status == publish_status::sent) {
      counters_.forwarded.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    counters_.count_error();  // at most once: dropped, counted
    if (status == publish_status::too_large || status == publish_status::invalid_topic)
      core::warn_limited(drops_log_,
                         "bridge_message_undeliverable bridge={} topic=\"{}\" reason={} "
                         "similar_lines_suppressed={}",
                         config_.name, message.topic,
                         status == publish_status::too_large ? "too_large" : "invalid_topic");
  }
  // The direct path is open while nothing waits on disk, so the two never reorder.
  is_direct_open_ = pending_.empty() && queue_->stats().queued_messages == 0;
  while (true) {
    if (pending_.empty()) {
      std::vector<seglog::record> records;
      if (auto error = queue_->read(read_batch_records, read_batch_bytes, records)) {
        counters_.count_error();
        spdlog::error("bridge_queue_read_failed bridge={} error=\"{}\"", config_.name,
                      error.message());
        return;
      }
      if (records.empty()) return;
      const std::int64_t now_ms = clock_.unix_millis();
      for (auto& record : records) {
        auto message = decode_queued_message(record.payload);
        if (!message) {
          counters_.count_error();
          queue_->settle(record.offset, settle_reason::undeliverable);
          continue;
        }
        outbound_message out;
        out.topic = std::move(message->topic);
        out.payload = std::move(message->payload);
        out.qos = message->qos;
        out.retain = message->retain;
        out.cookie = record.offset;
        if (!message->properties.empty())
          if (auto props = mqtt::decode_properties(message->properties))
            out.props = std::move(*props);
        out.props.message_expiry_interval.reset();
        if (message->expires_at_ms != 0) {
          const std::int64_t left_ms = message->expires_at_ms - now_ms;
          if (left_ms <= 0) {
            queue_->settle(record.offset, settle_reason::expired);
            continue;
          }
          out.props.message_expiry_interval = static_cast<std::uint32_t>((left_ms + 999) / 1000);
        }
        pending_.push_back(std::move(out));
      }
      continue;
    }
    outbound_message& next = pending_.front();
    const auto result = session_.publish(next, std::chrono::steady_clock::now());
    switch (result.status) {
      case publish_status::sent:
        if (result.packet_id == 0) {  // QoS 0: done once written
          counters_.forwarded.fetch_add(1, std::memory_order_relaxed);
          queue_->acknowledge(next.cookie);
        }
        pending_.pop_front();
        break;
      case publish_status::would_block:
      case publish_status::not_connected:
        return;
      case publish_status::too_large:
      case publish_status::invalid_topic:
        counters_.count_error();
        core::warn_limited(
            drops_log_,
            "bridge_message_undeliverable bridge={} topic=\"{}\" reason={} "
            "similar_lines_suppressed={}",
            config_.name, next.topic,
            result.status == publish_status::too_large ? "too_large" : "invalid_topic");
        queue_->settle(next.cookie, settle_reason::undeliverable);
        pending_.pop_front();
        break;
    }
  }
}

void mqtt_link::flush(const std::shared_ptr<connection>& link) {
  if (link->is_writing || link->is_closed || link != current_ || !session_.has_output()) return;
  link->is_writing = true;
  link->writing = session_.take_output();
  asio::co_spawn(
      loop_,
      [this, link]() -> asio::awaitable<void> {
        while (!link->writing.empty() && !link->is_closed) {
          const std::vector<asio::const_buffer> buffers{asio::buffer(link->writing)};
          auto [error, bytes] = co_await link->stream->async_write(buffers, as_value);
          if (error) {
            if (!link->is_closed) fail(*link, "write: " + error.message());
            break;
          }
          link->writing = link == current_ ? session_.take_output() : std::string();
        }
        link->is_writing = false;
      },
      asio::detached);
}

void mqtt_link::fail(connection& link, std::string why) {
  if (link.is_closed) return;
  spdlog::warn("bridge_link_failed bridge={} remote={} error=\"{}\"", config_.name, remote_, why);
  {
    std::lock_guard lock(text_mutex_);
    last_error_ = std::move(why);
  }
  link.is_closed = true;
  is_direct_open_ = false;
  link.ticker.cancel();
  if (link.stream) link.stream->close();
}

}  // namespace nimbus::bridge
