#include "rules/actions/http.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/string.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>

#include "core/random.hpp"
#include "net/http_client.hpp"
#include "rules/actions/runtime.hpp"

namespace nimbus::rules::actions {

namespace json = boost::json;
namespace asio = boost::asio;

namespace {

constexpr std::size_t max_headers = 100;

// The URL with each `${...}` as a plain word, to check what a template's fixed parts allow.
std::string with_placeholders(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size();) {
    if (text.compare(i, 2, "${") == 0) {
      const auto close = text.find('}', i + 2);
      if (close == std::string_view::npos) break;
      out += 'x';
      i = close + 1;
      continue;
    }
    out += text[i++];
  }
  return out;
}

// One request with its remaining attempts, owned by the exchange in flight or the timer.
struct delivery : std::enable_shared_from_this<delivery> {
  runtime& rt;
  net::http_client_request request;
  completion done;
  int attempt = 0;
  std::unique_ptr<asio::steady_timer> backoff;

  delivery(runtime& r, net::http_client_request req, completion d)
      : rt(r), request(std::move(req)), done(std::move(d)) {}

  void start() {
    ++attempt;
    rt.http().send(request, [self = shared_from_this()](net::http_client_result result) {
      self->settle(std::move(result));
    });
  }

  void settle(net::http_client_result result) {
    std::string error;
    bool retry = true;
    if (const auto* response = std::get_if<net::http_client_response>(&result)) {
      if (response->status >= 200 && response->status < 300) return done(std::nullopt);
      retry = net::is_retryable_status(response->status);
      error = "The endpoint answered with status code " + std::to_string(response->status);
    } else {
      error =
          "The request to the endpoint failed: " + std::get<net::http_client_error>(result).message;
    }
    const auto& s = rt.settings();
    if (!retry || attempt >= s.http_attempts) {
      if (attempt > 1) error += " (after " + std::to_string(attempt) + " attempts)";
      return done(failure{"HttpAction", request.url, std::move(error)});
    }
    // Exponential backoff with jitter: base * 2^(n-1), between half of it and all of it.
    const auto ceiling = s.retry_base.count() << (attempt - 1);
    const auto wait =
        ceiling / 2 +
        static_cast<std::int64_t>(core::random_u64() % static_cast<std::uint64_t>(
                                                           std::max<std::int64_t>(ceiling / 2, 1)));
    backoff = std::make_unique<asio::steady_timer>(rt.io(), std::chrono::milliseconds(wait));
    backoff->async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (!ec) self->start();
    });
  }
};

}  // namespace

std::string check_target_url(std::string_view url) {
  const auto parsed = net::parse_http_url(url);
  if (!parsed) return "is not an http(s) URL";
  if (!parsed->https && !net::is_loopback_host(parsed->host))
    return "must use https (plain http only to a loopback host)";
  return {};
}

std::variant<std::unique_ptr<const action>, rule_error> http::parse(const json::object& fields,
                                                                    const template_scope& scope,
                                                                    const std::string& where) {
  std::unique_ptr<http> out(new http());
  std::optional<substitution_template> url;
  if (auto refused = template_field(fields, "url", scope, where, url)) return std::move(*refused);
  if (!url || url->text().empty())
    return invalid(validation_error("null", where + ".url", "not be null"));
  if (auto why = check_target_url(with_placeholders(url->text())); !why.empty())
    return invalid(where + ".url " + why + ": " + url->text());
  out->url_ = std::move(*url);

  std::optional<std::string> confirmation;
  if (auto refused = string_field(fields, "confirmationUrl", where, confirmation))
    return std::move(*refused);

  if (const auto* headers = fields.if_contains("headers");
      headers != nullptr && !headers->is_null()) {
    if (!headers->is_array()) return invalid(where + ".headers must be an array of {key, value}");
    if (headers->get_array().size() > max_headers)
      return invalid(validation_error("of length " + std::to_string(headers->get_array().size()),
                                      where + ".headers", "have length less than or equal to 100"));
    for (const auto& header : headers->get_array()) {
      const auto* pair = header.if_object();
      if (pair == nullptr) return invalid(where + ".headers must be an array of {key, value}");
      std::optional<substitution_template> key;
      std::optional<substitution_template> value;
      if (auto refused = template_field(*pair, "key", scope, where + ".headers", key))
        return std::move(*refused);
      if (auto refused = template_field(*pair, "value", scope, where + ".headers", value))
        return std::move(*refused);
      if (!key || !value) return invalid(where + ".headers: each entry needs a key and a value");
      if (!key->has_expressions() && !net::is_http_token(key->text()))
        return invalid(where + ".headers: not a valid header name: " + key->text());
      out->headers_.emplace_back(std::move(*key), std::move(*value));
    }
  }

  if (const auto* auth = fields.if_contains("auth"); auth != nullptr && !auth->is_null()) {
    if (!auth->is_object()) return invalid(where + ".auth must be an object");
    out->signs_requests_ = true;
  }
  return std::unique_ptr<const action>(std::move(out));
}

const std::string& http::type() const {
  static const std::string name = "http";
  return name;
}

std::string http::resource(const firing& f) const {
  std::string url;
  std::string error;
  url_.expand(f.original.payload, f.context, url, error);
  return url;
}

void http::fire(const firing& f, runtime& rt, completion done) const {
  net::http_client_request request;
  std::string error;
  if (!url_.expand(f.original.payload, f.context, request.url, error))
    return done(failure{"HttpAction", request.url, std::move(error)});
  if (auto why = check_target_url(request.url); !why.empty())
    return done(failure{"HttpAction", request.url, "The URL " + why});
  bool content_type = false;
  for (const auto& [key_template, value_template] : headers_) {
    std::string key;
    std::string value;
    if (!key_template.expand(f.original.payload, f.context, key, error) ||
        !value_template.expand(f.original.payload, f.context, value, error))
      return done(failure{"HttpAction", request.url, std::move(error)});
    if (boost::beast::iequals(key, "content-type")) content_type = true;
    request.headers.emplace_back(std::move(key), std::move(value));
  }
  if (!content_type) request.headers.emplace_back("Content-Type", "application/json");
  request.headers.emplace_back("User-Agent", "nimbus-rules");
  request.method = "POST";
  request.body = std::string(f.output);
  request.timeout = rt.settings().http_timeout;
  auto exchange = std::make_shared<delivery>(rt, std::move(request), std::move(done));
  // The client runs on the actions' loop, never on the publisher's thread.
  asio::post(rt.io(), [exchange] { exchange->start(); });
}

}  // namespace nimbus::rules::actions
