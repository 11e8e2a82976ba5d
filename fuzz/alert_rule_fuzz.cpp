// Feeds arbitrary bytes to the alert rule parser (/api/alert-rules' bodies). Nothing may crash,
// a refusal must say why, and an accepted rule must read back from its canonical JSON as the
// same rule (the webhook secrets aside, which to_json never writes), and write the same text
// again. Durations and templates, parsed on their own, must round-trip too. Numbers are compared
// to the last bits but one: Boost.JSON 1.81 does not read every double it writes back to the
// same bits (a 40-digit threshold may come back an ulp away).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>

#include "alerts/rule.hpp"

using namespace nimbus::alerts;

namespace {

// Takes `read`'s numbers for `wrote`'s where they differ by an ulp or so.
void settle(double wrote, double& read) {
  if (std::fabs(wrote - read) <= 4e-16 * std::max(std::fabs(wrote), std::fabs(read))) read = wrote;
}

void settle(const rule& wrote, rule& read) {
  settle(wrote.when.threshold, read.when.threshold);
  settle(wrote.when.lo, read.when.lo);
  settle(wrote.when.hi, read.when.hi);
  settle(wrote.when.clear_threshold, read.when.clear_threshold);
  settle(wrote.when.clear_lo, read.when.clear_lo);
  settle(wrote.when.clear_hi, read.when.clear_hi);
  settle(wrote.when.half_life, read.when.half_life);
  settle(wrote.when.k, read.when.k);
  settle(wrote.when.floor, read.when.floor);
  for (std::size_t i = 0; i < wrote.escalations.size() && i < read.escalations.size(); ++i)
    if (wrote.escalations[i].value && read.escalations[i].value)
      settle(*wrote.escalations[i].value, *read.escalations[i].value);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  auto parsed = parse_rule(input);
  if (const auto* error = std::get_if<rule_error>(&parsed)) {
    if (error->message.empty()) std::abort();
  } else {
    auto r = std::get<rule>(parsed);
    for (auto& n : r.notifications) n.secret.clear();
    const auto text = to_json(r);
    auto again = parse_rule(text);
    if (!std::holds_alternative<rule>(again)) std::abort();
    auto& read = std::get<rule>(again);
    settle(r, read);
    if (read != r || to_json(read) != text) std::abort();
  }
  if (auto d = parse_duration(input)) {
    if (d->count() >= 0) {
      const auto printed = format_duration(*d);
      const auto back = parse_duration(printed);
      if (!back || *back != *d) std::abort();
    }
  }
  if (!check_template(input)) {
    template_values values{"dev", "type", "major", "rule", "raised", "active"};
    (void)expand_template(input, values);
  }
  return 0;
}
