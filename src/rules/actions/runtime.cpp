#include "rules/actions/runtime.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

#include <exception>
#include <optional>

#include "core/log.hpp"

namespace nimbus::rules::actions {

namespace asio = boost::asio;

// File writes wait on the disk (fsync): two threads, so one slow write does not hold the rest.
struct runtime::blocking_pool {
  asio::thread_pool pool{2};
};

namespace {
using work_guard = asio::executor_work_guard<asio::io_context::executor_type>;
}

runtime::runtime(broker::broker& bus, runtime_settings settings)
    : bus_(bus),
      settings_(std::move(settings)),
      io_(std::make_unique<asio::io_context>()),
      http_(std::make_unique<net::http_client>(*io_)),
      blocking_(std::make_unique<blocking_pool>()) {
  io_thread_ = std::thread([this] {
    work_guard guard(io_->get_executor());
    for (;;) {
      try {
        io_->run();
        return;
      } catch (const std::exception& e) {
        // A bug in one action's completion: report it, keep the loop for the others.
        core::report_bug("rule_actions_loop", e.what());
      }
    }
  });
}

runtime::~runtime() {
  stop();
  io_.reset();  // destroys the exchanges still pending, while the client they use is alive
}

void runtime::stop() {
  // The pool first: a write finishing now may still post its completion to the loop.
  blocking_->pool.stop();
  blocking_->pool.join();
  io_->stop();
  if (io_thread_.joinable()) io_thread_.join();
}

void runtime::run_blocking(std::function<void()> work) {
  asio::post(blocking_->pool, [work = std::move(work)] {
    try {
      work();
    } catch (const std::exception& e) {
      core::report_bug("rule_actions_blocking", e.what());
    }
  });
}

}  // namespace nimbus::rules::actions
