/* completion — bash/zsh scripts and the hidden `__complete` command that
 * they (and kubectl_complete-diag, for kubectl's plugin completion) call. */
#ifndef KDIAG_CLI_COMPLETION_H
#define KDIAG_CLI_COMPLETION_H

#include <stdio.h>

#include "kube.h"

/* The completion script for shell ("bash" or "zsh"); -EINVAL for another. */
int completion_script(FILE *out, const char *shell);
/* words: what follows "kubectl diag", the last one being completed (may be
 * ""). Prints candidates, one a line, then ":4" (cobra's "no file
 * completion" directive, which kubectl's plugin completion expects). */
int completion_complete(FILE *out, const kube *k, char **words, int nwords);

#endif
