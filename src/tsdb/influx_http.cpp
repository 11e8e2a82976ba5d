// InfluxDB's HTTP APIs (influx_http.hpp). The 1.x routes answer as a running InfluxDB 1.6.7
// does (statuses, error words, headers, partial writes), checked against one; what 1.6.7 lacks
// comes from 1.8 (/api/v2/write, /health, /ping?verbose=true) and, for /api/v2/write's errors,
// from InfluxDB 2.x's write handler ({"code","message"} bodies). Where they leave room:
//
// - precision: 1.x's n, ns, u, us, ms, s, m, h and 2.x's ns, us, ms, s; anything else is 400
//   (1.6.7 silently wrote such points as nanoseconds): `invalid precision "x" (use n, ns, u, us,
//   ms, s, m or h)` after 1.8's words, and 2.x's own message on /api/v2/write.
// - epoch: unknown units are 400 `invalid epoch "x" (use ns, u, ms, s, m or h)` (1.6.7 printed
//   nanoseconds); empty or absent means RFC3339 strings.
// - 1.x writes: an empty body is 204 (1.6.7). Valid lines are written whatever else fails; the
//   answer is, in 1.6.7's order: a store refusal; points the shard dropped (type conflicts, `time`
//   keys) as 400 "partial write: <first reason> dropped=N"; lines that did not parse as 400
//   "partial write: <their errors, one per line> dropped=0"; every line refused: 400 "unable to
//   parse '<line>': <reason>" joined by "\n" (no "partial write").
// - 2.x writes (2.x's semantics): a line that does not parse refuses the whole batch, 400
//   "invalid"; dropped points 422 "failure writing points to database: partial write: ...";
//   an empty body 400 "writing requires points"; no `bucket` 404 "bucket not found"; `bucket`
//   is "db" or "db/rp" (1.8's mapping).
// - a missing retention policy is 404 "retention policy not found: x" (1.6.7: 500, which clients
//   retry forever); a full write buffer 503 with Retry-After: 1 (1.6.7: 500); I/O errors 500.
// - gzip (Content-Encoding gzip or x-gzip, concatenated members read in turn): a bad body 400 with
//   Go's gzip error words; inflating past max_inflated_size 413.
// - /query: parameters from a form body (application/x-www-form-urlencoded) win over the URL's
//   (Go's FormValue); `Accept: application/csv` or `text/csv` answers text/csv (as 1.6.7);
//   chunked=true answers the chunks back to back in one body; pretty and chunked together are
//   not pretty; bind parameters (`params`) are not supported.
// - who writes: /write and /api/v2/write always; /query when a statement may change something
//   (may_write below). 401s come from `auth`; a body is read only once its head passed `auth`
//   and its declared length fits.
// - POST /api/v2/query (Flux, reference/flux.md): `org` is checked as /api/v2/write checks it
//   (a 16-hex `org` and any `orgID` are taken as the one organization's ID); neither is required,
//   as 1.8's compatibility API has it. The body is read as JSON unless its media type is
//   application/vnd.flux (raw query, bare CSV). extern.body's OptionStatements and
//   VariableAssignments become variables when their value is a literal (string, integer,
//   unsigned, float, boolean, date-time, duration, negated, array, object, now()); anything else
//   in extern is 400. Errors are 2.x's {"code","message"}: Flux's invalid 400, not found 404,
//   limits 400, the deadline (flux_timeout) 500, as InfluxDB maps "other" errors. The whole
//   answer is computed before it is sent (never an in-band error table); gzip when asked for and
//   at least 1400 bytes (NYTimes gziphandler's threshold), Vary: Accept-Encoding always.
#include "tsdb/influx_http.hpp"

#include <zlib.h>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <variant>
#include <vector>

#include "core/base64.hpp"
#include "core/json_string.hpp"
#include "core/random.hpp"
#include "tsdb/flux.hpp"
#include "tsdb/flux_exec.hpp"

