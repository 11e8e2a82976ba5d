// Replays recorded MQTT exchanges (tests/exchanges/*.txt) against the per-connection protocol
// handler through fake byte streams: what each client sends, and exactly what the server answers,
// byte for byte. One case file per ctest; the format is in tests/exchanges/README.md. The cases
// pin the connection's behaviour on the wire, so that a refactor of the connection can show it
// changed nothing.
#include <gtest/gtest.h>

#include <algorithm>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/system/error_code.hpp>
#include <cctype>
#include <chrono>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <variant>
#include <vector>

#include "broker/authorizer.hpp"
#include "broker/broker.hpp"
#include "broker/connection.hpp"
#include "config/settings.hpp"
#include "core/clock.hpp"
#include "mqtt/codec.hpp"
#include "net/byte_stream.hpp"
#include "net/timer_wheel.hpp"

#ifndef NIMBUS_CASES_DIR
#error "NIMBUS_CASES_DIR must name the folder of exchange cases"
#endif
#include "case_files.hpp"

namespace nimbus::broker {
namespace {

namespace asio = boost::asio;
using boost::system::error_code;

// The one event loop every case runs on. Not one per case: local_wakes (connection_impl.hpp) caches
// its service per thread by the io_context's address, and a new context allocated where a freed
// one was would be handed the freed one's service. Each case drains the loop before it ends.
asio::io_context& loop() {
  static asio::io_context context;
  return context;
}

// The client's end of one fake connection, shared by the case runner and the stream it feeds:
// bytes the client sent that the server has not read yet, bytes the server wrote that the case
// has not checked yet, and who closed what. Used on the loop's thread only.
struct fake_peer {
  fake_peer(std::string address, core::steady_time accepted)
      : remote_address(std::move(address)), accepted_at(accepted) {}

  // Completes the waiting read through the loop, as a socket would, when there is something to
  // tell it: `failure`, else data, else the end of the stream. Otherwise the read keeps waiting.
  void complete_read(error_code failure = {}) {
    if (reader == nullptr) return;
    error_code ec = failure;
    std::size_t n = 0;
    if (!ec) {
      if (!to_server.empty()) {
        n = asio::buffer_copy(read_buffer, asio::buffer(to_server));
        to_server.erase(0, n);
      } else if (client_closed) {
        ec = asio::error::eof;
      } else {
        return;
      }
    }
    net::stream_owner* owner = std::exchange(reader, nullptr);
    asio::post(loop(), [owner, ec, n] { owner->on_read(ec, n); });
  }

  // Takes everything the server writes, at once, unless the server closed the stream.
  std::size_t take(const std::vector<asio::const_buffer>& buffers, error_code& ec) {
    if (server_closed) {
      ec = asio::error::bad_descriptor;
      return 0;
    }
    std::size_t n = 0;
    for (const auto& b : buffers) {
      from_server.append(static_cast<const char*>(b.data()), b.size());
      n += b.size();
    }
    ec = {};
    return n;
  }

  std::string remote_address;
  core::steady_time accepted_at;  // on the case's clock
  std::string to_server;
  std::string from_server;
  bool client_closed = false;           // the client ended its side (`eof`)
  bool server_closed = false;           // the server closed the stream
  bool stream_alive = true;             // the server still holds the stream (its connection exists)
  net::stream_owner* reader = nullptr;  // set while a read waits
  asio::mutable_buffer read_buffer;
};

// The server's end: a byte_stream over a fake_peer, owned by the connection under test. It
// speaks only the owner-callback path the connection uses (read_into, write_available,
// write_from), never wait_readable, and writes always complete at once.
class fake_stream final : public net::byte_stream {
 public:
  explicit fake_stream(std::shared_ptr<fake_peer> peer) : peer_(std::move(peer)) {}
  ~fake_stream() override {
    peer_->stream_alive = false;
    peer_->reader = nullptr;
  }

