#include "model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>

#include "model/file_util.h"

namespace visplay {

using nlohmann::json;

const char* safetensors_dtype_name(DType t) {
  switch (t) {
    case DType::f32:
      return "F32";
    case DType::bf16:
      return "BF16";
    case DType::f64:
      return "F64";
    case DType::i32:
      return "I32";
    case DType::i64:
      return "I64";
  }
  return "?";
}

namespace {

bool dtype_from_safetensors(const std::string& name, DType* out) {
  static const std::pair<const char*, DType> table[] = {{"F32", DType::f32},
                                                        {"BF16", DType::bf16},
                                                        {"F64", DType::f64},
                                                        {"I32", DType::i32},
                                                        {"I64", DType::i64}};
  for (const auto& [n, t] : table)
    if (name == n) return *out = t, true;
  return false;
}

uint64_t read_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

// Checks everything a reader relies on before any tensor is touched: the header
// length, the JSON (no duplicate names), dtypes, shapes, and data offsets that are
// in range, match the shape's byte size and do not overlap.
SafetensorsHeader parse_safetensors(const uint8_t* base, size_t size, const std::string& name) {
  auto fail = [&](const std::string& what) { throw std::runtime_error(name + ": " + what); };
  if (size < 8)
    fail("file is " + std::to_string(size) + " bytes, too short for the 8-byte header length");
  uint64_t header_len = read_le64(base);
  if (header_len > size - 8)
    fail("header length " + std::to_string(header_len) + " exceeds the file size " +
         std::to_string(size) + " (minus 8)");
  if (header_len > kSafetensorsMaxHeaderBytes)
    fail("header length " + std::to_string(header_len) + " is above the limit of " +
         std::to_string(kSafetensorsMaxHeaderBytes) + " bytes");
  SafetensorsHeader out;
  out.data_offset = 8 + header_len;
  const uint8_t* data = base + out.data_offset;
  size_t data_size = size - out.data_offset;
  // nlohmann keeps the last of duplicate keys; a file naming a tensor twice is
  // ambiguous, so the parser callback records top-level duplicates.
  std::set<std::string> top_keys;
  std::string duplicate;
  auto watch_keys = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1 && parsed.is_string() &&
        !top_keys.insert(parsed.get<std::string>()).second && duplicate.empty())
      duplicate = parsed.get<std::string>();
    return true;
  };
  json header;
  try {
    header = json::parse(reinterpret_cast<const char*>(base + 8),
                         reinterpret_cast<const char*>(data), watch_keys);
  } catch (const json::exception& e) {
    fail(std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) fail("header is not a JSON object");
  if (!duplicate.empty()) fail("header names '" + duplicate + "' more than once");
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& key = it.key();
    const json& v = it.value();
    if (key == "__metadata__") {
      if (!v.is_object()) fail("__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m)
        out.metadata[m.key()] =
            m.value().is_string() ? m.value().get<std::string>() : m.value().dump();
      continue;
    }
    std::string where = "tensor '" + key + "'";
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") ||
        !v.contains("data_offsets"))
      fail(where + ": needs dtype, shape and data_offsets");
    SafetensorsEntry e;
    e.name = key;
    if (!v["dtype"].is_string()) fail(where + ": dtype is not a string");
    e.dtype_name = v["dtype"].get<std::string>();
    if (!dtype_from_safetensors(e.dtype_name, &e.dtype))
      fail(where + ": unsupported dtype " + e.dtype_name +
           " (supported: F32, BF16, F64, I32, I64)");
    if (!v["shape"].is_array()) fail(where + ": shape is not an array");
    uint64_t numel = 1;
    for (const json& d : v["shape"]) {
      if (!d.is_number_unsigned())
        fail(where + ": shape " + v["shape"].dump() + " has a non-integer entry");
      uint64_t n = d.get<uint64_t>();
      // Checked on its own too: beside a 0 the product stays 0 whatever n is.
      if (n > (uint64_t(1) << 53)) fail(where + ": shape " + v["shape"].dump() + " is too large");
      if (n != 0 && numel > std::numeric_limits<uint64_t>::max() / 8 / n)
        fail(where + ": shape " + v["shape"].dump() + " is too large");
      numel *= n;
      e.shape.push_back(static_cast<int64_t>(n));
    }
    const json& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
        !off[1].is_number_unsigned())
      fail(where + ": data_offsets must be two non-negative integers, got " + off.dump());
    uint64_t b = off[0].get<uint64_t>(), en = off[1].get<uint64_t>();
    if (b > en || en > data_size)
      fail(where + ": data_offsets [" + std::to_string(b) + ", " + std::to_string(en) +
           "] out of range for a data section of " + std::to_string(data_size) + " bytes");
    uint64_t want = numel * dtype_size(e.dtype);
    if (en - b != want)
      fail(where + ": data_offsets span " + std::to_string(en - b) + " bytes but " + e.dtype_name +
           " " + shape_str(e.shape) + " needs " + std::to_string(want));
    e.begin = b;
    e.end = en;
    out.entries.push_back(std::move(e));
  }
  std::sort(out.entries.begin(), out.entries.end(),
            [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
              return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
            });
  for (size_t i = 0; i + 1 < out.entries.size(); ++i)
    if (out.entries[i + 1].begin < out.entries[i].end)
      fail("tensors '" + out.entries[i].name + "' and '" + out.entries[i + 1].name +
           "' have overlapping data_offsets");
  return out;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  auto fail = [&](const std::string& what) { throw std::runtime_error(path_ + ": " + what); };
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(std::string("cannot open: ") + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    fail(std::string("cannot stat: ") + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("not a regular file");
  }
  map_size_ = static_cast<size_t>(st.st_size);
  if (map_size_ < 8) {
    ::close(fd);
    fail("file is " + std::to_string(map_size_) + " bytes, too short for the 8-byte header length");
  }
  map_ = ::mmap(nullptr, map_size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map_ == MAP_FAILED) {
    map_ = nullptr;
    fail(std::string("mmap failed: ") + std::strerror(errno));
  }
  try {
    const uint8_t* base = static_cast<const uint8_t*>(map_);
    SafetensorsHeader header = parse_safetensors(base, map_size_, path_);
    data_ = base + header.data_offset;
    entries_ = std::move(header.entries);
    metadata_ = std::move(header.metadata);
    for (size_t i = 0; i < entries_.size(); ++i) index_[entries_[i].name] = i;
  } catch (...) {
    ::munmap(map_, map_size_);
    map_ = nullptr;
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, map_size_);
}