namespace nimbus::tsdb {

namespace {

constexpr std::string_view json_type = "application/json";
constexpr std::string_view v2_json_type = "application/json; charset=utf-8";  // 2.x's
constexpr std::string_view csv_type = "text/csv";
// Where the joined parse errors of one write stop growing: each echoes its line (up to 1 MiB),
// and one answer need not carry a hundred of those.
constexpr std::size_t max_error_text = std::size_t{1} << 20;
// 1.x repeats an error in X-Influxdb-Error, cut to its first KiB.
constexpr std::size_t max_error_header = 1024;

// Which API's shape an answer takes.
enum class api { v1, v2 };

// Who may call a route.
enum class access_kind { open, read, write };

// What every handler needs; shared by the routes, alive as long as the router holds them.
struct context {
  store& time_series;
  influx_auth auth;
  influx_http_settings settings;
  core::clock& clock;
};
using shared_context = std::shared_ptr<const context>;

// --------------------------------------------------------------------------------- helpers

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view text) {
  constexpr std::string_view blanks = " \t\r\n\v\f";
  const auto first = text.find_first_not_of(blanks);
  if (first == std::string_view::npos) return {};
  return text.substr(first, text.find_last_not_of(blanks) - first + 1);
}

// Go's %q for the plain names these messages quote.
std::string go_quoted(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

// core::clock counts milliseconds: a point without a timestamp gets the current millisecond
// (InfluxDB: the nanosecond), so two such points of one series within a millisecond merge.
std::int64_t now_ns(const core::clock& clock) {
  return clock.unix_millis() * 1'000'000;
}

// A version-4 UUID, as the Request-Id 1.x sends with every answer (clients log it).
std::string request_id() {
  std::string hex = core::random_hex(16);
  hex[12] = '4';
  hex[16] = "89ab"[static_cast<unsigned char>(hex[16]) % 4];
  return hex.substr(0, 8) + '-' + hex.substr(8, 4) + '-' + hex.substr(12, 4) + '-' +
         hex.substr(16, 4) + '-' + hex.substr(20);
}

bool has_header(const net::http_response& response, std::string_view name) {
  return std::any_of(response.headers.begin(), response.headers.end(),
                     [name](const auto& header) { return iequals(header.first, name); });
}

// The headers InfluxDB sends with every answer, added unless `auth` set them already.
void add_common_headers(net::http_response& response, const std::string& version) {
  if (!has_header(response, "X-Influxdb-Build"))
    response.headers.emplace_back("X-Influxdb-Build", "OSS");
  if (!has_header(response, "X-Influxdb-Version"))
    response.headers.emplace_back("X-Influxdb-Version", version);
  if (!has_header(response, "Request-Id")) {
    std::string id = request_id();
    response.headers.emplace_back("Request-Id", id);
    response.headers.emplace_back("X-Request-Id", std::move(id));
  }
}

net::http_responder with_common_headers(shared_context c, net::http_responder respond) {
  return [shared = std::move(c), respond = std::move(respond)](net::http_response response) {
    add_common_headers(response, shared->settings.version);
    respond(std::move(response));
  };
}

net::http_response no_content() {
  return net::http_response{204, std::string(json_type), {}, {}};
}

// 1.x's error: Response{Err} through its JSON formatter ({"error":"..."} and a newline), the
// message also in X-Influxdb-Error (newlines and other control bytes as spaces, as Go's header
// writer has them).
net::http_response v1_error(unsigned status, const std::string& message, bool pretty = false) {
  query_result refused;
  refused.error = message;
  std::string body = format_json(refused, std::nullopt, pretty);
  body.push_back('\n');
  std::string header = message.substr(0, max_error_header);
  for (char& c : header)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) c = ' ';
  return net::http_response{
      status, std::string(json_type), {{"X-Influxdb-Error", std::move(header)}}, std::move(body)};
}

// 2.x's error: {"code":..,"message":..} with the code also in X-Platform-Error-Code.
net::http_response v2_error(unsigned status, std::string_view code, std::string_view message) {
  std::string body = R"({"code":)";
  core::append_json_string(body, code);
  body += R"(,"message":)";
  core::append_json_string(body, message);
  body.push_back('}');
  return net::http_response{status,
                            std::string(v2_json_type),
                            {{"X-Platform-Error-Code", std::string(code)}},
                            std::move(body)};
}

net::http_response too_large(api shape) {
  if (shape == api::v1) return v1_error(413, "Request Entity Too Large");  // Go's StatusText
  return v2_error(413, "request too large", "unable to read data: points batch is too large");
}

std::optional<net::http_response> check_access(const context& c, const net::http_request& request,
                                               bool write) {
  if (!c.auth) return std::nullopt;
  return c.auth(request, write);
}

std::optional<std::uint64_t> declared_length(const net::http_request& head) {
  const auto length = head.header("content-length");
  if (!length) return std::nullopt;
  const std::string_view text = trim(*length);
  std::uint64_t value = 0;
  const auto [end, failure] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (failure != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// ------------------------------------------------------------------------------------ gzip

enum class inflate_result { ok, too_large, corrupt };

struct inflated {
  inflate_result result = inflate_result::ok;
  std::string body;
  std::string error;  // for corrupt: Go's compress/gzip words, which 1.6.7 echoes
};

std::string gzip_error(const z_stream& z, int code) {
  if (code == Z_MEM_ERROR) return "gzip: out of memory";
  if (code != Z_DATA_ERROR) return "unexpected EOF";  // the input ended inside a member
  const std::string_view message = z.msg != nullptr ? z.msg : "";
  if (message == "incorrect data check" || message == "incorrect length check")
    return "gzip: invalid checksum";
  if (message == "incorrect header check" || message == "unknown compression method" ||
      message == "unknown header flags set" || message == "header crc mismatch")
    return "gzip: invalid header";
  return "flate: corrupt input before offset " + std::to_string(z.total_in);
}

bool is_gzip(const net::http_request& request) {
  const auto encoding = request.header("content-encoding");
  return encoding && (iequals(trim(*encoding), "gzip") || iequals(trim(*encoding), "x-gzip"));
}

// Inflates a gzip body of one or more members (Go's reader reads concatenated members), never
// holding more than max_size + 1 bytes: a small body inflating without bound (a "gzip bomb") is
// refused once past the limit, not after.
inflated gunzip(std::string_view compressed, std::size_t max_size) {
  inflated out;
  if (compressed.empty()) return out;  // nothing sent: an empty body, not a broken one
  z_stream z{};
  if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) {
    out.result = inflate_result::corrupt;
    out.error = "gzip: out of memory";
    return out;
  }
  constexpr std::size_t max_step = std::size_t{1} << 30;  // zlib counts in 32 bits
  const std::size_t capacity =
      max_size < std::numeric_limits<std::size_t>::max() ? max_size + 1 : max_size;
  std::string& body = out.body;
  std::size_t consumed = 0;
  std::size_t produced = 0;
  for (;;) {
    if (produced == body.size()) {
      if (body.size() >= capacity) {
        out.result = inflate_result::too_large;
        break;
      }
      body.resize(std::min(capacity, std::max(body.size() * 2, std::size_t{64} << 10)));
    }
    if (z.avail_in == 0 && consumed < compressed.size()) {
      const std::size_t step = std::min(compressed.size() - consumed, max_step);
      z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data() + consumed));
      z.avail_in = static_cast<uInt>(step);
      consumed += step;
    }
    const std::size_t room = std::min(body.size() - produced, max_step);
    z.next_out = reinterpret_cast<Bytef*>(body.data() + produced);
    z.avail_out = static_cast<uInt>(room);
    const int code = inflate(&z, Z_NO_FLUSH);
    produced += room - z.avail_out;
    if (code == Z_OK) continue;
    if (code == Z_STREAM_END) {
      if (z.avail_in == 0 && consumed == compressed.size()) break;
      inflateReset(&z);  // another member follows (or bytes that are none: a header error)
      continue;
    }
    // Z_BUF_ERROR here means no input is left (there is always room): a truncated member.
    out.result = inflate_result::corrupt;
    out.error = gzip_error(z, code);
    break;
  }
  inflateEnd(&z);
  if (out.result == inflate_result::ok && produced > max_size)
    out.result = inflate_result::too_large;
  if (out.result == inflate_result::ok) {
    body.resize(produced);
  } else {
    std::string().swap(body);
  }
  return out;
}

// Replaces a gzip body by its content; the refusal to send otherwise.
std::optional<net::http_response> inflate_body(net::http_request& request,
                                               std::size_t max_inflated_size, api shape) {
  if (!is_gzip(request)) return std::nullopt;
  inflated content = gunzip(request.body, max_inflated_size);
  switch (content.result) {
    case inflate_result::ok:
      request.body = std::move(content.body);
      return std::nullopt;
    case inflate_result::too_large:
      return too_large(shape);
    case inflate_result::corrupt:
      break;
  }
  if (shape == api::v1) return v1_error(400, content.error);
  return v2_error(400, "invalid", "unable to read data: " + content.error);
}

// ---------------------------------------------------------------------------------- writes