  void read_into(asio::mutable_buffer buffer, net::stream_owner& owner) override {
    peer_->reader = &owner;
    peer_->read_buffer = buffer;
    peer_->complete_read(peer_->server_closed ? error_code(asio::error::bad_descriptor)
                                              : error_code());
  }
  void write_from(const std::vector<asio::const_buffer>& buffers,
                  net::stream_owner& owner) override {
    error_code ec;
    std::size_t n = peer_->take(buffers, ec);
    asio::post(loop(), [&owner, ec, n] { owner.on_written(ec, n); });
  }
  std::size_t write_available(const std::vector<asio::const_buffer>& buffers,
                              error_code& ec) override {
    return peer_->take(buffers, ec);
  }
  void close() override {
    if (peer_->server_closed) return;
    peer_->server_closed = true;
    peer_->complete_read(asio::error::operation_aborted);
  }
  asio::any_io_executor executor() override { return loop().get_executor(); }
  std::string remote_address() const override { return peer_->remote_address; }
  std::string_view transport() const override { return "tcp"; }
  core::steady_time accepted_at() const override { return peer_->accepted_at; }

 protected:
  void read_some(asio::mutable_buffer, net::io_handler) override {
    ADD_FAILURE() << "the connection read through a completion token";
  }
  void write(const std::vector<asio::const_buffer>&, net::io_handler) override {
    ADD_FAILURE() << "the connection wrote through a completion token";
  }

