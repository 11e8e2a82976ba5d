// The nimbus command line: `serve`, `version`, with --help everywhere.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <iostream>

#include "app/server.hpp"
#include "config/settings.hpp"
#include "core/log.hpp"

int main(int argc, char** argv) {
  using namespace nimbus;
  CLI::App app{"Nimbus: a self-hosted cloud IoT core (MQTT broker, AWS IoT and Pub/Sub APIs)", "nimbus"};
  app.require_subcommand(1);

  auto* version = app.add_subcommand("version", "Print the version");
  auto* serve = app.add_subcommand("serve", "Run the server");
  std::string config_file;
  bool print_config = false;
  serve->add_option("--config", config_file, "TOML configuration file (flags override it)")->check(CLI::ExistingFile);
  serve->add_flag("--print-config", print_config, "Print the effective configuration as TOML and exit");
  std::map<std::string, std::string> flag_values;
  for (const auto& d : config::describe_settings()) {
    serve->add_option("--" + d.flag, flag_values[d.key],
                      fmt::format("{} (default {}{})", d.description, d.default_value,
                                  d.bounds.empty() ? "" : "; " + d.bounds));
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  if (version->parsed()) {
    std::cout << "nimbus " << NIMBUS_VERSION << "\n";
    return 0;
  }

  config::settings settings;
  if (!config_file.empty()) {
    if (auto err = config::apply_toml_file(settings, config_file); !err.empty()) {
      std::cerr << "nimbus: " << err << "\n";
      return 2;
    }
  }
  for (const auto& d : config::describe_settings()) {
    auto* option = serve->get_option("--" + d.flag);
    if (option->count() == 0) continue;
    if (auto err = config::set_setting(settings, d.key, flag_values[d.key]); !err.empty()) {
      std::cerr << "nimbus: --" << d.flag << ": " << err << "\n";
      return 2;
    }
  }
  if (print_config) {
    std::cout << config::to_toml(settings);
    return 0;
  }

  core::init_logging(settings.log_level);
  try {
    return app::serve(settings);
  } catch (const std::exception& e) {
    spdlog::critical("startup_failed error=\"{}\"", e.what());
    return 1;
  }
}
