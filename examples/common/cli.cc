#include "cli.h"

#include <iostream>

#include <boost/program_options.hpp>
#include <fmt/format.h>

#include "qcloud/core/units.h"

namespace qcloud::examples {

namespace po = boost::program_options;

struct CommandLine::Impl {
  std::string program;
  po::options_description desc;
  struct Parsed {
    std::string name;
    std::unique_ptr<std::string> text;  // stable address for program_options
    Apply apply;
  };
  std::vector<Parsed> parsed;
  std::string log_level = "info";
  std::unique_ptr<StderrLogger> logger;
  Impl(std::string p, const std::string& summary)
      : program(std::move(p)), desc(fmt::format("{}: {}\n\noptions", program, summary)) {}
};

CommandLine::CommandLine(std::string program, std::string summary)
    : impl_(std::make_unique<Impl>(std::move(program), summary)) {
  impl_->desc.add_options()("help,h", "print this help and exit")(
      "version", "print the version and exit")(
      "log-level", po::value(&impl_->log_level)->default_value(impl_->log_level),
      "least severe log lines kept: debug, info, warning, error");
}

CommandLine::~CommandLine() = default;

void CommandLine::AddFlag(const char* name, bool* out, const char* help) {
  impl_->desc.add_options()(name, po::bool_switch(out), help);
}

void CommandLine::AddString(const char* name, std::string* out, const char* help) {
  impl_->desc.add_options()(name, po::value(out)->default_value(*out), help);
}

void CommandLine::AddStrings(const char* name, std::vector<std::string>* out, const char* help) {
  impl_->desc.add_options()(name, po::value(out)->composing(), help);
}

void CommandLine::AddParsed(const char* name, std::string default_text, const char* help,
                            Apply apply) {
  auto text = std::make_unique<std::string>(default_text);
  impl_->desc.add_options()(name, po::value(text.get())->default_value(default_text), help);
  impl_->parsed.push_back({name, std::move(text), std::move(apply)});
}

Status CommandLine::ParseNumberInto(std::string_view text, uint64_t max,
                                    const std::function<void(uint64_t)>& set) {
  QCLOUD_ASSIGN_OR_RETURN(uint64_t v, ParseUnsigned(text, max));
  set(v);
  return Status::Ok();
}

void CommandLine::AddDuration(const char* name, std::chrono::milliseconds* out,
                              const char* default_text, const char* help) {
  AddParsed(name, default_text, help, [out](std::string_view text) -> Status {
    QCLOUD_ASSIGN_OR_RETURN(*out, ParseDuration(text));
    return Status::Ok();
  });
}

void CommandLine::AddBytes(const char* name, uint64_t* out, const char* default_text,
                           const char* help, uint64_t plain_unit) {
  AddParsed(name, default_text, help, [out, plain_unit](std::string_view text) -> Status {
    QCLOUD_ASSIGN_OR_RETURN(*out, ParseByteSize(text, plain_unit));
    return Status::Ok();
  });
}

void CommandLine::AddEndpoint(const char* name, Endpoint* out, const char* help) {
  AddParsed(name, out->ToString(), help, [out](std::string_view text) -> Status {
    QCLOUD_ASSIGN_OR_RETURN(*out, ParseEndpoint(text));
    return Status::Ok();
  });
}

std::optional<int> CommandLine::Parse(int argc, char** argv) {
  Impl& im = *impl_;
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, im.desc), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    std::cerr << im.program << ": " << e.what() << " (see --help)\n";
    return 2;
  }
  if (vm.count("help") != 0) {
    std::cout << im.desc;
    return 0;
  }
  if (vm.count("version") != 0) {
    std::cout << im.program << " " << QCLOUD_VERSION << "\n";
    return 0;
  }
  for (auto& p : im.parsed) {
    if (Status s = p.apply(*p.text); !s.ok()) {
      std::cerr << im.program << ": --" << p.name << ": " << s.message() << "\n";
      return 2;
    }
  }
  LogLevel level;
  if (im.log_level == "debug") {
    level = LogLevel::kDebug;
  } else if (im.log_level == "info") {
    level = LogLevel::kInfo;
  } else if (im.log_level == "warning") {
    level = LogLevel::kWarning;
  } else if (im.log_level == "error") {
    level = LogLevel::kError;
  } else {
    std::cerr << im.program << ": --log-level: want debug, info, warning or error, not '"
              << im.log_level << "'\n";
    return 2;
  }
  im.logger = std::make_unique<StderrLogger>(level);
  return std::nullopt;
}

Logger& CommandLine::logger() {
  if (!impl_->logger) impl_->logger = std::make_unique<StderrLogger>();
  return *impl_->logger;
}

int CommandLine::Exit(const Status& s) {
  if (s.ok()) return 0;
  std::cerr << impl_->program << ": " << s.ToString() << "\n";
  return 1;
}

}  // namespace qcloud::examples