// The refused lines of one body, split as InfluxDB reports them: syntax errors ("unable to
// parse ...") and points its shard drops (a `time` key).
struct refusals {
  std::string syntax;  // the syntax errors' messages, one per line (models.ParsePoints' join)
  std::size_t syntax_count = 0;
  std::string first_drop;  // the first dropped point's reason
  std::size_t drop_count = 0;
};

refusals sort_refusals(const parse_result& parsed) {
  refusals out;
  for (const auto& error : parsed.errors) {
    if (error.kind == error_kind::dropped) {
      if (out.drop_count++ == 0) out.first_drop = error.reason;
      continue;
    }
    ++out.syntax_count;
    if (out.syntax.size() >= max_error_text) continue;
    if (!out.syntax.empty()) out.syntax.push_back('\n');
    out.syntax += error_message(error);
  }
  // Lines refused past parse_limits::max_errors are counted, not kept, so their kind is unknown:
  // counted as syntax errors, by far the likelier.
  out.syntax_count += parsed.rejected_lines - parsed.errors.size();
  return out;
}

std::string partial_write(const std::string& reason, std::size_t dropped) {
  return "partial write: " + (reason.empty() ? std::string("points dropped") : reason) +
         " dropped=" + std::to_string(dropped);
}

std::string or_default(const std::string& message, std::string_view fallback) {
  return message.empty() ? std::string(fallback) : message;
}

// The reason and count of the points a write dropped: the store's (type conflicts, series
// limit) and the parser's (`time` keys), the store's reason first.
std::pair<std::string, std::size_t> dropped_points(const write_outcome& outcome,
                                                   const refusals& refused) {
  const std::size_t count = outcome.dropped + refused.drop_count;
  if (outcome.dropped > 0 && !outcome.message.empty()) return {outcome.message, count};
  return {refused.first_drop, count};
}

net::http_response v1_write_answer(const write_outcome& outcome, const refusals& refused,
                                   const std::string& database, const std::string& policy) {
  switch (outcome.refusal) {
    case write_refusal::none:
      break;
    case write_refusal::database_not_found:
      return v1_error(404, "database not found: " + go_quoted(database));
    case write_refusal::retention_policy_not_found:
      return v1_error(404, "retention policy not found: " + policy);
    case write_refusal::cache_full: {
      auto response = v1_error(503, or_default(outcome.message, "cache-max-memory-size exceeded"));
      response.headers.emplace_back("Retry-After", "1");
      return response;
    }
    case write_refusal::io_error:
      return v1_error(500, or_default(outcome.message, "write failed"));
  }
  if (const auto [reason, count] = dropped_points(outcome, refused); count > 0)
    return v1_error(400, partial_write(reason, count));
  if (refused.syntax_count > 0) return v1_error(400, partial_write(refused.syntax, 0));
  return no_content();
}

// POST /write?db=&rp=&precision=
void write_v1(const shared_context& c, net::http_request& request,
              const net::http_responder& respond) {
  if (auto refused = check_access(*c, request, true)) return respond(std::move(*refused));
  const std::string database = request.query_param("db").value_or("");
  if (database.empty()) return respond(v1_error(400, "database is required"));
  const std::string policy = request.query_param("rp").value_or("");
  const std::string precision_text = request.query_param("precision").value_or("");
  const auto unit = parse_precision(precision_text);
  if (!unit)
    return respond(v1_error(400, "invalid precision " + go_quoted(precision_text) +
                                     " (use n, ns, u, us, ms, s, m or h)"));
  // Before the body, as 1.6.7: a missing database is 404 whatever the lines hold.
  if (!c->time_series.database(database))
    return respond(v1_error(404, "database not found: " + go_quoted(database)));
  if (auto refused = inflate_body(request, c->settings.max_inflated_size, api::v1))
    return respond(std::move(*refused));

  const store::lines_source source{request.body, *unit, now_ns(c->clock)};
  parse_result parsed = c->time_series.spent_batch();
  parse_lines(source.body, source.unit, source.now_ns, parsed);
  refusals refused = sort_refusals(parsed);
  if (parsed.points.empty()) {
    if (refused.drop_count > 0)
      return respond(v1_error(400, partial_write(refused.first_drop, refused.drop_count)));
    if (refused.syntax_count > 0) return respond(v1_error(400, refused.syntax));
    return respond(no_content());  // an empty body, or comments only
  }
  c->time_series.write_lines(
      database, policy, source, std::move(parsed),
      [respond, refused = std::move(refused), database, policy](const write_outcome& outcome) {
        respond(v1_write_answer(outcome, refused, database, policy));
      });
}

net::http_response bucket_not_found(const std::string& bucket) {
  return v2_error(404, "not found", "bucket " + go_quoted(bucket) + " not found");
}

net::http_response v2_write_answer(const write_outcome& outcome, const refusals& refused,
                                   const std::string& bucket) {
  switch (outcome.refusal) {
    case write_refusal::none:
      break;
    case write_refusal::database_not_found:
    case write_refusal::retention_policy_not_found:
      return bucket_not_found(bucket);
    case write_refusal::cache_full: {
      auto response = v2_error(503, "unavailable",
                               or_default(outcome.message, "cache-max-memory-size exceeded"));
      response.headers.emplace_back("Retry-After", "1");
      return response;
    }
    case write_refusal::io_error:
      return v2_error(500, "internal error",
                      "unexpected error writing points to database: " +
                          or_default(outcome.message, "write failed"));
  }
  if (const auto [reason, count] = dropped_points(outcome, refused); count > 0)
    return v2_error(422, "unprocessable entity",
                    "failure writing points to database: " + partial_write(reason, count));
  return no_content();
}

