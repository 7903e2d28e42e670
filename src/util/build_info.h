// Which drafteu built this binary: the source tree's git commit, read when CMake configured the
// build (not the commit of whatever directory the program later runs in).
#pragma once

namespace drafteu {

// 40 hex digits; "" when the sources were not a git checkout of drafteu itself.
const char* build_commit();

}  // namespace drafteu
