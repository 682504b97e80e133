// The only Beast translation unit of libqcloud-runtime (Beast costs ~15 s of
// compile time per file here).
#include "qcloud/runtime/metrics_http.h"

#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace qcloud {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;

constexpr size_t kHeaderLimit = size_t{8} * 1024;

class Session;

// Open sessions, so that a stop can close keep-alive connections at once
// instead of waiting for their idle timeout.
struct SessionSet {
  std::mutex mu;
  std::vector<std::weak_ptr<Session>> live;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, const MetricsRegistry& registry,
          std::shared_ptr<const MetricsHttpOptions> options)
      : stream_(std::move(socket)), registry_(registry), options_(std::move(options)) {}

  void Start() { ReadRequest(); }

  // Closes the connection from any thread (runs on the session's executor).
  void CloseAsync() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] { self->Close(); });
  }

 private:
  void ReadRequest() {
    parser_.emplace();
    parser_->header_limit(kHeaderLimit);
    parser_->body_limit(0);  // a scrape has no body
    stream_.expires_after(options_->idle_timeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       self->OnRead(ec);
                     });
  }

  void OnRead(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout) return Close();
    if (ec) {
      // Malformed or oversized request: answer 400 once and close.
      return Reply(http::status::bad_request, "bad request\n", /*keep_alive=*/false, false);
    }
    const auto& req = parser_->get();
    std::string_view target(req.target().data(), req.target().size());
    if (auto q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);
    bool head = req.method() == http::verb::head;
    if (req.method() != http::verb::get && !head) {
      return Reply(http::status::method_not_allowed, "method not allowed\n", req.keep_alive(), head);
    }
    if (target != options_->path) {
      return Reply(http::status::not_found, "not found; metrics are at " + options_->path + "\n",
                   req.keep_alive(), head);
    }
    Reply(http::status::ok, registry_.RenderText(), req.keep_alive(), head);
  }

  void Reply(http::status status, std::string body, bool keep_alive, bool head) {
    auto res = std::make_shared<http::response<http::string_body>>(status, 11);
    res->set(http::field::server, "qcloud");
    res->set(http::field::content_type, status == http::status::ok
                                            ? std::string(MetricsRegistry::kContentType)
                                            : std::string("text/plain; charset=utf-8"));
    if (status == http::status::method_not_allowed) res->set(http::field::allow, "GET, HEAD");
    res->keep_alive(keep_alive);
    res->body() = std::move(body);
    res->prepare_payload();
    if (head) res->body().clear();  // Content-Length stays that of the GET
    stream_.expires_after(options_->idle_timeout);
    http::async_write(stream_, *res,
                      [self = shared_from_this(), res, keep_alive](beast::error_code ec, size_t) {
                        if (ec || !keep_alive) return self->Close();
                        self->ReadRequest();
                      });
  }

  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.close();
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_{kHeaderLimit};
  std::optional<http::request_parser<http::empty_body>> parser_;
  const MetricsRegistry& registry_;
  std::shared_ptr<const MetricsHttpOptions> options_;
};

}  // namespace

Result<Endpoint> ServeMetrics(Runtime& runtime, const Endpoint& endpoint,
                                   const MetricsRegistry& registry,
                                   const MetricsHttpOptions& options) {
  if (options.path.empty() || options.path[0] != '/') {
    return InvalidArgument("metrics path must start with '/'");
  }
  auto opts = std::make_shared<const MetricsHttpOptions>(options);
  auto sessions = std::make_shared<SessionSet>();
  runtime.OnStop([sessions] {
    std::lock_guard lock(sessions->mu);
    for (auto& w : sessions->live) {
      if (auto s = w.lock()) s->CloseAsync();
    }
    sessions->live.clear();
  });
  return runtime.Listen(endpoint, [&registry, opts, sessions](tcp::socket socket, size_t) {
    auto s = std::make_shared<Session>(std::move(socket), registry, opts);
    {
      std::lock_guard lock(sessions->mu);
      // Forget finished sessions now and then so the list stays small.
      if (sessions->live.size() >= 64) {
        std::erase_if(sessions->live, [](const auto& w) { return w.expired(); });
      }
      sessions->live.push_back(s);
    }
    s->Start();
  });
}

}  // namespace qcloud
