// What one pass over the dev set measured.
#pragma once

#include "quantmt/eval/bleu.h"

namespace quantmt::train {

struct Validation {
  double loss = 0, nll = 0;  // per target token
  eval::BleuScore bleu;
  double seconds = 0;
};

}  // namespace quantmt::train
