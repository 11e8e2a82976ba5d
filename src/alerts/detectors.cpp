#include "alerts/detectors.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

#include "core/assert.hpp"

namespace nimbus::alerts {
namespace {

constexpr double mad_to_sigma = 1.4826;  // MAD of a normal distribution times this is its sigma
constexpr std::uint8_t encoding_version = 1;

// Finite whatever the readings (near DBL_MAX, differences overflow): NaN scores as 0.
double clamp_score(double score) {
  return std::isnan(score) ? 0 : std::clamp(score, -max_score, max_score);
}

double distance_outside(const condition& c, double value) {
  if (value < c.lo) return c.lo - value;
  if (value > c.hi) return value - c.hi;
  return 0;
}

bool upward(comparison op) {
  return op == comparison::gt || op == comparison::ge;
}

// The k-th smallest (0-based) of the union of two ascending sequences given by accessors.
template <class Below, class Above>
double kth_of_two(Below below, std::size_t below_size, Above above, std::size_t above_size,
                  std::size_t k) {
  // i readings come from `below` among the k + 1 smallest; the first i where below(i) is not
  // smaller than above(k - i) is the split.
  std::size_t lo = k + 1 > above_size ? k + 1 - above_size : 0;
  std::size_t hi = std::min(k + 1, below_size);
  while (lo < hi) {
    const std::size_t i = lo + (hi - lo) / 2;
    const std::size_t j = k + 1 - i;
    if (j > 0 && below(i) < above(j - 1))
      lo = i + 1;
    else
      hi = i;
  }
  const std::size_t j = k + 1 - lo;
  double result = -std::numeric_limits<double>::infinity();
  if (lo > 0) result = below(lo - 1);
  if (j > 0) result = std::max(result, above(j - 1));
  return result;
}

// ---- the checkpoint encoding ------------------------------------------------------------------

class writer {
 public:
  void u8(std::uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void u32(std::uint32_t v) {
    for (int i = 0; i < 4; ++i) u8(static_cast<std::uint8_t>(v >> (8 * i)));
  }
  void u64(std::uint64_t v) {
    for (int i = 0; i < 8; ++i) u8(static_cast<std::uint8_t>(v >> (8 * i)));
  }
  void i64(std::int64_t v) { u64(static_cast<std::uint64_t>(v)); }
  void f64(double v) { u64(std::bit_cast<std::uint64_t>(v)); }
  void text(std::string_view s) {
    u32(static_cast<std::uint32_t>(s.size()));
    out_.append(s);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

// Sticky: a read past the end sets the failure and yields zeros.
class reader {
 public:
  explicit reader(std::string_view in) : in_(in) {}
  std::uint8_t u8() {
    if (in_.empty()) return fail();
    auto v = static_cast<std::uint8_t>(in_.front());
    in_.remove_prefix(1);
    return v;
  }
  std::uint32_t u32() {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= std::uint32_t{u8()} << (8 * i);
    return v;
  }
  std::uint64_t u64() {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= std::uint64_t{u8()} << (8 * i);
    return v;
  }
  std::int64_t i64() { return static_cast<std::int64_t>(u64()); }
  double f64() {
    double v = std::bit_cast<double>(u64());
    if (!std::isfinite(v)) has_failed_ = true;
    return std::isfinite(v) ? v : 0;
  }
  std::string text() {
    std::uint32_t size = u32();
    if (has_failed_ || size > in_.size()) {
      fail();
      return {};
    }
    std::string s(in_.substr(0, size));
    in_.remove_prefix(size);
    return s;
  }
  bool is_whole() const { return !has_failed_ && in_.empty(); }
  bool has_failed() const { return has_failed_; }
  std::size_t remaining() const { return in_.size(); }

 private:
  std::uint8_t fail() {
    has_failed_ = true;
    return 0;
  }
  std::string_view in_;
  bool has_failed_ = false;
};

}  // namespace

// ---- ewma -------------------------------------------------------------------------------------

double ewma_alpha(double half_life) {
  if (!(half_life > 0)) return 1;
  return 1 - std::exp2(-1 / half_life);
}

void ewma_baseline::add(double value, double alpha) {
  if (count == 0) {
    mean = value;
    variance = 0;
  } else {
    const double diff = value - mean;
    const double increment = alpha * diff;
    mean += increment;
    variance = (1 - alpha) * (variance + diff * increment);
    if (!std::isfinite(mean) || !std::isfinite(variance)) {  // overflowed: start over from here
      mean = value;
      variance = 0;
      count = 0;
    }
  }
  ++count;
}

double ewma_baseline::score(double value) const {
  const double floor = std::max(std::abs(mean) * 1e-9, std::numeric_limits<double>::min());
  const double deviation = std::max(std::sqrt(variance), floor);
  return clamp_score((value - mean) / deviation);
}

// ---- mad --------------------------------------------------------------------------------------

void mad_window::reset(std::uint32_t capacity) {
  *this = mad_window{};
  capacity_ = std::max<std::uint32_t>(capacity, 1);
}

void mad_window::grow() {
  const std::uint32_t allocated = std::min(capacity_, std::max<std::uint32_t>(8, allocated_ * 2));
  auto buffer = std::make_unique<double[]>(std::size_t{allocated} * 2);
  if (size_ > 0) {
    std::copy_n(buffer_.get(), size_, buffer.get());                           // sorted
    std::copy_n(buffer_.get() + allocated_, size_, buffer.get() + allocated);  // ring, filling
  }
  buffer_ = std::move(buffer);
  allocated_ = allocated;
}

void mad_window::add(double value) {
  NIMBUS_ASSERT(capacity_ > 0);
  ++seen_;
  if (size_ == allocated_ && size_ < capacity_) grow();
  double* const sorted = buffer_.get();
  double* const ring = sorted + allocated_;
  if (size_ == capacity_) {
    const double evicted = ring[oldest_];
    double* it = std::lower_bound(sorted, sorted + size_, evicted);
    NIMBUS_ASSERT(it != sorted + size_ && *it == evicted);
    std::copy(it + 1, sorted + size_, it);
    --size_;
    ring[oldest_] = value;
    oldest_ = (oldest_ + 1) % capacity_;
  } else {
    ring[size_] = value;  // filling: oldest_ is still 0
  }
  double* at = std::upper_bound(sorted, sorted + size_, value);
  std::copy_backward(at, sorted + size_, sorted + size_ + 1);
  *at = value;
  ++size_;
}

void mad_window::prefetch() const {
  const auto* bytes = reinterpret_cast<const char*>(buffer_.get());
  for (std::size_t at = 0; at < std::size_t{size_} * sizeof(double); at += 64)
    __builtin_prefetch(bytes + at);
  if (size_ > 0 && size_ == capacity_) __builtin_prefetch(buffer_.get() + allocated_ + oldest_);
}

double mad_window::median() const {
  const std::size_t n = size_;
  NIMBUS_ASSERT(n > 0);
  const double* sorted = buffer_.get();
  if (n % 2 == 1) return sorted[n / 2];
  return sorted[n / 2 - 1] / 2 + sorted[n / 2] / 2;
}

double mad_window::mad() const {
  const std::size_t n = size_;
  NIMBUS_ASSERT(n > 0);
  const double* sorted = buffer_.get();
  const double middle = median();
  // Readings below the median give deviations ascending as we walk down from the split, those
  // at or above it ascending as we walk up.
  const std::size_t split =
      static_cast<std::size_t>(std::lower_bound(sorted, sorted + n, middle) - sorted);
  auto below = [&](std::size_t i) { return middle - sorted[split - 1 - i]; };
  auto above = [&](std::size_t j) { return sorted[split + j] - middle; };
  const std::size_t below_size = split, above_size = n - split;
  if (n % 2 == 1) return kth_of_two(below, below_size, above, above_size, n / 2);
  return kth_of_two(below, below_size, above, above_size, n / 2 - 1) / 2 +
         kth_of_two(below, below_size, above, above_size, n / 2) / 2;
}

std::vector<double> mad_window::in_order() const {
  std::vector<double> values;
  values.reserve(size_);
  const double* ring = buffer_.get() + allocated_;
  for (std::size_t i = 0; i < size_; ++i) values.push_back(ring[(oldest_ + i) % size_]);
  return values;
}

// ---- verdicts ---------------------------------------------------------------------------------

reading evaluate(const condition& c, double alpha, detector_state& state, double value) {
  reading r;
  r.value = value;
  r.peak = value;
  switch (c.kind) {
    case condition_kind::threshold:
      r.is_raising = holds(c.op, value, c.threshold);
      r.is_clearing = holds(c.clear_op, value, c.clear_threshold);
      r.score = value;
      break;
    case condition_kind::range:
      r.is_raising = value < c.lo || value > c.hi;
      r.is_clearing = c.clear_lo <= value && value <= c.clear_hi;
      r.score = distance_outside(c, value);
      break;
    case condition_kind::ewma: {
      auto& baseline = state.ewma;
      double score = 0;
      if (baseline.count > 0 && baseline.count >= c.warmup) score = baseline.score(value);
      r.is_raising = std::abs(score) > c.k;
      r.is_clearing = !r.is_raising;
      if (!r.is_raising) baseline.add(value, alpha);  // anomalies stay out of the baseline
      r.peak = r.score = std::abs(score);
      break;
    }
    case condition_kind::mad: {
      if (!state.mad.is_set()) state.mad.reset(c.window);
      auto& window = state.mad;
      double score = 0;
      if (window.size() > 0 && window.seen() >= c.warmup) {
        const double middle = window.median();
        const double scale = mad_to_sigma * std::max(window.mad(), c.floor);
        const double deviation = value - middle;
        r.is_raising = std::abs(deviation) > c.k * scale;
        // A zero scale (a zero MAD and no floor): any reading off the median is an anomaly,
        // scored at the clamp.
        score = scale > 0 ? clamp_score(deviation / scale)
                          : (deviation == 0 ? 0 : std::copysign(max_score, deviation));
      }
      r.is_clearing = !r.is_raising;
      if (!r.is_raising) window.add(value);
      r.peak = r.score = std::abs(score);
      break;
    }
    case condition_kind::flatline:
      if (state.flat_run > 0 && value == state.flat_value) {
        if (state.flat_run < std::numeric_limits<std::uint32_t>::max()) ++state.flat_run;
      } else {
        state.flat_value = value;
        state.flat_run = 1;
      }
      r.is_raising = state.flat_run >= std::max<std::uint32_t>(c.count, 1);
      r.is_clearing = state.flat_run == 1;
      r.score = state.flat_run;
      break;
    case condition_kind::no_data:
    case condition_kind::offline:
      break;  // the engine's timers, not readings
  }
  if (r.is_raising) r.is_clearing = false;
  return r;
}

bool more_extreme_peak(const condition& c, double candidate, double current) {
  switch (c.kind) {
    case condition_kind::threshold:
      return upward(c.op) ? candidate > current : candidate < current;
    case condition_kind::range:
      return distance_outside(c, candidate) > distance_outside(c, current);
    case condition_kind::ewma:
    case condition_kind::mad:
      return candidate > current;
    case condition_kind::flatline:
      return true;  // the stuck value itself
    case condition_kind::no_data:
    case condition_kind::offline:
      return false;
  }
  return false;
}

bool stronger_score(const condition& c, double candidate, double current) {
  if (c.kind == condition_kind::threshold)
    return upward(c.op) ? candidate > current : candidate < current;
  return candidate > current;
}

bool escalation_met(const condition& c, double step_value, double score) {
  switch (c.kind) {
    case condition_kind::threshold:
      return holds(c.op, score, step_value);
    case condition_kind::range:
    case condition_kind::ewma:
    case condition_kind::mad:
    case condition_kind::flatline:
      return score >= step_value;
    case condition_kind::no_data:
    case condition_kind::offline:
      return false;
  }
  return false;
}

// ---- checkpoints ------------------------------------------------------------------------------

std::string encode_state(condition_kind kind, const detector_state& state,
                         std::string_view device) {
  writer w;
  w.u8(encoding_version);
  w.u8(static_cast<std::uint8_t>(kind));
  w.u8(static_cast<std::uint8_t>(state.at));
  w.u8(state.has_last ? 1 : 0);
  w.i64(state.last_ms);
  w.i64(state.last_point_ms);
  w.i64(state.since_ms);
  w.u64(state.alert_id);
  w.u64(state.run_count);
  w.f64(state.run_value);
  w.f64(state.run_peak);
  w.f64(state.run_score);
  w.text(device);
  switch (kind) {
    case condition_kind::ewma:
      w.f64(state.ewma.mean);
      w.f64(state.ewma.variance);
      w.u64(state.ewma.count);
      break;
    case condition_kind::mad: {
      const auto values = state.mad.in_order();
      w.u64(state.mad.seen());
      w.u32(static_cast<std::uint32_t>(values.size()));
      for (double v : values) w.f64(v);
      break;
    }
    case condition_kind::flatline:
      w.f64(state.flat_value);
      w.u32(state.flat_run);
      break;
    default:
      break;
  }
  return w.take();
}

bool decode_state(std::string_view data, condition_kind kind, std::uint32_t window,
                  detector_state& state, std::string& device) {
  reader r(data);
  if (r.u8() != encoding_version || r.u8() != static_cast<std::uint8_t>(kind)) return false;
  const std::uint8_t at = r.u8();
  if (at > static_cast<std::uint8_t>(phase::clear_pending)) return false;
  state.at = static_cast<phase>(at);
  state.has_last = (r.u8() & 1) != 0;
  state.last_ms = r.i64();
  state.last_point_ms = r.i64();
  state.since_ms = r.i64();
  state.alert_id = r.u64();
  state.run_count = r.u64();
  state.run_value = r.f64();
  state.run_peak = r.f64();
  state.run_score = r.f64();
  device = r.text();
  switch (kind) {
    case condition_kind::ewma:
      state.ewma.mean = r.f64();
      state.ewma.variance = r.f64();
      state.ewma.count = r.u64();
      if (state.ewma.variance < 0) return false;
      break;
    case condition_kind::mad: {
      const std::uint64_t seen = r.u64();
      const std::uint32_t size = r.u32();
      if (r.has_failed() || std::uint64_t{size} * 8 != r.remaining()) return false;
      std::vector<double> values(size);
      for (auto& v : values) v = r.f64();
      state.mad.reset(window);
      const std::size_t skip =
          values.size() > state.mad.capacity() ? values.size() - state.mad.capacity() : 0;
      for (std::size_t i = skip; i < values.size(); ++i) state.mad.add(values[i]);
      state.mad.set_seen(seen);
      break;
    }
    case condition_kind::flatline:
      state.flat_value = r.f64();
      state.flat_run = r.u32();
      break;
    default:
      break;
  }
  return r.is_whole();
}

// ---- the state table --------------------------------------------------------------------------

void series_entry::set_bindings(const std::vector<binding>& all) {
  binding_count = static_cast<std::uint32_t>(all.size());
  const std::size_t inline_count = std::min(all.size(), first_bindings.size());
  std::copy_n(all.begin(), inline_count, first_bindings.begin());
  more_bindings.assign(all.begin() + static_cast<std::ptrdiff_t>(inline_count), all.end());
}

std::size_t series_index::home(std::uint64_t id) const {
  // Fibonacci hashing: ids are hashes already, but a test's or a restore's may not be.
  return static_cast<std::size_t>((id * 0x9E3779B97F4A7C15ULL) >> 32) & (entries_.size() - 1);
}

std::optional<std::uint32_t> series_index::find(std::uint64_t id) const {
  if (entries_.empty()) return std::nullopt;
  for (std::size_t i = home(id);; i = (i + 1) & (entries_.size() - 1)) {
    const entry& e = entries_[i];
    if (e.slot == empty) return std::nullopt;
    if (e.id == id) return e.slot;
  }
}

void series_index::prefetch(std::uint64_t id) const {
  if (!entries_.empty()) __builtin_prefetch(&entries_[home(id)]);
}

bool series_index::insert(std::uint64_t id, std::uint32_t slot) {
  if ((size_ + 1) * 2 > entries_.size()) grow();
  for (std::size_t i = home(id);; i = (i + 1) & (entries_.size() - 1)) {
    entry& e = entries_[i];
    if (e.slot == empty) {
      e = entry{id, slot};
      ++size_;
      return true;
    }
    if (e.id == id) return false;
  }
}

void series_index::erase(std::uint64_t id) {
  if (entries_.empty()) return;
  const std::size_t mask = entries_.size() - 1;
  std::size_t i = home(id);
  while (entries_[i].slot != empty && entries_[i].id != id) i = (i + 1) & mask;
  if (entries_[i].slot == empty) return;
  // Backward shift: later entries of the run move into the hole when their home allows it.
  for (std::size_t j = (i + 1) & mask; entries_[j].slot != empty; j = (j + 1) & mask) {
    const std::size_t h = home(entries_[j].id);
    // Whether h lies cyclically in (i, j]: then entry j must stay where it is.
    const bool stays = i <= j ? (i < h && h <= j) : (i < h || h <= j);
    if (stays) continue;
    entries_[i] = entries_[j];
    i = j;
  }
  entries_[i] = entry{};
  --size_;
}

void series_index::grow() {
  std::vector<entry> old = std::move(entries_);
  entries_.assign(old.empty() ? 64 : old.size() * 2, entry{});
  size_ = 0;
  for (const entry& e : old)
    if (e.slot != empty) insert(e.id, e.slot);
}

std::optional<std::uint32_t> state_table::find_series(std::uint64_t id, std::string_view k) const {
  // The id names the key: the store gives each key of a database its own, and two databases
  // share an id for the same key only (or, an id bumped past a collision in one meeting another
  // key's own in the other, by a 2^-64 chance, which the lengths would have to match too).
  // Comparing the bytes would read the point's key, written on another core, and the entry's,
  // for every point: 60% of this thread's time under perf.
  if (const auto slot = series_by_id_.find(id); slot && series_[*slot].key_size == k.size())
    return slot;
  auto it = series_by_key_.find(k);
  if (it == series_by_key_.end()) return std::nullopt;
  return it->second;
}

std::uint32_t state_table::intern_series(std::uint64_t id, std::string_view k,
                                         std::string_view device) {
  if (auto found = find_series(id, k)) return *found;
  std::uint32_t slot;
  if (!free_series_.empty()) {
    slot = free_series_.back();
    free_series_.pop_back();
  } else {
    slot = static_cast<std::uint32_t>(series_.size());
    series_.emplace_back();
  }
  series_entry& entry = series_[slot];
  entry = series_entry{};
  entry.id = id;
  entry.key = std::string(k);
  entry.key_size = static_cast<std::uint32_t>(k.size());
  entry.device = std::string(device);
  series_by_id_.insert(id, slot);
  series_by_key_.emplace(std::string(k), slot);
  return slot;
}

void state_table::release_if_unused(std::uint32_t series_slot) {
  series_entry& entry = series_[series_slot];
  if (!entry.states.empty()) return;
  if (series_by_id_.find(entry.id) == series_slot) series_by_id_.erase(entry.id);
  series_by_key_.erase(entry.key);
  entry = series_entry{};
  free_series_.push_back(series_slot);
}

namespace {

// A series' (rule, state) pairs at or after `rule`.
auto states_from(std::vector<std::pair<std::uint32_t, std::uint32_t>>& states, std::uint32_t rule) {
  return std::lower_bound(states.begin(), states.end(), rule,
                          [](const auto& entry, std::uint32_t r) { return entry.first < r; });
}

}  // namespace

detector_state* state_table::find(std::uint32_t rule, std::uint32_t series_slot) {
  auto& states = series_[series_slot].states;
  const auto it = states_from(states, rule);
  return it == states.end() || it->first != rule ? nullptr : &states_[it->second];
}

detector_state& state_table::create(std::uint32_t rule, std::uint32_t series_slot) {
  std::uint32_t slot;
  if (!free_states_.empty()) {
    slot = free_states_.back();
    free_states_.pop_back();
  } else {
    slot = static_cast<std::uint32_t>(states_.size());
    states_.emplace_back();
  }
  detector_state& s = states_[slot];
  s = detector_state{};
  s.slot = slot;
  s.rule = rule;
  s.series = series_slot;
  s.is_live = true;
  auto& states = series_[series_slot].states;
  states.insert(states_from(states, rule), {rule, slot});
  ++live_;
  return s;
}

void state_table::erase(detector_state& state) {
  NIMBUS_ASSERT(state.is_live);
  const std::uint32_t slot = state.slot, series_slot = state.series;
  auto& states = series_[series_slot].states;
  if (const auto it = states_from(states, state.rule);
      it != states.end() && it->first == state.rule)
    states.erase(it);
  release_if_unused(series_slot);
  state = detector_state{};
  free_states_.push_back(slot);
  --live_;
}

detector_state* state_table::at(std::uint64_t slot) {
  if (slot >= states_.size() || !states_[slot].is_live) return nullptr;
  return &states_[slot];
}

void state_table::mark_dirty(detector_state& state) {
  if (state.is_dirty) return;
  state.is_dirty = true;
  if (state.is_listed) return;  // taken as urgent since, still listed: listed once
  state.is_listed = true;
  dirty_.push_back(state.slot);
}

void state_table::mark_urgent(detector_state& state) {
  mark_dirty(state);
  if (state.is_urgent) return;
  state.is_urgent = true;
  urgent_.push_back(state.slot);
}

std::vector<detector_state*> state_table::take_dirty(bool urgent_only) {
  std::vector<detector_state*> out;
  auto& listed = urgent_only ? urgent_ : dirty_;
  out.reserve(listed.size());
  // A slot freed and reused while dirty may be listed twice; the flag takes it once. A state
  // taken as urgent stays in the dirty list (is_listed), which the next full take empties.
  for (std::uint32_t slot : listed) {
    detector_state& s = states_[slot];
    if (!urgent_only) s.is_listed = false;
    if (!s.is_live || !s.is_dirty || (urgent_only && !s.is_urgent)) continue;
    s.is_dirty = false;
    s.is_urgent = false;
    out.push_back(&s);
  }
  listed.clear();
  if (!urgent_only) urgent_.clear();
  return out;
}

}  // namespace nimbus::alerts