// POST /api/v2/write?org=&bucket=&precision=, checked in 2.x's order.
void write_v2(const shared_context& c, net::http_request& request,
              const net::http_responder& respond) {
  if (auto refused = check_access(*c, request, true)) return respond(std::move(*refused));
  const std::string precision_text = request.query_param("precision").value_or("");
  std::optional<precision> unit = precision::ns;
  if (!precision_text.empty()) {
    const bool is_v2_unit = precision_text == "ns" || precision_text == "us" ||
                            precision_text == "ms" || precision_text == "s";
    unit = is_v2_unit ? parse_precision(precision_text) : std::nullopt;
  }
  if (!unit)
    return respond(
        v2_error(400, "invalid", "invalid precision; valid precision units are ns, us, ms, and s"));
  const std::string bucket = request.query_param("bucket").value_or("");
  if (bucket.empty()) return respond(v2_error(404, "not found", "bucket not found"));
  if (auto refused = inflate_body(request, c->settings.max_inflated_size, api::v2))
    return respond(std::move(*refused));
  if (request.body.empty()) return respond(v2_error(400, "invalid", "writing requires points"));
  if (!c->settings.org.empty()) {
    const std::string org = request.query_param("org").value_or("");
    if (!org.empty() && org != c->settings.org)
      return respond(
          v2_error(404, "not found", "organization name " + go_quoted(org) + " not found"));
  }
  // 1.8's bucket2dbrp: "db" is the default policy, "db/rp" a named one (rp may hold '/').
  const auto slash = bucket.find('/');
  const std::string database = bucket.substr(0, slash);
  const std::string policy = slash == std::string::npos ? std::string() : bucket.substr(slash + 1);
  if (database.empty() || !c->time_series.policy(database, policy))
    return respond(bucket_not_found(bucket));

  const store::lines_source source{request.body, *unit, now_ns(c->clock)};
  parse_result parsed = c->time_series.spent_batch();
  parse_lines(source.body, source.unit, source.now_ns, parsed);
  refusals refused = sort_refusals(parsed);
  if (refused.syntax_count > 0) return respond(v2_error(400, "invalid", refused.syntax));
  if (parsed.points.empty()) {
    if (refused.drop_count > 0)
      return respond(v2_error(422, "unprocessable entity",
                              "failure writing points to database: " +
                                  partial_write(refused.first_drop, refused.drop_count)));
    return respond(no_content());  // comments only
  }
  c->time_series.write_lines(
      database, policy, source, std::move(parsed),
      [respond, refused = std::move(refused), bucket](const write_outcome& outcome) {
        respond(v2_write_answer(outcome, refused, bucket));
      });
}

// --------------------------------------------------------------------------------- queries

bool is_word_byte(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_';
}

// Whether `word` (upper case) stands in `text` as a word of its own, in any case.
bool has_word(std::string_view text, std::string_view word) {
  for (std::size_t at = 0; at + word.size() <= text.size(); ++at) {
    if (!iequals(text.substr(at, word.size()), word)) continue;
    const bool starts = at == 0 || !is_word_byte(text[at - 1]);
    const bool ends = at + word.size() == text.size() || !is_word_byte(text[at + word.size()]);
    if (starts && ends) return true;
  }
  return false;
}

// Whether a query may change something, so needs write access: a statement that is not a
// SELECT, SHOW or EXPLAIN, or the word INTO anywhere (SELECT ... INTO). A lexical look, not a
// parse (the parser is query.cpp's), made so that misreading can only ask for more rights:
// statements split at each ';' outside quotes, and a ';' inside quotes or a quote left open
// counts as a write, since a regex or a comment holding a quote could otherwise hide a
// statement from this look but not from the parser; INTO is looked for ignoring quotes, so a
// string holding the word "into" makes a read need write access.
bool may_write(std::string_view text) {
  std::vector<std::string_view> statements;
  char quote = 0;
  std::size_t start = 0;
  for (std::size_t at = 0; at < text.size(); ++at) {
    const char c = text[at];
    if (quote != 0) {
      if (c == '\\') {
        ++at;
      } else if (c == quote) {
        quote = 0;
      } else if (c == ';') {
        return true;
      }
    } else if (c == '\'' || c == '"') {
      quote = c;
    } else if (c == ';') {
      statements.push_back(text.substr(start, at - start));
      start = at + 1;
    }
  }
  if (quote != 0) return true;
  statements.push_back(text.substr(start));
  for (std::string_view statement : statements) {
    statement = trim(statement);
    if (statement.empty()) continue;
    if (has_word(statement, "INTO")) return true;
    std::size_t length = 0;
    while (length < statement.size() && std::isalpha(static_cast<unsigned char>(statement[length])))
      ++length;
    const std::string_view first = statement.substr(0, length);
    if (!iequals(first, "SELECT") && !iequals(first, "SHOW") && !iequals(first, "EXPLAIN"))
      return true;
  }
  return false;
}

// A form body's fields (application/x-www-form-urlencoded), decoded as query parameters are.
std::vector<std::pair<std::string, std::string>> form_fields(const net::http_request& request) {
  std::vector<std::pair<std::string, std::string>> fields;
  const auto type = request.header("content-type");
  if (request.method != "POST" || !type) return fields;
  const std::string_view media = trim(std::string_view(*type).substr(0, type->find(';')));
  if (!iequals(media, "application/x-www-form-urlencoded")) return fields;
  const auto decode = [](std::string_view part) {
    std::string text(part);
    std::replace(text.begin(), text.end(), '+', ' ');
    return net::percent_decode(text);
  };
  std::string_view rest = request.body;
  while (!rest.empty()) {
    const auto amp = rest.find('&');
    const std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    if (pair.empty()) continue;
    const auto eq = pair.find('=');
    fields.emplace_back(decode(pair.substr(0, eq)),
                        eq == std::string_view::npos ? std::string() : decode(pair.substr(eq + 1)));
  }
  return fields;
}

bool accepts_csv(const net::http_request& request) {
  const auto accept = request.header("accept");
  if (!accept) return false;
  const std::string_view first = std::string_view(*accept).substr(0, accept->find(','));
  const std::string_view media = trim(first.substr(0, first.find(';')));
  return iequals(media, "application/csv") || iequals(media, "text/csv");
}

// How a query's answer is printed.
struct output_format {
  bool is_csv = false;
  bool is_pretty = false;
  bool is_chunked = false;
  std::size_t chunk_size = 0;
  std::optional<precision> epoch;  // nullopt: RFC3339
};

net::http_response query_error(unsigned status, const std::string& message,
                               const output_format& format) {
  net::http_response response = v1_error(status, message, format.is_pretty);
  if (format.is_csv) {
    query_result refused;
    refused.error = message;
    response.content_type = std::string(csv_type);
    response.body = format_csv(refused, std::nullopt);
  }
  return response;
}

net::http_response query_answer(const query_result& result, const output_format& format) {
  if (result.error) return query_error(400, *result.error, format);
  if (format.is_csv)
    return net::http_response{200, std::string(csv_type), {}, format_csv(result, format.epoch)};
  std::string body;
  if (format.is_chunked) {
    for (const auto& chunk : format_json_chunks(result, format.epoch, format.chunk_size))
      body += chunk;
  } else {
    body = format_json(result, format.epoch, format.is_pretty);
    body.push_back('\n');
  }
  return net::http_response{200, std::string(json_type), {}, std::move(body)};
}

