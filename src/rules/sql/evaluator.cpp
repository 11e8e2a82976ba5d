#include "rules/sql/evaluator.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <boost/json/array.hpp>
#include <boost/json/error.hpp>
#include <boost/json/memory_resource.hpp>
#include <boost/json/monotonic_resource.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/parse_options.hpp>
#include <boost/json/storage_ptr.hpp>
#include <boost/json/string_view.hpp>
#include <boost/json/value.hpp>

#include "core/assert.hpp"
#include "rules/sql/functions.hpp"
#include "rules/sql/value.hpp"

namespace nimbus::rules::sql {
namespace {

namespace json = boost::json;

// Most payloads, and the values made from them, fit here: no heap until the output string.
constexpr std::size_t arena_bytes = 4096;
// Function arguments are evaluated into a stack array; concat() with more spills to a vector.
constexpr std::size_t inline_arguments = 8;

// Thrown by memory_budget below, through Boost.JSON and the evaluation, up to evaluate(): the one
// way to stop a copy half made. A bad_alloc, since that is what an allocation failure is to the
// code it unwinds through.
class memory_budget_exceeded final : public std::bad_alloc {
 public:
  const char* what() const noexcept override { return "the evaluation's memory budget is spent"; }
};

// What the evaluation's arena takes from the heap, refused past a budget. It sits under the
// monotonic arena, which frees nothing before evaluate() returns, so it counts the blocks the
// evaluation really holds, whichever copy made them (the arena doubles its blocks, so the values
// may get as little as half the budget). Once it has refused it refuses everything,
// and evaluate() checks that too, in case some code on the way swallowed the exception.
// One per evaluate() call, on its stack.
class memory_budget final : public json::memory_resource {
 public:
  std::size_t used() const { return used_; }
  bool is_exhausted() const { return is_exhausted_; }
  void set_limit(std::size_t bytes) { limit_ = bytes; }

 private:
  void* do_allocate(std::size_t bytes, std::size_t alignment) override {
    if (is_exhausted_ || bytes > limit_ || used_ > limit_ - bytes) {
      is_exhausted_ = true;
      throw memory_budget_exceeded();
    }
    void* block = upstream_->allocate(bytes, alignment);
    used_ += bytes;
    return block;
  }

  void do_deallocate(void* block, std::size_t bytes, std::size_t alignment) override {
    upstream_->deallocate(block, bytes, alignment);
    used_ -= std::min(used_, bytes);  // the arena's release() names a block's size loosely
  }

  bool do_is_equal(const json::memory_resource& other) const noexcept override {
    return this == &other;
  }

  json::memory_resource* upstream_ = json::storage_ptr().get();  // the heap
  std::size_t limit_ = no_byte_limit;
  std::size_t used_ = 0;
  bool is_exhausted_ = false;
};

json::string_view key_of(const std::string& s) {
  return json::string_view(s.data(), s.size());
}

// Writes `v` at `path` in `object`: "a.b" as an alias makes {"a": {"b": v}}, merged with what an
// earlier item put under "a".
void place(json::object& object, const std::vector<std::string>& path, json::value&& v) {
  json::object* target = &object;
  for (std::size_t i = 0; i + 1 < path.size(); ++i) {
    json::value& slot = (*target)[key_of(path[i])];
    if (!slot.is_object()) slot.emplace_object();
    target = &slot.get_object();
  }
  target->insert_or_assign(key_of(path.back()), std::move(v));
}

value negated(const value& v, bool whole_as_int) {
  const auto n = to_number(v);
  if (!n) return {};
  if (n->is_int && n->int_value != std::numeric_limits<std::int64_t>::min())
    return make_int(-n->int_value);
  return make_decimal(-n->as_double(), whole_as_int);
}

std::optional<arithmetic_op> arithmetic_of(binary_op op) {
  switch (op) {
    case binary_op::add:
      return arithmetic_op::add;
    case binary_op::subtract:
      return arithmetic_op::subtract;
    case binary_op::multiply:
      return arithmetic_op::multiply;
    case binary_op::divide:
      return arithmetic_op::divide;
    case binary_op::remainder:
      return arithmetic_op::remainder;
    default:
      return std::nullopt;
  }
}

// One evaluation of a program. A row is what names resolve against: the payload at the top,
// an element of the FROM array in a nested SELECT; nullptr when the payload is not JSON.
class evaluation {
 public:
  evaluation(const program& code, eval_state& state) : code_(code), state_(state) {}

