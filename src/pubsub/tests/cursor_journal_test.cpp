// The cursor journal's record format: round trips, and damaged bytes refused.
#include "pubsub/cursor_journal.hpp"

#include <string>

#include <gtest/gtest.h>

namespace nimbus::pubsub {
namespace {

journal_record sample() {
  return journal_record{
      "projects/p/subscriptions/s-1",
      {cursor_event{cursor_event::kind::ack, 3, 9, 0},
       cursor_event{cursor_event::kind::seek, 1ULL << 40, 1ULL << 40, 0},
       cursor_event{cursor_event::kind::attempts, 12, 12, 5},
       cursor_event{cursor_event::kind::lease, 14, 14, 2, 1'700'000'000, 1'800'000'000'123}}};
}

TEST(cursor_journal, records_round_trip) {
  EXPECT_EQ(decode_journal_record(encode_journal_record(sample())), sample());
  const journal_record empty{"projects/p/subscriptions/e-1", {}};
  EXPECT_EQ(decode_journal_record(encode_journal_record(empty)), empty);
}

TEST(cursor_journal, damaged_records_are_refused) {
  const std::string bytes = encode_journal_record(sample());
  for (std::size_t cut = 0; cut < bytes.size(); ++cut)
    EXPECT_FALSE(decode_journal_record(bytes.substr(0, cut))) << "cut at " << cut;
  EXPECT_FALSE(decode_journal_record(bytes + "x"));
  std::string bad_kind = bytes;
  bad_kind[2 + sample().subscription.size() + 4] = 9;  // the first event's kind
  EXPECT_FALSE(decode_journal_record(bad_kind));
}

}  // namespace
}  // namespace nimbus::pubsub