// GET or POST /query?q=&db=&rp=&epoch=&chunked=&chunk_size=&pretty=
void serve_query(const shared_context& c, net::http_request& request,
                 const net::http_responder& respond) {
  if (auto refused = check_access(*c, request, false)) return respond(std::move(*refused));
  const auto form = form_fields(request);
  const auto value = [&](std::string_view name) -> std::string {
    for (const auto& [key, field] : form)
      if (key == name) return field;
    return request.query_param(name).value_or("");
  };
  output_format format;
  format.is_csv = accepts_csv(request);
  format.is_pretty = value("pretty") == "true";
  auto text = std::make_shared<const std::string>(trim(value("q")));
  if (text->empty()) return respond(query_error(400, "missing required parameter \"q\"", format));
  if (may_write(*text)) {
    if (auto refused = check_access(*c, request, true)) return respond(std::move(*refused));
  }
  const std::string epoch = std::string(trim(value("epoch")));
  if (!epoch.empty()) {
    format.epoch = parse_epoch(epoch);
    if (!format.epoch)
      return respond(query_error(
          400, "invalid epoch " + go_quoted(epoch) + " (use ns, u, ms, s, m or h)", format));
  }
  format.is_chunked = value("chunked") == "true";
  format.chunk_size = c->settings.default_chunk_size;
  const std::string chunk_size = value("chunk_size");
  std::int64_t rows = 0;
  const auto [end, failure] =
      std::from_chars(chunk_size.data(), chunk_size.data() + chunk_size.size(), rows);
  if (failure == std::errc() && end == chunk_size.data() + chunk_size.size() && rows > 0)
    format.chunk_size = static_cast<std::size_t>(rows);

  query_options options;
  options.database = value("db");
  options.retention_policy = value("rp");
  options.now_ns = now_ns(c->clock);
  options.limits = c->settings.limits;
  // `text` rides along with the callback: a CREATE or DROP answers after the call returns.
  auto run = [c, text, options, format, respond] {
    execute_query(c->time_series, *text, options, [text, format, respond](query_result result) {
      respond(query_answer(result, format));
    });
  };
  if (c->settings.runner == nullptr) return run();
  if (!c->settings.runner->post(run)) {
    auto busy = query_error(503, "too many queries in progress, retry later", format);
    busy.headers.emplace_back("Retry-After", "1");
    respond(std::move(busy));
  }
}

// ------------------------------------------------------------------------------------ Flux

namespace json = boost::json;

constexpr std::string_view flux_csv_type = "text/csv; charset=utf-8";
// NYTimes gziphandler's DefaultMinSize, which InfluxDB 2 uses: smaller answers go plain.
constexpr std::size_t gzip_min_size = 1400;

// What a POST /api/v2/query asks for.
struct flux_request {
  std::string text;
  flux::csv_dialect dialect;
  flux::compile_options options;
};

net::http_response flux_request_error(std::string_view message) {
  return v2_error(400, "invalid", "failed to decode request body: " + std::string(message));
}

std::string json_text(const json::string& s) {
  return std::string(s.data(), s.size());
}

// An extern literal (the Flux AST's JSON, as the Python client writes params=) as a constant;
// nullopt with `why` set when it is not one.
std::optional<flux::value> extern_value(const json::value& node, std::int64_t now_ns,
                                        std::string& why) {
  const auto* object = node.if_object();
  if (object == nullptr) {
    why = "expected an expression object";
    return std::nullopt;
  }
  const auto* type_field = object->if_contains("type");
  const std::string type =
      type_field != nullptr && type_field->is_string() ? json_text(type_field->get_string()) : "";
  const json::value* v = object->if_contains("value");
  if (type == "StringLiteral" && v != nullptr && v->is_string())
    return flux::value::of(flux::scalar{json_text(v->get_string())});
  if (type == "BooleanLiteral" && v != nullptr && v->is_bool())
    return flux::value::of(flux::scalar{v->get_bool()});
  if (type == "FloatLiteral" && v != nullptr && v->is_number()) {
    json::error_code ec;
    const double number = v->to_number<double>(ec);
    if (!ec) return flux::value::of(flux::scalar{number});
  }
  if ((type == "IntegerLiteral" || type == "UnsignedIntegerLiteral") && v != nullptr) {
    // The Python client writes integers as strings ("5"), as Flux's AST JSON does.
    if (v->is_string()) {
      const std::string text = json_text(v->get_string());
      if (type == "IntegerLiteral") {
        std::int64_t number = 0;
        const auto [end, failure] = std::from_chars(text.data(), text.data() + text.size(), number);
        if (failure == std::errc() && end == text.data() + text.size() && !text.empty())
          return flux::value::of(flux::scalar{number});
      } else {
        std::uint64_t number = 0;
        const auto [end, failure] = std::from_chars(text.data(), text.data() + text.size(), number);
        if (failure == std::errc() && end == text.data() + text.size() && !text.empty())
          return flux::value::of(flux::scalar{number});
      }
    } else if (v->is_number()) {
      json::error_code ec;
      if (type == "IntegerLiteral") {
        const auto number = v->to_number<std::int64_t>(ec);
        if (!ec) return flux::value::of(flux::scalar{number});
      } else {
        const auto number = v->to_number<std::uint64_t>(ec);
        if (!ec) return flux::value::of(flux::scalar{number});
      }
    }
  }
  if (type == "DateTimeLiteral" && v != nullptr && v->is_string()) {
    if (const auto ns = flux::parse_time(json_text(v->get_string())))
      return flux::value::of(flux::scalar{flux::timestamp{*ns}});
  }
  if (type == "DurationLiteral") {
    const auto* values = object->if_contains("values");
    if (values != nullptr && values->is_array() && !values->get_array().empty()) {
      flux::duration total;
      bool is_valid = true;
      for (const auto& part : values->get_array()) {
        const auto* fields = part.if_object();
        const auto* magnitude = fields != nullptr ? fields->if_contains("magnitude") : nullptr;
        const auto* unit = fields != nullptr ? fields->if_contains("unit") : nullptr;
        json::error_code ec;
        std::optional<flux::duration> parsed;
        if (magnitude != nullptr && magnitude->is_number() && unit != nullptr &&
            unit->is_string()) {
          const auto count = magnitude->to_number<std::int64_t>(ec);
          if (!ec && count >= 0)
            parsed = flux::parse_duration(std::to_string(count) + json_text(unit->get_string()));
        }
        if (!parsed || __builtin_add_overflow(total.months, parsed->months, &total.months) ||
            __builtin_add_overflow(total.nanoseconds, parsed->nanoseconds, &total.nanoseconds)) {
          is_valid = false;
          break;
        }
      }
      if (is_valid) return flux::value::of(total);
    }
  }
  if (type == "UnaryExpression") {
    const auto* op = object->if_contains("operator");
    const auto* argument = object->if_contains("argument");
    if (op != nullptr && op->is_string() && argument != nullptr) {
      auto inner = extern_value(*argument, now_ns, why);
      if (!inner) return std::nullopt;
      const std::string symbol = json_text(op->get_string());
      if (symbol == "+") return inner;
      if (symbol == "-" && inner->kind == flux::value_kind::duration) {
        inner->span.months = -inner->span.months;
        inner->span.nanoseconds = -inner->span.nanoseconds;
        return inner;
      }
      if (symbol == "-" && inner->kind == flux::value_kind::single) {
        if (const auto* i = std::get_if<std::int64_t>(&inner->data)) {
          if (*i != std::numeric_limits<std::int64_t>::min()) {
            inner->data = -*i;
            return inner;
          }
        } else if (const auto* d = std::get_if<double>(&inner->data)) {
          inner->data = -*d;
          return inner;
        }
      }
    }
  }
  if (type == "ArrayExpression") {
    const auto* elements = object->if_contains("elements");
    if (elements != nullptr && elements->is_array()) {
      flux::value array;
      array.kind = flux::value_kind::array;
      for (const auto& element : elements->get_array()) {
        auto item = extern_value(element, now_ns, why);
        if (!item) return std::nullopt;
        array.elements.push_back(std::move(*item));
      }
      return array;
    }
  }
  if (type == "ObjectExpression") {
    const auto* properties = object->if_contains("properties");
    if (properties != nullptr && properties->is_array()) {
      flux::value record;
      record.kind = flux::value_kind::record;
      for (const auto& property : properties->get_array()) {
        const auto* fields = property.if_object();
        const auto* key = fields != nullptr ? fields->if_contains("key") : nullptr;
        const auto* key_fields = key != nullptr ? key->if_object() : nullptr;
        const json::value* name = nullptr;
        if (key_fields != nullptr) {
          name = key_fields->if_contains("name");
          if (name == nullptr) name = key_fields->if_contains("value");
        }
        const auto* init = fields != nullptr ? fields->if_contains("value") : nullptr;
        if (name == nullptr || !name->is_string() || init == nullptr) {
          why = "malformed ObjectExpression property";
          return std::nullopt;
        }
        auto item = extern_value(*init, now_ns, why);
        if (!item) return std::nullopt;
        record.labels.push_back(json_text(name->get_string()));
        record.elements.push_back(std::move(*item));
      }
      return record;
    }
  }
  if (type == "CallExpression") {
    // now(), as the InfluxDB UI writes timeRangeStop.
    const auto* callee = object->if_contains("callee");
    const auto* callee_fields = callee != nullptr ? callee->if_object() : nullptr;
    const auto* name = callee_fields != nullptr ? callee_fields->if_contains("name") : nullptr;
    const auto* arguments = object->if_contains("arguments");
    const bool has_arguments =
        arguments != nullptr && arguments->is_array() && !arguments->get_array().empty();
    if (name != nullptr && name->is_string() && json_text(name->get_string()) == "now" &&
        !has_arguments)
      return flux::value::of(flux::scalar{flux::timestamp{now_ns}});
  }
  why = "unsupported expression" + (type.empty() ? std::string() : " " + type);
  return std::nullopt;
}