  value eval(std::uint32_t index, const json::value* row) {
    if (state_.has_failed()) return {};
    if (++state_.steps > state_.bounds.max_steps) {
      state_.fail("the evaluation exceeds max_steps");
      return {};
    }
    NIMBUS_ASSERT(index < code_.exprs.size());
    const expr& e = code_.exprs[index];
    switch (e.kind) {
      case expr_kind::constant:
        return copied(code_.constants[e.index]);
      case expr_kind::field:
      case expr_kind::member: {
        if (e.is_path) {
          const json::value* found = resolve(index, row);
          return found != nullptr ? copied(*found) : value();
        }
        value base = eval(e.left, row);
        if (base.is_undefined() || !base.json().is_object()) return {};
        json::value* found = base.json().get_object().if_contains(key_of(code_.names[e.index]));
        if (found == nullptr) return {};
        return adopt(std::move(*found), state_);
      }
      case expr_kind::star:
        return row != nullptr ? copied(*row) : value();
      case expr_kind::negate:
        return negated(eval(e.left, row), state_.whole_as_int());
      case expr_kind::logical_not: {
        const auto b = to_boolean(eval(e.left, row));
        return b ? make_bool(!*b) : value();
      }
      case expr_kind::logical_and:
      case expr_kind::logical_or: {
        // AWS's tables: Booleans or "true"/"false" strings on both sides, else Undefined.
        const auto l = to_boolean(eval(e.left, row));
        const auto r = to_boolean(eval(e.right, row));
        if (!l || !r) return {};
        return make_bool(e.kind == expr_kind::logical_and ? (*l && *r) : (*l || *r));
      }
      case expr_kind::binary:
        return eval_binary(e, row);
      case expr_kind::call:
        return eval_call(e, row);
      case expr_kind::cast:
        return eval_cast(e, row);
      case expr_kind::case_simple:
      case expr_kind::case_searched:
        return eval_case(e, row);
      case expr_kind::array_literal: {
        json::value out(json::array_kind, state_.storage);
        json::array& elements = out.get_array();
        elements.reserve(e.list_size);
        for (std::uint32_t i = 0; i < e.list_size; ++i) {
          value element = eval(code_.lists[e.list_begin + i], row);
          if (!element.is_undefined()) elements.push_back(std::move(element.json()));
        }
        return value(std::move(out));
      }
      case expr_kind::object_literal: {
        json::value out(json::object_kind, state_.storage);
        json::object& members = out.get_object();
        for (std::uint32_t i = 0; i < e.list_size; ++i) {
          value member = eval(code_.lists[e.list_begin + i], row);
          if (!member.is_undefined())
            members.insert_or_assign(key_of(code_.names[e.index + i]), std::move(member.json()));
        }
        return value(std::move(out));
      }
      case expr_kind::subquery:
        return run_nested(code_.queries[e.index], row);
    }
    return {};
  }

  // WHERE: true fires; false, Undefined and anything that is not a Boolean do not.
  bool passes(const query& q, const json::value* row) {
    if (q.where == no_index) return true;
    const auto b = to_boolean(eval(q.where, row));
    return b && *b;
  }

  // The SELECT of one row: the VALUE, or the object of the items (Undefined items left out).
  value select(const query& q, const json::value* row, bool is_statement) {
    if (q.is_value) {
      const select_item& item = q.items.front();
      if (item.expression == no_index) return row != nullptr ? copied(*row) : value();
      return eval(item.expression, row);
    }
    json::value out(json::object_kind, state_.storage);
    json::object& object = out.get_object();
    for (const select_item& item : q.items) {
      if (item.expression == no_index) {
        const json::object* source = row != nullptr ? row->if_object() : nullptr;
        if (source == nullptr) {
          // AWS: SELECT *, other items needs a JSON object to add them to.
          if (is_statement) state_.fail("SELECT * with other items needs a JSON object payload");
          continue;
        }
        for (const auto& member : *source)
          object.insert_or_assign(member.key(), json::value(member.value(), state_.storage));
        continue;
      }
      value v = eval(item.expression, row);
      if (!v.is_undefined()) place(object, item.key_path, std::move(v.json()));
    }
    if (state_.has_failed()) return {};
    return value(std::move(out));
  }

 private:
  value copied(const json::value& j) const {
    value v(json::value(j, state_.storage));
    normalize_number(v, state_.whole_as_int());
    return v;
  }

  // A path (a.b.c) looked up in place: only the value at its end is ever copied.
  const json::value* resolve(std::uint32_t index, const json::value* row) const {
    const expr& e = code_.exprs[index];
    const json::value* base = e.kind == expr_kind::field ? row : resolve(e.left, row);
    if (base == nullptr) return nullptr;
    const json::object* object = base->if_object();
    if (object == nullptr) return nullptr;
    return object->if_contains(key_of(code_.names[e.index]));
  }

