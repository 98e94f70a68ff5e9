// Must NOT compile with the server's include path: the server reaches the
// engine through its public headers only (tests/CMakeLists.txt, layering
// checks).
#include "model/transformer.h"