// extern: {"body": [OptionStatement | VariableAssignment...]} (a File or a Package-less body).
std::optional<net::http_response> read_externs(const json::value& externs, std::int64_t now_ns,
                                               flux::compile_options& out) {
  if (externs.is_null()) return std::nullopt;
  const auto* object = externs.if_object();
  if (object == nullptr) return flux_request_error("extern must be an object");
  const auto* body = object->if_contains("body");
  if (body == nullptr || body->is_null()) return std::nullopt;
  if (!body->is_array()) return flux_request_error("extern.body must be an array");
  for (const auto& entry : body->get_array()) {
    const auto* statement = entry.if_object();
    const auto* type = statement != nullptr ? statement->if_contains("type") : nullptr;
    const json::value* assignment = &entry;
    if (type != nullptr && type->is_string() && json_text(type->get_string()) == "OptionStatement")
      assignment = statement->if_contains("assignment");
    const auto* fields = assignment != nullptr ? assignment->if_object() : nullptr;
    const auto* assignment_type = fields != nullptr ? fields->if_contains("type") : nullptr;
    const auto* id = fields != nullptr ? fields->if_contains("id") : nullptr;
    const auto* id_fields = id != nullptr ? id->if_object() : nullptr;
    const auto* name = id_fields != nullptr ? id_fields->if_contains("name") : nullptr;
    const auto* init = fields != nullptr ? fields->if_contains("init") : nullptr;
    if (assignment_type == nullptr || !assignment_type->is_string() ||
        json_text(assignment_type->get_string()) != "VariableAssignment" || name == nullptr ||
        !name->is_string() || init == nullptr)
      return flux_request_error(
          "extern: only option or variable assignments of literals are supported");
    const std::string variable = json_text(name->get_string());
    std::string why;
    auto constant = extern_value(*init, now_ns, why);
    if (!constant) return flux_request_error("extern: " + go_quoted(variable) + ": " + why);
    out.externs.emplace_back(variable, std::move(*constant));
  }
  return std::nullopt;
}

