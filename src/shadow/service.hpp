#pragma once
// The Device Shadow service: holds every shadow in memory, stores each change through the write
// queue, and answers get, update and delete requests from MQTT (the reserved topics, through the
// broker's bus) and from the iot-data REST routes (src/iot/) by one code path; only how the
// answer travels differs. An answer goes out once the change it reports is durable, and a read
// waits for the shadow's earlier changes, so nobody sees a state a crash could take back.
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include <boost/json/object.hpp>

#include "broker/broker.hpp"
#include "config/settings.hpp"
#include "core/clock.hpp"
#include "shadow/document.hpp"
#include "storage/database.hpp"
#include "storage/write_queue.hpp"

namespace nimbus::shadow {

enum class operation { get, update, remove };

// One request: which shadow (an empty `shadow_name` is the classic shadow) and the payload as
// received (the update document; for get and delete only its clientToken counts).
struct request {
  operation op = operation::get;
  std::string thing_name;
  std::string shadow_name;
  std::string payload;
};

// The accepted document (/get/accepted, /update/accepted, /delete/accepted, or the REST body)
// or AWS's refusal.
using answer = std::variant<boost::json::object, rejection>;
using on_answer = std::function<void(answer)>;

// A request topic taken apart: `$aws/things/{thing}/shadow[/name/{shadow}]/{get|update|delete}`.
struct request_topic {
  std::string thing_name;
  std::string shadow_name;
  operation op = operation::get;
};
std::optional<request_topic> parse_request_topic(std::string_view topic);
// The topic prefix of a shadow: `$aws/things/{thing}/shadow[/name/{shadow}]`.
std::string shadow_topic(std::string_view thing_name, std::string_view shadow_name);

class service {
 public:
  // `writer` null: nothing is stored and answers go out at once (tests).
  service(broker::broker& broker, storage::write_queue* writer, core::clock& clock,
          const config::shadow_settings& settings);
  ~service();

  static void migrate(storage::database& db);
  // Loads the stored shadows (start-up, before start()).
  void restore(storage::database& db);
  // Subscribes to the request topics and reserves the reply topics; call before listeners open.
  void start();

  // Runs `r`. `done` is called exactly once, with the answer, when it may be given: for a change
  // once it is durable, for a read once the shadow's earlier changes are. It runs on the write
  // queue's thread or the caller's, so it must not block. After `done`, an accepted change is
  // published on MQTT whoever asked: /update/accepted, /update/delta (when desired and reported
  // differ) and /update/documents, or /delete/accepted.
  void handle(request r, on_answer done);

  // A page of a thing's named shadows, by name, after `after` (empty: from the first).
  void list_named(const std::string& thing_name, const std::string& after, std::size_t max,
                  std::function<void(std::vector<std::string>)> done);

  // A shadow's /get/accepted document as it is now, in memory (the rules engine's
  // get_thing_shadow()), or none when it does not exist. Unlike get requests it does not wait
  // for the shadow's pending write: a rule reads the state its message raced with.
  std::optional<std::string> current_document(std::string_view thing_name,
                                              std::string_view shadow_name);

  // Deletes the shadows of a thing, without publishing: the registry deleted the thing with
  // the write `deleted_by`. Shadows written after that write (an update that raced the
  // deletion, already answered) are kept.
  void delete_thing(const std::string& thing_name, storage::ticket deleted_by);

  // Forgets deleted shadows whose version counter has expired (48 hours, as AWS), in memory and
  // in the database. Call periodically.
  void purge_deleted();

  const limits& bounds() const { return bounds_; }
  // nimbus_shadow_* lines for /metrics.
  std::string prometheus_text() const;

 private:
  struct stored_shadow {
    document doc;
    std::int64_t deleted_at = 0;  // unix seconds of the deletion, while !doc.exists()
    storage::ticket written;      // its latest write (none: restored from the database)
  };
  // A deletion to forget once the version counter expires; oldest first.
  struct tombstone {
    std::int64_t deleted_at;
    std::string thing_name;
    std::string shadow_name;
  };
  struct thing_shadows {
    std::map<std::string, stored_shadow, std::less<>> shadows;  // "" is the classic shadow
    std::size_t named = 0;                                      // named shadows that exist
    // Requests accepted and not yet answered; the answers decrement it without the lock.
    std::shared_ptr<std::atomic<std::uint32_t>> in_flight =
        std::make_shared<std::atomic<std::uint32_t>>(0);
    storage::ticket last_write;
  };

  void on_request(const broker::message_ptr& msg);
  // Answers `done`, then runs `then`, once `t` is durable (at once without a store or a
  // ticket); a failed write turns the answer into a 500. Called under mutex_, so a thing's
  // answers leave in the order of its changes.
  void answer_when_durable(storage::ticket t, thing_shadows& thing, answer a, on_answer done,
                           std::function<void()> then = {});
  storage::ticket save(const std::string& thing_name, const std::string& shadow_name,
                       const stored_shadow& shadow);
  void publish(std::string topic, const boost::json::object& payload);
  void count(operation op, const answer& a);

  broker::broker& broker_;
  storage::write_queue* writer_;
  core::clock& clock_;
  limits bounds_;
  std::size_t max_named_;
  std::size_t max_shadows_;
  std::size_t held_ = 0;  // shadows in memory, deleted ones included (max_shadows)
  std::uint32_t max_in_flight_;

  std::atomic<std::int64_t> existing_{0};  // shadows that exist (classic and named)
  std::atomic<std::uint64_t> accepted_[3]{};
  static constexpr int counted_codes[] = {400, 404, 409, 413, 415, 429, 500};
  std::atomic<std::uint64_t> rejected_[std::size(counted_codes) + 1]{};  // the last: others
  std::atomic<bool> failed_{false};  // a write failed: changes are refused until restart
  std::mutex mutex_;
  std::unordered_map<std::string, thing_shadows> things_;
  std::deque<tombstone> tombstones_;
  std::vector<broker::bus_subscription> subscriptions_;
};

}  // namespace nimbus::shadow
