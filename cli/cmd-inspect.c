#include "oft-cli.h"

int
cmd_inspect (int argc, char **argv)
{
  GError *error = g_error_new (OFT_IO_ERROR, OFT_ERROR_FAILED, "this command is being written (issue 2)");
  int rc = cli_fail ("inspect", error);
  g_error_free (error);
  return rc;
}
