// Every kernel family compiled into the library: one #include per family header. Each
// header registers its family (or variants) by name with RNNZOO_FAMILY; see family.h for
// the interface and ops.cpp for how to add a family.
#pragma once

#include "families/cornn.h"
#include "families/diag.h"
#include "families/elman.h"
#include "families/gru.h"
#include "families/indrnn.h"
#include "families/intersection.h"
#include "families/leaky.h"
#include "families/lipschitz.h"
#include "families/lstm.h"
#include "families/modrelu.h"
#include "families/peephole.h"
#include "families/ugrnn.h"
