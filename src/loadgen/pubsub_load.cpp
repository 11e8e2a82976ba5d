#include "loadgen/pubsub_load.hpp"

#include <fmt/format.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <iostream>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/json_string.hpp"
#include "loadgen/histogram.hpp"
#include "loadgen/pubsub_target.hpp"

namespace nimbus::loadgen {

namespace pubsub_detail {

void publish_sink::add_outstanding(std::size_t messages) {
  std::lock_guard lock(mutex_);
  outstanding_ += static_cast<std::int64_t>(messages);
}

void publish_sink::completed(std::size_t messages, std::uint64_t sent_at, std::string_view error) {
  const auto now = now_ns();
  if (!error.empty()) st_.error(error);
  // Everything below, the wake-up included, under the lock: a publisher that sees nothing
  // outstanding (under the same lock) may end, and its sink go, as soon as it is released.
  std::lock_guard lock(mutex_);
  outstanding_ -= static_cast<std::int64_t>(messages);
  if (error.empty()) {
    published_.fetch_add(messages, std::memory_order_relaxed);
    if (sent_at != 0 && sent_at <= now && st_.in_window(sent_at)) latency_.record(now - sent_at);
  } else {
    failed_.fetch_add(messages, std::memory_order_relaxed);
  }
  room_.notify_all();
}

void publish_sink::abandoned(std::size_t messages) {
  std::lock_guard lock(mutex_);
  outstanding_ -= static_cast<std::int64_t>(messages);
  abandoned_.fetch_add(messages, std::memory_order_relaxed);
  room_.notify_all();
}

std::int64_t publish_sink::outstanding() {
  std::lock_guard lock(mutex_);
  return outstanding_;
}

bool publish_sink::wait_for_room(std::int64_t window, const std::atomic<bool>& stop) {
  std::unique_lock lock(mutex_);
  while (outstanding_ >= window) {
    if (stop.load(std::memory_order_relaxed)) return false;
    room_.wait_for(lock, std::chrono::milliseconds(10));
  }
  return true;
}

bool publish_sink::wait_idle(std::chrono::milliseconds limit) {
  std::unique_lock lock(mutex_);
  return room_.wait_for(lock, limit, [this] { return outstanding_ <= 0; });
}

histogram publish_sink::latency() {
  std::lock_guard lock(mutex_);
  return latency_;
}

std::string random_suffix() {
  std::random_device device;
  return fmt::format("{:08x}{:04x}", device(), device() & 0xffffU);
}

}  // namespace pubsub_detail

using namespace pubsub_detail;

namespace {

clock_type::duration seconds_of(double seconds) {
  return std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(seconds));
}

double cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

// One publisher thread: keeps its window of unacknowledged messages full (flat out and fill,
// `batch` messages per send) or sends one message per tick of its share of the rate (a tick
// that finds the window full is skipped and counted, so a slow server shows as skips rather
// than as a generator that silently slows down). Then waits for the answers, abandoning them
// after a grace period. False when answers were still missing at the end: the channel must
// then outlive the run.
bool publish_loop(run_state& st, publish_channel& channel, publish_sink& sink, double rate_each) {
  const auto& o = st.opts;
  const auto window = static_cast<std::int64_t>(o.window);
  if (rate_each > 0) {
    const auto begin = clock_type::now();
    const std::chrono::duration<double> interval(1.0 / rate_each);
    std::uint64_t ticks = 0;
    while (!st.stop_publishing.load(std::memory_order_relaxed)) {
      const auto due = begin + std::chrono::duration_cast<clock_type::duration>(
                                   interval * static_cast<double>(ticks));
      const auto now = clock_type::now();
      if (due > now) {
        std::this_thread::sleep_until(std::min(due, now + std::chrono::milliseconds(50)));
        continue;
      }
      ++ticks;
      if (sink.outstanding() >= window) {
        sink.skipped();
        continue;
      }
      sink.add_outstanding(1);
      channel.send(1, now_ns());
    }
  } else {
    while (!st.stop_publishing.load(std::memory_order_relaxed)) {
      std::size_t count = o.batch;
      if (o.messages > 0) {
        const auto claimed = st.fill_claimed.fetch_add(o.batch, std::memory_order_relaxed);
        if (claimed >= o.messages) break;
        count = static_cast<std::size_t>(std::min<std::uint64_t>(o.batch, o.messages - claimed));
      }
      if (!sink.wait_for_room(window, st.stop_publishing)) break;
      sink.add_outstanding(count);
      channel.send(count, now_ns());
    }
  }
  const auto grace = std::chrono::milliseconds(o.messages > 0 ? 10'000 : 2'000);
  if (sink.wait_idle(grace)) return true;
  channel.abandon();
  if (sink.wait_idle(std::chrono::milliseconds(15'000))) return true;
  st.error("a publisher's answers were still missing 15 s after it gave up on them");
  return false;
}

// Calls progress every 250 ms until `until` or done().
void pace(clock_type::time_point until, const std::function<bool()>& done,
          const std::function<void()>& progress) {
  while (!done()) {
    const auto now = clock_type::now();
    if (now >= until) return;
    std::this_thread::sleep_for(
        std::min<clock_type::duration>(until - now, std::chrono::milliseconds(250)));
    progress();
  }
}

std::string histogram_buckets_json(const histogram& h) {
  std::string out;
  h.for_each_bucket([&](std::uint64_t upper, std::uint64_t count) {
    if (!out.empty()) out += ',';
    fmt::format_to(std::back_inserter(out), "[{},{}]", upper, count);
  });
  return out;
}

bool check_options(const pubsub_options& o) {
  auto refuse = [](const char* why) {
    std::cerr << "nimbus bench pubsub: " << why << "\n";
    return false;
  };
  if (o.target != "grpc" && o.target != "jetstream")
    return refuse("--target must be grpc or jetstream");
  if (o.publishers < 1 || o.publishers > 1000) return refuse("--publishers must be 1..1000");
  if (o.batch < 1 || o.batch > 1000)
    return refuse("--batch must be 1..1000 (Pub/Sub's limit per PublishRequest)");
  if (o.payload_size < 8 || o.payload_size > 10'000'000)
    return refuse("--size must be 8..10000000 bytes (the first 8 carry the send time)");
  if (o.target == "grpc" && o.payload_size * o.batch > 9'000'000)
    return refuse("--batch x --size must stay under 9 MB (a PublishRequest is at most 10 MB)");
  if (o.window < 1 || o.window > 1'000'000) return refuse("--inflight must be 1..1000000");
  if (o.streams < 1 || o.streams > 64) return refuse("--streams must be 1..64");
  if (o.max_outstanding < 1 || o.max_outstanding > 1'000'000)
    return refuse("--max-outstanding must be 1..1000000");
  if (o.ack_batch < 1 || o.ack_batch > 100'000) return refuse("--ack-batch must be 1..100000");
  if (o.rate < 0 || o.duration <= 0 || o.warmup < 0)
    return refuse("--rate and --warmup must be >= 0, --duration > 0");
  if (o.rate > 0 && o.messages > 0) return refuse("--rate and --messages (fill) do not mix");
  return true;
}

}  // namespace

int run_pubsub(const pubsub_options& requested) {
  pubsub_options o = requested;
  if (o.port == 0) o.port = o.target == "jetstream" ? 4222 : 8085;
  if (!check_options(o)) return 2;
  const bool is_fill = o.messages > 0;
  const char* mode = is_fill ? "fill" : o.rate > 0 ? "rate" : "flat";

  run_state st(o);
  std::unique_ptr<pubsub_target> target =
      o.target == "grpc" ? make_grpc_target(st) : make_jetstream_target(st);
  std::vector<std::unique_ptr<publish_sink>> sinks;
  std::vector<std::unique_ptr<publish_channel>> channels;
  std::vector<std::thread> publishers;
  std::vector<int> is_idle(static_cast<std::size_t>(o.publishers), 1);
  std::atomic<int> publishers_done{0};

  auto published_total = [&] {
    std::uint64_t total = 0;
    for (const auto& sink : sinks) total += sink->published();
    return total;
  };
  const auto started = clock_type::now();
  auto progress = [&](const char* phase) {
    if (!o.progress) return;
    const double elapsed = std::chrono::duration<double>(clock_type::now() - started).count();
    std::cerr << fmt::format("\r[{:6.1f}s] {:<8} published {:>10} delivered {:>10} errors {:>4}   ",
                             elapsed, phase, published_total(), st.acked.load(), st.errors.load())
              << std::flush;
  };
  auto never = [] { return false; };

  double window_seconds = 0;
  std::uint64_t published_in_window = 0;
  std::uint64_t delivered_in_window = 0;
  double cpu_used = 0;

  if (auto setup_error = target->setup(); !setup_error.empty()) {
    st.error(setup_error);
    target->teardown(false);  // whatever setup() created before it failed
  } else {
    if (!is_fill) target->start_consumers();
    for (int i = 0; i < o.publishers; ++i) {
      sinks.push_back(std::make_unique<publish_sink>(st));
      auto channel = target->open_publisher(*sinks.back());
      if (!channel) break;
      channels.push_back(std::move(channel));
    }
    if (channels.size() == static_cast<std::size_t>(o.publishers)) {
      const double rate_each = o.rate > 0 ? o.rate / o.publishers : 0;
      const auto begin = clock_type::now();
      const auto begin_ns = now_ns();
      if (is_fill) {
        st.measure_from = begin_ns;
      } else {
        st.measure_from = begin_ns + static_cast<std::uint64_t>(o.warmup * 1e9);
        st.measure_until = st.measure_from.load() + static_cast<std::uint64_t>(o.duration * 1e9);
      }
      for (std::size_t i = 0; i < channels.size(); ++i) {
        publishers.emplace_back([&, i] {
          is_idle[i] = publish_loop(st, *channels[i], *sinks[i], rate_each) ? 1 : 0;
          publishers_done.fetch_add(1);
        });
      }
      if (is_fill) {
        // Until every message is acknowledged, or --duration runs out.
        const auto cpu0 = cpu_seconds();
        pace(
            begin + seconds_of(o.duration), [&] { return publishers_done.load() == o.publishers; },
            [&] { progress("filling"); });
        st.stop_publishing.store(true);
        for (auto& t : publishers) t.join();
        window_seconds = std::chrono::duration<double>(clock_type::now() - begin).count();
        published_in_window = published_total();
        cpu_used = cpu_seconds() - cpu0;
      } else {
        const auto measure_from = begin + seconds_of(o.warmup);
        pace(measure_from, never, [&] { progress("warm-up"); });
        const auto published0 = published_total();
        const auto delivered0 = st.acked.load();
        const auto cpu0 = cpu_seconds();
        const auto t0 = clock_type::now();
        pace(measure_from + seconds_of(o.duration), never, [&] { progress("running"); });
        const auto published1 = published_total();
        const auto delivered1 = st.acked.load();
        cpu_used = cpu_seconds() - cpu0;
        window_seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
        published_in_window = published1 - published0;
        delivered_in_window = delivered1 - delivered0;
        st.stop_publishing.store(true);
        for (auto& t : publishers) t.join();
        // Drain: until everything acknowledged by the server was acknowledged by a consumer,
        // nothing arrived for a second, or 3 s passed.
        auto last = st.acked.load();
        auto last_change = clock_type::now();
        const auto drain_deadline = last_change + std::chrono::seconds(3);
        while (st.acked.load() < published_total() && clock_type::now() < drain_deadline &&
               clock_type::now() - last_change < std::chrono::seconds(1)) {
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
          if (const auto now_acked = st.acked.load(); now_acked != last) {
            last = now_acked;
            last_change = clock_type::now();
          }
          progress("draining");
        }
      }
    }
    st.stop_publishing.store(true);
    for (auto& t : publishers)
      if (t.joinable()) t.join();
    st.stop_consuming.store(true);
    target->stop_consumers();
    target->teardown(is_fill);
  }
  if (o.progress) std::cerr << "\n";
  // A channel whose answers never all came stays allocated: a late answer must find it.
  for (std::size_t i = 0; i < channels.size(); ++i)
    if (is_idle[i] == 0) static_cast<void>(channels[i].release());
  channels.clear();
  const std::string topic = target->topic();
  const std::string subscription = target->subscription();
  target.reset();

  histogram latency;
  std::uint64_t published = 0;
  std::uint64_t failed = 0;
  std::uint64_t abandoned = 0;
  std::uint64_t skipped = 0;
  for (const auto& sink : sinks) {
    latency.merge(sink->latency());
    published += sink->published();
    failed += sink->failed();
    abandoned += sink->abandoned_count();
    skipped += sink->skipped_count();
  }
  const auto received = st.received.load();
  const auto delivered = st.acked.load();
  const auto errors = st.errors.load();
  const auto first_error = st.first_error();
  const bool ok =
      errors == 0 && published > 0 && (is_fill ? published >= o.messages : delivered > 0);
  const double published_rate =
      window_seconds > 0 ? static_cast<double>(published_in_window) / window_seconds : 0.0;
  const double delivered_rate =
      window_seconds > 0 ? static_cast<double>(delivered_in_window) / window_seconds : 0.0;
  const double cores = window_seconds > 0 ? cpu_used / window_seconds : 0.0;
  auto ms = [](std::uint64_t ns) { return static_cast<double>(ns) / 1e6; };
  const std::string endpoint = fmt::format("{}:{}", o.host, o.port);

  std::string report;
  if (o.json) {
    auto out = std::back_inserter(report);
    fmt::format_to(
        out,
        R"({{"scenario":"pubsub","target":"{}","mode":"{}","endpoint":{},"payload_bytes":{},)"
        R"("publishers":{},"batch":{},"window":{},"streams":{},"max_outstanding":{},)"
        R"("ack_batch":{},"rate":{},"duration_s":{},"messages":{},"seconds":{:.3f},)",
        o.target, mode, core::json_string(endpoint), o.payload_size, o.publishers,
        o.rate > 0 ? std::size_t{1} : o.batch, o.window, o.streams, o.max_outstanding, o.ack_batch,
        o.rate, o.duration, o.messages, window_seconds);
    fmt::format_to(
        out,
        R"("published":{},"publish_failed":{},"publish_abandoned":{},"publish_skipped":{},)"
        R"("received":{},"delivered":{},"errors":{},)"
        R"("published_per_second":{:.1f},"delivered_per_second":{:.1f},)",
        published, failed, abandoned, skipped, received, delivered, errors, published_rate,
        delivered_rate);
    fmt::format_to(out,
                   R"("publish_latency_p50_ms":{:.3f},"publish_latency_p90_ms":{:.3f},)"
                   R"("publish_latency_p99_ms":{:.3f},"publish_latency_p999_ms":{:.3f},)"
                   R"("publish_latency_max_ms":{:.3f},"publish_latency_mean_ms":{:.3f},)"
                   R"("publish_latency_samples":{},"publish_latency_histogram_ns":[{}],)",
                   ms(latency.quantile(0.5)), ms(latency.quantile(0.9)), ms(latency.quantile(0.99)),
                   ms(latency.quantile(0.999)), ms(latency.max()), latency.mean() / 1e6,
                   latency.count(), histogram_buckets_json(latency));
    fmt::format_to(
        out,
        R"("generator_cpu_cores":{:.3f},"topic":{},"subscription":{},"ok":{},"first_error":{}}})",
        cores, core::json_string(topic), core::json_string(subscription), ok,
        core::json_string(first_error));
    report += "\n";
  } else {
    auto out = std::back_inserter(report);
    fmt::format_to(out, "pubsub {} ({}) at {}: {} publishers, {} B messages, ", o.target, mode,
                   endpoint, o.publishers, o.payload_size);
    if (is_fill)
      fmt::format_to(out, "fill {} messages, nobody pulling\n", o.messages);
    else if (o.rate > 0)
      fmt::format_to(out, "{} msg/s in total, one per Publish, {} streams\n", o.rate, o.streams);
    else
      fmt::format_to(out, "{} per Publish, window {}, {} streams\n", o.batch, o.window, o.streams);
    fmt::format_to(out, "throughput: published {:.0f} msg/s, delivered and acked {:.0f} msg/s",
                   published_rate, delivered_rate);
    fmt::format_to(out, " (over {:.1f}s{})\n", window_seconds,
                   is_fill ? "" : fmt::format(" after {:.1f}s warm-up", o.warmup));
    fmt::format_to(out,
                   "publish latency ms: p50 {:.3f}  p90 {:.3f}  p99 {:.3f}  p99.9 {:.3f}  max "
                   "{:.3f}  ({} samples)\n",
                   ms(latency.quantile(0.5)), ms(latency.quantile(0.9)), ms(latency.quantile(0.99)),
                   ms(latency.quantile(0.999)), ms(latency.max()), latency.count());
    fmt::format_to(out,
                   "totals: published {}, failed {}, abandoned {}, skipped {}, received {}, "
                   "acked {}, errors {}\n",
                   published, failed, abandoned, skipped, received, delivered, errors);
    fmt::format_to(out, "topic {}, subscription {}; generator: {:.2f} cores busy\n", topic,
                   subscription, cores);
    if (!first_error.empty()) fmt::format_to(out, "first error: {}\n", first_error);
  }
  std::cout << report << std::flush;
  return ok ? 0 : 1;
}

}  // namespace nimbus::loadgen
