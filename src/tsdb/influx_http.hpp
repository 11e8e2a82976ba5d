#pragma once
// InfluxDB's HTTP APIs over the shared router (reference/timeseries.md §1.1): 1.x writes
// (POST /write), 2.x writes (POST /api/v2/write), InfluxQL (GET/POST /query), Flux
// (POST /api/v2/query, reference/flux.md), GET/HEAD /ping and
// GET /health, each with its API's statuses, error bodies and headers, so that Telegraf,
// Grafana and both Python clients take Nimbus for an InfluxDB. A thin adapter without state:
// writes go to store::write and are answered once durable, queries to execute_query. Handlers
// run on the HTTP loop; answers leave from whichever thread the store calls back on. The
// choices where the APIs leave room (and where we depart from 1.6.7) are listed in
// influx_http.cpp's header comment.
#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/clock.hpp"
#include "net/http_server.hpp"
#include "tsdb/query.hpp"
#include "tsdb/query_runner.hpp"
#include "tsdb/store.hpp"

namespace nimbus::tsdb {

struct influx_http_settings {
  // A write or query body larger than this is refused (413) before it is read: 1.x's
  // max-body-size (0: no limit).
  std::size_t max_body_size = std::size_t{25} << 20;
  // Ours: what a gzip body may inflate to, past it 413. 1.x applies max-body-size to the
  // inflated body; we allow more, as line protocol compresses ~10x, but not without bound.
  std::size_t max_inflated_size = std::size_t{100} << 20;
  // The /api/v2 organization: empty accepts any `org` (as 1.8's compatibility API does); else a
  // request naming another gets 404 "organization name \"x\" not found".
  std::string org;
  // X-Influxdb-Version. 1.8.10 (the last 1.x, the first with /api/v2/write and /health) so that
  // clients choosing their path by version (v2-compatible writes) pick the ones served here.
  std::string version = "1.8.10";
  // Rows per chunk for chunked=true without a valid chunk_size: 1.x's default.
  std::size_t default_chunk_size = 10000;
  // Bounds both query languages: max_select_point counts the points a Flux query reads,
  // max_result_rows the rows its windows and pivots make.
  query_limits limits;
  // Where /query and /api/v2/query run (null: on the HTTP loop, for tests); when it refuses,
  // 503 with Retry-After.
  query_runner* runner = nullptr;
  // How long a Flux query (POST /api/v2/query) may run before it fails with 500; 0: no limit.
  // The clients give up after 10 s.
  std::chrono::milliseconds flux_timeout{std::chrono::seconds(30)};
};

// Who may call: nullopt to serve, or the response to refuse with (401 in the API's shape, see
// below). `write`: the request writes (a write, or a query with CREATE/DROP/... or SELECT INTO).
// Called on the HTTP loop, also with the head alone (body still unread) for requests that have
// one, so must not look at the body.
using influx_auth =
    std::function<std::optional<net::http_response>(const net::http_request&, bool write)>;

// Adds the routes to `router`; `s`, `clock` and the router must outlive one another's use.
// `auth` may be null (everything open); /ping and /health are always open, as in InfluxDB.
void add_influx_routes(net::http_router& router, store& s, influx_auth auth,
                       influx_http_settings settings, core::clock& clock);

// The 401 answers, for `auth`. 1.x: {"error":"authorization failed"} with WWW-Authenticate:
// Basic; 2.x: {"code":"unauthorized","message":"unauthorized access"}.
net::http_response influx_v1_unauthorized();
net::http_response influx_v2_unauthorized();

// The tokens a request offers, for `auth`, in the order found: `Authorization: Token X`
// (1.8's `Token user:pass` gives both "user:pass" and "pass"), `Bearer X`, `Basic` user:pass
// (the password; the user name when the password is empty), and the `p` query parameter (1.x's
// u/p). Empty when it offers none.
std::vector<std::string> influx_credentials(const net::http_request& request);

}  // namespace nimbus::tsdb
