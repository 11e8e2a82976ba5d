// The route tree: which route a method and raw path reach, with what parameters, and the
// router's own answers when none does.
#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "net/http_server.hpp"

namespace nimbus::net {
namespace {

// Records which route answered and with which parameters.
struct routed {
  std::string route;
  std::vector<std::pair<std::string, std::string>> params;
  unsigned status = 0;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

routed run(const http_router& router, std::string method, std::string raw_path) {
  http_request request;
  request.method = std::move(method);
  request.raw_path = raw_path;
  request.target = raw_path;
  request.path = percent_decode(raw_path);
  routed out;
  router.dispatch(std::move(request), [&](http_response response) {
    out.status = response.status;
    out.body = response.body;
    out.headers = response.headers;
    if (response.status == 200) out.route = response.body;
  });
  return out;
}

void add_named(http_router& router, const std::string& method, const std::string& pattern,
               route_options options = {}) {
  router.add_async(
      method, pattern,
      [name = method + " " + pattern](http_request request, http_responder respond) {
        std::string body = name;
        for (const auto& [k, v] : request.params) body += " " + k + "=" + v;
        respond({200, "text/plain", {}, body});
      },
      std::move(options));
}

TEST(http_router, literal_and_parameter_segments) {
  http_router router;
  add_named(router, "GET", "/things");
  add_named(router, "GET", "/things/{thingName}");
  add_named(router, "GET", "/things/{thingName}/principals");
  add_named(router, "PUT", "/thing-groups/addThingToThingGroup");
  add_named(router, "GET", "/thing-groups/{thingGroupName}");
  add_named(router, "DELETE", "/policies/{policyName}/version/{policyVersionId}");

  EXPECT_EQ(run(router, "GET", "/things").route, "GET /things");
  EXPECT_EQ(run(router, "GET", "/things/pi-1").route, "GET /things/{thingName} thingName=pi-1");
  EXPECT_EQ(run(router, "GET", "/things/pi-1/principals").route,
            "GET /things/{thingName}/principals thingName=pi-1");
  EXPECT_EQ(run(router, "DELETE", "/policies/p/version/3").route,
            "DELETE /policies/{policyName}/version/{policyVersionId} policyName=p "
            "policyVersionId=3");
  // A literal is preferred, but only for its own method: GET falls back to the parameter.
  EXPECT_EQ(run(router, "PUT", "/thing-groups/addThingToThingGroup").route,
            "PUT /thing-groups/addThingToThingGroup");
  EXPECT_EQ(run(router, "GET", "/thing-groups/addThingToThingGroup").route,
            "GET /thing-groups/{thingGroupName} thingGroupName=addThingToThingGroup");
  // HEAD is served by GET.
  EXPECT_EQ(run(router, "HEAD", "/things").route, "GET /things");
}

TEST(http_router, an_encoded_slash_stays_inside_its_segment) {
  http_router router;
  add_named(router, "POST", "/topics/{topic}");
  EXPECT_EQ(run(router, "POST", "/topics/a%2Fb%20c").route, "POST /topics/{topic} topic=a/b c");
  EXPECT_EQ(run(router, "POST", "/topics/a/b").status, 404U);
  // An empty segment is no parameter.
  EXPECT_EQ(run(router, "POST", "/topics/").status, 404U);
}

TEST(http_router, rest_of_path_routes) {
  http_router router;
  add_named(router, "GET", "/web/*");
  add_named(router, "GET", "/web/index");
  EXPECT_EQ(run(router, "GET", "/web/index").route, "GET /web/index");
  EXPECT_EQ(run(router, "GET", "/web/a/b.js").route, "GET /web/*");
  EXPECT_EQ(run(router, "GET", "/web/").route, "GET /web/*");
  EXPECT_EQ(run(router, "GET", "/web").status, 404U);
  EXPECT_THROW(add_named(router, "GET", "/a/*/b"), std::invalid_argument);
  EXPECT_THROW(add_named(router, "GET", "/web/index"), std::invalid_argument);
}

TEST(http_router, its_own_answers_are_plain_unless_shaped) {
  http_router router;
  add_named(router, "GET", "/things");
  router.add("GET", "/boom",
             [](const http_request&) -> http_response { throw std::runtime_error("handler bug"); });
  auto not_allowed = run(router, "POST", "/things");
  EXPECT_EQ(not_allowed.status, 405U);
  EXPECT_EQ(not_allowed.body, R"({"message":"method not allowed"})");
  EXPECT_TRUE(not_allowed.headers.empty());
  EXPECT_EQ(run(router, "GET", "/nothing").status, 404U);
  EXPECT_EQ(run(router, "GET", "/boom").status, 500U);

  router.set_error_responder([](unsigned status, std::string_view message) {
    return http_response{status, "application/json", {{"x-kind", "shaped"}}, std::string(message)};
  });
  auto shaped = run(router, "POST", "/things");
  EXPECT_EQ(shaped.status, 405U);
  ASSERT_EQ(shaped.headers.size(), 1U);
  EXPECT_EQ(shaped.body, "method not allowed");
}

TEST(http_router, options_follow_the_route_a_request_would_reach) {
  http_router router;
  add_named(router, "POST", "/things/{thingName}", {.max_body = 100, .precheck = nullptr});
  router.set_fallback(
      [](http_request, http_responder respond) {
        respond({404, "", {}, ""});
      },
      {.max_body = 7, .precheck = nullptr});
  EXPECT_EQ(router.options_for("POST", "/things/x").max_body, 100U);
  EXPECT_EQ(router.options_for("GET", "/things/x").max_body, 0U);  // 405: no body
  EXPECT_EQ(router.options_for("POST", "/elsewhere").max_body, 7U);
}

}  // namespace
}  // namespace nimbus::net
