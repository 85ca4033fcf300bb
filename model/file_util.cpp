#include "model/file_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace visplay {

namespace {
BeforeRenameHook g_before_rename = nullptr;
}  // namespace

void set_before_rename_hook(BeforeRenameHook hook) { g_before_rename = hook; }

void remove_stale_temporaries(const std::string& dir) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    const size_t at = name.rfind(".tmp.");
    if (at == std::string::npos || at + 5 == name.size()) continue;
    if (name.find_first_not_of("0123456789", at + 5) != std::string::npos) continue;
    std::error_code ignored;
    std::filesystem::remove(entry.path(), ignored);
  }
}

void fsync_directory(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    throw std::runtime_error(dir + ": cannot open the folder to fsync it: " + std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  // Some file systems cannot fsync a folder (EINVAL); the rename is still atomic there.
  if (rc != 0 && err != EINVAL && err != EROFS)
    throw std::runtime_error(dir + ": fsync of the folder failed: " + std::strerror(err));
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open for reading");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  write_file_atomic(path, &bytes, 1);
}

// Write to "<path>.tmp.<pid>", fsync it, then rename over the target: rename
// is atomic on POSIX, so the old file or the complete new one is always there.
// The folder is fsynced last so that the rename itself is durable.
void write_file_atomic(const std::string& path, const std::string_view* pieces, size_t count) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    throw std::runtime_error(path + ": cannot create " + tmp + ": " + std::strerror(errno));
  auto fail = [&](const char* what) {
    std::string msg = path + ": " + what + ": " + std::strerror(errno);
    ::close(fd);
    ::unlink(tmp.c_str());
    throw std::runtime_error(msg);
  };
  for (size_t i = 0; i < count; ++i) {
    const char* p = pieces[i].data();
    size_t left = pieces[i].size();
    while (left > 0) {
      ssize_t n = ::write(fd, p, left);
      if (n < 0) {
        if (errno == EINTR) continue;
        fail("write failed");
      }
      p += n;
      left -= static_cast<size_t>(n);
    }
  }
  if (::fsync(fd) != 0) fail("fsync failed");
  if (::close(fd) != 0) {
    ::unlink(tmp.c_str());
    throw std::runtime_error(path + ": close failed: " + std::strerror(errno));
  }
  if (g_before_rename) g_before_rename(tmp);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string msg = path + ": rename from " + tmp + " failed: " + std::strerror(errno);
    ::unlink(tmp.c_str());
    throw std::runtime_error(msg);
  }
  const std::string::size_type slash = path.find_last_of('/');
  fsync_directory(slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash));
}

}  // namespace visplay
