// The dashboard API's handlers through a router over a real store and a manual clock (now is
// 2023-11-14T22:13:20Z): local days across a DST change, readings across windows, devices
// spread over several series. The HTTP side (CORS, tokens, Flask's number parsing) is
// tests/clients/test_dashboard_api.py's.
#include "tsdb/dashboard_api.hpp"

#include <future>
#include <map>
#include <string>

#include <gtest/gtest.h>
#include <boost/json.hpp>

#include "tsdb/tests/temporary_store.hpp"

namespace nimbus::tsdb {
namespace {

namespace json = boost::json;

class dashboard_api_test : public ::testing::Test {
 protected:
  dashboard_api_test() : store_(clock_) {
    add_dashboard_routes(router_, store_.get(), nullptr, dashboard_settings{}, clock_);
  }

  json::value get(const std::string& target, unsigned expected_status = 200) {
    net::http_request request;
    request.method = "GET";
    request.target = target;
    const auto question = target.find('?');
    request.path = request.raw_path = target.substr(0, question);
    if (question != std::string::npos) request.query = target.substr(question + 1);
    std::promise<net::http_response> answered;
    auto response = answered.get_future();
    router_.dispatch(request, [&answered](net::http_response r) { answered.set_value(r); });
    const auto got = response.get();
    EXPECT_EQ(got.status, expected_status) << target << ": " << got.body;
    return json::parse(got.body);
  }