  value eval_binary(const expr& e, const json::value* row) {
    const value left = eval(e.left, row);
    const value right = eval(e.right, row);
    if (const auto op = arithmetic_of(e.op)) return arithmetic(*op, left, right, state_);
    if (e.op == binary_op::equal || e.op == binary_op::not_equal) {
      const auto equal = sql_equals(left, right);
      if (!equal) return {};
      return make_bool(e.op == binary_op::equal ? *equal : !*equal);
    }
    const auto order = compare_numbers(left, right);
    if (!order) return {};
    switch (e.op) {
      case binary_op::less:
        return make_bool(*order < 0);
      case binary_op::less_equal:
        return make_bool(*order <= 0);
      case binary_op::greater:
        return make_bool(*order > 0);
      case binary_op::greater_equal:
        return make_bool(*order >= 0);
      default:
        return {};
    }
  }

  value eval_call(const expr& e, const json::value* row) {
    NIMBUS_ASSERT(e.function != nullptr);  // the parser resolves every call
    const function_info& function = *e.function;
    // AWS: a call with the wrong number of arguments is Undefined, like one with wrong types.
    if (e.list_size < function.min_args ||
        (function.max_args != any_count && e.list_size > function.max_args))
      return {};
    value inline_values[inline_arguments];
    std::vector<value> spilled;
    std::span<value> arguments;
    if (e.list_size <= inline_arguments) {
      arguments = std::span<value>(inline_values, e.list_size);
    } else {
      spilled.resize(e.list_size);
      arguments = std::span<value>(spilled);
    }
    for (std::uint32_t i = 0; i < e.list_size; ++i)
      arguments[i] = eval(code_.lists[e.list_begin + i], row);
    if (state_.has_failed()) return {};
    call_args call;
    call.values = arguments;
    // encode(*, ...) takes the payload's raw bytes only where * is the payload; inside a nested
    // SELECT * is the row, which the argument already holds.
    call.first_is_star = row == state_.payload_json && e.list_size > 0 &&
                         code_.exprs[code_.lists[e.list_begin]].kind == expr_kind::star;
    if (e.pattern != no_index) call.literal_pattern = &code_.patterns[e.pattern];
    return function.body(state_, call);
  }

  // cast(x AS type): the standard conversions, plus numbers to and from Booleans.
  value eval_cast(const expr& e, const json::value* row) {
    value v = eval(e.left, row);
    const bool whole_as_int = state_.whole_as_int();
    const sql_type type = v.type();
    switch (e.cast_to) {
      case cast_type::to_string: {
        if (type == sql_type::string) return v;
        std::string text;
        // An Array or Object stops past max_output_bytes, and string_result then fails.
        if (!append_string(v, whole_as_int, text, state_.bounds.max_output_bytes)) return {};
        return string_result(text, state_);
      }
      case cast_type::to_int: {
        if (type == sql_type::boolean) return make_int(v.json().get_bool() ? 1 : 0);
        const auto i = to_int(v);  // Decimals truncated: cast(-1.5 AS Int) = -1
        return i ? make_int(*i) : value();
      }
      case cast_type::to_decimal:
      case cast_type::to_double: {
        if (type == sql_type::boolean)
          return make_decimal(v.json().get_bool() ? 1.0 : 0.0, whole_as_int);
        const auto n = to_number(v);
        return n ? make_decimal(n->as_double(), whole_as_int) : value();
      }
      case cast_type::to_boolean: {
        if (type == sql_type::integer || type == sql_type::decimal)
          return make_bool(to_number(v)->as_double() != 0.0);
        const auto b = to_boolean(v);
        return b ? make_bool(*b) : value();
      }
    }
    return {};
  }

  // CASE: the first WHEN that equals the subject (or is true, without one); else ELSE, else
  // Undefined. An Undefined subject is Undefined, as AWS documents.
  value eval_case(const expr& e, const json::value* row) {
    value subject;
    if (e.kind == expr_kind::case_simple) {
      subject = eval(e.left, row);
      if (subject.is_undefined()) return {};
    }
    for (std::uint32_t i = 0; i + 1 < e.list_size; i += 2) {
      const value when = eval(code_.lists[e.list_begin + i], row);
      bool is_match = false;
      if (e.kind == expr_kind::case_simple) {
        const auto equal = sql_equals(subject, when);
        is_match = equal && *equal;
      } else {
        const auto b = to_boolean(when);
        is_match = b && *b;
      }
      if (is_match) return eval(code_.lists[e.list_begin + i + 1], row);
    }
    return e.right != no_index ? eval(e.right, row) : value();
  }

