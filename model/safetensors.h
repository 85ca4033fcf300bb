// The safetensors file format: an 8-byte little-endian header length N, N
// bytes of JSON header {"name": {"dtype": "F32", "shape": [...],
// "data_offsets": [begin, end]}, ..., "__metadata__": {...}}, then the raw
// little-endian tensor bytes (offsets are relative to the end of the header).
// Reading maps the file (mmap) and checks the header completely before any
// tensor is touched: header length, JSON, dtypes, shapes, and offsets that
// must be in range, match the shape's byte size and not overlap.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "runtime/tensor.h"

namespace visplay {

struct SafetensorsEntry {
  std::string name;
  DType dtype;
  std::string dtype_name;  // as written in the file: "F32", "BF16", ...
  Shape shape;
  size_t begin = 0, end = 0;  // byte offsets into the data section
};

// DType <-> safetensors names (F32, BF16, F64, I32, I64). The reverse throws
// for other names.
const char* safetensors_dtype_name(DType t);

// The checked header of a safetensors file held in memory.
struct SafetensorsHeader {
  std::vector<SafetensorsEntry> entries;  // in data-offset order
  std::map<std::string, std::string> metadata;
  size_t data_offset = 0;  // where the data section starts (8 + header length)
};

// Parses and checks the header of a whole safetensors file in memory (the same
// checks SafetensorsFile makes; it calls this). Throws "<name>: <what is wrong>".
// Limits: the header may not exceed kSafetensorsMaxHeaderBytes, and no shape
// entry may exceed 2^53 (shapes are int64 here, and such sizes are nonsense).
constexpr uint64_t kSafetensorsMaxHeaderBytes = 100u << 20;
SafetensorsHeader parse_safetensors(const uint8_t* bytes, size_t size, const std::string& name);

class SafetensorsFile {
 public:
  // Maps and validates the file; throws "<path>: <what is wrong>".
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  // Entries in data-offset order.
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  const SafetensorsEntry& entry(const std::string& name) const;  // throws naming the tensor
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Pointer to a tensor's bytes inside the mapping (valid while this lives).
  const void* bytes(const SafetensorsEntry& e) const { return data_ + e.begin; }
  // A fresh cpu tensor with the stored dtype and shape (a copy of the bytes).
  Tensor load(const std::string& name) const;

 private:
  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  const uint8_t* data_ = nullptr;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Writes tensors (any dtype above, cpu or not, contiguous or not) in the given
// order, via a temporary file, fsync and rename. Names must be unique.
void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace visplay
