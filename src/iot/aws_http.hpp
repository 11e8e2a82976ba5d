#pragma once
// What every AWS-style REST route shares: SigV4 authentication against `<data>/credentials`,
// errors in AWS's shape (status, `x-amzn-ErrorType`, `{"message":…}`), request ids, and
// acknowledging a change only once the registry's write is durable. Refusals become HTTP only
// here (error_response): the registry's own (registry::error, whose codes are mapped here) and
// the HTTP surface's (api_error), caught by run() for every route and by the data plane's
// publish route, which answers asynchronously.
#include <boost/asio/thread_pool.hpp>
#include <boost/json/value.hpp>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "iot/sigv4.hpp"
#include "net/http_server.hpp"
#include "registry/credentials.hpp"
#include "registry/error.hpp"
#include "storage/ticket.hpp"

namespace nimbus::storage {
class write_queue;
}

namespace nimbus::iot {

// A JSON body to send and the write to wait for first (none: answer at once).
struct api_result {
  boost::json::value body;
  storage::ticket ticket{};
  unsigned status = 200;
};

using api_operation = std::function<api_result(const net::http_request&)>;

// A refusal that only the HTTP surface makes (a malformed request, 403 Forbidden, 413, 429,
// 500 ...): sent with exactly this status, x-amzn-ErrorType and message.
struct api_error {
  unsigned status;
  std::string type;
  std::string message;
};

net::http_response error_response(const api_error& e);
// A JSON body with AWS's request id header; with the error type header for refusals.
net::http_response json_response(unsigned status, const boost::json::value& body);
net::http_response aws_error_response(unsigned status, std::string_view type,
                                      const boost::json::object& body);
// A registry refusal as AWS sends it: the status and error type of its code, its message, and
// the existing resource's id and ARN for ResourceAlreadyExists.
net::http_response error_response(const registry::error& e);

// The largest control-plane request body: a policy document (20 KiB raw at most) or a CSR or
// CA certificate with its verification certificate fit well within it.
constexpr std::size_t control_plane_max_body = 64 * 1024;

class aws_http {
 public:
  // `region`: the server's (--region); requests signed for another are accepted, and each
  // foreign region is logged once, since ARNs and policies use the server's.
  aws_http(registry::api_credentials credentials, storage::write_queue& writer, std::string region,
           std::string version)
      : credentials_(std::move(credentials)),
        writer_(writer),
        region_(std::move(region)),
        version_(std::move(version)) {}

  // The web dashboard's sessions stand in for SigV4: a request without a signature that
  // `check` vouches for (a session cookie, same-origin for changes) is let through. Set before
  // serving.
  using session_check = std::function<bool(const net::http_request&)>;
  void accept_sessions(session_check check) { session_check_ = std::move(check); }

  // Registers a route whose requests must be SigV4-signed for one of `services`. An `offload`
  // operation (RSA key generation ...) runs on a worker thread instead of an event loop.
  void route(net::http_router& router, std::string method, std::string pattern,
             const std::vector<std::string_view>& services, api_operation operation,
             bool offload = false) const;

  // Checks the signature; nullopt when the request may proceed, else the 403 to send.
  std::optional<net::http_response> authenticate(
      const net::http_request& request, const std::vector<std::string_view>& services) const;
  // True when the request carries SigV4 (header or presigned query), signed or not.
  static bool has_signature(const net::http_request& request);
  // What AWS routes accept before reading a body: at most `max_body` bytes, and only from a
  // caller whose SigV4 passes every check but the signature (form, scope, date, our access
  // key id), or, with `certificates`, that presented a client certificate. The key id is not
  // secret (presigned URLs carry it) and the signature covers the body, so it is checked once
  // the body is there: what a caller can make the server buffer is bounded by the route's
  // limit and http.max_connections.
  net::route_options body_policy(std::size_t max_body, bool certificates = false) const;
  // Requests no route matches: signed ones are AWS operations Nimbus lacks (501
  // NotImplementedException, so SDKs say so plainly); unsigned ones get 404. The router's own
  // errors (404, 405, 500) carry the x-amzn-ErrorType SDKs read.
  void answer_unknown_routes(net::http_router& router) const;

  // Sends `result` once its write is durable (or a 500 if that write failed).
  void respond_when_durable(api_result result, net::http_responder respond) const;

 private:
  void run(const api_operation& operation, const net::http_request& request,
           net::http_responder respond) const;

  // Our one access key's secret, for verify_sigv4.
  iot::secret_lookup our_secret() const;
  // Logs once per region a request was signed for that is not --region.
  void note_region(const std::string& region) const;

  bool is_session(const net::http_request& request) const {
    return session_check_ && !has_signature(request) && session_check_(request);
  }

  registry::api_credentials credentials_;
  session_check session_check_;
  storage::write_queue& writer_;
  std::string region_;
  std::string version_;
  mutable std::mutex regions_mutex_;
  mutable std::set<std::string, std::less<>> foreign_regions_;
  mutable boost::asio::thread_pool workers_{1};
};

// Request parsing shared by the routes; each throws api_error (400 InvalidRequestException) on
// bad input.
boost::json::object parse_body(const net::http_request& request);
std::string string_field(const boost::json::object& o, std::string_view key, bool required = false);
bool bool_query(const net::http_request& request, std::string_view name, bool fallback);
std::size_t page_size(const net::http_request& request, std::string_view name, std::size_t fallback,
                      std::size_t max);

}  // namespace nimbus::iot
