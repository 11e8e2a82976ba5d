#pragma once
// The per-series detectors behind the alert engine's rules (reference/timeseries.md §6): what
// one reading means for a (rule, series) state — raising, clearing, its peak and score — the
// state itself with its checkpoint encoding, and the table that holds the states. The engine
// owns the table and runs the pending / open / clearing machine over these verdicts; nothing here
// knows about alerts or time. Single-threaded, like the engine.
#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "alerts/rule.hpp"

namespace nimbus::alerts {

// Scores are clamped to this so that a peak stays a finite JSON number.
inline constexpr double max_score = 1e12;

// EWMA mean and variance (Finch 2009's incremental form), alpha = 1 - 2^(-1/half_life).
struct ewma_baseline {
  double mean = 0;
  double variance = 0;
  std::uint64_t count = 0;  // readings taken into the baseline

  void add(double value, double alpha);
  // (value - mean) / sd. The standard deviation is floored at 1e-9 * |mean| (the smallest normal
  // double when the mean is 0): a series that has been constant makes any different reading an
  // anomaly, as mad does with a zero MAD, instead of dividing by zero.
  double score(double value) const;
};
double ewma_alpha(double half_life);

// The last `capacity` normal readings, in arrival order (a ring) and sorted (a flat array).
// Median and MAD are O(log w): the MAD is the middle of the deviations below and above the
// median, two sorted runs of the sorted window, found by selection across them. Insertion and
// eviction are a binary search plus a memmove of at most w doubles: no allocation once full,
// and cheaper than tree nodes for the windows rules use. Both live in one buffer, held by
// value in the detector's state: a reading follows one pointer.
class mad_window {
 public:
  mad_window() = default;  // none yet: reset() first
  explicit mad_window(std::uint32_t capacity) { reset(capacity); }

  void reset(std::uint32_t capacity);  // empty, holding at most `capacity` (at least 1)
  bool is_set() const { return capacity_ > 0; }
  void add(double value);
  std::size_t size() const { return size_; }
  std::size_t capacity() const { return capacity_; }
  double median() const;  // size() > 0
  double mad() const;     // median of |x - median|; size() > 0
  // Readings ever added (the warm-up counts these, not the window's size).
  std::uint64_t seen() const { return seen_; }
  void set_seen(std::uint64_t seen) { seen_ = seen; }
  std::vector<double> in_order() const;  // oldest first
  void prefetch() const;                 // the memory the next add, median and mad read

 private:
  void grow();

  // The sorted readings, then the ring, `allocated_` of each: grows to `capacity_` as readings
  // come (a rule over many quiet series costs what they hold, not their windows' size), then
  // the ring turns.
  std::unique_ptr<double[]> buffer_;
  std::uint32_t capacity_ = 0;
  std::uint32_t allocated_ = 0;
  std::uint32_t size_ = 0;
  std::uint32_t oldest_ = 0;
  std::uint64_t seen_ = 0;
};

// Where a (rule, series) state stands. normal -> raise_pending -> open -> clear_pending -> normal;
// a pending of 0 skips its pending phase.
enum class phase : std::uint8_t { normal, raise_pending, open, clear_pending };

inline constexpr std::int64_t no_deadline = std::numeric_limits<std::int64_t>::max();

// One (rule, series) state. The engine fills the identity and the machine fields; evaluate()
// the detector's own. Aligned, and ordered so that a reading that changes no phase reads and
// writes the first cache line only (a MAD window's and a flat-line run's fields excepted).
struct alignas(64) detector_state {
  std::uint32_t slot = 0;  // its place in the state_table (and its timer's key)
  std::uint32_t rule = 0;  // the engine's rule slot
  bool is_live = false;
  bool is_dirty = false;
  bool is_urgent = false;  // dirty, and a timer changed: a checkpoint should not wait for it
  bool is_listed = false;  // in the table's dirty list (an urgent take leaves it there)
  phase at = phase::normal;
  bool has_last = false;
  std::int64_t last_ms = 0;        // when the newest reading arrived (or the presence event's time)
  std::int64_t last_point_ms = 0;  // the newest reading's own time: older ones are late
  std::int64_t deadline_ms = no_deadline;  // the timer armed for it, if any
  ewma_baseline ewma;

