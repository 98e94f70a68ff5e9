// Compiles with the server's include path: everything the engine offers other
// layers on purpose (the control for the layering checks beside it).
#include "quantmt/engine/engine.h"
#include "quantmt/engine/mutex.h"
#include "quantmt/engine/status.h"
#include "quantmt/engine/tokenizer.h"
#include "quantmt/engine/translation.h"
#include "quantmt/engine/translator.h"
#include "quantmt/engine/utf8.h"
#include "quantmt/eval/bleu.h"
#include "quantmt/eval/chrf.h"
#include "quantmt/eval/percentile.h"
#include "quantmt/eval/test_sets.h"
