// Small file helpers shared by the checkpoint code: whole-file reads and
// crash-safe writes (temporary file in the same folder, fsync, rename), so a
// reader never sees half a file.
#pragma once
#include <string>
#include <string_view>

namespace visplay {

std::string read_text_file(const std::string& path);
// Writes `bytes` to path atomically. Throws naming the path on failure.
void write_file_atomic(const std::string& path, std::string_view bytes);
// Writes several pieces back to back (avoids building one big buffer).
void write_file_atomic(const std::string& path, const std::string_view* pieces, size_t count);

}  // namespace visplay