  mad_window mad;            // mad rules
  std::uint32_t series = 0;  // the state_table's series slot
  std::uint32_t flat_run = 0;
  double flat_value = 0;
  std::int64_t since_ms = 0;   // when the raise or clear pending started
  std::uint64_t alert_id = 0;  // the alert it raised or joined (open, clear_pending)
  // The raising readings since the raise pending started: what the alert starts with.
  std::uint64_t run_count = 0;
  double run_value = 0;
  double run_peak = 0;
  double run_score = 0;
};

// What a detector made of one reading.
struct reading {
  bool is_raising = false;
  bool is_clearing = false;
  double value = 0;
  // The candidate for the alert's peak: the value (threshold, range, flatline) or |score|.
  double peak = 0;
  // What value escalations compare: the value (threshold, by the rule's operator), the distance
  // outside [lo, hi] (range), |score| (ewma, mad), the run of equal readings (flatline).
  double score = 0;
};

// Judges `value` and updates the detector's part of `state` (a baseline takes normal readings
// only). For threshold, range, ewma, mad and flatline; `alpha` is ewma_alpha of the rule's
// half-life. A reading both raising and clearing (overlapping bands) counts as raising.
reading evaluate(const condition& c, double alpha, detector_state& state, double value);

// Whether `candidate` is a more extreme peak than `current` by the rule's direction.
bool more_extreme_peak(const condition& c, double candidate, double current);
// Whether `candidate` is a stronger escalation score than `current`.
bool stronger_score(const condition& c, double candidate, double current);
// Whether a value escalation step is met by a score (never for no_data, offline).
bool escalation_met(const condition& c, double step_value, double score);

// The checkpoint encoding of a state (saved_state::data): a version, the kind, the machine
// fields, the device, then the detector's own (ewma mean/variance/count, the mad window oldest
// first, the flat-line run). Little-endian, fixed-width.
std::string encode_state(condition_kind kind, const detector_state& state, std::string_view device);
// Refuses (false) data that is damaged or of another kind; a longer mad window than `window`
// keeps its newest readings. The identity fields and deadline are left for the engine.
bool decode_state(std::string_view data, condition_kind kind, std::uint32_t window,
                  detector_state& state, std::string& device);

// Hash and equality for string keys looked up by string_view (no key built per lookup).
struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};
template <class T>
using string_map = std::unordered_map<std::string, T, string_hash, std::equal_to<>>;

// The rules naming one device as (field, rule slot), by field then rule name: a device has a
// few, searched in turn (the engine's index by device).
using device_rules = std::vector<std::pair<std::string, std::uint32_t>>;

inline constexpr std::uint32_t no_state = std::numeric_limits<std::uint32_t>::max();

// A rule that selects a series' values of one field, and its state on the series (no_state:
// none yet). 16 bytes: the field's name is the engine's interned copy.
struct binding {
  const std::string* field = nullptr;
  std::uint32_t rule = 0;
  std::uint32_t state = no_state;
};

// A series some state is on: its key (tsdb::series_key, or the device id for offline) and its
// device, shared by the states of every rule on it and freed with the last of them. Aligned,
// with all a point of it reads in the first cache line (for up to two bindings).
struct alignas(64) series_entry {
  std::uint64_t id = 0;  // what find_series() knows it by (the store's series id)
  // The rules selecting its points in `*database`, by field (rules for any device first, each
  // part by name), as of the engine's index version `bindings_version` (0: not yet, or one of
  // its states went since): a point of the series is judged from these, with no index lookup,
  // selection test or search for its states.
  std::uint64_t bindings_version = 0;
  const std::string* database = nullptr;  // interned by the engine
  std::uint32_t key_size = 0;             // key.size(): what confirms a series found by id
  std::uint32_t binding_count = 0;
  std::array<binding, 2> first_bindings;  // the first two; the rest in more_bindings
  std::vector<binding> more_bindings;
  std::string key;
  std::string device;
  // Its states as (rule slot, state slot), by rule slot: a series has a few.
  std::vector<std::pair<std::uint32_t, std::uint32_t>> states;

