#include "broker/session_store.hpp"

#include <algorithm>
#include <charconv>
#include <map>
#include <unordered_map>

#include "mqtt/codec.hpp"

namespace nimbus::broker {

namespace {

std::string join_ids(const std::vector<std::uint32_t>& ids) {
  std::string out;
  for (auto id : ids) out += (out.empty() ? "" : ",") + std::to_string(id);
  return out;
}

std::vector<std::uint32_t> split_ids(std::string_view text) {
  std::vector<std::uint32_t> ids;
  while (!text.empty()) {
    auto comma = text.find(',');
    auto part = text.substr(0, comma);
    std::uint32_t v = 0;
    if (std::from_chars(part.data(), part.data() + part.size(), v).ec == std::errc{})
      ids.push_back(v);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return ids;
}

// A will is stored as the PUBLISH it will become (MQTT 5 wire form, properties included).
std::string encode_will(const mqtt::will_message& will) {
  mqtt::publish_packet p;
  p.qos = will.qos;
  p.retain = will.retain;
  p.topic = will.topic;
  p.packet_id = will.qos > 0 ? 1 : 0;
  p.props = will.props;
  p.props.will_delay_interval.reset();  // not a PUBLISH property; the delay is in will_at
  p.payload = will.payload;
  std::string out;
  mqtt::encode(p, mqtt::protocol_version::v5, out);
  return out;
}

std::optional<mqtt::will_message> decode_will(std::string_view bytes) {
  auto header = mqtt::read_frame_header(bytes);
  auto* h = std::get_if<mqtt::frame_header>(&header);
  if (h == nullptr || h->total_size() != bytes.size()) return std::nullopt;
  auto decoded = mqtt::decode_packet(*h, bytes.substr(h->header_size), mqtt::protocol_version::v5);
  auto* packet = std::get_if<mqtt::packet>(&decoded);
  auto* p = packet ? std::get_if<mqtt::publish_packet>(packet) : nullptr;
  if (p == nullptr) return std::nullopt;
  return mqtt::will_message{std::move(p->topic), std::move(p->payload), p->qos, p->retain,
                            std::move(p->props)};
}

}  // namespace

void session_store::migrate(storage::database& db) {
  db.migrate("broker", {R"sql(
    CREATE TABLE mqtt_sessions (
      client_id TEXT PRIMARY KEY,
      protocol INTEGER NOT NULL,
      expiry_interval INTEGER NOT NULL,
      expires_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE mqtt_subscriptions (
      client_id TEXT NOT NULL,
      filter TEXT NOT NULL,
      qos INTEGER NOT NULL,
      no_local INTEGER NOT NULL,
      retain_as_published INTEGER NOT NULL,
      retain_handling INTEGER NOT NULL,
      subscription_id INTEGER NOT NULL,
      PRIMARY KEY (client_id, filter)
    ) WITHOUT ROWID;
    CREATE TABLE mqtt_queue (
      client_id TEXT NOT NULL,
      seq INTEGER NOT NULL,
      topic TEXT NOT NULL,
      payload BLOB NOT NULL,
      message_qos INTEGER NOT NULL,
      qos INTEGER NOT NULL,
      retain INTEGER NOT NULL,
      properties BLOB NOT NULL,
      expires_at INTEGER NOT NULL,
      publisher TEXT NOT NULL,
      subscription_ids TEXT NOT NULL,
      sent_packet_id INTEGER NOT NULL DEFAULT 0,
      released_packet_id INTEGER NOT NULL DEFAULT 0,
      PRIMARY KEY (client_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE mqtt_inbound_qos2 (
      client_id TEXT NOT NULL,
      packet_id INTEGER NOT NULL,
      PRIMARY KEY (client_id, packet_id)
    ) WITHOUT ROWID;
    CREATE TABLE mqtt_retained (
      topic TEXT PRIMARY KEY,
      payload BLOB NOT NULL,
      qos INTEGER NOT NULL,
      properties BLOB NOT NULL,
      expires_at INTEGER NOT NULL,
      publisher TEXT NOT NULL
    ) WITHOUT ROWID;
  )sql",
                        R"sql(
    ALTER TABLE mqtt_sessions ADD COLUMN will BLOB;
    ALTER TABLE mqtt_sessions ADD COLUMN will_at INTEGER NOT NULL DEFAULT 0;
  )sql",
                        R"sql(
    ALTER TABLE mqtt_retained ADD COLUMN modified_ms INTEGER NOT NULL DEFAULT 0;
  )sql"});
}

std::vector<stored_session> session_store::load_sessions(storage::database& db) {
  std::vector<stored_session> sessions;
  std::map<std::string, std::size_t> by_id;
  auto s = db.prepare(
      "SELECT client_id, protocol, expiry_interval, expires_at, will, will_at FROM mqtt_sessions");
  while (s.step()) {
    by_id[s.column_text(0)] = sessions.size();
    stored_session stored;
    stored.client_id = s.column_text(0);
    stored.version = static_cast<mqtt::protocol_version>(s.column_int(1));
    stored.expiry_interval = static_cast<std::uint32_t>(s.column_int(2));
    stored.expires_at = s.column_int(3);
    if (!s.column_is_null(4)) {
      stored.will = decode_will(s.column_text(4));
      stored.will_at = s.column_int(5);
    }
    sessions.push_back(std::move(stored));
  }
  auto subs = db.prepare(
      "SELECT client_id, filter, qos, no_local, retain_as_published, retain_handling, "
      "subscription_id "
      "FROM mqtt_subscriptions");
  while (subs.step()) {
    auto it = by_id.find(subs.column_text(0));
    if (it == by_id.end()) continue;
    subscription sub;
    sub.options.qos = static_cast<std::uint8_t>(subs.column_int(2));
    sub.options.no_local = subs.column_int(3) != 0;
    sub.options.retain_as_published = subs.column_int(4) != 0;
    sub.options.retain_handling = static_cast<std::uint8_t>(subs.column_int(5));
    sub.subscription_id = static_cast<std::uint32_t>(subs.column_int(6));
    sessions[it->second].subscriptions.emplace_back(subs.column_text(1), sub);
  }
  auto queue = db.prepare(
      "SELECT client_id, seq, topic, payload, message_qos, qos, retain, properties, expires_at, "
      "publisher, "
      "subscription_ids, released_packet_id, sent_packet_id FROM mqtt_queue ORDER BY client_id, "
      "seq");
  // One message queued for many sessions is stored once per session but shared in memory, as
  // it was before the restart: a fan-out to 10,000 offline sessions loads one payload, not
  // 10,000 copies.
  std::unordered_map<std::size_t, std::vector<message_ptr>> loaded;
  while (queue.step()) {
    auto it = by_id.find(queue.column_text(0));
    if (it == by_id.end()) continue;
    // Compared in place before anything is allocated: a copy is made only for a message not
    // seen yet.
    std::string_view topic = queue.column_view(2);
    std::string_view payload = queue.column_view(3);
    auto qos = static_cast<std::uint8_t>(queue.column_int(4));
    std::string_view props_blob = queue.column_view(7);
    std::int64_t expires_at = queue.column_int(8);
    std::string_view publisher = queue.column_view(9);
    auto& same_hash =
        loaded[std::hash<std::string_view>{}(payload) ^ (std::hash<std::string_view>{}(topic)*31)];
    auto props = mqtt::decode_properties(props_blob).value_or(mqtt::properties{});
    auto same = std::find_if(same_hash.begin(), same_hash.end(), [&](const message_ptr& m) {
      return m->payload == payload && m->topic == topic && m->qos == qos &&
             m->expires_at == expires_at && m->publisher == publisher && m->props == props;
    });
    message_ptr shared;
    if (same != same_hash.end()) {
      shared = *same;
    } else {
      auto msg = std::make_shared<message>();
      msg->topic = topic;
      msg->payload = payload;
      msg->qos = qos;
      msg->props = std::move(props);
      msg->expires_at = expires_at;
      msg->publisher = publisher;
      shared = msg;
      same_hash.push_back(shared);
    }
    delivery d;
    d.seq = static_cast<std::uint64_t>(queue.column_int(1));
    d.qos = static_cast<std::uint8_t>(queue.column_int(5));
    d.retain = queue.column_int(6) != 0;
    d.subscription_ids = split_ids(queue.column_text(10));
    d.msg = std::move(shared);
    auto released = static_cast<std::uint16_t>(queue.column_int(11));
    auto sent = static_cast<std::uint16_t>(queue.column_int(12));
    if (released != 0)
      sessions[it->second].released.emplace_back(released, std::move(d));
    else if (sent != 0)
      sessions[it->second].sent.emplace_back(sent, std::move(d));
    else
      sessions[it->second].queue.push_back(std::move(d));
  }
  auto inbound = db.prepare("SELECT client_id, packet_id FROM mqtt_inbound_qos2");
  while (inbound.step()) {
    auto it = by_id.find(inbound.column_text(0));
    if (it != by_id.end())
      sessions[it->second].inbound_qos2.push_back(
          static_cast<std::uint16_t>(inbound.column_int(1)));
  }
  return sessions;
}

std::size_t session_store::load_retained(storage::database& db,
                                         const std::function<bool(retained_message)>& take) {
  std::size_t visited = 0;
  auto s = db.prepare(
      "SELECT topic, payload, qos, properties, expires_at, publisher, modified_ms "
      "FROM mqtt_retained");
  while (s.step()) {
    ++visited;
    auto msg = std::make_shared<message>();
    msg->topic = s.column_text(0);
    msg->payload = s.column_text(1);
    msg->qos = static_cast<std::uint8_t>(s.column_int(2));
    msg->retain = true;
    msg->props = mqtt::decode_properties(s.column_text(3)).value_or(mqtt::properties{});
    msg->expires_at = s.column_int(4);
    msg->publisher = s.column_text(5);
    if (!take({std::move(msg), s.column_int(6)})) {
      --visited;  // refused: not taken
      break;
    }
  }
  auto count = db.prepare("SELECT COUNT(*) FROM mqtt_retained");
  std::size_t total = count.step() ? static_cast<std::size_t>(count.column_int(0)) : visited;
  return total > visited ? total - visited : 0;
}

storage::ticket session_store::save_session(const std::string& client_id,
                                            mqtt::protocol_version version,
                                            std::uint32_t expiry_interval,
                                            std::int64_t expires_at) {
  return writer_.submit([=](storage::database& db) {
    db.cached(
          "INSERT INTO mqtt_sessions (client_id, protocol, expiry_interval, expires_at) VALUES (?, "
          "?, ?, ?) "
          "ON CONFLICT (client_id) DO UPDATE SET protocol = excluded.protocol, "
          "expiry_interval = excluded.expiry_interval, expires_at = excluded.expires_at")
        .bind(1, client_id)
        .bind(2, static_cast<std::int64_t>(version))
        .bind(3, static_cast<std::int64_t>(expiry_interval))
        .bind(4, expires_at)
        .run();
  });
}

storage::ticket session_store::delete_session(const std::string& client_id) {
  return writer_.submit([=](storage::database& db) {
    for (const char* sql : {"DELETE FROM mqtt_subscriptions WHERE client_id = ?",
                            "DELETE FROM mqtt_queue WHERE client_id = ?",
                            "DELETE FROM mqtt_inbound_qos2 WHERE client_id = ?",
                            "DELETE FROM mqtt_sessions WHERE client_id = ?"}) {
      db.cached(sql).bind(1, client_id).run();
    }
  });
}

storage::ticket session_store::save_will(const std::string& client_id,
                                         const mqtt::will_message& will, std::int64_t publish_at) {
  return writer_.submit([client_id, blob = encode_will(will), publish_at](storage::database& db) {
    db.cached("UPDATE mqtt_sessions SET will = ?, will_at = ? WHERE client_id = ?")
        .bind_blob(1, blob)
        .bind(2, publish_at)
        .bind(3, client_id)
        .run();
  });
}

storage::ticket session_store::clear_will(const std::string& client_id) {
  return writer_.submit([=](storage::database& db) {
    db.cached("UPDATE mqtt_sessions SET will = NULL, will_at = 0 WHERE client_id = ?")
        .bind(1, client_id)
        .run();
  });
}

storage::ticket session_store::save_subscription(const std::string& client_id,
                                                 const std::string& filter, const subscription& s) {
  return writer_.submit([=](storage::database& db) {
    db.cached(
          "INSERT OR REPLACE INTO mqtt_subscriptions (client_id, filter, qos, no_local, "
          "retain_as_published, "
          "retain_handling, subscription_id) VALUES (?, ?, ?, ?, ?, ?, ?)")
        .bind(1, client_id)
        .bind(2, filter)
        .bind(3, std::int64_t{s.options.qos})
        .bind(4, std::int64_t{s.options.no_local})
        .bind(5, std::int64_t{s.options.retain_as_published})
        .bind(6, std::int64_t{s.options.retain_handling})
        .bind(7, std::int64_t{s.subscription_id})
        .run();
  });
}

storage::ticket session_store::delete_subscription(const std::string& client_id,
                                                   const std::string& filter) {
  return writer_.submit([=](storage::database& db) {
    db.cached("DELETE FROM mqtt_subscriptions WHERE client_id = ? AND filter = ?")
        .bind(1, client_id)
        .bind(2, filter)
        .run();
  });
}

storage::ticket session_store::enqueue(const std::string& client_id, const delivery& d) {
  return writer_.submit([client_id, d](storage::database& db) {
    auto& insert = db.cached(
        "INSERT OR REPLACE INTO mqtt_queue (client_id, seq, topic, payload, message_qos, qos, "
        "retain, properties, "
        "expires_at, publisher, subscription_ids) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    {
      insert.bind(1, client_id)
          .bind(2, static_cast<std::int64_t>(d.seq))
          .bind(3, d.msg->topic)
          .bind_blob(4, d.msg->payload)
          .bind(5, std::int64_t{d.msg->qos})
          .bind(6, std::int64_t{d.qos})
          .bind(7, std::int64_t{d.retain})
          .bind_blob(8, mqtt::encode_properties(d.msg->props))
          .bind(9, d.msg->expires_at)
          .bind(10, d.msg->publisher)
          .bind(11, join_ids(d.subscription_ids))
          .run();
    }
  });
}

storage::ticket session_store::remove_delivery(const std::string& client_id, std::uint64_t seq) {
  return writer_.submit([=](storage::database& db) {
    db.cached("DELETE FROM mqtt_queue WHERE client_id = ? AND seq = ?")
        .bind(1, client_id)
        .bind(2, static_cast<std::int64_t>(seq))
        .run();
  });
}

storage::ticket session_store::mark_sent(const std::string& client_id, std::uint64_t seq,
                                         std::uint16_t packet_id) {
  return writer_.submit([=](storage::database& db) {
    db.cached("UPDATE mqtt_queue SET sent_packet_id = ? WHERE client_id = ? AND seq = ?")
        .bind(1, std::int64_t{packet_id})
        .bind(2, client_id)
        .bind(3, static_cast<std::int64_t>(seq))
        .run();
  });
}

storage::ticket session_store::mark_released(const std::string& client_id, std::uint64_t seq,
                                             std::uint16_t packet_id) {
  return writer_.submit([=](storage::database& db) {
    db.cached("UPDATE mqtt_queue SET released_packet_id = ? WHERE client_id = ? AND seq = ?")
        .bind(1, std::int64_t{packet_id})
        .bind(2, client_id)
        .bind(3, static_cast<std::int64_t>(seq))
        .run();
  });
}

storage::ticket session_store::add_inbound_qos2(const std::string& client_id,
                                                std::uint16_t packet_id) {
  return writer_.submit([=](storage::database& db) {
    db.cached("INSERT OR IGNORE INTO mqtt_inbound_qos2 (client_id, packet_id) VALUES (?, ?)")
        .bind(1, client_id)
        .bind(2, std::int64_t{packet_id})
        .run();
  });
}

storage::ticket session_store::remove_inbound_qos2(const std::string& client_id,
                                                   std::uint16_t packet_id) {
  return writer_.submit([=](storage::database& db) {
    db.cached("DELETE FROM mqtt_inbound_qos2 WHERE client_id = ? AND packet_id = ?")
        .bind(1, client_id)
        .bind(2, std::int64_t{packet_id})
        .run();
  });
}

storage::ticket session_store::save_retained(const retained_message& retained) {
  return writer_.submit(
      [msg = retained.msg, modified_ms = retained.modified_ms](storage::database& db) {
        db.cached(
              "INSERT OR REPLACE INTO mqtt_retained (topic, payload, qos, properties, expires_at, "
              "publisher, modified_ms) "
              "VALUES (?, ?, ?, ?, ?, ?, ?)")
            .bind(1, msg->topic)
            .bind_blob(2, msg->payload)
            .bind(3, std::int64_t{msg->qos})
            .bind_blob(4, mqtt::encode_properties(msg->props))
            .bind(5, msg->expires_at)
            .bind(6, msg->publisher)
            .bind(7, modified_ms)
            .run();
      });
}

storage::ticket session_store::delete_retained(const std::string& topic) {
  return writer_.submit([=](storage::database& db) {
    db.cached("DELETE FROM mqtt_retained WHERE topic = ?").bind(1, topic).run();
  });
}

}  // namespace nimbus::broker
