// Links qcloud::s3 from the installed SDK: an object store in a temporary
// directory, an S3 server on a free port, one unsigned request for a bucket
// that does not exist answered with S3's NoSuchBucket, a clean stop.
#include <stdlib.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>

#include "qcloud/object/object_store.h"
#include "qcloud/object/s3_server.h"

int main() {
  char tmpl[] = "/tmp/qcloud-s3-consumer-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  int rc = 1;
  {
    auto store = qcloud::object::ObjectStore::Open({.disks = {dir + "/chx"}, .index_dir = dir + "/index",
                                                    .index_map_bytes = uint64_t{1} << 30})
                     .value();
    auto server = qcloud::object::S3Server::Open(
                      *store, {.listen = "127.0.0.1:0", .users = {{"alice", "AKIAALICE", "secret"}}})
                      .value();
    std::thread worker([&] { (void)server->Serve(0); });
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(server->address().port);
    ::inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) {
      const char req[] = "GET /photos HTTP/1.1\r\nHost: x\r\n\r\n";
      (void)::write(fd, req, sizeof req - 1);
      char buf[2048] = {};
      const ssize_t n = ::read(fd, buf, sizeof buf - 1);
      if (n > 0 && std::strstr(buf, "HTTP/1.1 404") != nullptr && std::strstr(buf, "NoSuchBucket") != nullptr) {
        rc = 0;
      }
    }
    ::close(fd);
    server->Stop();
    worker.join();
  }
  std::filesystem::remove_all(dir);
  std::printf("s3 consumer: %s\n", rc == 0 ? "ok" : "FAILED");
  return rc;
}
