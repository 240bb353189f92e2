/* help — usage text, with examples, for every command. */
#ifndef KDIAG_CLI_HELP_H
#define KDIAG_CLI_HELP_H

#include <stdio.h>

#include "flags.h"

void help_print(FILE *out, flags_cmd cmd);

#endif
