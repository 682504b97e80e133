"""Conan 2 recipe for qcloud.

One Conan component per CMake component, with the same target names as the
installed qcloudConfig.cmake (qcloud::core, qcloud::testing, and qcloud::kv,
qcloud::block, ... as those libraries land), so a consumer's CMakeLists.txt
is the same with or without Conan:

    find_package(qcloud CONFIG REQUIRED COMPONENTS core)
    target_link_libraries(app PRIVATE qcloud::core)

Keep `_components` in step with the qcloud_add_library() calls in the tree.
"""
from conan import ConanFile
from conan.tools.build import check_min_cppstd
from conan.tools.cmake import CMake, CMakeDeps, CMakeToolchain, cmake_layout
from conan.tools.files import copy

# name -> (library file name, requirements: other components or "pkg::component")
_components = {
    "core": ("qcloud-core", ["fmt::fmt", "openssl::crypto", "zstd::zstdlib", "xxhash::xxhash",
                             "liburing::liburing"]),
    "runtime": ("qcloud-runtime", ["core", "boost::headers", "fmt::fmt"]),
    "testing": ("qcloud-testing", ["core", "fmt::fmt", "doctest::doctest"]),
    "kv": ("qcloud-kv", ["core", "fmt::fmt", "liburing::liburing", "xxhash::xxhash"]),
    "block": ("qcloud-block", ["core", "fmt::fmt", "lmdb::lmdb"]),
    "object": ("qcloud-object", ["core", "fmt::fmt", "lmdb::lmdb"]),
    "s3": ("qcloud-s3", ["object", "boost::headers", "fmt::fmt", "pugixml::pugixml"]),
    "monitor": ("qcloud-monitor", ["core", "boost::json", "fmt::fmt", "protobuf::libprotobuf-lite", "re2::re2",
                                   "snappy::snappy", "yaml-cpp::yaml-cpp"]),
    "sched": ("qcloud-sched", ["core", "boost::json", "fmt::fmt", "yaml-cpp::yaml-cpp"]),
    "net": ("qcloud-net", ["core", "boost::json", "fmt::fmt"]),
}


class QcloudConan(ConanFile):
    name = "qcloud"
    version = "0.1.0"
    description = ("Embeddable C++20 SDK for a cloud platform: memory KV with SSD tier, tiered "
                   "block store, object store, overlay network and gateway, scheduling, monitoring")
    license = "Apache-2.0"
    topics = ("cloud", "memcached", "nbd", "s3", "vxlan", "prometheus")
    package_type = "library"
    settings = "os", "arch", "compiler", "build_type"
    options = {"shared": [True, False], "fPIC": [True, False]}
    default_options = {"shared": False, "fPIC": True}
    exports_sources = ("CMakeLists.txt", "cmake/*", "libqcloud-*/*", "LICENSE*")

    def validate(self):
        check_min_cppstd(self, 20)
        if self.settings.os != "Linux":
            raise Exception("qcloud needs Linux (io_uring, SO_REUSEPORT)")

    def configure(self):
        if self.options.shared:
            self.options.rm_safe("fPIC")

    def layout(self):
        cmake_layout(self)

    def requirements(self):
        # Versions as in Debian 12, which the project is built and tested on.
        # Boost >= 1.81 for Asio's io_uring backend.
        self.requires("boost/1.81.0", transitive_headers=True)
        self.requires("fmt/9.1.0")
        self.requires("openssl/[>=3.0 <4]")
        self.requires("zstd/1.5.5")
        self.requires("xxhash/0.8.1")
        self.requires("liburing/2.3")
        self.requires("lmdb/0.9.31")
        self.requires("pugixml/1.13")
        self.requires("re2/20230301")
        self.requires("protobuf/3.21.12")
        self.requires("snappy/1.1.9")
        self.requires("yaml-cpp/0.7.0")
        # qcloud::testing's public header uses doctest.
        self.requires("doctest/2.4.9", transitive_headers=True)

    def generate(self):
        tc = CMakeToolchain(self)
        tc.cache_variables["QCLOUD_BUILD_TESTS"] = False
        tc.cache_variables["QCLOUD_BUILD_BENCHMARKS"] = False
        tc.cache_variables["QCLOUD_BUILD_EXAMPLES"] = False
        tc.cache_variables["QCLOUD_BUILD_FUZZERS"] = False
        tc.generate()
        CMakeDeps(self).generate()

    def build(self):
        cmake = CMake(self)
        cmake.configure()
        cmake.build()

    def package(self):
        copy(self, "LICENSE*", self.source_folder, f"{self.package_folder}/licenses")
        CMake(self).install()

    def package_info(self):
        self.cpp_info.set_property("cmake_file_name", "qcloud")
        self.cpp_info.set_property("cmake_target_name", "qcloud::qcloud")
        for name, (lib, requires) in _components.items():
            comp = self.cpp_info.components[name]
            comp.set_property("cmake_target_name", f"qcloud::{name}")
            comp.set_property("pkg_config_name", f"qcloud-{name}")
            comp.libs = [lib]
            comp.requires = requires
            comp.system_libs = ["pthread"]
