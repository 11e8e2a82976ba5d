#include "rules/actions/kinesis.hpp"

#include "rules/actions/runtime.hpp"

namespace nimbus::rules::actions {

std::variant<std::unique_ptr<const action>, rule_error> kinesis::parse(
    const boost::json::object& fields, const template_scope& scope, const std::string& where) {
  std::unique_ptr<kinesis> out(new kinesis());
  if (auto refused = required_string(fields, "streamName", where, out->stream_))
    return std::move(*refused);
  if (auto refused = template_field(fields, "partitionKey", scope, where, out->partition_key_))
    return std::move(*refused);
  return std::unique_ptr<const action>(std::move(out));
}

const std::string& kinesis::type() const {
  static const std::string name = "kinesis";
  return name;
}

bool kinesis::executable(const runtime& rt) const {
  return static_cast<bool>(rt.streams());
}

void kinesis::fire(const firing& f, runtime& rt, completion done) const {
  stream_record record{stream_, std::string(f.output), {}};
  std::string error;
  if (partition_key_ &&
      !partition_key_->expand(f.original.payload, f.context, record.partition_key, error))
    return done(failure{"KinesisAction", stream_, std::move(error)});
  rt.streams()(std::move(record), std::move(done));
}

}  // namespace nimbus::rules::actions