  // (SELECT ... FROM x WHERE ...): over an Array, the array of each passing element's result;
  // over an Object, that one row's result (how transform()'s examples use it); else Undefined.
  value run_nested(const query& q, const json::value* outer_row) {
    if (++state_.select_depth > state_.bounds.max_depth) {
      state_.fail("nested SELECTs exceed max_depth");
      return {};
    }
    value source = eval(q.from, outer_row);
    value result;
    if (!source.is_undefined() && source.json().is_array()) {
      json::value rows(json::array_kind, state_.storage);
      json::array& out = rows.get_array();
      for (const json::value& element : source.json().get_array()) {
        if (state_.has_failed()) break;
        if (!passes(q, &element)) continue;
        value row_result = select(q, &element, false);
        if (!row_result.is_undefined()) out.push_back(std::move(row_result.json()));
      }
      result = value(std::move(rows));
    } else if (!source.is_undefined() && source.json().is_object()) {
      if (passes(q, &source.json())) result = select(q, &source.json(), false);
    }
    --state_.select_depth;
    return result;
  }

  const program& code_;
  eval_state& state_;
};

eval_error output_too_long() {
  return eval_error{"the output exceeds max_output_bytes"};
}

// evaluate() within an arena whose heap blocks come from `budget`; throws
// memory_budget_exceeded once the evaluation needs more than the budget allows.
std::variant<std::optional<std::string>, eval_error> evaluate_within(
    const statement& s, std::string_view payload, const message_context& ctx, const limits& bounds,
    const json::storage_ptr& storage, memory_budget& budget) {
  json::parse_options options;
  options.max_depth = static_cast<std::size_t>(bounds.max_depth > 0 ? bounds.max_depth : 1);
  json::error_code ec;
  json::value parsed =
      json::parse(json::string_view(payload.data(), payload.size()), ec, storage, options);
  const json::value* row = ec ? nullptr : &parsed;  // not JSON: names are Undefined
  // The payload, already bounded by whoever accepted the message, is free; what the evaluation
  // makes of it is not.
  budget.set_limit(bounds.max_memory_bytes < no_byte_limit - budget.used()
                       ? budget.used() + bounds.max_memory_bytes
                       : no_byte_limit);

  eval_state state(ctx, bounds, s.version(), storage, payload, row);
  evaluation run(s.code(), state);
  NIMBUS_ASSERT(s.code().root < s.code().queries.size());
  const query& statement_query = s.code().queries[s.code().root];

  if (!run.passes(statement_query, row)) {
    if (state.has_failed()) return eval_error{state.error};
    return std::optional<std::string>();
  }

  const bool whole_as_int = state.whole_as_int();
  std::string out;
  out.reserve(std::min(bounds.max_output_bytes, payload.size() + 64));  // one allocation, usually
  const bool is_star_only =
      statement_query.items.size() == 1 && statement_query.items.front().expression == no_index;
  if (is_star_only) {
    // SELECT * and SELECT VALUE *: the payload; its own bytes when it is not JSON.
    if (row != nullptr) {
      if (!write_json(*row, whole_as_int, out, bounds.max_output_bytes)) return output_too_long();
    } else {
      out.assign(payload);
    }
  } else {
    const value result = run.select(statement_query, row, true);
    if (state.has_failed()) return eval_error{state.error};
    if (statement_query.is_value && !result.is_undefined() && result.json().is_array() &&
        s.version() == sql_version::v2015_10_08)
      return eval_error{"SELECT VALUE of an Array needs SQL version 2016-03-23"};
    if (!result.is_undefined() &&
        !write_json(result.json(), whole_as_int, out, bounds.max_output_bytes))
      return output_too_long();
  }
  if (out.size() > bounds.max_output_bytes) return output_too_long();
  return std::optional<std::string>(std::move(out));
}

}  // namespace

std::variant<std::optional<std::string>, eval_error> evaluate(const statement& s,
                                                              std::string_view payload,
                                                              const message_context& ctx,
                                                              const limits& bounds) {
  // Declared in this order so that the arena returns its blocks before the budget goes.
  memory_budget budget;
  unsigned char buffer[arena_bytes];
  json::monotonic_resource arena(buffer, sizeof buffer, json::storage_ptr(&budget));
  const json::storage_ptr storage(&arena);
  try {
    auto result = evaluate_within(s, payload, ctx, bounds, storage, budget);
    if (!budget.is_exhausted()) return result;
  } catch (const memory_budget_exceeded&) {
    // The values the evaluation made are gone with the stack frames; the arena's blocks go
    // with it below.
  }
  return eval_error{"the evaluation needs more than max_memory_bytes (" +
                    std::to_string(bounds.max_memory_bytes) + " bytes) besides its payload"};
}

}  // namespace nimbus::rules::sql