// The request body: a JSON query request, or the raw query (application/vnd.flux).
std::variant<flux_request, net::http_response> read_flux_request(const net::http_request& request,
                                                                 std::int64_t now_ns) {
  flux_request out;
  out.options.now_ns = now_ns;
  const auto content_type = request.header("content-type");
  const std::string_view media =
      content_type ? trim(std::string_view(*content_type).substr(0, content_type->find(';')))
                   : std::string_view();
  if (iequals(media, "application/vnd.flux")) {
    out.text = request.body;
    return out;
  }
  json::error_code ec;
  const json::value body =
      json::parse(json::string_view(request.body.data(), request.body.size()), ec);
  if (ec || !body.is_object())
    return flux_request_error(
        "failed parsing request body as JSON; if sending a raw Flux script, set 'Content-Type: "
        "application/vnd.flux' in your request headers: " +
        (ec ? ec.message() : std::string("expected a JSON object")));
  const auto& fields = body.get_object();
  if (const auto* type = fields.if_contains("type"); type != nullptr && !type->is_null()) {
    const std::string kind = type->is_string() ? json_text(type->get_string()) : "";
    if (!kind.empty() && kind != "flux")
      return flux_request_error("unknown query type " + go_quoted(kind));
  }
  const auto* query = fields.if_contains("query");
  if (query == nullptr || !query->is_string() || query->get_string().empty())
    return flux_request_error("request body requires either query or AST");
  out.text = json_text(query->get_string());
  if (const auto* now = fields.if_contains("now"); now != nullptr && !now->is_null()) {
    std::optional<std::int64_t> ns;
    if (now->is_string()) ns = flux::parse_time(json_text(now->get_string()));
    if (!ns) return flux_request_error("now must be an RFC3339 time");
    out.options.now_ns = *ns;
  }
  if (const auto* dialect = fields.if_contains("dialect");
      dialect != nullptr && !dialect->is_null()) {
    const auto* d = dialect->if_object();
    if (d == nullptr) return flux_request_error("dialect must be an object");
    if (const auto* header = d->if_contains("header"); header != nullptr && !header->is_null()) {
      if (!header->is_bool()) return flux_request_error("dialect.header must be a boolean");
      out.dialect.has_header = header->get_bool();
    }
    if (const auto* delimiter = d->if_contains("delimiter");
        delimiter != nullptr && !delimiter->is_null()) {
      const std::string text = delimiter->is_string() ? json_text(delimiter->get_string()) : "";
      if (text.size() > 1 ||
          (!text.empty() && (text[0] == '"' || text[0] == '\r' || text[0] == '\n')) ||
          !delimiter->is_string())
        return flux_request_error("invalid dialect delimeter " + go_quoted(text));
      if (!text.empty()) out.dialect.delimiter = text[0];
    }
    if (const auto* annotations = d->if_contains("annotations");
        annotations != nullptr && !annotations->is_null()) {
      if (!annotations->is_array())
        return flux_request_error("dialect.annotations must be an array");
      for (const auto& a : annotations->get_array()) {
        const std::string name = a.is_string() ? json_text(a.get_string()) : "";
        flux::annotation kind = flux::annotation::datatype;
        if (name == "datatype") {
          kind = flux::annotation::datatype;
        } else if (name == "group") {
          kind = flux::annotation::group;
        } else if (name == "default") {
          kind = flux::annotation::default_value;
        } else {
          return flux_request_error("unknown annotation type " + go_quoted(name));
        }
        if (std::find(out.dialect.annotations.begin(), out.dialect.annotations.end(), kind) ==
            out.dialect.annotations.end())
          out.dialect.annotations.push_back(kind);
      }
    }
    if (const auto* prefix = d->if_contains("commentPrefix");
        prefix != nullptr && !prefix->is_null()) {
      if (!prefix->is_string() || prefix->get_string().size() > 1)
        return flux_request_error("invalid dialect comment prefix");
    }
    if (const auto* format = d->if_contains("dateTimeFormat");
        format != nullptr && !format->is_null()) {
      const std::string text = format->is_string() ? json_text(format->get_string()) : "";
      if (!text.empty() && text != "RFC3339" && text != "RFC3339Nano")
        return flux_request_error("invalid dialect date time format " + go_quoted(text));
    }
  }
  if (const auto* externs = fields.if_contains("extern")) {
    if (auto refused = read_externs(*externs, out.options.now_ns, out.options))
      return std::move(*refused);
  }
  return out;
}

net::http_response flux_error(const flux::error& failure) {
  switch (failure.code) {
    case flux::error_code::not_found:
      return v2_error(404, "not found", failure.message);
    case flux::error_code::internal:
    case flux::error_code::timed_out:
      return v2_error(500, "internal error", failure.message);
    case flux::error_code::invalid:
    case flux::error_code::too_large:
      break;
  }
  return v2_error(400, "invalid", failure.message);
}

// Whether Accept-Encoding allows gzip (a "gzip" coding without q=0), as gziphandler reads it.
bool accepts_gzip(const net::http_request& request) {
  const auto header = request.header("accept-encoding");
  if (!header) return false;
  std::string_view rest = *header;
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    const std::string_view part = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    const auto semicolon = part.find(';');
    if (!iequals(trim(part.substr(0, semicolon)), "gzip")) continue;
    if (semicolon == std::string_view::npos) return true;
    const std::string_view parameter = trim(part.substr(semicolon + 1));
    if (parameter.size() < 2 || !iequals(parameter.substr(0, 2), "q=")) return true;
    double q = 0;
    const std::string_view number = trim(parameter.substr(2));
    const auto [end, failure] = std::from_chars(number.data(), number.data() + number.size(), q);
    return failure != std::errc() || q > 0;
  }
  return false;
}

