// Small file helpers shared by the checkpoint code: whole-file reads and
// crash-safe writes (temporary file in the same folder, fsync, rename, fsync of
// the folder), so a reader never sees half a file, even after a crash.
#pragma once
#include <string>
#include <string_view>

namespace visplay {

std::string read_text_file(const std::string& path);
// Writes `bytes` to path atomically. Throws naming the path on failure.
void write_file_atomic(const std::string& path, std::string_view bytes);
// Writes several pieces back to back (avoids building one big buffer).
void write_file_atomic(const std::string& path, const std::string_view* pieces, size_t count);

// Removes the temporary files ("<name>.tmp.<pid>") that writes killed before their rename left
// in `dir` (not recursive). Call it only on a folder no other process is writing to.
void remove_stale_temporaries(const std::string& dir);

// fsyncs a folder, so that a rename inside it survives a power loss. Throws naming the folder.
void fsync_directory(const std::string& dir);

// Test hook: called with the temporary file's path after it is written and synced, just before
// the rename (nullptr: none). Lets a test kill the process at the worst moment of a write.
using BeforeRenameHook = void (*)(const std::string& tmp_path);
void set_before_rename_hook(BeforeRenameHook hook);

}  // namespace visplay