 private:
  std::shared_ptr<fake_peer> peer_;
};

// ---- case files ------------------------------------------------------------------------------

// Bytes as written in a case; `any[i]` marks a `??` (a byte the case cannot know).
struct byte_pattern {
  std::string bytes;
  std::vector<bool> any;
};

struct step {
  enum class kind { send, expect, closed, open, eof, set, advance };
  kind what = kind::send;
  int line = 0;
  std::string client;  // send, expect, closed, open, eof
  byte_pattern data;   // send, expect
  std::string key;     // set
  std::string value;   // set, advance
};

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The line without its comment: `#` outside "quoted text".
std::string_view strip_comment(std::string_view line) {
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    if (line[i] == '"') quoted = !quoted;
    if (line[i] == '#' && !quoted) return line.substr(0, i);
  }
  return line;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Hex bytes (pairs of digits, spaces anywhere between pairs), "quoted text" as its bytes, and,
// where `wildcards`, ?? for any byte. Returns an error message, empty on success.
std::string parse_bytes(std::string_view text, bool wildcards, byte_pattern& out) {
  std::size_t i = 0;
  while (i < text.size()) {
    char c = text[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
    } else if (c == '"') {
      auto end = text.find('"', i + 1);
      if (end == std::string_view::npos) return "unterminated quoted text";
      out.bytes.append(text.substr(i + 1, end - i - 1));
      out.any.resize(out.bytes.size(), false);
      i = end + 1;
    } else if (c == '?') {
      if (!wildcards) return "?? is only allowed in what a client receives";
      if (i + 1 >= text.size() || text[i + 1] != '?') return "a wildcard byte is written ??";
      out.bytes.push_back('\0');
      out.any.push_back(true);
      i += 2;
    } else {
      int high = hex_digit(c);
      int low = i + 1 < text.size() ? hex_digit(text[i + 1]) : -1;
      if (high < 0 || low < 0)
        return "expected a byte as two hex digits at \"" + std::string(text.substr(i)) + "\"";
      out.bytes.push_back(static_cast<char>(high * 16 + low));
      out.any.push_back(false);
      i += 2;
    }
  }
  return {};
}

// Parses a whole case file; failures are reported at their line and leave `ok` false.
std::vector<step> parse_case(const std::string& path, bool& ok) {
  std::vector<step> steps;
  std::ifstream in(path);
  if (!in) {
    ADD_FAILURE() << "cannot open " << path;
    ok = false;
    return steps;
  }
  std::string raw;
  int line_number = 0;
  auto fail = [&](const std::string& why) {
    ADD_FAILURE_AT(path.c_str(), line_number) << why << "\n  line: " << raw;
    ok = false;
  };
  while (std::getline(in, raw)) {
    ++line_number;
    std::string_view line = trim(strip_comment(raw));
    if (line.empty()) continue;
    step s;
    s.line = line_number;
    if (line.starts_with("set ")) {
      std::string_view rest = trim(line.substr(4));
      auto space = rest.find_first_of(" \t");
      if (space == std::string_view::npos) {
        fail("set needs a setting and a value: set mqtt.receive_maximum 2");
        continue;
      }
      s.what = step::kind::set;
      s.key = std::string(rest.substr(0, space));
      s.value = std::string(trim(rest.substr(space)));
    } else if (line == "advance" || line.starts_with("advance ")) {
      s.what = step::kind::advance;
      s.value = std::string(trim(line.substr(7)));
    } else {
      std::size_t end = 0;
      while (end < line.size() &&
             (std::isalnum(static_cast<unsigned char>(line[end])) || line[end] == '_'))
        ++end;
      if (end == 0) {
        fail("expected a client name (letters, digits, _) or a directive");
        continue;
      }
      s.client = std::string(line.substr(0, end));
      std::string_view rest = line.substr(end);
      if (rest.starts_with(">") || rest.starts_with("<")) {
        s.what = rest.front() == '>' ? step::kind::send : step::kind::expect;
        std::string error = parse_bytes(rest.substr(1), s.what == step::kind::expect, s.data);
        if (!error.empty()) {
          fail(error);
          continue;
        }
        if (s.what == step::kind::send && s.data.bytes.empty()) {
          fail("nothing to send");
          continue;
        }
      } else if (trim(rest) == "closed") {
        s.what = step::kind::closed;
      } else if (trim(rest) == "open") {
        s.what = step::kind::open;
      } else if (trim(rest) == "eof") {
        s.what = step::kind::eof;
      } else {
        fail("expected >, <, closed, open or eof after the client name");
        continue;
      }
    }
    steps.push_back(std::move(s));
  }
  return steps;
}

// ---- reporting -------------------------------------------------------------------------------

constexpr std::string_view packet_names[16] = {"reserved",  "CONNECT",  "CONNACK",     "PUBLISH",
                                               "PUBACK",    "PUBREC",   "PUBREL",      "PUBCOMP",
                                               "SUBSCRIBE", "SUBACK",   "UNSUBSCRIBE", "UNSUBACK",
                                               "PINGREQ",   "PINGRESP", "DISCONNECT",  "AUTH"};

std::string hex_of(const byte_pattern& p, std::size_t from, std::size_t to) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = from; i < to; ++i) {
    if (!out.empty()) out += ' ';
    if (i < p.any.size() && p.any[i]) {
      out += "??";
      continue;
    }
    auto b = static_cast<unsigned char>(p.bytes[i]);
    out += digits[b >> 4];
    out += digits[b & 0x0F];
  }
  return out;
}

// Where each MQTT packet starts in `p` (framed by the codec's fixed-header reader), and the
// offset where framing stopped (a partial or malformed rest), if before the end.
std::vector<std::size_t> packet_starts(const byte_pattern& p, std::size_t& framed_to) {
  std::vector<std::size_t> starts;
  std::size_t at = 0;
  while (at < p.bytes.size()) {
    auto header = mqtt::read_frame_header(std::string_view(p.bytes).substr(at));
    auto* frame = std::get_if<mqtt::frame_header>(&header);
    if (frame == nullptr || at + frame->total_size() > p.bytes.size()) break;
    starts.push_back(at);
    at += frame->total_size();
  }
  framed_to = at;
  return starts;
}