  binding& bound(std::size_t i) {
    return i < first_bindings.size() ? first_bindings[i] : more_bindings[i - first_bindings.size()];
  }
  void set_bindings(const std::vector<binding>& all);
};

// Series ids to series slots: open addressing with linear probing, so that a lookup is one
// cache line where a node-based map's is two (a bucket, then its node).
class series_index {
 public:
  std::optional<std::uint32_t> find(std::uint64_t id) const;
  bool insert(std::uint64_t id, std::uint32_t slot);  // false: the id is there already
  void erase(std::uint64_t id);
  void prefetch(std::uint64_t id) const;  // the line find(id) will read first

 private:
  struct entry {
    std::uint64_t id = 0;
    std::uint32_t slot = empty;
  };
  static constexpr std::uint32_t empty = std::numeric_limits<std::uint32_t>::max();
  std::size_t home(std::uint64_t id) const;
  void grow();

  std::vector<entry> entries_;  // a power of two of them, at most half used
  std::size_t size_ = 0;
};

// The (rule, series) states: stable slots (a state's address and slot never change while it
// lives; the slot names its timer), found through their series, which are interned once for
// all rules and found by the time-series store's 64-bit series id (an integer hash, where the
// key's would hash and compare tens of bytes per point), the key's length confirming it. Tracks
// which states changed since take_dirty().
class state_table {
 public:
  // `id`: the store's id of `key` (tsdb::series_id(key) unless two keys met on one).
  std::optional<std::uint32_t> find_series(std::uint64_t id, std::string_view key) const;
  void prefetch_series(std::uint64_t id) const { series_by_id_.prefetch(id); }
  // The slot an id's series would be found in, unconfirmed by its key: for prefetching.
  std::optional<std::uint32_t> series_slot(std::uint64_t id) const {
    return series_by_id_.find(id);
  }
  // The series' slot, interning it (with no state yet) if new.
  std::uint32_t intern_series(std::uint64_t id, std::string_view key, std::string_view device);
  // Frees a series interned for a state that could not be created.
  void release_if_unused(std::uint32_t series_slot);
  const series_entry& series(std::uint32_t series_slot) const { return series_[series_slot]; }
  series_entry& series(std::uint32_t series_slot) { return series_[series_slot]; }

  detector_state* find(std::uint32_t rule, std::uint32_t series_slot);
  detector_state& create(std::uint32_t rule, std::uint32_t series_slot);
  void erase(detector_state& state);
  // The live state in `slot`, or null.
  detector_state* at(std::uint64_t slot);
  const detector_state& get(std::uint32_t slot) const { return states_[slot]; }
  detector_state& get(std::uint32_t slot) { return states_[slot]; }
  std::size_t size() const { return live_; }
  template <class F>
  void for_each(F f) {
    for (auto& s : states_)
      if (s.is_live) f(s);
  }

  void mark_dirty(detector_state& state);
  bool has_dirty() const { return !dirty_.empty() || !urgent_.empty(); }
  void mark_urgent(detector_state& state);  // and dirty
  // The live states marked dirty (urgent_only: urgent) since the last call, unmarked.
  std::vector<detector_state*> take_dirty(bool urgent_only = false);

 private:
  std::deque<detector_state> states_;  // a deque: growing never moves a state
  std::vector<std::uint32_t> free_states_;
  std::size_t live_ = 0;
  std::vector<std::uint32_t> dirty_;
  std::vector<std::uint32_t> urgent_;
  std::vector<series_entry> series_;
  std::vector<std::uint32_t> free_series_;
  series_index series_by_id_;
  // By key too: a key whose id another key holds (a hash collision) is found here.
  string_map<std::uint32_t> series_by_key_;
};

}  // namespace nimbus::alerts