  core::manual_clock clock_;
  testing::temporary_store store_;
  net::http_router router_;
};

TEST_F(dashboard_api_test, daily_stats_follow_local_days_across_a_dst_change) {
  // New York left DST on 2023-11-05 at 06:00 UTC: that local day lasted 25 hours.
  store_.write(
      "sensor_reading,device_id=pi t=1 1699155000\n"    // 2023-11-05T03:30Z = Nov 4, 23:30 EDT
      "sensor_reading,device_id=pi t=2 1699158600\n"    // 2023-11-05T04:30Z = Nov 5, 00:30 EDT
      "sensor_reading,device_id=pi t=4 1699245000\n"    // 2023-11-06T04:30Z = Nov 5, 23:30 EST
      "sensor_reading,device_id=pi t=8 1699248600\n");  // 2023-11-06T05:30Z = Nov 6, 00:30 EST
  const auto body = get("/api/devices/pi/stats/daily?days=14&tz=America/New_York");
  const auto& days = body.at("days").as_array();
  ASSERT_EQ(days.size(), 14u);
  EXPECT_EQ(days[0].at("date"), "2023-11-01");
  EXPECT_EQ(days[13].at("date"), "2023-11-14");
  EXPECT_EQ(days[3].at("date"), "2023-11-04");
  EXPECT_EQ(days[3].at("reading_count"), 1);
  EXPECT_EQ(days[4].at("date"), "2023-11-05");
  EXPECT_EQ(days[4].at("reading_count"), 2);
  EXPECT_EQ(days[4].at("t").at("min"), 2.0);
  EXPECT_EQ(days[4].at("t").at("max"), 4.0);
  EXPECT_EQ(days[4].at("t").at("avg"), 3.0);
  EXPECT_EQ(days[4].at("t").at("count"), 2);
  EXPECT_EQ(days[5].at("reading_count"), 1);
  EXPECT_FALSE(days[6].as_object().contains("t"));
}

TEST_F(dashboard_api_test, daily_stats_from_rollups_equal_those_from_the_points) {
  // A week of a reading a minute, read from the write buffer (points), then again once flushed
  // and compacted into partitions (rollups): the same days, in zones whose midnights fall on
  // whole days, whole hours and half hours of UTC.
  const std::int64_t now = clock_.unix_seconds();
  std::string lines;
  for (std::int64_t t = now - 8 * 86'400; t <= now; t += 60)
    lines += "sensor_reading,device_id=r temperature=" + std::to_string(20 + (t / 60) % 17) +
             ".25,humidity=" + std::to_string(40 + (t / 60) % 9) + "i " + std::to_string(t) + "\n";
  store_.write(lines);
  const char* zones[] = {"UTC", "Asia/Seoul", "Asia/Kolkata", "America/New_York"};
  std::map<std::string, json::value> from_points;
  for (const char* zone : zones)
    from_points[zone] = get(std::string("/api/devices/r/stats/daily?days=7&tz=") + zone);
  store_.get().flush();
  store_.get().compact();
  for (const char* zone : zones) {
    const auto from_rollups = get(std::string("/api/devices/r/stats/daily?days=7&tz=") + zone);
    const auto& expected = from_points[zone].at("days").as_array();
    const auto& got = from_rollups.at("days").as_array();
    ASSERT_EQ(got.size(), expected.size()) << zone;
    for (std::size_t i = 0; i < got.size(); ++i) {
      SCOPED_TRACE(std::string(zone) + " " + json::serialize(expected[i]));
      EXPECT_EQ(got[i].at("date"), expected[i].at("date"));
      EXPECT_EQ(got[i].at("reading_count"), expected[i].at("reading_count"));
      EXPECT_GT(got[i].at("reading_count").as_int64(), 0);
      for (const char* field : {"temperature", "humidity"}) {
        const auto& e = expected[i].at(field);
        const auto& g = got[i].at(field);
        EXPECT_EQ(g.at("count"), e.at("count"));
        EXPECT_EQ(g.at("min"), e.at("min"));
        EXPECT_EQ(g.at("max"), e.at("max"));
        EXPECT_NEAR(g.at("avg").to_number<double>(), e.at("avg").to_number<double>(), 1e-9);
      }
    }
  }
}

TEST_F(dashboard_api_test, readings_come_newest_first_from_as_far_back_as_hours_reach) {
  // One reading every 10 minutes over the last 30 hours, and one ahead of our clock.
  std::string lines;
  const std::int64_t now = 1'700'000'000;
  for (int i = 0; i < 180; ++i)
    lines += "sensor_reading,device_id=pi t=" + std::to_string(i) + " " +
             std::to_string(now - 30 * 3600 + i * 600) + "\n";
  lines += "sensor_reading,device_id=pi t=-1 " + std::to_string(now + 60) + "\n";
  store_.write(lines);
  const auto all = get("/api/devices/pi/readings?hours=48&limit=1000");
  EXPECT_EQ(all.at("count"), 181);
  const auto& readings = all.at("readings").as_array();
  EXPECT_EQ(readings[0].at("t"), -1.0);  // from the future first, as Flask's filter keeps it
  EXPECT_EQ(readings[1].at("t"), 179.0);
  EXPECT_EQ(readings[180].at("t"), 0.0);
  // The default 24 hours: readings newer than now - 24 h.
  EXPECT_EQ(get("/api/devices/pi/readings?limit=1000").at("count"), 1 + 143);
  const auto few = get("/api/devices/pi/readings?limit=2");
  EXPECT_EQ(few.at("readings").as_array()[1].at("timestamp"), "2023-11-14T22:03:20Z");
}

TEST_F(dashboard_api_test, a_device_over_several_series_is_one_device) {
  store_.write(
      "sensor_reading,device_id=pi,room=a t=1 1699999000\n"
      "sensor_reading,device_id=pi,room=b h=50 1699999000\n"
      "sensor_reading,device_id=pi,room=b h=51 1699999500\n"
      "sensor_reading,device_id=zero t=0 1699999100\n"
      "sensor_reading,room=c t=9 1699999100\n");  // no device: not listed
  const auto body = get("/api/devices");
  EXPECT_EQ(body.at("count"), 2);
  const auto& pi = body.at("devices").as_array()[0];
  EXPECT_EQ(pi.at("device_id"), "pi");
  EXPECT_EQ(pi.at("last_seen"), "2023-11-14T22:05:00Z");
  EXPECT_EQ(pi.at("last_reading"),
            json::parse(R"({"device_id":"pi","h":51.0,"timestamp":"2023-11-14T22:05:00Z"})"));
  const auto stats = get("/api/devices/pi/stats");
  EXPECT_EQ(stats.at("reading_count"), 2);  // two times
  EXPECT_EQ(stats.at("h").at("avg"), 50.5);
  EXPECT_EQ(stats.at("t").at("max"), 1.0);
  get("/api/devices/nobody/stats", 404);
}

}  // namespace
}  // namespace nimbus::tsdb
