// Umbrella header of the uncertainty module (namespace drafteu::uncertainty): per-token
// entropy, divergences, the epistemic uncertainty of a target family (Lemma 3.1, Theorem 3.2),
// the draft estimator (Theorem 3.4), the token record and sequence aggregation.
// See reduce.h for the shared conventions (shapes, zeros, precision, chunking).
#pragma once
#include "uncertainty/aggregate.h"
#include "uncertainty/divergence.h"
#include "uncertainty/draft_estimator.h"
#include "uncertainty/entropy.h"
#include "uncertainty/epistemic.h"
#include "uncertainty/mixture.h"
#include "uncertainty/record.h"
#include "uncertainty/reduce.h"
