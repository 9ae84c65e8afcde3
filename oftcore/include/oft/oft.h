/* gimp-oft core library: the only header front-ends need. */
#pragma once
#include "oft/error.h"
#include "oft/tensor.h"
#include "oft/nn.h"
#include "oft/adapters.h"
#include "oft/safetensors.h"
#include "oft/peft.h"
#include "oft/tokenizer.h"
#include "oft/scheduler.h"
#include "oft/clip.h"
#include "oft/vae.h"
#include "oft/unet.h"
#include "oft/rng.h"
#include "oft/pipeline.h"
#include "oft/ldm.h"
#include "oft/runtime.h"
#include "oft/image.h"
#include "oft/conditions.h"
#include "oft/faces.h"
#include "oft/scenes.h"

const char *oft_version (void);
