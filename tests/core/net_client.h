#pragma once

// Blocking loopback client helpers for the runtime and HTTP tests.

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <string>

namespace qcloud::test {

struct HttpReply {
  int status = 0;
  std::string headers;
  std::string body;
};

class BlockingClient {
 public:
  explicit BlockingClient(const boost::asio::ip::tcp::endpoint& ep) : socket_(io_) {
    socket_.connect(ep);
  }
  void Send(std::string_view data) { boost::asio::write(socket_, boost::asio::buffer(data)); }
  std::string ReadExactly(size_t n) {
    std::string out(n, '\0');
    size_t have = std::min(n, buf_.size());
    boost::asio::buffer_copy(boost::asio::buffer(out), buf_.data(), have);
    buf_.consume(have);
    if (have < n) boost::asio::read(socket_, boost::asio::buffer(out.data() + have, n - have));
    return out;
  }
  // Reads one HTTP/1.1 response with a Content-Length (or none for HEAD).
  HttpReply ReadHttp(bool head = false) {
    HttpReply r;
    boost::asio::read_until(socket_, buf_, "\r\n\r\n");
    std::string all(boost::asio::buffers_begin(buf_.data()), boost::asio::buffers_end(buf_.data()));
    size_t end = all.find("\r\n\r\n") + 4;
    r.headers = all.substr(0, end);
    buf_.consume(end);
    r.status = std::stoi(r.headers.substr(9, 3));
    size_t len = 0;
    auto pos = r.headers.find("Content-Length: ");
    if (pos != std::string::npos) len = std::stoul(r.headers.substr(pos + 16));
    if (!head) r.body = ReadExactly(len);
    return r;
  }
  // True when the server closed the connection (read returns EOF).
  bool ClosedByPeer() {
    boost::system::error_code ec;
    char c;
    socket_.read_some(boost::asio::buffer(&c, 1), ec);
    return ec == boost::asio::error::eof || ec == boost::asio::error::connection_reset;
  }
  boost::asio::ip::tcp::socket& socket() { return socket_; }

 private:
  boost::asio::io_context io_;
  boost::asio::ip::tcp::socket socket_;
  boost::asio::streambuf buf_;
};

}  // namespace qcloud::test
