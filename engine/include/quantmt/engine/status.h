// Status helpers shared by every quantmt layer.
//
// Errors travel as absl::Status / absl::StatusOr; nothing on a path reachable
// from user input aborts the process. Debian's Abseil (20220623) has no status
// macros, so the two we need live here.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define QUANTMT_CONCAT_INNER_(a, b) a##b
#define QUANTMT_CONCAT_(a, b) QUANTMT_CONCAT_INNER_(a, b)

// Returns from the enclosing function if `expr` is not OK.
#define RETURN_IF_ERROR(expr)                          \
  do {                                                 \
    ::absl::Status quantmt_status_ = (expr);           \
    if (!quantmt_status_.ok()) return quantmt_status_; \
  } while (0)

// ASSIGN_OR_RETURN(auto x, MakeX()) assigns the value of a StatusOr or
// returns its error from the enclosing function.
#define ASSIGN_OR_RETURN(lhs, expr) \
  QUANTMT_ASSIGN_OR_RETURN_IMPL_(QUANTMT_CONCAT_(quantmt_statusor_, __LINE__), lhs, expr)
#define QUANTMT_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                   \
  if (!tmp.ok()) return std::move(tmp).status();       \
  lhs = std::move(tmp).value()