// One gzip member of `text`; nullopt if zlib fails (the answer then goes uncompressed).
std::optional<std::string> gzip(std::string_view text) {
  if (text.size() > std::numeric_limits<uInt>::max() / 2) return std::nullopt;
  z_stream z{};
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) !=
      Z_OK)
    return std::nullopt;
  std::string out(deflateBound(&z, static_cast<uLong>(text.size())), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  z.avail_in = static_cast<uInt>(text.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  const int code = deflate(&z, Z_FINISH);
  const std::size_t produced = out.size() - z.avail_out;
  deflateEnd(&z);
  if (code != Z_STREAM_END) return std::nullopt;
  out.resize(produced);
  return out;
}

// POST /api/v2/query?org=&orgID=
void run_flux(const shared_context& c, const flux::program& program,
              const flux::csv_dialect& dialect, bool is_gzip, const net::http_responder& respond);

void serve_flux(const shared_context& c, net::http_request& request,
                const net::http_responder& respond) {
  if (auto refused = check_access(*c, request, false)) return respond(std::move(*refused));
  if (auto refused = inflate_body(request, c->settings.max_inflated_size, api::v2))
    return respond(std::move(*refused));
  if (!c->settings.org.empty()) {
    const std::string org = request.query_param("org").value_or("");
    const bool is_id = org.size() == 16 && std::all_of(org.begin(), org.end(), [](char ch) {
                         return std::isxdigit(static_cast<unsigned char>(ch)) != 0;
                       });
    if (!org.empty() && !is_id && org != c->settings.org)
      return respond(
          v2_error(404, "not found", "organization name " + go_quoted(org) + " not found"));
  }
  auto decoded = read_flux_request(request, now_ns(c->clock));
  if (auto* refused = std::get_if<net::http_response>(&decoded))
    return respond(std::move(*refused));
  const flux_request& query = std::get<flux_request>(decoded);

  auto compiled = flux::parse_program(query.text, query.options);
  if (const auto* failure = std::get_if<flux::error>(&compiled))
    return respond(flux_error(*failure));
  auto run =
      [c, program = std::make_shared<flux::program>(std::move(std::get<flux::program>(compiled))),
       dialect = query.dialect, is_gzip = accepts_gzip(request),
       respond] { run_flux(c, *program, dialect, is_gzip, respond); };
  if (c->settings.runner == nullptr) return run();
  if (!c->settings.runner->post(run)) {
    auto busy = v2_error(503, "unavailable", "too many queries in progress, retry later");
    busy.headers.emplace_back("Retry-After", "1");
    respond(std::move(busy));
  }
}

// Runs a compiled Flux program and answers its CSV (gzipped when asked and worth it).
void run_flux(const shared_context& c, const flux::program& program,
              const flux::csv_dialect& dialect, bool is_gzip, const net::http_responder& respond) {
  flux::execution_limits limits;
  limits.max_points = c->settings.limits.max_select_point;
  limits.max_rows = c->settings.limits.max_result_rows;
  if (c->settings.flux_timeout.count() > 0)
    limits.deadline = std::chrono::steady_clock::now() + c->settings.flux_timeout;
  auto results = flux::execute(c->time_series, program, limits);
  if (const auto* failure = std::get_if<flux::error>(&results))
    return respond(flux_error(*failure));

  net::http_response response{
      200,
      std::string(flux_csv_type),
      {{"Vary", "Accept-Encoding"}},
      flux::encode_csv(std::get<std::vector<flux::result>>(results), dialect)};
  if (response.body.size() >= gzip_min_size && is_gzip) {
    if (auto compressed = gzip(response.body)) {
      response.body = std::move(*compressed);
      response.headers.emplace_back("Content-Encoding", "gzip");
    }
  }
  respond(std::move(response));
}

// ------------------------------------------------------------------------------ ping, health

// GET|HEAD /ping: 204, or with verbose (1.8) 200 {"version":...}.
void ping(const shared_context& c, net::http_request& request, const net::http_responder& respond) {
  const std::string verbose = request.query_param("verbose").value_or("");
  if (verbose.empty() || verbose == "0" || verbose == "false") return respond(no_content());
  respond(net::http_response{200,
                             std::string(json_type),
                             {},
                             R"({"version":)" + core::json_string(c->settings.version) + "}"});
}

// GET /health (1.8): its members in the order Go's map encoding sorts them.
void health(const shared_context& c, net::http_request&, const net::http_responder& respond) {
  respond(net::http_response{
      200,
      std::string(json_type),
      {},
      R"({"checks":[],"commit":"nimbus","message":"ready for queries and writes",)"
      R"("name":"influxdb","status":"pass","version":)" +
          core::json_string(c->settings.version) + "}"});
}

using route_handler = void (*)(const shared_context&, net::http_request&,
                               const net::http_responder&);

struct route {
  std::string_view method;
  std::string_view path;
  access_kind who;
  api shape;
  bool has_body;
  route_handler serve;
};

// The routes, declared once (GET routes serve HEAD as well).
constexpr route routes[] = {
    {"POST", "/write", access_kind::write, api::v1, true, &write_v1},
    {"POST", "/api/v2/write", access_kind::write, api::v2, true, &write_v2},
    {"GET", "/query", access_kind::read, api::v1, false, &serve_query},
    {"POST", "/query", access_kind::read, api::v1, true, &serve_query},
    {"POST", "/api/v2/query", access_kind::read, api::v2, true, &serve_flux},
    {"GET", "/ping", access_kind::open, api::v1, false, &ping},
    {"GET", "/health", access_kind::open, api::v1, false, &health},
};

}  // namespace

void add_influx_routes(net::http_router& router, store& s, influx_auth auth,
                       influx_http_settings settings, core::clock& clock) {
  const auto c =
      std::make_shared<const context>(context{s, std::move(auth), std::move(settings), clock});
  const std::size_t max_body = c->settings.max_body_size == 0
                                   ? std::numeric_limits<std::size_t>::max()
                                   : c->settings.max_body_size;
  for (const route& r : routes) {
    net::route_options options;
    if (r.has_body) {
      options.max_body = max_body;
      // Before a body is read: who asks, then how much (in the API's words; the router's own
      // 413 covers bodies without a declared length).
      options.precheck =
          [c, r, max_body](const net::http_request& head) -> std::optional<net::http_response> {
        std::optional<net::http_response> refusal;
        if (r.who != access_kind::open)
          refusal = check_access(*c, head, r.who == access_kind::write);
        if (!refusal) {
          if (const auto length = declared_length(head); length && *length > max_body)
            refusal = too_large(r.shape);
        }
        if (refusal) add_common_headers(*refusal, c->settings.version);
        return refusal;
      };
    }
    router.add_async(
        std::string(r.method), std::string(r.path),
        [c, serve = r.serve](net::http_request request, net::http_responder respond) {
          serve(c, request, with_common_headers(c, std::move(respond)));
        },
        std::move(options));
  }
}

net::http_response influx_v1_unauthorized() {
  auto response = v1_error(401, "authorization failed");
  // 1.x asks for Basic credentials on a 401 and leaves X-Influxdb-Error to other errors.
  response.headers = {{"WWW-Authenticate", R"(Basic realm="InfluxDB")"}};
  return response;
}

net::http_response influx_v2_unauthorized() {
  return v2_error(401, "unauthorized", "unauthorized access");
}

std::vector<std::string> influx_credentials(const net::http_request& request) {
  std::vector<std::string> tokens;
  const auto add = [&tokens](std::string_view token) {
    if (!token.empty() && std::find(tokens.begin(), tokens.end(), token) == tokens.end())
      tokens.emplace_back(token);
  };
  if (const auto authorization = request.header("authorization")) {
    const std::string_view value = trim(*authorization);
    const auto space = value.find(' ');
    const std::string_view scheme = value.substr(0, space);
    const std::string_view credential =
        space == std::string_view::npos ? std::string_view() : trim(value.substr(space + 1));
    if (iequals(scheme, "Token") || iequals(scheme, "Bearer")) {
      add(credential);
      if (const auto colon = credential.find(':');
          iequals(scheme, "Token") && colon != std::string_view::npos)
        add(credential.substr(colon + 1));  // 1.8's "Token user:pass"
    } else if (iequals(scheme, "Basic")) {
      if (const auto decoded = core::base64_decode(credential)) {
        const std::string_view user_password = *decoded;
        const auto colon = user_password.find(':');
        const std::string_view password =
            colon == std::string_view::npos ? std::string_view() : user_password.substr(colon + 1);
        add(password.empty() ? user_password.substr(0, colon) : password);
      }
    }
  }
  if (const auto password = request.query_param("p")) add(*password);
  return tokens;
}

}  // namespace nimbus::tsdb