// One line per packet: its type and bytes.
std::string describe(const byte_pattern& p) {
  if (p.bytes.empty()) return "    (nothing)\n";
  std::size_t framed_to = 0;
  auto starts = packet_starts(p, framed_to);
  std::ostringstream out;
  for (std::size_t i = 0; i < starts.size(); ++i) {
    std::size_t end = i + 1 < starts.size() ? starts[i + 1] : framed_to;
    auto type = static_cast<unsigned char>(p.bytes[starts[i]]) >> 4;
    out << "    " << packet_names[type] << ": " << hex_of(p, starts[i], end) << "\n";
  }
  if (framed_to < p.bytes.size())
    out << "    (not a whole packet): " << hex_of(p, framed_to, p.bytes.size()) << "\n";
  return out.str();
}

// Which packet of `p` holds byte `offset`, for the hint.
std::string locate(const byte_pattern& p, std::size_t offset) {
  std::size_t framed_to = 0;
  auto starts = packet_starts(p, framed_to);
  for (std::size_t i = starts.size(); i-- > 0;) {
    if (starts[i] <= offset && offset < framed_to) {
      auto type = static_cast<unsigned char>(p.bytes[starts[i]]) >> 4;
      std::ostringstream out;
      out << "byte " << offset - starts[i] << " of the expected " << packet_names[type]
          << " (packet " << i + 1 << ")";
      return out.str();
    }
  }
  return "past the expected packets";
}

// ---- running ---------------------------------------------------------------------------------

// A failure at a line of a case file, its message streamed in, reported when it goes.
class line_report {
 public:
  line_report(const std::string& path, int line) : path_(path), line_(line) {}
  line_report(const line_report&) = delete;
  line_report& operator=(const line_report&) = delete;
  ~line_report() { ADD_FAILURE_AT(path_.c_str(), line_) << message_.str(); }

  template <class T>
  line_report& operator<<(const T& value) {
    message_ << value;
    return *this;
  }

 private:
  const std::string& path_;
  int line_;
  std::ostringstream message_;
};

// Runs one case: a broker with default settings (plus the case's `set` lines), a fake client per
// name, created and served when the case first mentions it. Lives on the test's thread, which
// runs the loop between steps.
class exchange_runner {
 public:
  explicit exchange_runner(std::string path) : path_(std::move(path)) {}

  void run(const std::vector<step>& steps) {
    // Deadlines (CONNECT, keep-alive, close grace) are on this case's clock, which only the
    // case moves.
    net::timer_wheel::of(loop()).use_clock(clock_);
    for (const auto& s : steps) {
      line_ = s.line;
      switch (s.what) {
        case step::kind::set:
          apply_setting(s.key, s.value);
          break;
        case step::kind::advance:
          if (auto d = parse_duration(s.value)) {
            clock_.advance(*d);
            net::timer_wheel::of(loop()).fire_due();
            run_loop();
          } else {
            report() << "advance needs a duration: advance 15s, advance 1500ms";
          }
          break;
        case step::kind::send: {
          fake_peer& peer = client(s.client);
          if (peer.server_closed) break;  // the bytes go nowhere, as on a closed socket
          peer.to_server += s.data.bytes;
          peer.complete_read();
          run_loop();
          break;
        }
        case step::kind::expect:
          check_received(s.client, client(s.client), s.data);
          break;
        case step::kind::closed:
          if (!client(s.client).server_closed)
            report() << "client " << s.client << ": the server has not closed the connection";
          break;
        case step::kind::open:
          if (client(s.client).server_closed)
            report() << "client " << s.client << ": the server closed the connection";
          break;
        case step::kind::eof: {
          fake_peer& peer = client(s.client);
          peer.client_closed = true;
          peer.complete_read();
          run_loop();
          break;
        }
      }
    }
    finish();
  }

 private:
  line_report report() const { return line_report(path_, line_); }