const SafetensorsEntry& SafetensorsFile::entry(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw std::runtime_error(path_ + ": no tensor named '" + name + "'");
  return entries_[it->second];
}

Tensor SafetensorsFile::load(const std::string& name) const {
  const SafetensorsEntry& e = entry(name);
  Tensor t = Tensor::empty(e.shape, e.dtype);
  if (e.end > e.begin) std::memcpy(t.raw_data(), bytes(e), e.end - e.begin);
  return t;
}

void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  std::vector<Tensor> host;  // contiguous cpu copies (or the tensors themselves)
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__" || !seen.insert(name).second)
      throw std::runtime_error(path + ": duplicate or reserved tensor name '" + name + "'");
    if (!t.defined()) throw std::runtime_error(path + ": tensor '" + name + "' is undefined");
    Tensor h = t.detach();
    if (!h.device().is_host() || h.device().type != DeviceType::cpu) h = h.to(kCPU);
    h = h.contiguous();
    uint64_t nbytes = static_cast<uint64_t>(h.numel()) * dtype_size(h.dtype());
    header[name] = {{"dtype", safetensors_dtype_name(h.dtype())},
                    {"shape", h.shape()},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    host.push_back(h);
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keep the data 8-byte aligned
  uint8_t len[8];
  for (int i = 0; i < 8; ++i)
    len[i] = static_cast<uint8_t>(static_cast<uint64_t>(text.size()) >> (8 * i));
  std::vector<std::string_view> pieces;
  pieces.emplace_back(reinterpret_cast<const char*>(len), 8);
  pieces.emplace_back(text);
  for (const Tensor& h : host)
    pieces.emplace_back(static_cast<const char*>(h.raw_data()), h.numel() * dtype_size(h.dtype()));
  write_file_atomic(path, pieces.data(), pieces.size());
}

}  // namespace visplay
