// Encode/decode cost per packet type, the work every message pays twice.
#include <benchmark/benchmark.h>

#include "mqtt/codec.hpp"

namespace {

using namespace nimbus::mqtt;

publish_packet sample_publish(protocol_version v, std::size_t payload) {
  publish_packet p;
  p.qos = 1;
  p.topic = "sensors/pi-001/temperature";
  p.packet_id = 17;
  p.payload = std::string(payload, 'x');
  if (v == protocol_version::v5) {
    p.props.message_expiry_interval = 60;
    p.props.user = {{"site", "lab"}};
  }
  return p;
}

void decode_loop(benchmark::State& state, const packet& p, protocol_version v) {
  std::string bytes;
  encode(p, v, bytes);
  auto header = std::get<frame_header>(read_frame_header(bytes));
  std::string_view body = std::string_view(bytes).substr(header.header_size);
  for (auto _ : state) {
    auto h = read_frame_header(bytes);
    benchmark::DoNotOptimize(h);
    auto decoded = decode_packet(header, body, v);
    benchmark::DoNotOptimize(decoded);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes.size()));
}

void encode_loop(benchmark::State& state, const packet& p, protocol_version v) {
  std::string out;
  for (auto _ : state) {
    out.clear();
    encode(p, v, out);
    benchmark::DoNotOptimize(out.data());
  }
}

void BM_decode_publish(benchmark::State& state) {
  auto v = static_cast<protocol_version>(state.range(0));
  decode_loop(state, sample_publish(v, static_cast<std::size_t>(state.range(1))), v);
}
BENCHMARK(BM_decode_publish)->Args({4, 64})->Args({5, 64})->Args({4, 4096})->Args({5, 4096});

void BM_encode_publish(benchmark::State& state) {
  auto v = static_cast<protocol_version>(state.range(0));
  encode_loop(state, sample_publish(v, static_cast<std::size_t>(state.range(1))), v);
}
BENCHMARK(BM_encode_publish)->Args({4, 64})->Args({5, 64})->Args({4, 4096})->Args({5, 4096});

void BM_encode_publish_head(benchmark::State& state) {
  properties props;
  std::string out;
  for (auto _ : state) {
    out.clear();
    encode_publish_head(out, protocol_version::v5, 1, false, false, "sensors/pi-001/temperature", 9,
                        props, 64);
    benchmark::DoNotOptimize(out.data());
  }
}
BENCHMARK(BM_encode_publish_head);

void BM_decode_connect(benchmark::State& state) {
  connect_packet c;
  c.version = protocol_version::v5;
  c.client_id = "pi-001";
  c.keep_alive = 60;
  c.props.session_expiry_interval = 3600;
  c.will = will_message{"status/pi-001", "offline", 1, true, {}};
  decode_loop(state, c, c.version);
}
BENCHMARK(BM_decode_connect);

void BM_decode_subscribe(benchmark::State& state) {
  subscribe_packet s;
  s.packet_id = 1;
  s.entries = {{"sensors/+/temperature", {1}}, {"commands/pi-001/#", {2}}};
  decode_loop(state, s, protocol_version::v5);
}
BENCHMARK(BM_decode_subscribe);

void BM_ack_round_trip(benchmark::State& state) {
  decode_loop(state, ack_packet{packet_type::puback, 5, reason_code::success, {}},
              protocol_version::v5);
}
BENCHMARK(BM_ack_round_trip);

}  // namespace

BENCHMARK_MAIN();