  // "15s", "1500ms".
  static std::optional<std::chrono::milliseconds> parse_duration(const std::string& text) {
    std::size_t digits = 0;
    while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
    if (digits == 0 || digits > 9) return std::nullopt;
    const long value = std::stol(text.substr(0, digits));
    const std::string unit = text.substr(digits);
    if (unit == "ms") return std::chrono::milliseconds(value);
    if (unit == "s") return std::chrono::seconds(value);
    return std::nullopt;
  }

  void apply_setting(const std::string& key, const std::string& value) {
    if (broker_) {
      report() << "set must come before the first client";
      return;
    }
    std::string error = config::set_setting(settings_, key, value);
    if (!error.empty()) report() << error;
  }

  // The client named `name`, connected to the server on first use.
  fake_peer& client(const std::string& name) {
    auto& slot = clients_[name];
    if (!slot) {
      if (!broker_) broker_ = std::make_unique<broker>(settings_.mqtt, clock_, auth_, nullptr);
      slot = std::make_shared<fake_peer>("192.0.2." + std::to_string(clients_.size()) + ":50000",
                                         clock_.now());
      // Served from the loop, as an accepted socket is.
      asio::post(loop(), [this, stream = std::make_unique<fake_stream>(slot)]() mutable {
        serve_mqtt(*broker_, std::move(stream));
      });
      run_loop();
    }
    return *slot;
  }

  // Runs the loop until nothing is ready to run (timers of the wheel stay pending).
  void run_loop() {
    for (int round = 0; round < 10'000; ++round) {
      loop().restart();
      if (loop().poll() == 0) return;
    }
    report() << "the event loop never went idle";
  }

  void check_received(const std::string& name, fake_peer& peer, const byte_pattern& expected) {
    run_loop();
    byte_pattern received{std::exchange(peer.from_server, {}), {}};
    received.any.assign(received.bytes.size(), false);
    std::size_t first_difference = 0;
    while (first_difference < received.bytes.size() && first_difference < expected.bytes.size() &&
           (expected.any[first_difference] ||
            expected.bytes[first_difference] == received.bytes[first_difference]))
      ++first_difference;
    if (first_difference == received.bytes.size() && first_difference == expected.bytes.size())
      return;
    auto r = report();
    r << "client " << name << " received other bytes than the case expects: they differ at byte "
      << first_difference << " (" << locate(expected, first_difference) << "); expected "
      << expected.bytes.size() << " bytes, received " << received.bytes.size() << "\n  expected:\n"
      << describe(expected) << "  received:\n"
      << describe(received);
  }

  // Every client must have been checked to the end; then every client goes away, and with it
  // every connection, so nothing outlives the case on the shared loop.
  void finish() {
    for (auto& [name, peer] : clients_) {
      if (peer->from_server.empty()) continue;
      byte_pattern left{peer->from_server, std::vector<bool>(peer->from_server.size(), false)};
      report() << "client " << name << " received bytes the case does not check:\n"
               << describe(left);
    }
    for (auto& [name, peer] : clients_) {
      peer->client_closed = true;
      peer->complete_read();
    }
    run_loop();
    for (auto& [name, peer] : clients_)
      if (peer->stream_alive)
        report() << "the connection of client " << name << " outlived its client's close";
  }

  std::string path_;
  int line_ = 0;
  config::settings settings_;
  core::manual_clock clock_;
  local_authorizer auth_{true};
  std::unique_ptr<broker> broker_;
  std::map<std::string, std::shared_ptr<fake_peer>> clients_;
};

// ---- one test per case file ------------------------------------------------------------------

class connection_exchange : public testing::TestWithParam<std::string> {};

TEST_P(connection_exchange, replays) {
  bool ok = true;
  auto steps = parse_case(GetParam(), ok);
  if (!ok) return;  // a broken case file runs nothing
  exchange_runner(GetParam()).run(steps);
}

INSTANTIATE_TEST_SUITE_P(cases, connection_exchange, testing::ValuesIn(test::case_files()),
                         test::case_name);

}  // namespace
}  // namespace nimbus::broker
