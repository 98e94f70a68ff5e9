// Must NOT compile with the server's include path: the server knows no torch
// (tests/CMakeLists.txt, layering checks).
#include <torch/torch.h>
