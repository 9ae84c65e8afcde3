#include "oft/error.h"
#include "oft-config.h"

G_DEFINE_QUARK (oft-io-error-quark, oft_io_error)
G_DEFINE_QUARK (oft-model-error-quark, oft_model_error)

const char *oft_version (void);
const char *
oft_version (void)
{
  return OFT_VERSION;
}
