// Feeds arbitrary bytes to the shadow document engine as device requests: as an update to a new
// shadow, again to the shadow it made (merge, version, delta paths), and to a shadow already
// holding nested state; split at the first newline, as two different updates. Nothing may crash,
// and the engine's promises must hold: a refusal has a message and leaves the document as it was,
// an accepted update moves the version by one and publishes a delta exactly when there is one,
// and the stored form of any document reads back (from_json checks that the metadata mirrors the
// state). The bytes are also read as a stored document and as get and delete payloads.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>

#include <boost/json/serialize.hpp>

#include "shadow/document.hpp"

using namespace nimbus::shadow;

namespace {

// Not compared as text: Boost.JSON 1.81 does not read every double it writes back to the same
// bits, so a number in the state may move by an ulp. Metadata holds integers only.
void check_stored(const document& doc) {
  auto loaded = document::from_json(doc.to_json());
  if (!loaded || loaded->exists() != doc.exists() || loaded->version() != doc.version() ||
      loaded->metadata() != doc.metadata() || loaded->state().size() != doc.state().size())
    std::abort();
}

void update(document& doc, std::string_view payload, std::int64_t now, const limits& bounds) {
  const auto before = doc.to_json();
  const auto version = doc.version();
  auto result = apply_update(doc, payload, now, bounds);
  if (const auto* r = std::get_if<rejection>(&result)) {
    if (r->message.empty() || doc.to_json() != before) std::abort();
    if (r->code != 400 && r->code != 409 && r->code != 413 && r->code != 415 && r->code != 500)
      std::abort();
    (void)boost::json::serialize(rejected_payload(*r));
    return;
  }
  const auto& accepted = std::get<update_result>(result);
  if (doc.version() != version + 1 || !doc.exists()) std::abort();
  if (accepted.delta.has_value() == doc.delta().empty()) std::abort();
  (void)boost::json::serialize(accepted.accepted);
  (void)boost::json::serialize(accepted.documents);
  check_stored(doc);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  limits small;
  small.max_state_bytes = 512;
  small.max_depth = 4;

  document doc;
  update(doc, bytes, 1000, limits{});
  update(doc, bytes, 1001, limits{});
  update(doc, bytes, 1002, small);

  document seeded;
  update(seeded,
         R"({"state":{"desired":{"a":{"b":[1,{"c":true}],"d":"e"},"n":1.5},)"
         R"("reported":{"a":{"b":[1],"x":null},"n":1}}})",
         1, limits{});
  if (auto newline = bytes.find('\n'); newline != std::string_view::npos) {
    update(seeded, bytes.substr(0, newline), 2, limits{});
    update(seeded, bytes.substr(newline + 1), 3, limits{});
  } else {
    update(seeded, bytes, 2, limits{});
  }

  for (const document* d : {&doc, &seeded}) {
    auto got = get_response(*d, "thing~shadow", bytes, 4);
    if (d->exists() != std::holds_alternative<boost::json::object>(got)) std::abort();
  }
  auto deleted = delete_response(seeded, "thing", bytes, 5);
  if (!std::holds_alternative<boost::json::object>(deleted) || seeded.exists()) std::abort();
  check_stored(seeded);
  update(seeded, bytes, 6, limits{});

  if (auto loaded = document::from_json(bytes)) {
    check_stored(*loaded);
    update(*loaded, R"({"state":{"desired":{"a":{"z":1}},"reported":{"a":null}}})", 7, limits{});
    update(*loaded, bytes, 8, limits{});
  }
  (void)is_valid_shadow_name(bytes);
  return 0;
}
