// quantmt: the command-line client of quantmt-server.
#include "client/cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"quantmt: translate, evaluate, benchmark, manage models and load-test a "
               "quantmt-server"};
  app.require_subcommand(1);
  quantmt::client::ConnectionOptions connection;
  quantmt::client::AddConnectionFlags(app, &connection);
  int exit_code = 0;
  quantmt::client::AddTranslateCommand(app, connection, &exit_code);
  quantmt::client::AddEvaluateCommand(app, connection, &exit_code);
  quantmt::client::AddBenchmarkCommand(app, connection, &exit_code);
  quantmt::client::AddModelsCommand(app, connection, &exit_code);
  quantmt::client::AddLoadCommand(app, connection, &exit_code);
  CLI11_PARSE(app, argc, argv);
  return exit_code;
}
